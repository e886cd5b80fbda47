//! Support for `tests/irc_clients.rs`: real IRC clients from Debian's
//! packages (ii, sic, weechat-headless, irssi under tmux) driven against a
//! server, with
//!
//! - a recording TCP proxy in front of each client, so every failure message
//!   carries the raw traffic both ways (and the self-check prints it);
//! - the "other user" in `#lobby` ([`Peer`]): a loopchat line user (the `nc`
//!   user) or, for the harness self-check against ngIRCd, a raw IRC
//!   connection;
//! - the server ([`Backend`]): the real `loopchat-server`, or ngIRCd run in
//!   the foreground from a config in a temporary directory.
//!
//! Nothing synchronises by sleeping: every wait polls a file, a socket or a
//! process with a deadline ([`WAIT`]) and panics with everything each side
//! has shown so far. Every child process (clients, tmux servers on their own
//! `-L` socket, ngIRCd, loopchat) is killed by a `Drop` guard, so a failing
//! test leaves nothing running.
#![allow(dead_code)] // the self-check and the loopchat tests use different parts

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::TestServer;

/// The longest any one step may take (a client starting and joining, a line
/// arriving, a client quitting). Generous for a busy 2-core machine; a
/// working server needs milliseconds, so a broken one fails in ~20 s.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);
/// The room every test meets in.
pub const ROOM: &str = "#lobby";
/// loopchat's line-dialect greeting.
const LINE_GREETING: &str = "* Welcome to loopchat! What shall I call you?";
/// The other user's nickname, on both backends.
pub const PEER_NICK: &str = "ncuser";

// ---------------------------------------------------------------------------
// Small helpers

/// Where `prog` is installed (searched on `PATH`, then the sbin
/// directories, where ngircd lives), if it is.
pub fn find_program(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(prog))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether weechat's FIFO plugin (package weechat-plugins) is installed.
fn weechat_fifo_plugin() -> bool {
    // /usr/lib/<multiarch triplet>/weechat/plugins on Debian.
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain(["/usr/lib", "/usr/local/lib"].map(PathBuf::from))
        .any(|d| d.join("weechat/plugins/fifo.so").exists())
}

/// Whether the test of these clients can run. When something is missing:
/// outside CI it prints `SKIPPED: <client> not installed` and returns
/// false; under CI (the `CI` variable set) a missing client is a failure.
pub fn require(kinds: &[Kind]) -> bool {
    let client = kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(" and ");
    let mut missing: Vec<&str> = kinds
        .iter()
        .flat_map(|k| k.programs().iter().copied())
        .filter(|p| find_program(p).is_none())
        .collect();
    if kinds.contains(&Kind::Weechat) && !weechat_fifo_plugin() {
        missing.push("weechat-plugins (its fifo plugin)");
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{client}: {} not installed, and CI is set (.ci/run installs them: \
             apt-get install -y --no-install-recommends ii sic weechat-headless \
             weechat-plugins irssi tmux)",
            missing.join(", ")
        );
    }
    // Straight to the process's stderr, past the test runner's capture, so
    // the skip shows in a plain `cargo test` run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {client} not installed (missing: {})",
        missing.join(", ")
    );
    false
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`, with a note of how many were left out.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("    [... {skip} earlier lines]\n"));
    }
    for l in &lines[skip..] {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    if lines.is_empty() {
        out.push_str("    (nothing)\n");
    }
    out
}

/// A fresh directory under the system temp dir, removed on drop (kept, and
/// its path printed, when `LOOPCHAT_KEEP_LOGS` is set).
pub struct TempDir(PathBuf);

static DIRS: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("loopchat-irc-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("LOOPCHAT_KEEP_LOGS").is_some() {
            eprintln!("kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Proc {
    pub fn spawn(what: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            child,
            what: what.to_string(),
        }
    }

    /// `None` while running, else how it ended.
    pub fn status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `line` and a newline into the FIFO at `path`, opening it once and
/// keeping it open (so the reader never sees end-of-file between lines and
/// cannot drop a line while it reopens). Waits, up to [`WAIT`], for the FIFO
/// to exist and have a reader.
fn fifo_write(writers: &mut HashMap<PathBuf, File>, path: &Path, line: &str) {
    if !writers.contains_key(path) {
        let deadline = Instant::now() + WAIT;
        let file = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => break f,
                // ENXIO: no reader yet; NotFound: not created yet.
                Err(e)
                    if (e.raw_os_error() == Some(libc::ENXIO)
                        || e.kind() == ErrorKind::NotFound)
                        && Instant::now() < deadline =>
                {
                    thread::sleep(POLL)
                }
                Err(e) => panic!("open the FIFO {}: {e}", path.display()),
            }
        };
        writers.insert(path.to_path_buf(), file);
    }
    let f = writers.get_mut(path).expect("inserted above");
    f.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("write to the FIFO {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// The recording proxy

/// A TCP proxy in front of one client: it relays bytes unchanged both ways
/// and records every line, `C: ` for client to server and `S: ` for server
/// to client. Closing one side half-closes the other, as a direct
/// connection would.
pub struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, streams, stop) = (log.clone(), streams.clone(), stop.clone());
            thread::spawn(move || {
                for (n, down) in listener.incoming().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(down) = down else { continue };
                    let tag = |side: &str| {
                        if n == 0 {
                            format!("{side}:")
                        } else {
                            format!("{side}{n}:")
                        }
                    };
                    let up = match TcpStream::connect(upstream) {
                        Ok(up) => up,
                        Err(e) => {
                            log.lock()
                                .unwrap()
                                .push(format!("-- upstream connect: {e}"));
                            continue;
                        }
                    };
                    let _ = up.set_nodelay(true);
                    let _ = down.set_nodelay(true);
                    {
                        let mut s = streams.lock().unwrap();
                        s.push(up.try_clone().unwrap());
                        s.push(down.try_clone().unwrap());
                    }
                    let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                    let (l1, l2) = (log.clone(), log.clone());
                    let (c, s) = (tag("C"), tag("S"));
                    thread::spawn(move || relay(down, up, c, l1));
                    thread::spawn(move || relay(u2, d2, s, l2));
                }
            })
        };
        Proxy {
            addr,
            log,
            streams,
            stop,
            accept: Some(accept),
        }
    }

    /// Every line so far, in the order the proxy read them.
    pub fn transcript(&self) -> String {
        let mut out = self.log.lock().unwrap().join("\n");
        out.push('\n');
        out
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, tag: String, log: Arc<Mutex<Vec<String>>>) {
    let mut buf = [0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    let record = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        log.lock().unwrap().push(format!("{tag} {text}"));
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Record before forwarding, so a line is always logged before the
        // other side can answer it.
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            record(&line);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !pending.is_empty() {
        record(&pending);
    }
    log.lock().unwrap().push(format!("{tag} <closed>"));
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Servers

/// The server under test: the real loopchat, or ngIRCd for the self-check.
pub enum Backend {
    Loopchat(TestServer),
    Ngircd(Ngircd),
}

impl Backend {
    pub fn loopchat() -> Backend {
        Backend::Loopchat(TestServer::start(&[]))
    }

    pub fn ngircd() -> Backend {
        Backend::Ngircd(Ngircd::start())
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Backend::Loopchat(s) => s.addr,
            Backend::Ngircd(s) => s.addr,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Loopchat(_) => "loopchat",
            Backend::Ngircd(_) => "ngircd",
        }
    }

    pub fn log(&self) -> String {
        match self {
            Backend::Loopchat(s) => s.log(),
            Backend::Ngircd(s) => read_lossy(&s.dir.path().join("ngircd.log")),
        }
    }

    /// The other user in `#lobby`: an `nc`-style line user on loopchat, a
    /// raw IRC connection on ngIRCd. Returns once it is in the room.
    pub fn other_user(&self) -> Peer {
        match self {
            Backend::Loopchat(_) => Peer::line_user(self, PEER_NICK),
            Backend::Ngircd(_) => Peer::raw_irc(self, PEER_NICK),
        }
    }
}

