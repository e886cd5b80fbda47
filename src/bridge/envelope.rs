//! What one process publishes for the others: a [`Relay`] with the
//! sender's node id and sequence number, and the channel it goes to.
//!
//! # Format
//!
//! A payload is a list of netstring-style fields, `LEN:BYTES,` each, so
//! nothing needs escaping (a nick, a room or a line may hold any byte the
//! dialects allow, a node id anything at all):
//!
//! ```text
//! 3:lc1,6:node-a,2:17,3:say,6:#lobby,5:alice,5:alice,1:p,2:hi,
//! version node    seq   kind  fields of the kind ...
//! ```
//!
//! | kind | fields after the kind |
//! |---|---|
//! | `say` | room, nick, user, text kind (`p` plain, `a` action, `n` notice), text |
//! | `join` | room, nick, user |
//! | `part` | room, nick, user, reason tag, reason text |
//! | `quit` | room, nick, user, reason tag, reason text |
//! | `nick` | room, old nick, user, new nick |
//! | `msg` | to, from, user, text kind, text |
//! | `sync` | room |
//! | `here` | room, nick, user |
//!
//! Reason tags: `quit`, `moved`, `part` (their text: the reason, or the
//! room moved to; empty = none), `closed`, `reset`, `write`, `sendq`,
//! `idle`, `register`. Unknown versions and kinds are errors: the receiver
//! counts and drops them.
//!
//! # Channels
//!
//! Every channel starts with the hash tag `{loopchat}`, so that in a Redis
//! Cluster they would all hash to one slot: `{loopchat}:room:#lobby` (the
//! room's name lowercased) and `{loopchat}:nick:alice` (lowercased).

use std::fmt;

use crate::chat::{LeaveReason, Relay, TextKind};

/// The first field of every payload.
pub const VERSION: &str = "lc1";
/// The prefix of every channel (a Redis Cluster hash tag).
pub const PREFIX: &str = "{loopchat}:";

/// One decoded payload, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub node: &'a str,
    pub seq: u64,
    pub relay: Relay<'a>,
}

/// A payload we cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEnvelope;

impl fmt::Display for BadEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unreadable bridge message")
    }
}

/// The channel of room `name`.
pub fn room_channel(name: &str) -> String {
    format!("{PREFIX}room:{}", name.to_ascii_lowercase())
}

/// The channel of nickname `nick`.
pub fn nick_channel(nick: &str) -> String {
    format!("{PREFIX}nick:{}", nick.to_ascii_lowercase())
}

/// Where `relay` is published.
pub fn channel_of(relay: &Relay<'_>) -> String {
    match relay {
        Relay::Said { room, .. }
        | Relay::Entered { room, .. }
        | Relay::Left { room, .. }
        | Relay::Quit { room, .. }
        | Relay::Renamed { room, .. }
        | Relay::Sync { room }
        | Relay::Here { room, .. } => room_channel(room),
        Relay::Private { to, .. } => nick_channel(to),
    }
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
    out.push(b',');
}

fn kind_tag(kind: TextKind) -> &'static str {
    match kind {
        TextKind::Plain => "p",
        TextKind::Action => "a",
        TextKind::Notice => "n",
    }
}

fn reason_fields(reason: &LeaveReason) -> (&'static str, &str) {
    match reason {
        LeaveReason::Quit(why) => ("quit", why.as_deref().unwrap_or("")),
        LeaveReason::Moved(to) => ("moved", to),
        LeaveReason::Part(why) => ("part", why.as_deref().unwrap_or("")),
        LeaveReason::Closed => ("closed", ""),
        LeaveReason::Reset => ("reset", ""),
        LeaveReason::WriteError => ("write", ""),
        LeaveReason::SendQueueExceeded => ("sendq", ""),
        LeaveReason::IdleTimeout => ("idle", ""),
        LeaveReason::RegisterTimeout => ("register", ""),
    }
}

