//! A WebSocket echo server on loopchat's own parts: one thread, one
//! `mio::Poll`, the HTTP upgrade read by `transport::http`, frames by the
//! same `WsFramer` the server uses, and replies through the server's
//! `output::SendQueue`. Every text or binary message comes back as it was.
//!
//! `cargo run --example ws_echo -- [PORT | ADDR:PORT] [--max-message BYTES]`
//! (default `127.0.0.1:9001`, port 0 picks a free one; prints `listening on
//! ADDR:PORT` once bound). Connect to `ws://127.0.0.1:9001/ws`.
//!
//! It exists for the Autobahn|Testsuite conformance run (`.ci/autobahn.sh`),
//! which echoes messages of up to 16 MiB, hence the large default
//! `--max-message`. It is the server's transport in a loop of its own, not
//! a second server: no limits per address, no flood control, no fairness
//! between connections (a connection is read until `WouldBlock`), which
//! the real loop adds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use loopchat::output::{Pool, SendQueue};
use loopchat::transport::http::{self, Route, Status};
use loopchat::transport::websocket::{self, Opcode, WsEvent, WsFramer};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
/// The loop's one read buffer, as in the server: frames are unmasked in it.
const READ_CHUNK: usize = 16 * 1024;
const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// How long a closing connection may take to close its side after ours.
const LINGER: Duration = Duration::from_secs(2);

enum Phase {
    /// Reading the HTTP request head: the bytes so far.
    Http(Vec<u8>),
    WebSocket(WsFramer),
    /// Our last bytes are queued (an HTTP answer, a close frame). Once
    /// they are written we shut our side and read until the peer closes
    /// (or `LINGER` passes): closing with unread bytes would reset the
    /// connection, and the peer could lose our close frame.
    Closing {
        deadline: Instant,
        shut: bool,
    },
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    out: SendQueue,
    /// To be freed after this batch of events (its slab key must not be
    /// reused while events for it may still come in the batch).
    dead: bool,
}

fn main() -> ExitCode {
    let (addr, max_message) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ws_echo: {e}\nusage: ws_echo [PORT | ADDR:PORT] [--max-message BYTES]");
            return ExitCode::from(2);
        }
    };
    match serve(addr, max_message) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_echo: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, usize), String> {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 9001).into();
    let mut max_message = DEFAULT_MAX_MESSAGE;
    while let Some(arg) = args.next() {
        if arg == "--max-message" {
            let value = args.next().ok_or("--max-message needs a value")?;
            max_message = value
                .parse()
                .map_err(|_| format!("bad --max-message {value:?}"))?;
        } else if let Ok(port) = arg.parse::<u16>() {
            addr.set_port(port);
        } else {
            addr = arg.parse().map_err(|_| format!("bad address {arg:?}"))?;
        }
    }
    Ok((addr, max_message))
}

fn serve(addr: SocketAddr, max_message: usize) -> io::Result<()> {
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut conns: Slab<Conn> = Slab::new();
    let mut pool = Pool::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; READ_CHUNK];
    // The send queue's cap: an echo owes at most what it was sent, and a
    // message plus its header is exempt as the longest reply.
    let cap = max_message.saturating_mul(2).max(1 << 20);
    loop {
        let now = Instant::now();
        let timeout = conns
            .iter()
            .filter_map(|(_, c)| match c.phase {
                Phase::Closing { deadline, .. } => Some(deadline.saturating_duration_since(now)),
                _ => None,
            })
            .min();
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&listener, &poll, &mut conns, cap);
                continue;
            }
            let k = event.token().0;
            let Some(c) = conns.get_mut(k) else {
                continue;
            };
            if c.dead {
                continue;
            }
            if event.is_readable() {
                read(c, &mut pool, &mut buf, max_message);
            }
            flush(c, &mut pool);
        }
        // Lingering connections whose peer never closed.
        let now = Instant::now();
        for (_, c) in conns.iter_mut() {
            if let Phase::Closing { deadline, .. } = c.phase {
                c.dead |= deadline <= now;
            }
        }
        let dead: Vec<usize> = conns
            .iter()
            .filter(|(_, c)| c.dead)
            .map(|(k, _)| k)
            .collect();
        for k in dead {
            let mut c = conns.remove(k);
            c.out.clear(&mut pool); // a queue must be cleared before it is dropped
            let _ = poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Accepts until `WouldBlock`. Both interests are registered once:
/// readiness is edge-triggered, so WRITABLE only fires when a full socket
/// buffer drains, which is exactly when a queue has bytes left to write.
fn accept(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>, cap: usize) {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: this connection is lost, the server is not.
                eprintln!("ws_echo: accept: {e}");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut stream, Token(entry.key()), interest)
            .is_ok()
        {
            entry.insert(Conn {
                stream,
                phase: Phase::Http(Vec::new()),
                out: SendQueue::new(cap),
                dead: false,
            });
        }
    }
}