/// ngIRCd in the foreground (`-n`) on a free port, from a config in a
/// temporary directory; penalties (its flood throttle) off, long nicknames
/// allowed, no MOTD (so it answers 422 like loopchat).
pub struct Ngircd {
    pub addr: SocketAddr,
    proc: Proc,
    dir: TempDir,
}

impl Ngircd {
    pub fn start() -> Ngircd {
        let prog = find_program("ngircd").expect(
            "ngircd is not installed; the harness self-check needs it: apt-get install -y ngircd",
        );
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir = TempDir::new("ngircd");
            // A free port: bind :0, note it, let it go. Another process may
            // take it in between; then ngIRCd fails and we try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let conf = dir.path().join("ngircd.conf");
            let d = dir.path().display();
            std::fs::write(
                &conf,
                format!(
                    "[Global]\n\
                     Name = irc.selfcheck\n\
                     Info = loopchat IRC client harness self-check\n\
                     AdminInfo1 = test\nAdminInfo2 = test\nAdminEMail = test@localhost\n\
                     Listen = 127.0.0.1\n\
                     Ports = {port}\n\
                     MotdFile = {d}/no-motd\n\
                     PidFile = {d}/ngircd.pid\n\
                     [Limits]\n\
                     MaxConnectionsIP = 0\n\
                     MaxNickLength = 30\n\
                     MaxPenaltyTime = 0\n\
                     PingTimeout = 600\n\
                     PongTimeout = 600\n\
                     [Options]\n\
                     DNS = no\n\
                     Ident = no\n\
                     PAM = no\n"
                ),
            )
            .expect("write ngircd.conf");
            let log = File::create(dir.path().join("ngircd.log")).expect("ngircd.log");
            let mut proc = Proc::spawn(
                "ngircd",
                Command::new(&prog)
                    .arg("-n")
                    .arg("-f")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            );
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + WAIT;
            loop {
                if TcpStream::connect(addr).is_ok() {
                    return Ngircd { addr, proc, dir };
                }
                if proc.status().is_some() || Instant::now() > deadline {
                    break;
                }
                thread::sleep(POLL);
            }
            last_log = read_lossy(&dir.path().join("ngircd.log"));
        }
        panic!("ngircd did not start:\n{}", tail(&last_log, 40));
    }
}

// ---------------------------------------------------------------------------
// The other user

/// A socket read without blocking, its lines kept for matching and for
/// failure messages.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pub lines: Vec<String>,
    eof: bool,
    /// Answer `PING` (raw IRC).
    irc: bool,
}

