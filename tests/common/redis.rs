//! A real `redis-server` on a free loopback port for one test, and
//! `loopchat-server --redis` processes bridged through it (for
//! tests/redis_bridge.rs and tests/bench_targets.rs). Skipped with a
//! message when redis-server is missing, unless `CI` is set: then the
//! test fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestServer;
use super::irc::Irc;

/// How long Redis may take to start, and the bridge to connect.
pub const BRIDGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a probe line may take before the next one is sent.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// A `redis-server` on a free loopback port, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    /// Extra configuration, kept for restarts.
    args: Vec<String>,
}

impl Redis {
    /// Starts one, or `None` (after saying why) if redis-server is missing
    /// and `CI` is not set.
    pub fn start() -> Option<Redis> {
        Self::start_with(&[])
    }

    /// Starts one with extra configuration (`["--client-output-buffer-limit", ...]`).
    pub fn start_with(args: &[&str]) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed (CI is set: this is a failure)");
            }
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Some(Redis {
            child: Self::spawn(port, &args),
            port,
            args,
        })
    }

    fn spawn(port: u16, args: &[String]) -> Child {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        // Polled with a deadline: redis-server says nothing we could read
        // when it is ready.
        let deadline = Instant::now() + BRIDGE_TIMEOUT;
        while !ping(port) {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server never answered on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, &self.args);
    }

    /// Its process id (to stop it with a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `--redis` for the servers.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A loopchat server bridged through this Redis as `node`, with extra
    /// `args`; returns once its links are up.
    pub fn bridged(&self, node: &str, args: &[&str]) -> TestServer {
        let url = self.url();
        let mut all = vec!["--redis", &url, "--node-id", node];
        all.extend_from_slice(args);
        let s = TestServer::start(&all);
        wait_metric(&s, "loopchat_bridge_up", |v| v == 1);
        s
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis answers PING on `port`.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// One metric's value from `/metrics` (0 if absent).
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    s.set_read_timeout(Some(super::LINE_TIMEOUT))
        .expect("set a read timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send the request");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Polls `name` on `server` until `ok` holds (a metric has nothing to
/// read that would say when it changes).
#[track_caller]
pub fn wait_metric(server: &TestServer, name: &str, ok: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + BRIDGE_TIMEOUT;
    loop {
        let v = metric(server.addr, name);
        if ok(v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {v} after {BRIDGE_TIMEOUT:?}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Returns once a line `from` says in `room` reaches `to` (both joined to
/// it, on two bridged processes): then `to`'s process listens to the room
/// and `from`'s publishes to it. A line said before the subscription is
/// confirmed is lost, so probes are sent again until one arrives; `to`'s
/// reads wait at most [`PROBE_WAIT`] for each.
#[track_caller]
pub fn probe(from: &mut Irc, to: &mut Irc, room: &str) {
    let stream = to.reader.get_ref();
    stream
        .set_read_timeout(Some(PROBE_WAIT))
        .expect("set a read timeout");
    let want = format!(":{}!", from.nick);
    let said = format!(" PRIVMSG {room} :probe ");
    let deadline = Instant::now() + BRIDGE_TIMEOUT;
    let mut line = Vec::new();
    for k in 0u64.. {
        assert!(
            Instant::now() < deadline,
            "no probe from {} reached {} in {BRIDGE_TIMEOUT:?}",
            from.nick,
            to.nick
        );
        from.send(&format!("PRIVMSG {room} :probe {k}"));
        loop {
            match std::io::BufRead::read_until(&mut to.reader, b'\n', &mut line) {
                Ok(0) => panic!("{}: connection closed", to.nick),
                Ok(_) if line.ends_with(b"\n") => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    if text.starts_with(&want) && text.contains(&said) {
                        to.reader
                            .get_ref()
                            .set_read_timeout(Some(super::LINE_TIMEOUT))
                            .expect("set a read timeout");
                        return;
                    }
                }
                // A partial line stays in `line` for the next read.
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break;
                }
                Err(e) => panic!("{}: {e}", to.nick),
            }
        }
    }
}
