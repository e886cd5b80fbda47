//! Test harness: spawn the real `loopchat-server` on port 0 and talk to it
//! over real sockets. Reads have timeouts; nothing synchronises by sleeping.
#![allow(dead_code)] // each test file uses a different part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long any single expected line may take. Generous: CI machines are
/// busy, and a correct server answers in microseconds anyway.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(15);

/// A running server, killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Its number among this process's servers (for `irc_addr`).
    pub n: usize,
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// `--irc-listen` addresses by server number (see `TestServer::irc_addr`).
    static IRC_ADDRS: std::cell::RefCell<Vec<(usize, SocketAddr)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// `--tls-listen` addresses by server number (see `TestServer::tls_addr`).
    static TLS_ADDRS: std::cell::RefCell<Vec<(usize, SocketAddr)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl TestServer {
    /// Starts the server on 127.0.0.1 with a free port and extra `args`.
    pub fn start(args: &[&str]) -> TestServer {
        Self::start_with(args, |_| {})
    }

    /// Like [`start`](Self::start), letting the caller adjust the command
    /// (for instance to lower its descriptor limit).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> TestServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_loopchat-server"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        Self::spawn(cmd, args, adjust)
    }

    /// Starts the server inside network namespace `netns` (`ip netns
    /// exec`, which becomes the server: the child is the server itself),
    /// listening on `listen`.
    pub fn start_in_netns(netns: &str, listen: &str, args: &[&str]) -> TestServer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(env!("CARGO_BIN_EXE_loopchat-server"))
            .args(["--listen", listen]);
        Self::spawn(cmd, args, |_| {})
    }

    /// Runs `cmd` (the server and its `--listen`) with `args`; reads the
    /// addresses it prints.
    fn spawn(mut cmd: Command, args: &[&str], adjust: impl FnOnce(&mut Command)) -> TestServer {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let log =
            std::env::temp_dir().join(format!("loopchat-test-{}-{n}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create log file");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn loopchat-server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut first = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout
            .read_line(&mut first)
            .expect("read the listening line");
        // One more line per --irc-listen, in order.
        for _ in args.iter().filter(|a| **a == "--irc-listen") {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("read an irc listening line");
            if let Some(addr) = line.trim().strip_prefix("irc listening on ") {
                if let Ok(addr) = addr.parse() {
                    IRC_ADDRS.with(|a| a.borrow_mut().push((n, addr)));
                }
            }
        }
        // Then one per --tls-listen (read, or the server's print would
        // find the pipe closed).
        for _ in args.iter().filter(|a| **a == "--tls-listen") {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("read a tls listening line");
            if let Some(addr) = line.trim().strip_prefix("tls listening on ") {
                if let Ok(addr) = addr.parse() {
                    TLS_ADDRS.with(|a| a.borrow_mut().push((n, addr)));
                }
            }
        }
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("an address");
        TestServer {
            child,
            addr,
            log,
            n,
        }
    }

    /// The first `--irc-listen` address, as the server printed it.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        let n = self.n;
        IRC_ADDRS.with(|a| {
            a.borrow()
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, addr)| *addr)
        })
    }

    /// The first `--tls-listen` address, as the server printed it.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        let n = self.n;
        TLS_ADDRS.with(|a| {
            a.borrow()
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, addr)| *addr)
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A raw connection (nothing read yet).
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A connection that has joined as `nick` (greeting, room line and
    /// welcome consumed). Returns the lines it got after sending the nick.
    pub fn join(&self, nick: &str) -> Client {
        let mut c = self.connect();
        // Sent before the greeting arrives: the server holds the greeting
        // for a first line (to tell IRC clients apart), then greets and
        // takes this line as the answer, so joins cost no hold.
        c.send(nick);
        c.expect("* Welcome to loopchat! What shall I call you?");
        let room = c.line();
        assert!(
            room.starts_with("* The room contains: "),
            "{nick}: got {room:?}"
        );
        let welcome = c.line();
        assert!(
            welcome.starts_with(&format!("* Welcome, {nick}!")),
            "{welcome:?}"
        );
        if room == "* The room contains: " {
            c.expect("* You are alone in the room.");
        }
        c
    }

    /// A line from `/proc/PID/status`, e.g. `Threads` or `VmRSS`, as a number.
    pub fn status_field(&self, field: &str) -> u64 {
        proc_status(self.pid(), field)
    }

    pub fn threads(&self) -> u64 {
        self.status_field("Threads")
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS")
    }

    /// User + system CPU time in clock ticks (usually 1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the ")" of the command name; utime and stime are 14, 15.
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Open file descriptors of the server.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` until it holds or `timeout` passes (for conditions that
    /// can only be observed from outside, like /proc figures).
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("LOOPCHAT_KEEP_LOGS").is_some() {
            eprintln!("server log kept: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One client connection with line reads that time out.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::with_capacity(1 << 16, stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Sends `line` and a newline.
    pub fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.stream.write_all(&bytes).expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send_raw");
    }

    /// The next line, without its newline. Panics on timeout or EOF.
    pub fn line(&mut self) -> String {
        match self.try_line() {
            Some(l) => l,
            None => panic!("connection closed while a line was expected"),
        }
    }

    /// The next line, or `None` at EOF / reset. Panics on timeout.
    pub fn try_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "no line within {LINE_TIMEOUT:?} (partial: {:?})",
                    String::from_utf8_lossy(&buf)
                )
            }
            Err(_) => None,
        }
    }

    /// Asserts the next line is exactly `want`.
    #[track_caller]
    pub fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want);
    }

    /// Skips lines until one satisfies `pred`; returns it.
    pub fn line_where(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self.line();
            if pred(&l) {
                return l;
            }
        }
    }

    /// Asserts that the server closes the connection (after any lines,
    /// which are returned).
    pub fn expect_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(l) = self.try_line() {
            lines.push(l);
            assert!(lines.len() < 100_000, "connection never closed");
        }
        lines
    }

    /// Sends `/who` and returns its answer, skipping what came before. Used
    /// as a barrier: once the answer is here, the server has handled
    /// everything this client sent earlier.
    pub fn sync(&mut self) -> Vec<String> {
        self.send("/who");
        let mut before = Vec::new();
        loop {
            let l = self.line();
            if (l.contains(" users online: ") || l.contains(" user online: "))
                && l.starts_with("* ")
            {
                return before;
            }
            before.push(l);
        }
    }

    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Reads raw bytes (for tests that check framing of the output).
    pub fn read_some(&mut self, buf: &mut [u8]) -> usize {
        self.reader.read(buf).unwrap_or(0)
    }
}

/// Helpers for servers with `--accounts FILE`.
pub mod accounts;
/// `loopchat-bench` as a child process.
pub mod bench;

/// A helper client driven through its stdin and stdout.
pub mod child;

/// A raw IRC client.
pub mod irc;

/// A `redis-server` per test, and servers bridged through it.
pub mod redis;

/// A private tmux server for terminal tests.
pub mod tmux;
