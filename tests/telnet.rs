//! Telnet clients against the real binary, byte for byte: the options
//! telnet waits on are answered (Ctrl-C's TIMING-MARK), a password is asked
//! with the client's echo turned off, and clients that never negotiate (nc,
//! the loopchat client) never receive a telnet byte.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use common::{LINE_TIMEOUT, TestServer};

const IAC: u8 = 255;
const WILL: u8 = 251;
const WONT: u8 = 252;
const DO: u8 = 253;
const DONT: u8 = 254;
const IP: u8 = 244;
const ECHO: u8 = 1;
const SGA: u8 = 3;
const TM: u8 = 6;

const WELCOME: &[u8] = b"* Welcome to loopchat! What shall I call you?\n";
const PROMPT: &[u8] = b"* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)\n";

/// A raw connection: whole "lines" as bytes, telnet commands included.
struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(s: &TestServer) -> Raw {
        let stream = TcpStream::connect(s.addr).expect("connect");
        stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The bytes up to and including the next `\n`; panics on timeout or EOF.
    fn line(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(_) if buf.ends_with(b"\n") => buf,
            other => panic!(
                "no whole line ({other:?}); got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }

    /// Lines up to and including the one starting with `prefix`, joined.
    fn through(&mut self, prefix: &[u8]) -> Vec<u8> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let l = self.line();
            all.extend_from_slice(&l);
            if l.starts_with(prefix) {
                return all;
            }
        }
        panic!("no line starting {:?}", String::from_utf8_lossy(prefix));
    }
}

/// An accounts file in a fresh folder.
fn accounts_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loopchat-telnet-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("accounts.txt")
}

/// Ctrl-C in telnet sends IAC IP, IAC DO TIMING-MARK and shows nothing
/// more until IAC WILL TIMING-MARK arrives: it is answered, ahead of the
/// answer to the next line, and the session goes on.
#[test]
fn timing_mark_is_answered() {
    let s = TestServer::start(&[]);
    let mut b = s.join("b");
    let mut t = Raw::connect(&s);
    assert_eq!(t.line(), WELCOME);
    t.send(b"telly\r\n");
    t.through(b"* Welcome, telly!");
    b.expect("* telly has entered the room");
    // Split across writes, as a slow link may deliver it.
    t.send(&[IAC, IP, IAC, DO]);
    t.send(&[TM]);
    t.send(b"/who\r\n");
    let who = t.line();
    assert_eq!(who[..3], [IAC, WILL, TM], "{who:?}");
    let text = String::from_utf8_lossy(&who[3..]).into_owned();
    assert!(
        text.starts_with("* ") && text.ends_with("online: b, telly\n"),
        "{text:?}"
    );
    t.send(b"still here\r\n");
    b.expect("[telly] still here");
}

/// A telnet client (it negotiated) is asked to stop echoing around the
/// password prompt, and to resume once logged in; its answers are not
/// answered again, and its refusals of other options are taken quietly.
/// While it lets the server echo, lines end in the NVT's `\r\n` (telnet
/// then stops turning `\n` into a new line on its own).
#[test]
fn telnet_password_is_not_echoed() {
    let file = accounts_file("echo");
    let s = TestServer::start(&["--accounts", file.to_str().unwrap()]);
    let mut t = Raw::connect(&s);
    assert_eq!(t.line(), WELCOME);
    // As telnet opens on port 23: DO SUPPRESS-GO-AHEAD (refused: WONT).
    t.send(&[IAC, DO, SGA]);
    t.send(b"alice\r\n");
    let mut want = vec![IAC, WONT, SGA, IAC, WILL, ECHO];
    want.extend_from_slice(&PROMPT[..PROMPT.len() - 1]);
    want.extend_from_slice(b"\r\n");
    assert_eq!(t.line(), want, "{:?}", String::from_utf8_lossy(&want));
    t.send(&[IAC, DO, ECHO]);
    t.send(b"Sw0rdfish pw\r\n");
    assert_eq!(t.line(), b"* Account alice registered.\r\n");
    let mut want = vec![IAC, WONT, ECHO];
    want.extend_from_slice(b"* The room contains: \n");
    assert_eq!(t.line(), want);
    t.through(b"* Welcome, alice!");
    // Its agreement (DONT ECHO) gets no answer: the next bytes are /who's.
    t.send(&[IAC, DONT, ECHO]);
    t.send(b"/who\r\n");
    let rest = t.through(b"* 1 ");
    assert!(!rest.contains(&IAC), "{:?}", String::from_utf8_lossy(&rest));
}