/// Appends the payload for `relay` from `node`, number `seq`, to `out`.
pub fn encode(node: &str, seq: u64, relay: &Relay<'_>, out: &mut Vec<u8>) {
    field(out, VERSION.as_bytes());
    field(out, node.as_bytes());
    field(out, seq.to_string().as_bytes());
    let mut fields = |kind: &str, rest: &[&str]| {
        field(out, kind.as_bytes());
        for f in rest {
            field(out, f.as_bytes());
        }
    };
    match relay {
        Relay::Said {
            room,
            nick,
            user,
            text,
            kind,
        } => fields("say", &[room, nick, user, kind_tag(*kind), text]),
        Relay::Entered { room, nick, user } => fields("join", &[room, nick, user]),
        Relay::Left {
            room,
            nick,
            user,
            reason,
        } => {
            let (tag, text) = reason_fields(reason);
            fields("part", &[room, nick, user, tag, text]);
        }
        Relay::Quit {
            room,
            nick,
            user,
            reason,
        } => {
            let (tag, text) = reason_fields(reason);
            fields("quit", &[room, nick, user, tag, text]);
        }
        Relay::Renamed {
            room,
            old,
            user,
            new,
        } => fields("nick", &[room, old, user, new]),
        Relay::Private {
            to,
            from,
            user,
            text,
            kind,
        } => fields("msg", &[to, from, user, kind_tag(*kind), text]),
        Relay::Sync { room } => fields("sync", &[room]),
        Relay::Here { room, nick, user } => fields("here", &[room, nick, user]),
    }
}

/// Reads the fields of `payload`, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a str, BadEnvelope> {
        let colon = self.0.iter().position(|&b| b == b':').ok_or(BadEnvelope)?;
        // At most 7 digits: no field of ours is near 10 MB.
        if colon == 0 || colon > 7 {
            return Err(BadEnvelope);
        }
        let len: usize = std::str::from_utf8(&self.0[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BadEnvelope)?;
        let rest = &self.0[colon + 1..];
        if rest.len() < len + 1 || rest[len] != b',' {
            return Err(BadEnvelope);
        }
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| BadEnvelope)?;
        self.0 = &rest[len + 1..];
        Ok(text)
    }
}

fn text_kind(tag: &str) -> Result<TextKind, BadEnvelope> {
    match tag {
        "p" => Ok(TextKind::Plain),
        "a" => Ok(TextKind::Action),
        "n" => Ok(TextKind::Notice),
        _ => Err(BadEnvelope),
    }
}

fn reason(tag: &str, text: &str) -> Result<LeaveReason, BadEnvelope> {
    let why = (!text.is_empty()).then(|| text.to_string());
    Ok(match tag {
        "quit" => LeaveReason::Quit(why),
        "moved" => LeaveReason::Moved(text.to_string()),
        "part" => LeaveReason::Part(why),
        "closed" => LeaveReason::Closed,
        "reset" => LeaveReason::Reset,
        "write" => LeaveReason::WriteError,
        "sendq" => LeaveReason::SendQueueExceeded,
        "idle" => LeaveReason::IdleTimeout,
        "register" => LeaveReason::RegisterTimeout,
        _ => return Err(BadEnvelope),
    })
}

