//! The socket: non-blocking connect, line framing, the write queue and the
//! reconnect timer.
//!
//! Nothing here blocks except name resolution (`getaddrinfo` has no
//! non-blocking form; it runs once per connection attempt). The event loop
//! asks [`Connection::timeout`] how long it may sleep, so retries, the connect
//! deadline and the resumption of a read that was cut short all live in the
//! same `Poll` as the terminal, without sleeps or extra threads.

use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::framing::{LineReader, RawLine};
use crate::output::{Pool, SendQueue};

/// The socket's token in the client's `Poll`.
pub const SOCKET: Token = Token(0);

/// First retry delay after a lost connection; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read per turn of the loop, so a flooding server cannot starve the
/// keyboard or fill memory with parsed lines.
const READ_BUDGET: usize = 64 * 1024;

/// What happened to the connection.
#[derive(Debug)]
pub enum ConnEvent {
    /// Connected to this address.
    Connected(SocketAddr),
    /// One line from the server.
    Line(RawLine),
    /// An attempt failed or the connection ended. `retry_in` is `None` when
    /// the client will not try again.
    Lost {
        reason: String,
        retry_in: Option<Duration>,
        was_connected: bool,
    },
}

/// The connection's state, for the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnStatus {
    /// Waiting to retry at this instant.
    Waiting(Instant),
    Connecting,
    Connected,
    Closed,
}

enum State {
    Waiting {
        at: Instant,
    },
    Connecting {
        stream: TcpStream,
        rest: Vec<SocketAddr>,
        deadline: Instant,
    },
    Connected {
        stream: TcpStream,
        read_pending: bool,
    },
    Closed,
}

/// A connection to one server address (`host:port`), re-established on loss
/// when reconnection is on.
pub struct Connection {
    target: String,
    state: State,
    reader: LineReader,
    queue: SendQueue,
    /// The queue's memory tally (the client has no broadcasts to share).
    pool: Pool,
    backoff: Duration,
    reconnect: bool,
}