/// A client that never negotiates (nc, the loopchat client) gets no telnet
/// byte, around the password prompt or anywhere else.
#[test]
fn plain_clients_never_get_telnet_bytes() {
    let file = accounts_file("plain");
    let s = TestServer::start(&["--accounts", file.to_str().unwrap()]);
    let mut c = Raw::connect(&s);
    assert_eq!(c.line(), WELCOME);
    c.send(b"alice\n");
    assert_eq!(c.line(), PROMPT);
    c.send(b"Sw0rdfish pw\n");
    let mut all = c.through(b"* Welcome, alice!");
    c.send(b"/who\n");
    all.extend(c.through(b"* 1 "));
    assert!(!all.contains(&IAC), "{:?}", String::from_utf8_lossy(&all));
}

/// The real `telnet` in a terminal (tmux), when both are installed: the
/// password typed is not shown, the terminal echoes again once logged in,
/// and Ctrl-C does not silence the session. `-PORT` makes telnet negotiate
/// as it does on port 23; without it, it sends no telnet byte before the
/// first Ctrl-C and the server cannot know it speaks telnet.
#[test]
fn real_telnet_hides_the_password_and_survives_ctrl_c() {
    use std::process::Command;
    use std::time::{Duration, Instant};
    let installed = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !installed("tmux", "-V") || !installed("which", "telnet") {
        eprintln!("note: telnet or tmux is not installed; skipping the real-telnet test");
        return;
    }
    let file = accounts_file("real");
    let s = TestServer::start(&["--accounts", file.to_str().unwrap()]);
    let socket = format!("loopchat-telnet-{}", std::process::id());
    let tmux = |args: &[&str]| -> String {
        let out = Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    struct Kill<'a>(&'a str);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["-L", self.0, "kill-server"])
                .output();
        }
    }
    let _kill = Kill(&socket);
    let cmd = format!("exec telnet -- 127.0.0.1 -{}", s.addr.port());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let screen = tmux(&["capture-pane", "-p", "-t", "t"]);
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what} on screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("welcome", &|s| s.contains("What shall I call you?"));
    tmux(&["send-keys", "-t", "t", "-l", "alice"]);
    tmux(&["send-keys", "-t", "t", "Enter"]);
    wait_for("prompt", &|s| s.contains("* Password for alice?"));
    tmux(&["send-keys", "-t", "t", "-l", "Sw0rdfish pw"]);
    tmux(&["send-keys", "-t", "t", "Enter"]);
    let screen = wait_for("welcome", &|s| s.contains("* Welcome, alice!"));
    assert!(!screen.contains("Sw0rdfish"), "{screen}");
    // Lines start at the left edge: \r\n while telnet let the server echo.
    assert!(
        screen.lines().any(|l| l == "* Account alice registered."),
        "{screen}"
    );
    tmux(&["send-keys", "-t", "t", "-l", "shown again"]);
    wait_for("echo back on", &|s| s.contains("shown again"));
    tmux(&["send-keys", "-t", "t", "C-u"]);
    tmux(&["send-keys", "-t", "t", "C-c"]);
    tmux(&["send-keys", "-t", "t", "-l", "/who"]);
    tmux(&["send-keys", "-t", "t", "Enter"]);
    wait_for("the answer after Ctrl-C", &|s| s.contains("online: alice"));
}
