//! Regression tests for defects of the event loop itself (issue 9): lost
//! wake-ups, heap trims during traffic, the IPv6 loopback exemption, a
//! spinning shutdown, and a timer heap that grew with churn.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestServer};

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder for one test's accounts file; returns the file's path.
fn accounts_file() -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("loopchat-loopdef-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("accounts.txt")
}

/// Connects and sends the account name `name`; the password prompt is consumed.
fn begin(s: &TestServer, name: &str) -> Client {
    let mut c = s.connect();
    c.send(name);
    c.expect("* Welcome to loopchat! What shall I call you?");
    c.expect(&format!(
        "* Password for {name}? (A new name is registered with the password you send now: at least 8 characters.)"
    ));
    c
}

/// `--add-user NAME` with the password on stdin.
fn add_user(file: &std::path::Path, name: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .arg("--accounts")
        .arg(file)
        .args(["--add-user", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "--add-user {name}");
}

/// Registers `name` (a new account) and stays logged in.
fn register(s: &TestServer, name: &str, password: &str) -> Client {
    let mut c = begin(s, name);
    c.send(password);
    c.expect(&format!("* Account {name} registered."));
    c.line_where(|l| l.starts_with(&format!("* Welcome, {name}!")));
    c
}

/// Item 1: a password check that waits out its address's delay is not
/// forgotten when another check from that address ran in the same turn.
/// P fails once (the address now waits 1 s); Q (wrong) and R (right) queue.
/// Q runs after 1 s and fails (the address now waits 2 s more); R must run
/// then, about 3 s after it was sent, and not when some unrelated timer
/// (here: P's 12 s registration deadline) happens to wake the loop.
#[test]
fn delayed_password_check_is_not_forgotten() {
    let file = accounts_file();
    // Accounts made offline: a /quit in the server would leave a linger
    // timer behind, whose wake-up would hide the lost one.
    for name in ["pam", "quinn", "rita"] {
        add_user(&file, name, &format!("{name}-password"));
    }
    let s = TestServer::start(&[
        "--accounts",
        file.to_str().unwrap(),
        "--register-timeout",
        "12",
    ]);
    let mut watcher = register(&s, "walt", "walt-password");

    let mut p = begin(&s, "pam");
    p.send("wrong-password-p");
    p.expect("! Wrong password for pam. Try again (2 attempts left).");
    let mut q = begin(&s, "quinn");
    let mut r = begin(&s, "rita");
    q.send("wrong-password-q");
    // Q's line became readable before the watcher's: once the watcher has
    // its answer, Q's check is queued ahead of R's.
    watcher.sync();
    let sent = Instant::now();
    r.send("rita-password");
    let got = r.line_where(|l| l.starts_with("* Welcome, rita!") || l.starts_with('!'));
    let waited = sent.elapsed();
    assert!(got.starts_with("* Welcome, rita!"), "{got}");
    q.expect("! Wrong password for quinn. Try again (2 attempts left).");
    // The address's delays add up to 3 s; the register deadline is at 12 s.
    assert!(
        waited < Duration::from_secs(5),
        "the right password was answered after {waited:?}"
    );
    drop(p);
}

/// How many times the server's debug log says it trimmed the heap in
/// `lines`.
fn trims(lines: &[&str]) -> usize {
    lines.iter().filter(|l| l.contains("trimmed heap")).count()
}

/// Item 4: `malloc_trim` runs only after a second with no reads, writes or
/// timers. A throttled paste to 100 users is relayed by timers alone (no
/// socket events for seconds): no trim while it lasts. (Its lines are
/// stored once for all 100, so it frees too little to need a trim; a burst
/// of long replies afterwards does, and is trimmed once the room is quiet.)
#[test]
fn no_heap_trim_during_a_throttled_paste() {
    const USERS: usize = 100;
    const LINES: usize = 60;
    let s = TestServer::start(&["--log-level", "debug"]);
    let mut users: Vec<Client> = (0..USERS).map(|i| s.join(&format!("u{i:02}"))).collect();
    let filler = "x".repeat(1000);
    let mut paste = Vec::new();
    for n in 0..LINES {
        writeln!(paste, "paste {n:02} {filler}").unwrap();
    }
    // Default flood control: a burst of 20 lines, then 10 a second: the
    // paste takes about 4 s to relay.
    users[0].send_raw(&paste);
    let last = format!("[u00] paste {:02} {filler}", LINES - 1);
    for u in users.iter_mut().skip(1) {
        u.line_where(|l| l == last);
    }
    let log = s.log();
    let lines: Vec<&str> = log.lines().collect();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("{text:?} not in the log"))
    };
    let first = at("[u00] paste 00 ");
    let end = at(&format!("[u00] paste {:02} ", LINES - 1));
    let during = trims(&lines[first..end]);
    assert_eq!(during, 0, "{during} heap trims while the paste was relayed");

    // 20 `/who` each: 100 queues of own bytes (about 10 KB), freed at once.
    let end = s.log().lines().count();
    let whos = "/who\n".repeat(20);
    for u in users.iter_mut() {
        u.send_raw(whos.as_bytes());
    }
    for u in users.iter_mut() {
        for _ in 0..20 {
            u.line_where(|l| l.starts_with("* 100 users online: "));
        }
    }
    // Once the room is quiet for a second, the released memory is trimmed.
    assert!(
        s.wait_until(Duration::from_secs(20), |s| {
            let log = s.log();
            let lines: Vec<&str> = log.lines().collect();
            trims(&lines[end.min(lines.len())..]) > 0
        }),
        "no heap trim after the paste"
    );
}