impl Connection {
    /// A connection that will start on the first [`Self::on_timer`] call.
    pub fn new(target: &str, reconnect: bool) -> Connection {
        Connection {
            target: target.to_string(),
            state: State::Waiting { at: Instant::now() },
            reader: LineReader::default(),
            // No cap of its own: the line tool stops reading stdin while
            // 64 KiB are queued, and a person types slowly.
            queue: SendQueue::new(usize::MAX),
            pool: Pool::new(),
            backoff: FIRST_BACKOFF,
            reconnect,
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn set_reconnect(&mut self, on: bool) {
        self.reconnect = on;
    }

    /// The next retry starts from the first delay again (after a join).
    pub fn reset_backoff(&mut self) {
        self.backoff = FIRST_BACKOFF;
    }

    pub fn status(&self) -> ConnStatus {
        match self.state {
            State::Waiting { at } => ConnStatus::Waiting(at),
            State::Connecting { .. } => ConnStatus::Connecting,
            State::Connected { .. } => ConnStatus::Connected,
            State::Closed => ConnStatus::Closed,
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// Bytes not yet taken by the socket.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How long the loop may sleep before [`Self::on_timer`] has work.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        match &self.state {
            State::Waiting { at } => Some(at.saturating_duration_since(now)),
            State::Connecting { deadline, .. } => Some(deadline.saturating_duration_since(now)),
            State::Connected {
                read_pending: true, ..
            } => Some(Duration::ZERO),
            _ => None,
        }
    }

    /// Runs what is due: a retry, a connect deadline, a postponed read.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant, out: &mut Vec<ConnEvent>) {
        match &mut self.state {
            State::Waiting { at } if *at <= now => {
                let addrs = match self.target.to_socket_addrs() {
                    Ok(a) => a.collect::<Vec<_>>(),
                    Err(e) => {
                        self.lost(
                            registry,
                            format!("cannot resolve {}: {e}", self.target),
                            false,
                            out,
                        );
                        return;
                    }
                };
                self.try_addrs(registry, addrs, None, out);
            }
            State::Connecting { deadline, .. } if *deadline <= now => {
                self.attempt_failed(registry, "connection attempt timed out".into(), out);
            }
            State::Connected {
                read_pending: true, ..
            } => self.read(registry, out),
            _ => {}
        }
    }

    /// Handles a readiness event for [`SOCKET`].
    pub fn on_event(
        &mut self,
        registry: &Registry,
        event: &mio::event::Event,
        out: &mut Vec<ConnEvent>,
    ) {
        match &mut self.state {
            State::Connecting { stream, .. } => {
                if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                    return;
                }
                // The connect outcome: an error, or a peer address once
                // established. NotConnected means the event was spurious.
                match stream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        return self.attempt_failed(registry, e.to_string(), out);
                    }
                    Ok(None) => {}
                }
                match stream.peer_addr() {
                    Ok(addr) => {
                        if let State::Connecting { stream, .. } =
                            std::mem::replace(&mut self.state, State::Closed)
                        {
                            self.state = State::Connected {
                                stream,
                                read_pending: false,
                            };
                        }
                        out.push(ConnEvent::Connected(addr));
                        self.flush(registry, out);
                        // Data may have come with the handshake's completion.
                        self.read(registry, out);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => self.attempt_failed(registry, e.to_string(), out),
                }
            }
            State::Connected { .. } => {
                if event.is_writable() {
                    self.flush(registry, out);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(registry, out);
                }
            }
            _ => {}
        }
    }

    /// Queues one line for the server. Returns false (and drops the line)
    /// when there is no connection.
    pub fn send_line(&mut self, registry: &Registry, line: &str, out: &mut Vec<ConnEvent>) -> bool {
        if !self.is_connected() {
            return false;
        }
        // Cannot fail: the queue has no cap (see `new`).
        let _ = self.queue.push_line(&mut self.pool, line.as_bytes());
        self.flush(registry, out);
        true
    }

    /// Drops the connection for good (the user is leaving).
    pub fn close(&mut self, registry: &Registry) {
        self.drop_stream(registry);
        self.state = State::Closed;
    }

    fn flush(&mut self, registry: &Registry, out: &mut Vec<ConnEvent>) {
        if let State::Connected { stream, .. } = &mut self.state {
            if let Err(e) = self.queue.write_to(&mut self.pool, stream) {
                self.lost(registry, format!("write error: {e}"), true, out);
            }
        }
    }

    fn read(&mut self, registry: &Registry, out: &mut Vec<ConnEvent>) {
        let State::Connected {
            stream,
            read_pending,
        } = &mut self.state
        else {
            return;
        };
        *read_pending = false;
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        let mut end = None;
        loop {
            if budget == 0 {
                *read_pending = true;
                break;
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    end = Some("the server closed the connection".to_string());
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.reader.push(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(format!("connection error: {e}"));
                    break;
                }
            }
        }
        while let Some(line) = self.reader.next_line() {
            out.push(ConnEvent::Line(line));
        }
        if let Some(reason) = end {
            // A last line without its newline is still worth showing.
            if let Some(line) = self.reader.finish() {
                out.push(ConnEvent::Line(line));
            }
            self.lost(registry, reason, true, out);
        }
    }

    fn try_addrs(
        &mut self,
        registry: &Registry,
        addrs: Vec<SocketAddr>,
        mut last_error: Option<String>,
        out: &mut Vec<ConnEvent>,
    ) {
        let mut addrs = addrs.into_iter();
        while let Some(addr) = addrs.next() {
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    if let Err(e) = registry.register(
                        &mut stream,
                        SOCKET,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        last_error = Some(e.to_string());
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.state = State::Connecting {
                        stream,
                        rest: addrs.collect(),
                        deadline: Instant::now() + CONNECT_TIMEOUT,
                    };
                    return;
                }
                Err(e) => last_error = Some(format!("{addr}: {e}")),
            }
        }
        let reason = match last_error {
            Some(e) => format!("cannot connect to {}: {e}", self.target),
            None => format!("cannot connect to {}: no address", self.target),
        };
        self.lost(registry, reason, false, out);
    }

    fn attempt_failed(&mut self, registry: &Registry, error: String, out: &mut Vec<ConnEvent>) {
        self.drop_stream(registry);
        let rest = match std::mem::replace(&mut self.state, State::Closed) {
            State::Connecting { rest, .. } => rest,
            _ => Vec::new(),
        };
        self.try_addrs(registry, rest, Some(error), out);
    }

    fn drop_stream(&mut self, registry: &Registry) {
        match &mut self.state {
            State::Connecting { stream, .. } | State::Connected { stream, .. } => {
                let _ = registry.deregister(stream);
            }
            _ => {}
        }
        self.reader.clear();
        self.queue.clear(&mut self.pool);
    }

    fn lost(
        &mut self,
        registry: &Registry,
        reason: String,
        was_connected: bool,
        out: &mut Vec<ConnEvent>,
    ) {
        self.drop_stream(registry);
        let retry_in = if self.reconnect {
            let delay = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            self.state = State::Waiting {
                at: Instant::now() + delay,
            };
            Some(delay)
        } else {
            self.state = State::Closed;
            None
        };
        out.push(ConnEvent::Lost {
            reason,
            retry_in,
            was_connected,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// Runs attempts against a closed port, skipping the waits by passing a
    /// far-off `now`, and collects the announced retry delays.
    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut conn = Connection::new(&format!("127.0.0.1:{port}"), true);
        let mut delays = Vec::new();
        let far = Instant::now() + Duration::from_secs(3600);
        while delays.len() < 7 {
            let mut out = Vec::new();
            conn.on_timer(poll.registry(), far, &mut out);
            while out.is_empty() {
                poll.poll(&mut events, Some(Duration::from_secs(10)))
                    .unwrap();
                for ev in events.iter() {
                    conn.on_event(poll.registry(), ev, &mut out);
                }
            }
            for ev in out {
                match ev {
                    ConnEvent::Lost {
                        retry_in: Some(d),
                        was_connected: false,
                        ..
                    } => delays.push(d.as_secs()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(matches!(conn.status(), ConnStatus::Waiting(_)));
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        conn.reset_backoff();
        conn.set_reconnect(false);
        let mut out = Vec::new();
        conn.on_timer(poll.registry(), far, &mut out);
        while out.is_empty() {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            for ev in events.iter() {
                conn.on_event(poll.registry(), ev, &mut out);
            }
        }
        assert!(matches!(out[0], ConnEvent::Lost { retry_in: None, .. }));
        assert_eq!(conn.status(), ConnStatus::Closed);
        assert_eq!(conn.timeout(Instant::now()), None);
    }
}
