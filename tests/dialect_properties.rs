//! Property test over the socket-free chat with both dialects: line users
//! and IRC users (`Hub::connected` / `Hub::connected_irc`, each named on
//! connecting, IRC users in `#lobby`) send arbitrary
//! interleavings of registration, joins, parts, chat, renames, queries and
//! junk. Invariants checked after every step:
//! - nothing panics, and the core's indexes agree (`check_consistency`);
//! - an IRC connection receives only whole CRLF lines of at most 512 bytes;
//!   a line connection only whole `\n` lines without control characters;
//! - a line said in a room reaches every other member of that room exactly
//!   once, in the member's dialect, and nobody else.

use std::collections::HashMap;

use loopchat::chat::ConnId;
use loopchat::dialect::Dialect;
use loopchat::framing::Frame;
use loopchat::hub::{Hub, Outbox};
use proptest::prelude::*;

const CONNS: usize = 6;

#[derive(Default)]
struct Mailbox {
    /// Lines received by each connection (without their line endings).
    lines: HashMap<ConnId, Vec<String>>,
    /// Which connections speak IRC.
    irc: Vec<ConnId>,
    closed: Vec<ConnId>,
}

impl Outbox for Mailbox {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("the server sends UTF-8");
        let inbox = self.lines.entry(to).or_default();
        if self.irc.contains(&to) {
            assert!(text.ends_with("\r\n"), "IRC lines end in CRLF: {text:?}");
            for line in text.split_inclusive("\r\n") {
                assert!(line.len() <= 512, "{} bytes: {line:?}", line.len());
                let body = &line[..line.len() - 2];
                assert!(
                    !body.contains(['\r', '\n', '\0']),
                    "a line break inside a line: {line:?}"
                );
                inbox.push(body.to_string());
            }
        } else {
            assert!(text.ends_with('\n'), "every send is whole lines: {text:?}");
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "control character sent to a line user: {text:?}"
            );
            inbox.extend(text.lines().map(str::to_string));
        }
    }
    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
    }
}

/// Lines an IRC client might send (`{n}` becomes its own number).
fn irc_line() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("NICK i{n}"),
        Just("NICK ann"),
        Just("USER u 0 * :U"),
        Just("CAP LS 302"),
        Just("CAP END"),
        Just("JOIN #lobby"),
        Just("JOIN #b,#lobby"),
        Just("JOIN 0"),
        Just("PART #b :bye"),
        Just("PRIVMSG #lobby :hi"),
        Just("PRIVMSG #b :\u{1}ACTION waves\u{1}"),
        Just("PRIVMSG ann :psst"),
        Just("NOTICE #lobby :note"),
        Just("TOPIC #lobby :t"),
        Just("WHO #lobby"),
        Just("NAMES #b"),
        Just("MODE #lobby b"),
        Just("QUIT :gone"),
        Just("@a=b :src PRIVMSG #lobby :tagged"),
        Just("PRIVMSG #lobby :\u{1b}[2J"),
        Just(":"),
        Just(""),
    ]
}

/// Lines a line user might send.
fn line_line() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("l{n}"),
        Just("ann"),
        Just("hi"),
        Just("/join #b"),
        Just("/join #lobby"),
        Just("/me waves"),
        Just("/msg ann yo"),
        Just("/nick l{n}x"),
        Just("/quit"),
        Just("/who"),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Connect(usize),
    Line(usize, &'static str, &'static str),
    Disconnect(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..CONNS).prop_map(Step::Connect),
        8 => (0..CONNS, irc_line(), line_line()).prop_map(|(c, i, l)| Step::Line(c, i, l)),
        1 => (0..CONNS).prop_map(Step::Disconnect),
    ]
}

/// Connections with an even number speak lines, odd ones IRC.
fn speaks_irc(c: usize) -> bool {
    c % 2 == 1
}