impl Conn {
    fn connect(addr: SocketAddr, irc: bool) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect the other user");
        stream.set_nodelay(true).unwrap();
        stream.set_nonblocking(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            lines: Vec::new(),
            eof: false,
            irc,
        }
    }

    fn send(&mut self, line: &str) {
        let end = if self.irc { "\r\n" } else { "\n" };
        let bytes = format!("{line}{end}");
        // Small lines on an idle socket; a short wait covers a full buffer.
        let mut rest = bytes.as_bytes();
        let deadline = Instant::now() + WAIT;
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(POLL)
                }
                Err(e) => panic!("the other user's send of {line:?}: {e}"),
            }
        }
        self.lines.push(format!(">> {line}"));
    }

    /// Reads whatever has arrived.
    fn pump(&mut self) {
        let mut chunk = [0u8; 8192];
        let mut end = None;
        while !self.eof {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    end = Some("<closed>".to_string());
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.eof = true;
                    end = Some(format!("<error: {e}>"));
                }
            }
        }
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            if self.irc {
                if let Some(token) = line.strip_prefix("PING ") {
                    let pong = format!("PONG {token}");
                    self.lines.push(line);
                    self.send(&pong);
                    continue;
                }
            }
            self.lines.push(line);
        }
        self.lines.extend(end);
    }

    /// Whether any line so far satisfies `pred` (every line, not only new
    /// ones: each event a test waits for happens once).
    fn saw(&mut self, pred: impl Fn(&str) -> bool) -> bool {
        self.pump();
        self.lines.iter().any(|l| pred(l))
    }

    /// Waits for a line satisfying `pred` (used while joining, before a
    /// [`Scenario`] exists).
    fn wait(&mut self, what: &str, backend: &Backend, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !self.saw(&pred) {
            if Instant::now() > deadline || self.eof {
                panic!(
                    "the other user ({}) waited {WAIT:?} for {what}; it got:\n{}\
                     {} log:\n{}",
                    backend.name(),
                    tail(&self.lines.join("\n"), 40),
                    backend.name(),
                    tail(&backend.log(), 40)
                );
            }
            thread::sleep(POLL);
        }
    }
}

/// `:nick!user@host COMMAND rest` → (nick, COMMAND, rest).
fn irc_parts(line: &str) -> Option<(&str, &str, &str)> {
    let line = line.strip_prefix(':')?;
    let (prefix, rest) = line.split_once(' ')?;
    let nick = prefix.split(['!', '@']).next()?;
    let (cmd, params) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((nick, cmd, params))
}

/// The other user in `#lobby`: what each test chats with.
pub enum Peer {
    /// A loopchat line-dialect user, as `nc` would be: put in `#lobby` at
    /// once; sees `* X has entered the room`, `[X] text`,
    /// `* X has left the room (...)`.
    LineUser { nick: String, conn: Conn },
    /// A bare IRC connection (NICK/USER/JOIN), standing in for the line
    /// user on ngIRCd; sees `:X!u@h JOIN`, `PRIVMSG`, `QUIT`.
    RawIrc { nick: String, conn: Conn },
}

impl Peer {
    fn line_user(backend: &Backend, nick: &str) -> Peer {
        let mut conn = Conn::connect(backend.addr(), false);
        // The greeting comes at once today, and within ~250 ms once the
        // server waits to tell the dialects apart.
        conn.wait("the greeting", backend, |l| l == LINE_GREETING);
        conn.send(nick);
        let welcome = format!("* Welcome, {nick}!");
        conn.wait("its welcome", backend, |l| l.starts_with(&welcome));
        Peer::LineUser {
            nick: nick.to_string(),
            conn,
        }
    }

    fn raw_irc(backend: &Backend, nick: &str) -> Peer {
        let mut conn = Conn::connect(backend.addr(), true);
        conn.send(&format!("NICK {nick}"));
        conn.send(&format!("USER {nick} 0 * :the other user"));
        conn.wait("001", backend, |l| {
            irc_parts(l).is_some_and(|(_, cmd, _)| cmd == "001")
        });
        conn.send(&format!("JOIN {ROOM}"));
        conn.wait("366 (end of NAMES)", backend, |l| {
            irc_parts(l).is_some_and(|(_, cmd, _)| cmd == "366")
        });
        Peer::RawIrc {
            nick: nick.to_string(),
            conn,
        }
    }

    pub fn nick(&self) -> &str {
        match self {
            Peer::LineUser { nick, .. } | Peer::RawIrc { nick, .. } => nick,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Peer::LineUser { .. } => "line user",
            Peer::RawIrc { .. } => "raw IRC user",
        }
    }

    pub fn transcript(&self) -> String {
        match self {
            Peer::LineUser { conn, .. } | Peer::RawIrc { conn, .. } => conn.lines.join("\n"),
        }
    }

    /// Says `text` to the room.
    pub fn say(&mut self, text: &str) {
        match self {
            Peer::LineUser { conn, .. } => conn.send(text),
            Peer::RawIrc { conn, .. } => conn.send(&format!("PRIVMSG {ROOM} :{text}")),
        }
    }

    pub fn saw_join(&mut self, who: &str) -> bool {
        match self {
            Peer::LineUser { conn, .. } => {
                let want = format!("* {who} has entered the room");
                conn.saw(|l| l == want)
            }
            Peer::RawIrc { conn, .. } => conn.saw(|l| {
                irc_parts(l).is_some_and(|(nick, cmd, rest)| {
                    nick.eq_ignore_ascii_case(who)
                        && cmd == "JOIN"
                        && rest.trim_start_matches(':').eq_ignore_ascii_case(ROOM)
                })
            }),
        }
    }