/// Starts the server listening on `listen` (not the harness's 127.0.0.1).
fn start_on(listen: &str, args: &[&str]) -> TestServer {
    let log = std::env::temp_dir().join(format!(
        "loopchat-loopdef-{}-{}.log",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", listen])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') && first.len() < 200 {
        if stdout.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        first.push(byte[0]);
    }
    let first = String::from_utf8_lossy(&first);
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    TestServer {
        child,
        addr,
        log,
        n: usize::MAX,
    }
}

/// Item 5: `[::1]` is loopback, exempt from `--max-per-ip` like 127.0.0.1
/// (and limited again with `--limit-loopback`).
#[test]
fn ipv6_loopback_is_exempt_from_the_per_address_limit() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let s = start_on("[::1]:0", &["--max-per-ip", "2"]);
    assert!(s.addr.ip().is_loopback() && s.addr.is_ipv6());
    let mut clients: Vec<Client> = (0..5).map(|_| s.connect()).collect();
    for c in clients.iter_mut() {
        c.expect("* Welcome to loopchat! What shall I call you?");
    }

    let limited = start_on("[::1]:0", &["--max-per-ip", "2", "--limit-loopback"]);
    let mut kept: Vec<Client> = (0..2).map(|_| limited.connect()).collect();
    for c in kept.iter_mut() {
        c.expect("* Welcome to loopchat! What shall I call you?");
    }
    let mut third = limited.connect();
    assert_eq!(
        third.expect_closed(),
        ["! Too many connections from your address (max 2)."]
    );
}

/// A connection whose receive buffer is tiny, so output to it backs up.
fn connect_with_small_rcvbuf(addr: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    Client::from_stream(socket.into())
}

/// Reads from `stream` until EOF or an error (a reset). Bounded by the
/// stream's read timeout and a byte count.
fn read_to_close(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < 1 << 20 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
    panic!("the connection was never closed");
}