/// Decodes a payload made by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Envelope<'_>, BadEnvelope> {
    let mut f = Fields(payload);
    if f.next()? != VERSION {
        return Err(BadEnvelope);
    }
    let node = f.next()?;
    let seq: u64 = f.next()?.parse().map_err(|_| BadEnvelope)?;
    let relay = match f.next()? {
        "say" => Relay::Said {
            room: f.next()?,
            nick: f.next()?,
            user: f.next()?,
            kind: text_kind(f.next()?)?,
            text: f.next()?,
        },
        "join" => Relay::Entered {
            room: f.next()?,
            nick: f.next()?,
            user: f.next()?,
        },
        kind @ ("part" | "quit") => {
            let (room, nick, user) = (f.next()?, f.next()?, f.next()?);
            let reason = reason(f.next()?, f.next()?)?;
            if kind == "part" {
                Relay::Left {
                    room,
                    nick,
                    user,
                    reason,
                }
            } else {
                Relay::Quit {
                    room,
                    nick,
                    user,
                    reason,
                }
            }
        }
        "nick" => Relay::Renamed {
            room: f.next()?,
            old: f.next()?,
            user: f.next()?,
            new: f.next()?,
        },
        "msg" => Relay::Private {
            to: f.next()?,
            from: f.next()?,
            user: f.next()?,
            kind: text_kind(f.next()?)?,
            text: f.next()?,
        },
        "sync" => Relay::Sync { room: f.next()? },
        "here" => Relay::Here {
            room: f.next()?,
            nick: f.next()?,
            user: f.next()?,
        },
        _ => return Err(BadEnvelope),
    };
    if !f.0.is_empty() {
        return Err(BadEnvelope);
    }
    checked(&relay)?;
    Ok(Envelope { node, seq, relay })
}

/// Longest text or reason taken from another process (a line is at most
/// `--max-line`, 64 KiB at the most).
pub const MAX_TEXT: usize = 64 * 1024;