    pub fn saw_message(&mut self, who: &str, text: &str) -> bool {
        match self {
            Peer::LineUser { conn, .. } => {
                let want = format!("[{who}] {text}");
                conn.saw(|l| l == want)
            }
            Peer::RawIrc { conn, .. } => conn.saw(|l| {
                irc_parts(l).is_some_and(|(nick, cmd, rest)| {
                    nick.eq_ignore_ascii_case(who)
                        && cmd == "PRIVMSG"
                        && rest.split_once(' ').is_some_and(|(to, t)| {
                            to.eq_ignore_ascii_case(ROOM) && t == format!(":{text}")
                        })
                })
            }),
        }
    }

    /// `* WHO has left the room` (with any reason), or an IRC QUIT/PART.
    pub fn saw_leave(&mut self, who: &str) -> bool {
        match self {
            Peer::LineUser { conn, .. } => {
                let want = format!("* {who} has left the room");
                conn.saw(|l| l.starts_with(&want))
            }
            Peer::RawIrc { conn, .. } => conn.saw(|l| {
                irc_parts(l).is_some_and(|(nick, cmd, _)| {
                    nick.eq_ignore_ascii_case(who) && (cmd == "QUIT" || cmd == "PART")
                })
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// The clients

/// The four clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ii,
    Sic,
    Weechat,
    Irssi,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ii => "ii",
            Kind::Sic => "sic",
            Kind::Weechat => "weechat",
            Kind::Irssi => "irssi",
        }
    }

    /// The programs the test needs.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Kind::Ii => &["ii"],
            Kind::Sic => &["sic"],
            Kind::Weechat => &["weechat-headless"],
            Kind::Irssi => &["irssi", "tmux"],
        }
    }

    pub fn nick(self) -> String {
        format!("{}user", self.name())
    }

    /// Starts the client against `server` (through a recording proxy).
    pub fn start(self, server: SocketAddr) -> Box<dyn IrcClient> {
        let proxy = Proxy::start(server);
        match self {
            Kind::Ii => Box::new(Ii::start(proxy, &self.nick())),
            Kind::Sic => Box::new(Sic::start(proxy, &self.nick())),
            Kind::Weechat => Box::new(Weechat::start(proxy, &self.nick())),
            Kind::Irssi => Box::new(Irssi::start(proxy, &self.nick())),
        }
    }
}

/// What a test does with a client, and what it reads back from it.
pub trait IrcClient {
    fn kind(&self) -> Kind;
    fn nick(&self) -> &str;
    fn proxy(&self) -> &Proxy;
    /// Whether it is ready for the user to join (sic: the server's 001 is
    /// on screen; ii: its input FIFO exists). Autojoining clients: true.
    fn ready_to_join(&mut self) -> bool {
        true
    }
    /// What a user does to join `#lobby` (nothing for autojoin).
    fn join(&mut self) {}
    /// Its own output shows it has joined `#lobby`.
    fn joined(&mut self) -> bool;
    /// It has finished what it does after joining and shows the channel as
    /// complete (irssi: `Join to #lobby was synced`, after its MODE #lobby,
    /// WHO #lobby and MODE #lobby b were answered; weechat: the nick count
    /// line it prints at 366). Clients without such a notion: true.
    fn synced(&mut self) -> bool {
        true
    }
    /// Its output shows `text` said by `from` in `#lobby`.
    fn shows(&mut self, from: &str, text: &str) -> bool;
    /// Says `text` in `#lobby`.
    fn say(&mut self, text: &str);
    /// Quits with `reason`.
    fn quit(&mut self, reason: &str);
    /// Whether its process has ended.
    fn exited(&mut self) -> bool;
    /// What it has shown (log files, screen, stdout), for failure messages.
    fn output(&mut self) -> String;
}

/// ii: files in, files out. It makes `DIR/127.0.0.1/in` (a FIFO for server
/// commands: `/j #lobby`, `/q reason`) and, once joined,
/// `DIR/127.0.0.1/#lobby/in` (lines to say) and `.../#lobby/out` (what the
/// room shows: `TIME -!- nick(user@host) has joined #lobby`,
/// `TIME <nick> text`). It also prints its raw traffic to stdout.
pub struct Ii {
    proc: Proc,
    proxy: Proxy,
    nick: String,
    dir: TempDir,
    fifos: HashMap<PathBuf, File>,
}

impl Ii {
    fn start(proxy: Proxy, nick: &str) -> Ii {
        let dir = TempDir::new("ii");
        let out = File::create(dir.path().join("ii.stdout")).unwrap();
        let proc = Proc::spawn(
            "ii",
            Command::new("ii")
                .arg("-s")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(proxy.addr.port().to_string())
                .arg("-i")
                .arg(dir.path())
                .arg("-n")
                .arg(nick)
                .arg("-f")
                .arg("ii user")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        );
        Ii {
            proc,
            proxy,
            nick: nick.to_string(),
            dir,
            fifos: HashMap::new(),
        }
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.path().join("127.0.0.1")
    }

    fn room_out(&self) -> String {
        read_lossy(&self.server_dir().join(ROOM).join("out"))
    }
}