/// The `/proc/PID/stat` state letter (`Z` once it has exited, unreaped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Item 6: shutdown with connections still waiting in the listen backlog
/// (so the last `accept()` stopped at its per-turn cap) and one reader that
/// never reads (so the server lingers the full grace period). The loop must
/// sleep through the linger, not poll with a zero timeout, and exit after
/// the 2 s grace.
#[test]
fn shutdown_does_not_spin() {
    const CONNS: usize = 1000;
    const BACKLOG: usize = 300;
    let s = TestServer::start(&[
        "--max-rate",
        "0",
        "--max-clients",
        "2000",
        "--max-sendq",
        "16m",
    ]);
    let mut slow = connect_with_small_rcvbuf(s.addr);
    slow.expect("* Welcome to loopchat! What shall I call you?");
    slow.send("slow");
    slow.line_where(|l| l.starts_with("* Welcome, slow!"));
    let mut w = s.join("w");
    let mut flood = Vec::new();
    let filler = "y".repeat(2000);
    // More than the kernel's send buffer for it can take (up to 4 MiB).
    for n in 0..3000 {
        writeln!(flood, "{n} {filler}").unwrap();
    }
    w.send_raw(&flood);
    w.sync();

    // The rest of the thousand: each has its greeting, so it is accepted.
    let mut others: Vec<TcpStream> = Vec::with_capacity(CONNS);
    for _ in 2..CONNS {
        let c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(common::LINE_TIMEOUT)).unwrap();
        others.push(c);
    }
    for c in others.iter_mut() {
        let mut greeting = Vec::new();
        let mut buf = [0u8; 64];
        while !greeting.ends_with(b"\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed before its greeting");
            greeting.extend_from_slice(&buf[..n]);
        }
        assert_eq!(greeting, b"* Welcome to loopchat! What shall I call you?\n");
    }

    // Connections the server has not accepted yet when the signal comes:
    // it reads the listener's event first, accepts up to its cap, then the
    // signal's.
    s.signal(libc::SIGSTOP);
    let waiting: Vec<TcpStream> = (0..BACKLOG)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    s.signal(libc::SIGTERM);
    s.signal(libc::SIGCONT);
    let signalled = Instant::now();

    for c in others.iter_mut() {
        read_to_close(c);
    }
    let mut w = w.stream;
    read_to_close(&mut w);
    // Everyone who reads has been told and closed: what is left is the
    // wait for the one who does not, which should cost no CPU.
    let before = s.cpu_ticks();
    let pid = s.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    while proc_state(pid).is_some_and(|st| st != 'Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let exited = signalled.elapsed();
    let spent = s.cpu_ticks().saturating_sub(before);
    assert_eq!(proc_state(pid), Some('Z'), "still running after 20 s");
    drop(waiting);
    drop(slow);
    assert!(
        spent <= 10,
        "{spent} ticks of CPU while waiting out the shutdown grace"
    );
    // The grace is 2 s; the margin is for a busy machine.
    assert!(
        exited < Duration::from_millis(3500),
        "exited {exited:?} after the signal"
    );
}

/// Item 10: stale timers do not pile up. Every connection schedules a
/// registration deadline (here 300 s away) that is moot once it joins;
/// after 5,000 connect/join/quit cycles the heap holds about what is live,
/// not 5,000 dead entries. The count is read from the debug line the
/// server logs when it trims the heap after the churn.
#[test]
fn timer_heap_does_not_grow_with_churn() {
    const CYCLES: usize = 5000;
    const THREADS: usize = 4;
    let s = TestServer::start(&["--register-timeout", "300", "--log-level", "debug"]);
    let anchor = s.join("anchor");
    let addr = s.addr;
    let filler = "z".repeat(1000);
    // The anchor reads everything the churn says (about 5 MB, so the
    // buffers released afterwards are worth a trim).
    let mut reader = anchor.stream.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 1 << 16];
        let mut total = 0usize;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let filler = &filler;
            scope.spawn(move || {
                for i in 0..CYCLES / THREADS {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(common::LINE_TIMEOUT)).unwrap();
                    let script = format!("c{t}x{i}\n{filler}\n/quit\n");
                    c.write_all(script.as_bytes()).unwrap();
                    read_to_close(&mut c);
                }
            });
        }
    });
    let pending = |s: &TestServer| -> Option<usize> {
        let log = s.log();
        let line = log.lines().rev().find(|l| l.contains("trimmed heap"))?;
        let (before, _) = line.split_once(" timers pending")?;
        before.rsplit(' ').next()?.parse().ok()
    };
    assert!(
        s.wait_until(Duration::from_secs(30), |s| pending(s).is_some()),
        "no 'trimmed heap ... timers pending' line after the churn"
    );
    let n = pending(&s).unwrap_or(usize::MAX);
    assert!(
        n < 2500,
        "{n} timers pending after {CYCLES} connect/quit cycles"
    );
    let _ = anchor.stream.shutdown(std::net::Shutdown::Both);
    let _ = drain.join();
}
