//! HTTP and WebSocket on the chat port, against the real binary. The
//! WebSocket client is Python's `websockets` (an independent RFC 6455
//! implementation, installed by .ci/run from .ci/requirements.txt; set
//! `LOOPCHAT_PYTHON` to an interpreter that has it), driven through
//! tests/websocket_support/ws_client.py; the hostile cases are written by
//! hand here.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::child::ChildLines;
use common::{LINE_TIMEOUT, TestServer};
use loopchat::transport::websocket::{self, Opcode};

/// The Python to run the client with, or `None` (skip) outside CI if it
/// lacks `websockets`.
fn python() -> Option<String> {
    let python = std::env::var("LOOPCHAT_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import websockets, prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the WebSocket tests (.ci/run installs websockets): {python} lacks it"
    );
    eprintln!("SKIPPED: {python} has no `websockets` / `prometheus_client`");
    None
}

/// One `ws_client.py`: lines in, messages out, with a timeout.
struct Ws(ChildLines);

impl Ws {
    fn open(python: &str, addr: SocketAddr, protocol: &str, origin: &str) -> Ws {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/websocket_support/ws_client.py"
        );
        Ws(ChildLines::spawn(Command::new(python).args([
            script,
            &format!("ws://{addr}/ws"),
            protocol,
            origin,
        ])))
    }

    /// The client's next output line (`OPEN ..`, `MSG ..`, `CLOSED ..`).
    #[track_caller]
    fn next(&mut self) -> String {
        self.0.next()
    }

    /// Skips messages until one satisfies `pred`; returns it.
    #[track_caller]
    fn msg_where(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self.next();
            let msg = l
                .strip_prefix("MSG ")
                .unwrap_or_else(|| panic!("not a message: {l}"));
            if pred(msg) {
                return msg.to_string();
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.0.send(line);
    }
}

/// A raw HTTP exchange: sends `request`, reads until the server closes.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A WebSocket user (line dialect), an `nc` user and an IRC user in one
/// room: each sees the others arrive and speak, through three transports
/// and two dialects. The server stays one thread.
#[test]
fn websocket_line_and_irc_users_chat_together() {
    let Some(py) = python() else { return };
    let s = TestServer::start(&[]);
    let mut web = Ws::open(&py, s.addr, "", "");
    assert_eq!(web.next(), "OPEN ");
    assert_eq!(
        web.msg_where(|_| true),
        "* Welcome to loopchat! What shall I call you?"
    );
    web.send("alice");
    web.msg_where(|m| m.starts_with("* Welcome, alice"));

    let mut bob = s.join("bob");
    web.msg_where(|m| m == "* bob has entered the room");

    let mut irc = Ws::open(&py, s.addr, "text.ircv3.net", "");
    assert_eq!(irc.next(), "OPEN text.ircv3.net");
    irc.send("NICK carol");
    irc.send("USER carol 0 * :Carol");
    irc.msg_where(|m| m.contains(" 001 carol "));
    irc.send("JOIN #lobby");
    let names = irc.msg_where(|m| m.contains(" 353 "));
    assert!(names.contains("alice") && names.contains("bob"), "{names}");
    web.msg_where(|m| m == "* carol has entered the room");
    bob.line_where(|l| l == "* carol has entered the room");

    bob.send("hi from nc");
    web.msg_where(|m| m == "[bob] hi from nc");
    irc.msg_where(|m| m.ends_with("PRIVMSG #lobby :hi from nc") && m.starts_with(":bob!"));

    web.send("hi from the browser");
    bob.line_where(|l| l == "[alice] hi from the browser");
    irc.msg_where(|m| m.ends_with("PRIVMSG #lobby :hi from the browser"));

    irc.send("PRIVMSG #lobby :hi from IRC over WebSocket");
    web.msg_where(|m| m == "[carol] hi from IRC over WebSocket");
    bob.line_where(|l| l == "[carol] hi from IRC over WebSocket");

    // And an IRC client over plain TCP.
    let tcp = TcpStream::connect(s.addr).expect("connect");
    tcp.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    let mut dan = BufReader::new(tcp);
    dan.get_mut()
        .write_all(b"NICK dan\r\nUSER dan 0 * :Dan\r\nJOIN #lobby\r\n")
        .expect("send");
    let mut line = String::new();
    while !line.contains(" 366 ") {
        line.clear();
        assert!(dan.read_line(&mut line).expect("read") > 0, "closed");
    }
    web.msg_where(|m| m == "* dan has entered the room");
    dan.get_mut()
        .write_all(b"PRIVMSG #lobby :hi from IRC over TCP\r\n")
        .expect("send");
    web.msg_where(|m| m == "[dan] hi from IRC over TCP");
    irc.msg_where(|m| {
        m.starts_with(":dan!") && m.ends_with("PRIVMSG #lobby :hi from IRC over TCP")
    });
    web.send("and back");
    loop {
        line.clear();
        assert!(dan.read_line(&mut line).expect("read") > 0, "closed");
        if line.trim_end().ends_with("PRIVMSG #lobby :and back") {
            break;
        }
    }

    // Leaving closes cleanly, with a close frame.
    web.send("/quit");
    web.msg_where(|m| m == "* Goodbye.");
    assert_eq!(web.next(), "CLOSED 1000");
    bob.line_where(|l| l == "* alice has left the room (quit)");
    assert_eq!(s.threads(), 1);
}