impl IrcClient for Ii {
    fn kind(&self) -> Kind {
        Kind::Ii
    }
    fn nick(&self) -> &str {
        &self.nick
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
    fn ready_to_join(&mut self) -> bool {
        self.server_dir().join("in").exists()
    }
    fn join(&mut self) {
        let fifo = self.server_dir().join("in");
        fifo_write(&mut self.fifos, &fifo, &format!("/j {ROOM}"));
    }
    fn joined(&mut self) -> bool {
        let me = format!("-!- {}(", self.nick);
        let joined = format!("has joined {ROOM}");
        self.room_out()
            .lines()
            .any(|l| l.contains(&me) && l.contains(&joined))
    }
    fn shows(&mut self, from: &str, text: &str) -> bool {
        let want = format!("<{from}> {text}");
        self.room_out().lines().any(|l| l.ends_with(&want))
    }
    fn say(&mut self, text: &str) {
        let fifo = self.server_dir().join(ROOM).join("in");
        fifo_write(&mut self.fifos, &fifo, text);
    }
    fn quit(&mut self, reason: &str) {
        let fifo = self.server_dir().join("in");
        fifo_write(&mut self.fifos, &fifo, &format!("/q {reason}"));
    }
    fn exited(&mut self) -> bool {
        self.proc.status().is_some()
    }
    fn output(&mut self) -> String {
        format!(
            "  {}/127.0.0.1/out:\n{}  {}/127.0.0.1/{ROOM}/out:\n{}",
            self.dir.path().display(),
            tail(&read_lossy(&self.server_dir().join("out")), 30),
            self.dir.path().display(),
            tail(&self.room_out(), 30),
        )
    }
}

/// sic: commands on stdin (`:j #lobby`, `:m #lobby text`, anything else
/// starting with `:` goes to the server raw, so `:QUIT :bye`), everything
/// on stdout: `CHANNEL : DATE TIME <nick> text` for messages,
/// `SOURCE : DATE TIME >< CMD (params): text` for the rest.
pub struct Sic {
    proc: Proc,
    stdin: Option<ChildStdin>,
    proxy: Proxy,
    nick: String,
    dir: TempDir,
}

impl Sic {
    fn start(proxy: Proxy, nick: &str) -> Sic {
        let dir = TempDir::new("sic");
        let out = File::create(dir.path().join("sic.stdout")).unwrap();
        let mut proc = Proc::spawn(
            "sic",
            Command::new("sic")
                .arg("-h")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(proxy.addr.port().to_string())
                .arg("-n")
                .arg(nick)
                .stdin(Stdio::piped())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        );
        let stdin = proc.child.stdin.take();
        Sic {
            proc,
            stdin,
            proxy,
            nick: nick.to_string(),
            dir,
        }
    }

    fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("sic.stdout"))
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("sic's stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("write to sic's stdin: {e}"));
    }
}

impl IrcClient for Sic {
    fn kind(&self) -> Kind {
        Kind::Sic
    }
    fn nick(&self) -> &str {
        &self.nick
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
    /// sic sends JOIN whenever it is typed; a user waits for the welcome.
    fn ready_to_join(&mut self) -> bool {
        self.stdout().contains(">< 001 ")
    }
    fn join(&mut self) {
        self.type_line(&format!(":j {ROOM}"));
    }
    fn joined(&mut self) -> bool {
        self.stdout().lines().any(|l| {
            l.starts_with(&format!("{} ", self.nick)) && l.contains(">< JOIN ") && l.contains(ROOM)
        })
    }
    fn shows(&mut self, from: &str, text: &str) -> bool {
        let want = format!("<{from}> {text}");
        self.stdout()
            .lines()
            .any(|l| l.starts_with(ROOM) && l.ends_with(&want))
    }
    fn say(&mut self, text: &str) {
        self.type_line(&format!(":m {ROOM} {text}"));
    }
    fn quit(&mut self, reason: &str) {
        self.type_line(&format!(":QUIT :{reason}"));
    }
    fn exited(&mut self) -> bool {
        self.proc.status().is_some()
    }
    fn output(&mut self) -> String {
        format!(
            "  {}/sic.stdout:\n{}",
            self.dir.path().display(),
            tail(&self.stdout(), 40)
        )
    }
}

/// weechat-headless with a fresh `--dir`: `-r` commands set the logger to
/// flush at once, add the server (no TLS, the nick, autojoin `#lobby`) and
/// connect. Lines go in through its FIFO plugin (`DIR/weechat_fifo_PID`:
/// `irc.loopchat.#lobby *text`, `irc.server.loopchat */quit bye`); what it
/// shows is read from its logger's `DIR/logs/irc.loopchat.#lobby.weechatlog`
/// (`DATE TIME<TAB>-->\tnick (user@host) has joined #lobby`,
/// `DATE TIME<TAB>nick<TAB>text`).
pub struct Weechat {
    proc: Proc,
    proxy: Proxy,
    nick: String,
    dir: TempDir,
    fifos: HashMap<PathBuf, File>,
}

const WEECHAT_SERVER: &str = "loopchat";

impl Weechat {
    fn start(proxy: Proxy, nick: &str) -> Weechat {
        let dir = TempDir::new("weechat");
        let out = File::create(dir.path().join("stdout.txt")).unwrap();
        let commands = [
            "/set logger.file.flush_delay 0".to_string(),
            format!(
                "/server add {WEECHAT_SERVER} 127.0.0.1/{} -notls -nicks={nick} \
                 -username={nick} -realname=weechat_user -autojoin={ROOM}",
                proxy.addr.port()
            ),
            format!("/connect {WEECHAT_SERVER}"),
        ]
        .join(";");
        let proc = Proc::spawn(
            "weechat-headless",
            Command::new("weechat-headless")
                .arg("--dir")
                .arg(dir.path())
                .arg("-r")
                .arg(commands)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        );
        Weechat {
            proc,
            proxy,
            nick: nick.to_string(),
            dir,
            fifos: HashMap::new(),
        }
    }

