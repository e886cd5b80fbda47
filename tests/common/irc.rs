//! A raw IRC client for tests: whole CRLF lines, every read bounded by
//! [`LINE_TIMEOUT`](super::LINE_TIMEOUT).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use super::LINE_TIMEOUT;

/// A raw IRC connection that reads whole CRLF lines with a timeout.
pub struct Irc {
    pub reader: BufReader<TcpStream>,
    pub nick: String,
}

impl Irc {
    pub fn connect(addr: SocketAddr) -> Irc {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(LINE_TIMEOUT))
            .expect("timeout");
        Irc {
            reader: BufReader::new(stream),
            nick: String::new(),
        }
    }

    /// Connects and registers as `nick` (no CAP), reading up to the end of
    /// the welcome burst (422: no MOTD).
    pub fn register(addr: SocketAddr, nick: &str) -> Irc {
        let mut c = Irc::connect(addr);
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :{nick} the tester"));
        // The burst ends with 422 (no MOTD) or 376 (end of MOTD).
        loop {
            let l = c.line();
            if l.contains(" 422 ") || l.contains(" 376 ") {
                break;
            }
        }
        c.nick = nick.to_string();
        c
    }

    pub fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
    }

    /// The next line, without CRLF; panics on timeout or EOF.
    #[track_caller]
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => panic!("{}: connection closed", self.nick),
            Ok(_) => {}
            Err(e) => panic!("{}: no line: {e}", self.nick),
        }
        assert!(buf.ends_with(b"\r\n"), "IRC lines end in CRLF: {buf:?}");
        assert!(buf.len() <= 512, "{} bytes: {buf:?}", buf.len());
        String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned()
    }

    /// Lines up to and including the first containing `needle`.
    #[track_caller]
    pub fn until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let l = self.line();
            let done = l.contains(needle);
            seen.push(l);
            if done {
                return seen;
            }
            assert!(seen.len() < 10_000, "{needle:?} never came");
        }
    }

    #[track_caller]
    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "{}", self.nick);
    }

    /// JOINs `room` and returns its own JOIN echo, topic and NAMES lines.
    pub fn join(&mut self, room: &str) -> Vec<String> {
        self.send(&format!("JOIN {room}"));
        self.until(" 366 ")
    }

    /// Sends a PING and reads up to its PONG: everything sent before has
    /// been handled. Returns the lines before the PONG.
    pub fn sync(&mut self) -> Vec<String> {
        self.send("PING :sync");
        let mut lines = self.until("PONG loopchat :sync");
        lines.pop();
        lines
    }

    /// QUITs and reads up to the server's ERROR: the quit, and what it
    /// sent the others, is done.
    pub fn quit(&mut self) {
        self.send("QUIT");
        self.until("ERROR :Closing link");
    }
}
