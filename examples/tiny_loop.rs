//! A whole chat server on mio: the loop a learner writes first.
//! `cargo run --example tiny_loop -- [ADDR:PORT]` (default 127.0.0.1:7979),
//! then chat with `nc 127.0.0.1 7979` from two terminals.
//!
//! What it does right: one `Poll` for every socket, a `Slab` from token to
//! client, reads until `WouldBlock` (edge-triggered: stop early and no event
//! comes for the rest), keeps a partial line for the next read (TCP carries
//! bytes, not lines), and on `Ok(0)` first handles the lines already sent.
//!
//! What it gets wrong on purpose, and where loopchat gets it right
//! (`Server`, `Mailer`, `FAIR_READ` and `set_keepalive` are in src/server.rs):
//! 1. `write()` straight to the socket, result ignored: a short write drops
//!    the end of a line, `WouldBlock` (a slow reader) drops whole lines.
//!    Fix: `SendQueue::write_to` (src/output/sendq.rs) keeps the offset; WRITABLE
//!    interest while bytes remain (`Server::flush`); a cap drops the slow
//!    reader instead (`Mailer::send`, `--max-sendq`).
//! 2. One `write()` per line per recipient. Fix: `Mailer::send` appends
//!    to a queue; `Server::flush_pending` writes each one once a turn.
//! 3. No line-length limit: `partial` grows while a client sends no newline
//!    (tests/tiny_loop.rs shows it). Fix: `LineFramer` (src/framing.rs)
//!    says `Frame::TooLong` before the newline and drops the rest.
//! 4. No fairness or flood control: a fast sender is read until it pauses.
//!    Fix: `FAIR_READ` and `unread` in `Server::read_from`; `TokenBucket`
//!    (src/ratelimit.rs) in `Server::hand_lines_to_room`.
//! 5. Any accept or register error ends the server: out of descriptors
//!    (EMFILE), one more `nc` kills the room. No connection limit either.
//!    Fix: `Server::accept`, `Server::shed_with_spare_fd`; `--max-clients`
//!    and `--max-per-ip` in `Server::admit`.
//! 6. Nagle left on: small lines wait for ACKs. Fix: `set_nodelay` in
//!    `Server::admit`.
//! 7. No timers: a client that never names itself keeps its slot, a peer
//!    gone without a FIN is never noticed. Fix: src/timers.rs
//!    (`Timer::RegisterDeadline`, `Timer::IdleCheck`), `set_keepalive`.
//! 8. Nothing is checked: two users may both be `bob`; escape sequences
//!    reach every terminal. Fix: `protocol::validate_nick`,
//!    `Core::check_nick` (src/chat/core.rs), `decode` (src/dialect/line.rs).
//! 9. A client is freed mid-batch, and a failed write to it is ignored.
//!    Safe only while a client is removed by its own event: once one can
//!    close another, an accept later in the batch reuses the slab key and
//!    gets the dead one's event. Fix: `Phase::Closing`, `Server::free_closed`.
//! 10. The chat rules live in the socket code, testable only with sockets.
//!     Fix: `Core` (src/chat/) knows no sockets; `Hub` (src/hub.rs) and
//!     the dialects (src/dialect/) turn its events into bytes.

use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// Clients get tokens 0, 1, 2... (their slab keys); the listener sits above.
const LISTENER: Token = Token(usize::MAX);

struct Client {
    stream: TcpStream,
    /// Bytes of a line whose newline has not arrived yet.
    partial: Vec<u8>,
    /// `None` until the first line, which is the nickname.
    nick: Option<String>,
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7979".into());
    let mut listener = TcpListener::bind(addr.parse().expect("usage: tiny_loop [ADDR:PORT]"))?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    let mut clients: Slab<Client> = Slab::new();
    let mut events = Events::with_capacity(128);
    let mut buf = [0u8; 4096];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue, // a signal
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                // Edge-triggered: accept until WouldBlock, or the rest wait.
                loop {
                    let (mut stream, _) = match listener.accept() {
                        Ok(pair) => pair,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e), // flaw 5
                    };
                    let slot = clients.vacant_entry();
                    let token = Token(slot.key());
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE)?;
                    let _ = stream.write(b"* Welcome to tiny_loop! What shall I call you?\n");
                    let (partial, nick) = (Vec::new(), None);
                    slot.insert(Client {
                        stream,
                        partial,
                        nick,
                    });
                }
                continue;
            }
            let k = event.token().0;
            let Some(c) = clients.get_mut(k) else {
                continue;
            };
            // Read until WouldBlock; remember whether the peer is gone.
            let old = c.partial.len();
            let gone = loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => c.partial.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break true,
                }
            };
            // Take the complete lines; keep the tail. Any newline is in the
            // new bytes (older ones were taken before), so look only there.
            let mut whole = Vec::new();
            if let Some(i) = c.partial[old..].iter().rposition(|&b| b == b'\n') {
                whole = c.partial.drain(..=old + i).collect();
            }
            for line in whole.split_inclusive(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line); // flaw 8
                handle_line(&mut clients, k, line.trim_end_matches(['\r', '\n']));
            }
            if gone {
                let mut c = clients.remove(k); // flaw 9
                let _ = poll.registry().deregister(&mut c.stream);
                if let Some(nick) = c.nick {
                    broadcast(&mut clients, k, &format!("* {nick} has left\n"));
                }
            }
        }
    }
}

/// One complete line from client `k`: its nickname, or something to say.
fn handle_line(clients: &mut Slab<Client>, k: usize, line: &str) {
    if line.is_empty() {
        return;
    }
    match clients[k].nick.clone() {
        Some(nick) => broadcast(clients, k, &format!("[{nick}] {line}\n")),
        None => {
            broadcast(clients, k, &format!("* {line} has joined\n"));
            clients[k].nick = Some(line.to_string());
            let online = clients.iter().filter(|(_, c)| c.nick.is_some()).count();
            let hello = format!("* Welcome, {line}! {online} online.\n");
            let _ = clients[k].stream.write(hello.as_bytes()); // flaw 1
        }
    }
}

/// Sends `text` to every named client except `from`.
fn broadcast(clients: &mut Slab<Client>, from: usize, text: &str) {
    for (k, c) in clients.iter_mut() {
        if k != from && c.nick.is_some() {
            let _ = c.stream.write(text.as_bytes()); // flaws 1, 2 and 9
        }
    }
}