    fn log_file(&self, buffer: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("irc.{buffer}.weechatlog"))
    }

    fn room_log(&self) -> String {
        read_lossy(&self.log_file(&format!("{WEECHAT_SERVER}.{ROOM}")))
    }

    fn fifo(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("weechat_fifo"))
            })
    }

    fn command(&mut self, line: &str) {
        let deadline = Instant::now() + WAIT;
        let fifo = loop {
            if let Some(f) = self.fifo() {
                break f;
            }
            assert!(
                Instant::now() < deadline,
                "no weechat_fifo_* in {} (is the fifo plugin, package weechat-plugins, installed?)",
                self.dir.path().display()
            );
            thread::sleep(POLL);
        };
        fifo_write(&mut self.fifos, &fifo, line);
    }
}

impl IrcClient for Weechat {
    fn kind(&self) -> Kind {
        Kind::Weechat
    }
    fn nick(&self) -> &str {
        &self.nick
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
    fn joined(&mut self) -> bool {
        let me = format!("\t-->\t{} ", self.nick);
        let joined = format!("has joined {ROOM}");
        self.room_log()
            .lines()
            .any(|l| l.contains(&me) && l.contains(&joined))
    }
    fn synced(&mut self) -> bool {
        let count = format!("\t--\tChannel {ROOM}: ");
        self.room_log().contains(&count)
    }
    fn shows(&mut self, from: &str, text: &str) -> bool {
        self.room_log().lines().any(|l| {
            let mut f = l.splitn(3, '\t');
            let (_date, prefix, msg) = (f.next(), f.next(), f.next());
            prefix.is_some_and(|p| p.trim_start_matches(['@', '+', '%', '~', '&']) == from)
                && msg == Some(text)
        })
    }
    fn say(&mut self, text: &str) {
        self.command(&format!("irc.{WEECHAT_SERVER}.{ROOM} *{text}"));
    }
    fn quit(&mut self, reason: &str) {
        self.command(&format!("irc.server.{WEECHAT_SERVER} */quit {reason}"));
    }
    fn exited(&mut self) -> bool {
        self.proc.status().is_some()
    }
    fn output(&mut self) -> String {
        let server_log = read_lossy(&self.log_file(&format!("server.{WEECHAT_SERVER}")));
        format!(
            "  {}/logs/irc.server.{WEECHAT_SERVER}.weechatlog:\n{}  .../irc.{WEECHAT_SERVER}.{ROOM}.weechatlog:\n{}",
            self.dir.path().display(),
            tail(&server_log, 30),
            tail(&self.room_log(), 30),
        )
    }
}

/// A private tmux server (its own `-L` socket), killed on drop, and its
/// socket file removed.
pub struct Tmux {
    socket: String,
    /// The socket file, once the server runs.
    socket_path: Option<PathBuf>,
}

static TMUXES: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    pub fn new(tag: &str) -> Tmux {
        let n = TMUXES.fetch_add(1, Ordering::SeqCst);
        Tmux {
            socket: format!("loopchat-irc-{}-{n}-{tag}", std::process::id()),
            socket_path: None,
        }
    }

    /// Starts `cmd` in a new detached `width`x`height` session `name`.
    pub fn new_session(&mut self, name: &str, width: u16, height: u16, cmd: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, cmd])
            .unwrap_or_else(|| panic!("tmux new-session {cmd:?} failed"));
        self.socket_path = self
            .run(&["display-message", "-p", "-t", name, "#{socket_path}"])
            .map(|p| PathBuf::from(p.trim()));
    }

    /// Runs a tmux command on this server; `None` if it failed.
    pub fn run(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// irssi in a 160x50 tmux pane, with a fresh `--home` and a config naming
/// the server (chatnet `loopchat`, autoconnect), the nick, `#lobby` with
/// autojoin, and autolog to `HOME/logs/loopchat/#lobby.log`
/// (`HH:MM -!- nick [user@host] has joined #lobby`, `HH:MM <@nick> text`).
/// Keys go in with `send-keys` (`/msg #lobby text`, `/quit bye`); the log is
/// what the test reads, the screen (`capture-pane`) is for failure messages.
pub struct Irssi {
    tmux: Tmux,
    proxy: Proxy,
    nick: String,
    dir: TempDir,
}

const IRSSI_SESSION: &str = "irssi";

impl Irssi {
    fn start(proxy: Proxy, nick: &str) -> Irssi {
        let dir = TempDir::new("irssi");
        let home = dir.path().display().to_string();
        let port = proxy.addr.port();
        let config = format!(
            r#"servers = (
  {{ address = "127.0.0.1"; chatnet = "loopchat"; port = "{port}"; use_tls = "no"; tls_verify = "no"; autoconnect = "yes"; }}
);
chatnets = {{ loopchat = {{ type = "IRC"; nick = "{nick}"; username = "{nick}"; realname = "irssi user"; }}; }};
channels = ( {{ name = "{ROOM}"; chatnet = "loopchat"; autojoin = "yes"; }} );
settings = {{
  core = {{ real_name = "irssi user"; user_name = "{nick}"; nick = "{nick}"; settings_autosave = "no"; }};
  "fe-common/core" = {{ autolog = "yes"; autolog_path = "{home}/logs/$tag/$0.log"; }};
}};
"#
        );
        std::fs::write(dir.path().join("config"), config).expect("write irssi's config");
        let mut tmux = Tmux::new("irssi");
        let cmd = format!("exec irssi --home={home} --config={home}/config");
        tmux.new_session(IRSSI_SESSION, 160, 50, &cmd);
        Irssi {
            tmux,
            proxy,
            nick: nick.to_string(),
            dir,
        }
    }

    fn room_log(&self) -> String {
        read_lossy(
            &self
                .dir
                .path()
                .join("logs")
                .join("loopchat")
                .join(format!("{ROOM}.log")),
        )
    }

    fn keys(&self, text: &str) {
        self.tmux
            .run(&["send-keys", "-t", IRSSI_SESSION, "-l", text])
            .expect("tmux send-keys");
        self.tmux
            .run(&["send-keys", "-t", IRSSI_SESSION, "Enter"])
            .expect("tmux send-keys Enter");
    }
}