/// IRC over WebSocket with the binary subprotocol: same lines, in binary
/// frames.
#[test]
fn irc_over_binary_websocket() {
    let Some(py) = python() else { return };
    let s = TestServer::start(&[]);
    let mut irc = Ws::open(&py, s.addr, "binary.ircv3.net", "");
    assert_eq!(irc.next(), "OPEN binary.ircv3.net");
    irc.send("NICK dave");
    irc.send("USER dave 0 * :Dave");
    irc.msg_where(|m| m.contains(" 001 dave "));
    irc.send("PING :x1");
    irc.msg_where(|m| m.contains("PONG") && m.ends_with("x1"));
}

/// A page on another site may not open a WebSocket here (403); the page's
/// own origin and `--allow-origin` may.
#[test]
fn a_foreign_origin_is_refused() {
    let Some(py) = python() else { return };
    let s = TestServer::start(&["--allow-origin", "https://friend.example"]);
    let mut evil = Ws::open(&py, s.addr, "", "http://evil.example");
    assert_eq!(evil.next(), "REFUSED 403");
    let mut same = Ws::open(&py, s.addr, "", &format!("http://{}", s.addr));
    assert_eq!(same.next(), "OPEN ");
    let mut friend = Ws::open(&py, s.addr, "", "https://friend.example");
    assert_eq!(friend.next(), "OPEN ");
}

/// The routes: the page and its files with their types and policy, the
/// health check, 404, 405 and 431.
#[test]
fn http_routes() {
    let s = TestServer::start(&[]);
    let page = http(s.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("Content-Security-Policy: default-src 'none'"));
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
    let js = http(s.addr, "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(js.contains("Content-Type: text/javascript"), "{js}");
    let ok = http(s.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nok\n"),
        "{ok}"
    );
    let missing = http(s.addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(
        s.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert!(http(s.addr, &big).starts_with("HTTP/1.1 431 "));
    // `HEAD`: the headers only.
    let head = http(s.addr, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    assert_eq!(s.threads(), 1);
}

/// A request head that never ends (slowloris) is closed at the
/// registration timeout, without an answer.
#[test]
fn a_slow_request_head_is_closed() {
    let s = TestServer::start(&["--register-timeout", "1"]);
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("send");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Upgrades by hand and returns the socket, past the 101.
fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(LINE_TIMEOUT)).expect("timeout");
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("the 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    c
}

/// Reads server frames until a close frame; returns its code.
fn read_until_close(c: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((frame, used))) = websocket::parse_unmasked(&buf) {
            if frame.opcode == Opcode::Close {
                return frame
                    .payload
                    .get(..2)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            }
            buf.drain(..used);
        }
        let n = c.read(&mut chunk).expect("read");
        assert!(n > 0, "closed without a close frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A message longer than the line limit is refused from its header alone:
/// close 1009, and the 64 KiB payload is never sent.
#[test]
fn an_oversized_frame_is_closed_with_1009() {
    let s = TestServer::start(&["--max-line", "1000"]);
    let mut c = raw_upgrade(s.addr);
    let mut frame = Vec::new();
    // Only the header of a 64 KiB text frame.
    websocket::encode_masked(Opcode::Text, true, &[], [1, 2, 3, 4], &mut frame);
    frame[1] = 0x80 | 127;
    frame.splice(2..2, 65_536u64.to_be_bytes());
    c.write_all(&frame).expect("send");
    assert_eq!(read_until_close(&mut c), websocket::CLOSE_TOO_BIG);
}

/// An unmasked client frame breaks the protocol: close 1002.
#[test]
fn an_unmasked_frame_is_a_protocol_error() {
    let s = TestServer::start(&[]);
    let mut c = raw_upgrade(s.addr);
    c.write_all(&[0x81, 0x03, b'b', b'o', b'b']).expect("send");
    assert_eq!(read_until_close(&mut c), websocket::CLOSE_PROTOCOL_ERROR);
}

/// `/metrics` parses with Prometheus's own parser, and its counters move
/// with the traffic. Only loopback may read it by default.
#[test]
fn metrics_parse_and_move() {
    let Some(py) = python() else { return };
    let s = TestServer::start(&[]);
    let scrape = || {
        let text = http(s.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                      for f in p(sys.stdin.read()):\n    for s in f.samples:\n        print(s.name, s.value)";
        let mut child = Command::new(&py)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("parse");
        assert!(
            out.status.success(),
            "prometheus_client could not parse:\n{body}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    let before = scrape();
    let mut a = s.join("alice");
    let mut b = s.join("bob");
    a.line_where(|l| l == "* bob has entered the room");
    a.send("hello");
    b.line_where(|l| l == "[alice] hello");
    let after = scrape();
    assert!(
        value(&after, "loopchat_lines_received_total")
            >= value(&before, "loopchat_lines_received_total") + 3.0
    );
    assert!(
        value(&after, "loopchat_deliveries_total") > value(&before, "loopchat_deliveries_total")
    );
    assert_eq!(value(&after, "loopchat_users"), 2.0);
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    assert!(value(&after, "loopchat_http_requests_total") >= 1.0);
}