/// What `c`'s line means as chat in a room, if anything: (room or `None`
/// for its one room, text, action).
fn chat_of(c: usize, line: &str) -> Option<(Option<&str>, &str)> {
    if speaks_irc(c) {
        let rest = line.strip_prefix("PRIVMSG ")?;
        let (target, text) = rest.split_once(" :")?;
        (target.starts_with('#') && !text.contains(['\u{1}', '\u{1b}']))
            .then_some((Some(target), text))
    } else {
        (!line.starts_with('/')).then_some((None, line))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn both_dialects_keep_the_invariants(steps in proptest::collection::vec(step(), 1..80)) {
        let mut hub = Hub::new(4096);
        let mut out = Mailbox::default();
        let mut open: Vec<usize> = Vec::new();
        for step in steps {
            match step {
                Step::Connect(c) => {
                    if open.contains(&c) { continue; }
                    open.push(c);
                    // Registered (and for IRC, in #lobby) at once, so most
                    // steps exercise users who can chat.
                    if speaks_irc(c) {
                        out.irc.push(c);
                        hub.connected_irc(c);
                        for line in [format!("NICK i{c}"), format!("USER u{c} 0 * :U"), "JOIN #lobby".to_string()] {
                            hub.handle_frame(c, Frame::Line(line.as_bytes()), &mut out);
                        }
                    } else {
                        hub.connected(c, &mut out);
                        hub.handle_frame(c, Frame::Line(format!("l{c}").as_bytes()), &mut out);
                    }
                }
                Step::Disconnect(c) => {
                    if let Some(i) = open.iter().position(|&k| k == c) {
                        open.remove(i);
                        hub.disconnected(c, &loopchat::chat::LeaveReason::Closed, &mut out);
                    }
                }
                Step::Line(c, irc, line) => {
                    if !open.contains(&c) { continue; }
                    let template = if speaks_irc(c) { irc } else { line };
                    let text = template.replace("{n}", &c.to_string());
                    prop_assert_eq!(hub.dialect(c) == Dialect::Irc, speaks_irc(c));
                    // Who should hear it, if it is chat: the others in the
                    // sender's room, as they are before the line.
                    let core = hub.core();
                    let sender = core.nick(c).map(str::to_string);
                    let expect = chat_of(c, &text).and_then(|(room, said)| {
                        let nick = sender.clone()?;
                        let room = match room {
                            Some(r) => core.rooms_of(c).find(|x| x.eq_ignore_ascii_case(r))?,
                            None => core.rooms_of(c).next()?,
                        };
                        let members: Vec<ConnId> = core.room(room)?.members.iter().map(|m| m.0).filter(|&k| k != c).collect();
                        let user = core.user(c)?.to_string();
                        Some((members, nick, user, room.to_string(), said.to_string()))
                    });
                    let before: HashMap<ConnId, usize> =
                        open.iter().map(|&k| (k, out.lines.get(&k).map_or(0, Vec::len))).collect();
                    hub.handle_frame(c, Frame::Line(text.as_bytes()), &mut out);
                    if let Some((members, nick, user, room, said)) = expect {
                        for &k in &open {
                            if k == c { continue; }
                            let new = out.lines.get(&k).map_or(&[][..], |v| &v[before[&k]..]);
                            if members.contains(&k) {
                                let want = if speaks_irc(k) {
                                    format!(":{nick}!{user}@loopchat PRIVMSG {room} :{said}")
                                } else {
                                    format!("[{nick}] {said}")
                                };
                                prop_assert_eq!(new.to_vec(), vec![want], "#{} from #{}", k, c);
                            } else {
                                prop_assert!(new.is_empty(), "#{} outside {} got {:?}", k, room, new);
                            }
                        }
                    }
                    if out.closed.contains(&c) {
                        open.retain(|&k| k != c);
                        out.closed.retain(|&k| k != c);
                        hub.disconnected(c, &loopchat::chat::LeaveReason::Closed, &mut out);
                    }
                }
            }
            prop_assert!(hub.check_consistency().is_ok(), "{:?}", hub.check_consistency());
        }
    }
}