/// Reads until `WouldBlock`, handling each read in the connection's phase.
fn read(c: &mut Conn, pool: &mut Pool, buf: &mut [u8], max_message: usize) {
    loop {
        match c.stream.read(buf) {
            Ok(0) => {
                // The peer closed: nothing more to answer.
                c.dead = true;
                return;
            }
            Ok(n) => handle(c, pool, &mut buf[..n], max_message),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                c.dead = true;
                return;
            }
        }
        if c.dead {
            return;
        }
    }
}

fn handle(c: &mut Conn, pool: &mut Pool, data: &mut [u8], max_message: usize) {
    let mut closing = false;
    match &mut c.phase {
        Phase::Http(head) => {
            head.extend_from_slice(data);
            // The answer and, after an upgrade, the bytes behind the head.
            let (answer, rest) = match http::parse_head(head) {
                Ok(None) => return, // wait for the rest of the head
                Err(status) => (Err(status), Vec::new()),
                Ok(Some((req, len))) => match http::route(&req) {
                    Route::WebSocket(up) => (Ok(up), head[len..].to_vec()),
                    Route::Error(status) => (Err(status), Vec::new()),
                    _ => (Err(Status::NotFound), Vec::new()), // only /ws here
                },
            };
            match answer {
                Ok(up) => {
                    let _ = c.out.push(pool, &http::upgrade_response(&up));
                    c.phase = Phase::WebSocket(WsFramer::new(max_message));
                    let mut rest = rest;
                    if !rest.is_empty() {
                        handle(c, pool, &mut rest, max_message);
                    }
                    return;
                }
                Err(status) => {
                    let _ = c.out.push(pool, &http::error_response(status, false));
                    closing = true;
                }
            }
        }
        Phase::WebSocket(framer) => {
            let out = &mut c.out;
            framer.feed(data, &mut |event| {
                let sent = match event {
                    WsEvent::Text(m) => echo(out, pool, Opcode::Text, m),
                    WsEvent::Binary(m) => echo(out, pool, Opcode::Binary, m),
                    WsEvent::Reply(bytes) => out.push(pool, bytes).is_ok(),
                    WsEvent::Closed { reply, .. } | WsEvent::Fail { reply, .. } => {
                        let _ = out.push(pool, reply);
                        closing = true;
                        return ControlFlow::Break(());
                    }
                };
                if sent {
                    ControlFlow::Continue(())
                } else {
                    // Over the cap: the peer does not read what it is sent.
                    closing = true;
                    ControlFlow::Break(())
                }
            });
        }
        Phase::Closing { .. } => {} // discarded while we wait for the peer to close
    }
    if closing {
        c.phase = Phase::Closing {
            deadline: Instant::now() + LINGER,
            shut: false,
        };
    }
}

/// Queues `message` back as one frame: its header, then its bytes.
fn echo(out: &mut SendQueue, pool: &mut Pool, opcode: Opcode, message: &[u8]) -> bool {
    let (head, n) = websocket::frame_header(opcode, message.len());
    out.push(pool, &head[..n]).is_ok() && out.push(pool, message).is_ok()
}

/// Writes what the connection owes; once a closing connection's last
/// bytes are out, shuts our side.
fn flush(c: &mut Conn, pool: &mut Pool) {
    if c.out.write_to(pool, &mut c.stream).is_err() {
        c.dead = true;
        return;
    }
    if let Phase::Closing { shut, .. } = &mut c.phase {
        if c.out.is_empty() && !*shut {
            *shut = true;
            if c.stream.shutdown(Shutdown::Write).is_err() {
                c.dead = true;
            }
        }
    }
}