impl IrcClient for Irssi {
    fn kind(&self) -> Kind {
        Kind::Irssi
    }
    fn nick(&self) -> &str {
        &self.nick
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
    fn joined(&mut self) -> bool {
        let me = format!("-!- {} [", self.nick);
        let joined = format!("has joined {ROOM}");
        self.room_log()
            .lines()
            .any(|l| l.contains(&me) && l.contains(&joined))
    }
    fn synced(&mut self) -> bool {
        let synced = format!("-!- Irssi: Join to {ROOM} was synced");
        self.room_log().contains(&synced)
    }
    fn shows(&mut self, from: &str, text: &str) -> bool {
        // `HH:MM <@nick> text` (the mode column is a space for none).
        let end = format!("> {text}");
        self.room_log().lines().any(|l| {
            l.strip_suffix(&end)
                .and_then(|head| head.rsplit_once('<'))
                .is_some_and(|(_, n)| n.trim_start_matches([' ', '@', '+', '%', '~', '&']) == from)
        })
    }
    fn say(&mut self, text: &str) {
        self.keys(&format!("/msg {ROOM} {text}"));
    }
    fn quit(&mut self, reason: &str) {
        self.keys(&format!("/quit {reason}"));
    }
    fn exited(&mut self) -> bool {
        self.tmux
            .run(&["has-session", "-t", IRSSI_SESSION])
            .is_none()
    }
    fn output(&mut self) -> String {
        let screen = self
            .tmux
            .run(&["capture-pane", "-p", "-t", IRSSI_SESSION])
            .unwrap_or_else(|| "(no screen: tmux session gone)".into());
        let screen: String = screen
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "  screen:\n{}  {}/logs/loopchat/{ROOM}.log:\n{}",
            tail(&screen, 40),
            self.dir.path().display(),
            tail(&self.room_log(), 30),
        )
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// A server, the other user, and the clients under test. Its waits panic
/// with everything every side has shown.
pub struct Scenario {
    // Dropped in this order: clients (and their proxies), then the other
    // user, then the server.
    pub clients: Vec<Box<dyn IrcClient>>,
    pub peer: Peer,
    pub backend: Backend,
    /// Which clients have been told to quit (their exit is then expected).
    quitting: Vec<bool>,
}

impl Scenario {
    pub fn new(backend: Backend) -> Scenario {
        let peer = backend.other_user();
        Scenario {
            clients: Vec::new(),
            peer,
            backend,
            quitting: Vec::new(),
        }
    }

    /// Starts a client; returns its index.
    pub fn start(&mut self, kind: Kind) -> usize {
        let client = kind.start(self.backend.addr());
        self.clients.push(client);
        self.quitting.push(false);
        self.clients.len() - 1
    }

    /// Polls `probe` until it holds; panics after [`WAIT`] with the context,
    /// or at once when waiting is pointless (see [`hopeless`](Self::hopeless)).
    pub fn wait(&mut self, what: &str, mut probe: impl FnMut(&mut Self) -> bool) {
        let start = Instant::now();
        loop {
            if probe(self) {
                return;
            }
            if let Some(why) = self.hopeless() {
                panic!(
                    "{why}\n(while waiting for {what}; server: {})\n{}",
                    self.backend.name(),
                    self.context()
                );
            }
            if start.elapsed() > WAIT {
                panic!(
                    "timed out after {WAIT:?} waiting for {what} (server: {})\n{}",
                    self.backend.name(),
                    self.context()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Why no wait can succeed any more, if so: the server answered a client
    /// in the line dialect (its lines start with `* ` or `! `, which no IRC
    /// line does; the greeting alone does not count, as a client slower
    /// than the server's ~250 ms hold may get it and still be taken for
    /// IRC), or a client exited before it was told to quit.
    fn hopeless(&mut self) -> Option<String> {
        for (c, &quitting) in self.clients.iter_mut().zip(&self.quitting) {
            let name = c.kind().name();
            let transcript = c.proxy().transcript();
            let line_dialect = transcript.lines().find(|l| {
                l.split_once(' ').is_some_and(|(tag, text)| {
                    tag.starts_with('S')
                        && (text.starts_with("* ") || text.starts_with("! "))
                        && text != LINE_GREETING
                })
            });
            if let Some(l) = line_dialect {
                let first = transcript
                    .lines()
                    .find(|l| l.starts_with('C'))
                    .unwrap_or("(nothing)");
                return Some(format!(
                    "the server answered {name} in the line dialect ({l:?}): it did not take \
                     {name}'s first line ({first:?}) as IRC"
                ));
            }
            if !quitting && c.exited() {
                return Some(format!("{name} exited before it was told to quit"));
            }
        }
        None
    }

    /// Everything each side has shown so far.
    pub fn context(&mut self) -> String {
        let mut out = String::new();
        for c in &mut self.clients {
            let state = if c.exited() { "exited" } else { "running" };
            let shown = c.output();
            out.push_str(&format!(
                "--- {} ({}, {state}) shows:\n{shown}",
                c.kind().name(),
                c.nick(),
            ));
            out.push_str(&format!(
                "--- {}'s raw traffic (C: client to server, S: server to client):\n{}",
                c.kind().name(),
                tail(&c.proxy().transcript(), 60)
            ));
        }
        out.push_str(&format!(
            "--- the other user ({} {}) got:\n{}",
            self.peer.kind(),
            self.peer.nick(),
            tail(&self.peer.transcript(), 40)
        ));
        out.push_str(&format!(
            "--- {} log:\n{}",
            self.backend.name(),
            tail(&self.backend.log(), 30)
        ));
        out
    }

    /// Joins client `i` to `#lobby` as a user would, and waits until both
    /// the client and the other user show it.
    pub fn join(&mut self, i: usize) {
        let name = self.clients[i].kind().name();
        let nick = self.clients[i].nick().to_string();
        self.wait(&format!("{name} to be ready to join"), |s| {
            s.clients[i].ready_to_join()
        });
        self.clients[i].join();
        self.wait(&format!("{name} to show it joined {ROOM}"), |s| {
            s.clients[i].joined()
        });
        self.wait(&format!("the other user to see {nick} join {ROOM}"), |s| {
            s.peer.saw_join(&nick)
        });
    }

    /// Client `i` says `text`; waits until every client `to` shows it.
    pub fn say(&mut self, i: usize, text: &str, to: &[usize]) {
        let nick = self.clients[i].nick().to_string();
        self.clients[i].say(text);
        for &j in to {
            let name = self.clients[j].kind().name();
            self.wait(&format!("{name} to show <{nick}> {text}"), |s| {
                s.clients[j].shows(&nick, text)
            });
        }
    }

    /// Client `i` quits; waits until the other user sees it leave and the
    /// client's process ends (the server closes the link after QUIT). First
    /// it waits for the client to be [synced](IrcClient::synced), so its
    /// after-join queries are checked too.
    pub fn quit(&mut self, i: usize) {
        let name = self.clients[i].kind().name();
        let nick = self.clients[i].nick().to_string();
        self.wait(
            &format!("{name} to show {ROOM} as synced (its queries after JOIN answered)"),
            |s| s.clients[i].synced(),
        );
        self.quitting[i] = true;
        self.clients[i].quit("bye");
        self.wait(&format!("the other user to see {nick} leave"), |s| {
            s.peer.saw_leave(&nick)
        });
        self.wait(&format!("{name} to exit after quitting"), |s| {
            s.clients[i].exited()
        });
    }

    /// Prints each client's raw traffic (shown with `--nocapture`, or by
    /// the test runner when the test fails).
    pub fn print_traffic(&self) {
        for c in &self.clients {
            println!(
                "=== {} against {}: raw traffic (C: client to server, S: server to client)\n{}",
                c.kind().name(),
                self.backend.name(),
                c.proxy().transcript()
            );
        }
    }
}

/// One client and the other user: join, a line each way, quit.
pub fn chat_with_other_user(backend: Backend, kind: Kind) {
    let mut s = Scenario::new(backend);
    let c = s.start(kind);
    s.join(c);

    let peer = s.peer.nick().to_string();
    s.peer.say("hello from nc");
    s.wait(
        &format!("{} to show <{peer}> hello from nc", kind.name()),
        |s| s.clients[c].shows(&peer, "hello from nc"),
    );

    let nick = kind.nick();
    let text = format!("hello from {}", kind.name());
    s.clients[c].say(&text);
    s.wait(
        &format!("the other user to receive {nick}'s {text:?}"),
        |s| s.peer.saw_message(&nick, &text),
    );

    s.quit(c);
    s.print_traffic();
}

/// Two clients in `#lobby` with the other user as a witness: each client's
/// line reaches the other client (and the witness); both quit.
pub fn two_clients(backend: Backend, a: Kind, b: Kind) {
    let mut s = Scenario::new(backend);
    let ia = s.start(a);
    let ib = s.start(b);
    s.join(ia);
    s.join(ib);

    for (from, to) in [(ia, ib), (ib, ia)] {
        let text = format!("hello from {}", s.clients[from].kind().name());
        let nick = s.clients[from].nick().to_string();
        s.say(from, &text, &[to]);
        s.wait(
            &format!("the other user to receive {nick}'s {text:?}"),
            |s| s.peer.saw_message(&nick, &text),
        );
    }

    s.quit(ia);
    s.quit(ib);
    s.print_traffic();
}