/// Whatever wrote to the channel (a process of another version, a bug, or
/// anyone with access to Redis), what reaches our users' screens obeys the
/// same rules as their own input: names pass the nickname and room rules,
/// and no field can end a line early (CR, LF or NUL would let it forge
/// lines in a client's stream, an IRC client's especially).
fn checked(relay: &Relay<'_>) -> Result<(), BadEnvelope> {
    let nick = |n: &str| crate::protocol::validate_nick(n).map_err(|_| BadEnvelope);
    let room = |r: &str| crate::chat::validate_room(r).map_err(|_| BadEnvelope);
    let user = |u: &str| {
        // A username is one IRC word: no spaces, no controls.
        let ok = !u.is_empty()
            && u.len() <= 512
            && !u.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok { Ok(()) } else { Err(BadEnvelope) }
    };
    let text = |t: &str| {
        let ok = t.len() <= MAX_TEXT && !t.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        if ok { Ok(()) } else { Err(BadEnvelope) }
    };
    let reason = |r: &LeaveReason| match r {
        LeaveReason::Quit(Some(why)) | LeaveReason::Part(Some(why)) => text(why),
        LeaveReason::Moved(to) => room(to),
        _ => Ok(()),
    };
    match relay {
        Relay::Said {
            room: r,
            nick: n,
            user: u,
            text: t,
            ..
        } => {
            room(r)?;
            nick(n)?;
            user(u)?;
            text(t)
        }
        Relay::Entered {
            room: r,
            nick: n,
            user: u,
        }
        | Relay::Here {
            room: r,
            nick: n,
            user: u,
        } => {
            room(r)?;
            nick(n)?;
            user(u)
        }
        Relay::Left {
            room: r,
            nick: n,
            user: u,
            reason: why,
        }
        | Relay::Quit {
            room: r,
            nick: n,
            user: u,
            reason: why,
        } => {
            room(r)?;
            nick(n)?;
            user(u)?;
            reason(why)
        }
        Relay::Renamed {
            room: r,
            old,
            user: u,
            new,
        } => {
            room(r)?;
            nick(old)?;
            nick(new)?;
            user(u)
        }
        Relay::Private {
            to,
            from,
            user: u,
            text: t,
            ..
        } => {
            nick(to)?;
            nick(from)?;
            user(u)?;
            text(t)
        }
        Relay::Sync { room: r } => room(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(relay: Relay<'_>) {
        let mut out = Vec::new();
        encode("node:1,x", 42, &relay, &mut out);
        let got = decode(&out).unwrap();
        assert_eq!(got.node, "node:1,x");
        assert_eq!(got.seq, 42);
        assert_eq!(got.relay, relay);
    }

    /// Fields that could forge lines or break a dialect's grammar are
    /// refused, whatever wrote them to the channel.
    #[test]
    fn fields_that_could_forge_lines_are_refused() {
        let said = |room, nick, user, text| {
            let mut out = Vec::new();
            let relay = Relay::Said {
                room,
                nick,
                user,
                text,
                kind: TextKind::Plain,
            };
            encode("n", 1, &relay, &mut out);
            decode(&out).is_ok()
        };
        assert!(said("#a", "bob", "u", "fine"));
        assert!(!said("#a", "bob", "u", "hi\r\n:evil PRIVMSG #a :x"));
        assert!(!said("#a", "bob", "u", "nul\0"));
        assert!(!said("#a", "b b", "u", "x"), "a nickname with a space");
        assert!(!said("#a", "bob!x@y", "u", "x"));
        assert!(!said("a", "bob", "u", "x"), "a room without #");
        assert!(!said("#a", "bob", "u v", "x"), "a username with a space");
        assert!(!said("#a", "bob", "", "x"));
        let mut out = Vec::new();
        let moved = Relay::Left {
            room: "#a",
            nick: "bob",
            user: "u",
            reason: LeaveReason::Moved("#b\r\nQUIT".into()),
        };
        encode("n", 1, &moved, &mut out);
        assert!(decode(&out).is_err());
    }

    #[test]
    fn every_kind_round_trips() {
        let (room, nick, user) = ("#Rust", "al[i]ce", "a:1,x");
        round_trip(Relay::Said {
            room,
            nick,
            user,
            text: "3:ab, \u{e9}",
            kind: TextKind::Action,
        });
        round_trip(Relay::Entered { room, nick, user });
        for reason in [
            LeaveReason::Quit(None),
            LeaveReason::Quit(Some("bye".into())),
            LeaveReason::Moved("#b".into()),
            LeaveReason::Part(Some("x".into())),
            LeaveReason::Closed,
            LeaveReason::IdleTimeout,
        ] {
            round_trip(Relay::Left {
                room,
                nick,
                user,
                reason: reason.clone(),
            });
            round_trip(Relay::Quit {
                room,
                nick,
                user,
                reason,
            });
        }
        round_trip(Relay::Renamed {
            room,
            old: nick,
            user,
            new: "bob",
        });
        round_trip(Relay::Private {
            to: "bob",
            from: nick,
            user,
            text: "",
            kind: TextKind::Notice,
        });
        round_trip(Relay::Sync { room });
        round_trip(Relay::Here { room, nick, user });
    }

    #[test]
    fn the_format_is_as_documented() {
        let mut out = Vec::new();
        let relay = Relay::Said {
            room: "#lobby",
            nick: "alice",
            user: "alice",
            text: "hi",
            kind: TextKind::Plain,
        };
        encode("node-a", 17, &relay, &mut out);
        assert_eq!(
            out,
            b"3:lc1,6:node-a,2:17,3:say,6:#lobby,5:alice,5:alice,1:p,2:hi,"
        );
        assert_eq!(channel_of(&relay), "{loopchat}:room:#lobby");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b"3:lc2,1:a,1:1,4:sync,1:r,",
            b"3:lc1,1:a,1:x,4:sync,1:r,",
            b"3:lc1,1:a,1:1,4:frob,1:r,",
            b"3:lc1,1:a,1:1,4:sync,9:r,",
            b"3:lc1,1:a,1:1,4:sync,1:r,extra",
            b"3:lc1,1:a,1:1,4:sync,99999999:r,",
            b"3:lc1,1:a,1:1,3:say,1:r,1:n,1:u,1:q,1:t,",
        ] {
            assert_eq!(decode(bad), Err(BadEnvelope), "{bad:?}");
        }
    }
}
