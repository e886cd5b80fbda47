//! `examples/ws_echo.rs`, the WebSocket echo server that Autobahn runs
//! against (`.ci/autobahn.sh`), over real sockets with the client half of
//! `transport::websocket`: the upgrade, echoes, a ping, the closing
//! handshake, and the size limit (close 1009 from a frame's header alone,
//! which Autobahn cannot test against a 16 MiB limit).
//!
//! Like tests/tiny_loop.rs, it looks for the example's binary beside this
//! test's executable: `cargo build --examples` builds it (.ci/run does so
//! first); when it is missing or stale the tests say so and pass, except
//! under CI.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loopchat::transport::websocket::{Frame, Opcode, encode_masked, parse_unmasked};

const TIMEOUT: Duration = Duration::from_secs(10);
const MASK: [u8; 4] = [0xA1, 0x07, 0x3C, 0xFE];

fn example_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("no target dir")?;
    let bin = profile_dir
        .join("examples")
        .join(format!("ws_echo{}", std::env::consts::EXE_SUFFIX));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let Ok(built) = modified(&bin) else {
        return Err(format!("{} is not built", bin.display()));
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_echo.rs");
    match modified(&source) {
        Ok(edited) if edited > built => Err(format!("{} is older than its source", bin.display())),
        _ => Ok(bin),
    }
}

/// The example on a free port with `--max-message 1000`, killed when dropped.
struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> Option<Echo> {
        let bin = match example_binary() {
            Ok(bin) => bin,
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must run ws_echo: {why}"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {why}; run `cargo build --examples`, then this test again"
                );
                return None;
            }
        };
        let mut child = Command::new(&bin)
            .args(["0", "--max-message", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Some(Echo { child, addr })
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        s
    }

    /// A connection past the upgrade.
    fn upgraded(&self) -> Peer {
        let mut s = self.connect();
        s.write_all(&upgrade_request("/ws")).expect("write");
        let mut peer = Peer { s, buf: Vec::new() };
        let head = peer.read_head();
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        peer
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A client connection and the bytes read but not yet parsed.
struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = self.s.read(&mut chunk).expect("read (timed out?)");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn read_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(
                self.fill() > 0,
                "closed before the head ended: {:?}",
                self.buf
            );
        }
    }

    fn send(&mut self, opcode: Opcode, fin: bool, payload: &[u8]) {
        let mut frame = Vec::new();
        encode_masked(opcode, fin, payload, MASK, &mut frame);
        self.s.write_all(&frame).expect("write");
    }

    /// The next server frame: its opcode and payload.
    fn frame(&mut self) -> (Opcode, Vec<u8>) {
        loop {
            match parse_unmasked(&self.buf) {
                Ok(Some((
                    Frame {
                        fin,
                        opcode,
                        payload,
                    },
                    used,
                ))) => {
                    assert!(fin, "the server does not fragment");
                    let got = (opcode, payload.to_vec());
                    self.buf.drain(..used);
                    return got;
                }
                Ok(None) => assert!(self.fill() > 0, "closed mid-frame: {:?}", self.buf),
                Err(e) => panic!("bad server frame {e:?}: {:?}", self.buf),
            }
        }
    }

    /// The server closes the TCP connection next, sending nothing more.
    fn expect_eof(&mut self) {
        while self.fill() > 0 {}
        assert!(self.buf.is_empty(), "unexpected bytes {:?}", self.buf);
    }
}

#[test]
fn echoes_messages_and_answers_pings_then_closes() {
    let Some(echo) = Echo::start() else {
        return;
    };
    let mut p = echo.upgraded();
    p.send(Opcode::Text, true, "héllo".as_bytes());
    assert_eq!(p.frame(), (Opcode::Text, "héllo".as_bytes().to_vec()));
    p.send(Opcode::Binary, true, &[0, 255, 7]);
    assert_eq!(p.frame(), (Opcode::Binary, vec![0, 255, 7]));
    // Fragmented, with a ping in the middle: the pong first, then the whole.
    p.send(Opcode::Text, false, b"frag");
    p.send(Opcode::Ping, true, b"?");
    p.send(Opcode::Continuation, true, b"ments");
    assert_eq!(p.frame(), (Opcode::Pong, b"?".to_vec()));
    assert_eq!(p.frame(), (Opcode::Text, b"fragments".to_vec()));
    // A 16-bit length, at the limit.
    p.send(Opcode::Binary, true, &[9; 1000]);
    assert_eq!(p.frame(), (Opcode::Binary, vec![9; 1000]));
    p.send(Opcode::Close, true, &1000u16.to_be_bytes());
    assert_eq!(p.frame(), (Opcode::Close, 1000u16.to_be_bytes().to_vec()));
    p.expect_eof();
}

/// The limit is enforced from the header: no payload byte is sent, and
/// the close 1009 comes back anyway.
#[test]
fn an_oversized_frame_is_closed_1009_from_its_header() {
    let Some(echo) = Echo::start() else {
        return;
    };
    let mut p = echo.upgraded();
    let mut header = vec![0x82, 0x80 | 127];
    header.extend((1u64 << 20).to_be_bytes());
    header.extend(MASK);
    p.s.write_all(&header).expect("write");
    assert_eq!(p.frame(), (Opcode::Close, 1009u16.to_be_bytes().to_vec()));
    p.expect_eof();
}

#[test]
fn protocol_errors_close_1002() {
    let Some(echo) = Echo::start() else {
        return;
    };
    let mut p = echo.upgraded();
    p.s.write_all(&[0x81, 0x02, b'h', b'i']).expect("write"); // unmasked
    assert_eq!(p.frame(), (Opcode::Close, 1002u16.to_be_bytes().to_vec()));
    p.expect_eof();
}

#[test]
fn other_requests_get_http_errors() {
    let Some(echo) = Echo::start() else {
        return;
    };
    let cases: [(&[u8], &str); 3] = [
        (&upgrade_request("/"), "HTTP/1.1 404 Not Found\r\n"),
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            b"POST /ws HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
    ];
    for (request, status) in cases {
        let mut s = echo.connect();
        s.write_all(request).expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read to EOF");
        assert!(answer.starts_with(status), "{answer}");
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    }
}
