//! Scale-out through Redis (`--redis`, docs/scale-out.md): real
//! `loopchat-server` processes bridged through a real `redis-server` that
//! each test starts on a free loopback port (`--save '' --appendonly no`).
//! Without redis-server the tests are skipped with a message, unless `CI`
//! is set: then they fail.
//!
//! Every wait is a read with a timeout or a poll of `/metrics` with a
//! deadline; nothing synchronises by sleeping.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::irc::Irc;
use common::redis::{BRIDGE_TIMEOUT, Redis, metric, wait_metric};
use common::{Client, TestServer};

/// Waits until `server` has subscribed at least `n` channels (the
/// reapers' control channel, its rooms with local members, its local
/// nicks).
#[track_caller]
fn wait_channels(server: &TestServer, n: u64) {
    wait_metric(server, "loopchat_bridge_channels", |v| v >= n);
}

/// A line user and an IRC user on two processes share #lobby: each sees
/// the other's lines, joins, renames and leaves in its own grammar; `/who`
/// and NAMES list the other process's user; both processes stay at one
/// thread.
#[test]
fn line_and_irc_users_on_two_processes_share_a_room() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    wait_channels(&a, 3); // control, #lobby, alice
    let mut carol = Irc::register(b.addr, "carol");
    carol.join("#lobby");
    wait_channels(&b, 3);
    alice.expect("* carol has entered the room");
    // B asked who is in #lobby when it subscribed: carol's client is told
    // of alice with a JOIN.
    carol.until(":alice!alice@loopchat JOIN #lobby");

    alice.send("hello from A");
    carol.expect(":alice!alice@loopchat PRIVMSG #lobby :hello from A");
    carol.send("PRIVMSG #lobby :hi from B");
    alice.expect("[carol] hi from B");

    alice.send("/who");
    alice.expect("* 2 users online: alice, carol");
    carol.send("NAMES #lobby");
    let names = carol.until(" 366 ");
    assert!(
        names
            .iter()
            .any(|l| l.contains(" 353 ") && l.contains("alice")),
        "{names:?}"
    );

    carol.send("NICK carla");
    carol.until(" NICK ");
    alice.expect("* carol is now known as carla");
    carol.send("PRIVMSG #lobby :\u{1}ACTION waves\u{1}");
    alice.expect("~ carla waves");
    carol.send("PART #lobby :later");
    alice.expect("* carla has left the room (left: later)");
    // Leaving its last room here made B stop listening to #lobby and
    // forget alice; back in, B asks again, and carla hears of alice.
    carol.join("#lobby");
    alice.expect("* carla has entered the room");
    carol.until(":alice!alice@loopchat JOIN #lobby");

    for s in [&a, &b] {
        assert_eq!(s.threads(), 1, "pid {} has more than one thread", s.pid());
    }
    drop(alice);
    carol.until(":alice!alice@loopchat QUIT");
}

/// `/msg` and IRC PRIVMSG to a nick on another process arrive; the sender
/// sees its line as sent only once Redis counted a receiver, and "no such
/// user" when nobody has the nick.
#[test]
fn private_lines_cross_processes() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    let mut bob = b.join("bob");
    let mut dave = Irc::register(b.addr, "dave");
    wait_channels(&a, 3);
    wait_channels(&b, 4); // control, #lobby, bob, dave
    alice.send("/msg bob psst");
    bob.line_where(|l| l == "(alice) psst");
    alice.line_where(|l| l == "(-> bob) psst");
    alice.send("/msg nobody hello?");
    alice.expect("! No such user: nobody.");
    alice.send("/msg dave over here");
    dave.expect(":alice!alice@loopchat PRIVMSG dave :over here");
    alice.expect("(-> dave) over here");
    dave.send("PRIVMSG alice :got it");
    alice.expect("(dave) got it");
    dave.send("PRIVMSG nobody :anyone?");
    dave.expect(":loopchat 401 dave nobody :No such nick/channel");
}

/// Three processes: 200 lines from A reach B and C whole and in order, A's
/// user never sees its own lines come back, and no gap is counted.
#[test]
fn three_processes_deliver_in_order_without_loss_or_echo() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &["--max-rate", "0"]);
    let b = redis.bridged("B", &[]);
    let c = redis.bridged("C", &[]);
    let mut ua = a.join("ua");
    let mut ub = b.join("ub");
    let mut uc = c.join("uc");
    for s in [&a, &b, &c] {
        wait_channels(s, 2);
    }
    const N: usize = 200;
    let mut burst = String::new();
    for i in 0..N {
        burst.push_str(&format!("line {i}\n"));
    }
    ua.send_raw(burst.as_bytes());
    for u in [&mut ub, &mut uc] {
        let mut next = 0;
        while next < N {
            let l = u.line();
            if let Some(text) = l.strip_prefix("[ua] ") {
                assert_eq!(text, format!("line {next}"), "out of order or lost");
                next += 1;
            }
        }
    }
    let before = ua.sync();
    assert!(
        !before.iter().any(|l| l.starts_with("[ua] ")),
        "own echo: {before:?}"
    );
    assert!(metric(a.addr, "loopchat_bridge_published_total") >= N as u64);
    for s in [&b, &c] {
        assert!(metric(s.addr, "loopchat_bridge_received_total") >= N as u64);
        assert_eq!(metric(s.addr, "loopchat_bridge_gaps_total"), 0);
    }
}

/// Redis killed: local chat goes on and what could not be published is
/// counted; Redis back: the bridge reconnects (counted), resubscribes and
/// lines flow between the processes again. Still one thread each.
#[test]
fn redis_restart_keeps_local_chat_and_the_bridge_comes_back() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    let mut ann = a.join("ann");
    let mut bob = b.join("bob");
    wait_channels(&a, 4);
    wait_channels(&b, 3);
    alice.send("before");
    bob.line_where(|l| l == "[alice] before");
    ann.line_where(|l| l == "[alice] before");

    redis.kill();
    wait_metric(&a, "loopchat_bridge_up", |v| v == 0);
    // Each side sees the other's users leave (IRC's netsplit)...
    alice.line_where(|l| l == "* bob has left the room (quit: lost the link to the other servers)");
    let gone =
        |l: &str| l.ends_with(" has left the room (quit: lost the link to the other servers)");
    let mut left = [bob.line_where(gone), bob.line_where(gone)];
    left.sort();
    assert_eq!(
        left,
        [
            "* alice has left the room (quit: lost the link to the other servers)",
            "* ann has left the room (quit: lost the link to the other servers)"
        ]
    );
    alice.send("while down");
    ann.line_where(|l| l == "[alice] while down");
    wait_metric(&a, "loopchat_bridge_lost_total", |v| v >= 1);

    redis.restart();
    for s in [&a, &b] {
        wait_metric(s, "loopchat_bridge_up", |v| v == 1);
        wait_metric(s, "loopchat_bridge_reconnects_total", |v| v >= 2);
    }
    wait_channels(&a, 4);
    wait_channels(&b, 3);
    // ...and come back, whichever of the resync's answers and the
    // re-announcement after the lapsed lease comes first.
    alice.line_where(|l| l == "* bob has entered the room");
    let back = |l: &str| l.ends_with(" has entered the room");
    let mut entered = [bob.line_where(back), bob.line_where(back)];
    entered.sort();
    assert_eq!(
        entered,
        ["* alice has entered the room", "* ann has entered the room"]
    );
    alice.send("after");
    let seen = bob.line_where(|l| l.starts_with("[alice] "));
    assert_eq!(
        seen, "[alice] after",
        "the line sent while down must not arrive"
    );
    bob.send("back too");
    alice.line_where(|l| l == "[bob] back too");
    assert!(
        a.log()
            .contains("could not be published while Redis was unreachable")
    );
    for s in [&a, &b] {
        assert_eq!(s.threads(), 1);
    }
}

/// `--reuse-port`: a second process binds the port the first listens on,
/// and the kernel hands connections to both.
#[test]
fn reuse_port_lets_two_processes_share_a_port() {
    let a = TestServer::start(&["--reuse-port"]);
    let port = a.addr.port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("loopchat-reuse-{}.log", std::process::id()));
    let mut b = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", &listen, "--reuse-port"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn the second server");
    let mut first = String::new();
    {
        use std::io::BufRead;
        let stdout = b.stdout.take().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read its listening line");
    }
    assert_eq!(first.trim(), format!("listening on {listen}"));
    let accepted = |text: &str| text.matches("accepted 127.0.0.1:").count();
    let deadline = Instant::now() + BRIDGE_TIMEOUT;
    let mut clients = Vec::new();
    // New connections are spread by a hash of their addresses: with a
    // few dozen, each process gets some (1 in 2^31 that one gets none).
    while accepted(&a.log()) == 0
        || accepted(&std::fs::read_to_string(&log).unwrap_or_default()) == 0
    {
        assert!(Instant::now() < deadline, "one process got no connection");
        for _ in 0..32 {
            let mut c = Client::connect(a.addr);
            c.send("x");
            clients.push(c);
        }
        for c in &mut clients {
            c.line(); // greeted: accepted by one of them
        }
    }
    let _ = b.kill();
    let _ = b.wait();
    let _ = std::fs::remove_file(&log);
}

/// The RESP codec (`loopchat::bridge::resp`) against the real thing:
/// commands we encode are understood, and replies of every type decode
/// whole, fed one byte at a time (every split point) or in one piece.
#[test]
fn resp_codec_speaks_with_a_real_redis() {
    use loopchat::bridge::resp::{self, Value};
    let Some(redis) = Redis::start() else { return };
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    s.set_read_timeout(Some(common::LINE_TIMEOUT)).unwrap();
    let binary: Vec<u8> = (0..=255u8).chain(b"\r\n$3\r\n*1".iter().copied()).collect();
    let big = vec![b'x'; 20_000];
    let mut out = Vec::new();
    resp::command(&mut out, &[b"SET", b"k", &binary]);
    resp::command(&mut out, &[b"GET", b"k"]);
    resp::command(&mut out, &[b"GET", b"missing"]);
    resp::command(&mut out, &[b"RPUSH", b"l", b"a", b"", &big]);
    resp::command(&mut out, &[b"LRANGE", b"l", b"0", b"-1"]);
    resp::command(
        &mut out,
        &[b"PUBLISH", b"{loopchat}:room:#x", b"nobody listens"],
    );
    resp::command(&mut out, &[b"NOSUCHCOMMAND"]);
    resp::command(&mut out, &[b"COMMAND", b"INFO", b"GET"]); // nested arrays
    s.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < 8 {
        let n = s.read(&mut chunk).expect("a reply from Redis");
        assert!(n > 0, "Redis closed the connection");
        // Every prefix of what is buffered decodes to "incomplete" or to
        // the same first value: try each byte boundary of this read.
        for cut in buf.len()..buf.len() + n {
            let mut probe = buf.clone();
            probe.extend_from_slice(&chunk[..cut - buf.len()]);
            if let Some((v, used)) = resp::decode(&probe).expect("valid RESP") {
                assert!(used <= probe.len());
                let whole = resp::decode(&probe[..used]).unwrap().unwrap();
                assert_eq!(whole.0, v);
            }
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((v, used)) = resp::decode(&buf).expect("valid RESP") {
            got.push(v);
            buf.drain(..used);
        }
    }
    assert_eq!(got[0], Value::Simple("OK".into()));
    assert_eq!(got[1], Value::Bulk(binary));
    assert_eq!(got[2], Value::Nil);
    assert_eq!(got[3], Value::Int(3));
    assert_eq!(
        got[4],
        Value::Array(vec![
            Value::Bulk(b"a".to_vec()),
            Value::Bulk(Vec::new()),
            Value::Bulk(big)
        ])
    );
    assert_eq!(got[5], Value::Int(0));
    assert!(
        matches!(&got[6], Value::Error(e) if e.starts_with("ERR")),
        "{:?}",
        got[6]
    );
    match &got[7] {
        Value::Array(info) => assert!(matches!(info.first(), Some(Value::Array(_)))),
        other => panic!("COMMAND INFO: {other:?}"),
    }
}

/// A Redis that stops answering without closing anything (SIGSTOP: what a
/// cut without FIN looks like from here) is noticed by the PING timeout,
/// in about 3 s, and the bridge comes back once Redis answers again.
#[test]
fn a_silent_redis_is_noticed_by_the_ping_timeout() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &[]);
    let _alice = a.join("alice");
    wait_channels(&a, 3);
    let pid = redis.pid() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    wait_metric(&a, "loopchat_bridge_up", |v| v == 0);
    let took = stopped.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        took >= Duration::from_secs(2),
        "down after {took:?}: before any PING could time out?"
    );
    assert!(a.log().contains("no answer to PING"), "{}", a.log());
    wait_metric(&a, "loopchat_bridge_up", |v| v == 1);
    wait_metric(&a, "loopchat_bridge_reconnects_total", |v| v >= 1);
    wait_channels(&a, 3);
}

/// Without `--redis` there is no bridge at all: no bridge metrics, no
/// socket besides the listener, and a private line to an unknown nick is
/// refused at once, as always.
#[test]
fn without_redis_nothing_of_the_bridge_exists() {
    let s = TestServer::start(&[]);
    let mut alice = s.join("alice");
    alice.send("/msg nobody hi");
    alice.expect("! No such user: nobody.");
    let mut http = TcpStream::connect(s.addr).expect("connect");
    http.set_read_timeout(Some(common::LINE_TIMEOUT)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = http.read_to_string(&mut text);
    assert!(text.contains("loopchat_users 1"), "{text}");
    assert!(!text.contains("loopchat_bridge_"), "{text}");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid())).expect("fds");
    let sockets = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count();
    // The listener, alice, the signal pipe (signal-hook-mio: a UnixStream
    // pair), and the /metrics request if it is not closed yet: 4 or 5.
    // The bridge's two links would make it 6 or more.
    assert!(sockets <= 5, "{sockets} sockets: a bridge link?");
}

/// `--redis` pointed at `url` (a proxy, say) rather than at `redis`.
fn bridged_at(url: &str, node: &str) -> TestServer {
    let s = TestServer::start(&["--redis", url, "--node-id", node]);
    wait_metric(&s, "loopchat_bridge_up", |v| v == 1);
    s
}

/// Sends a nickname on a fresh connection and returns the greeting's next
/// line: the answer to the name.
fn try_name(server: &TestServer, nick: &str) -> (Client, String) {
    let mut c = server.connect();
    c.send(nick);
    c.expect("* Welcome to loopchat! What shall I call you?");
    let answer = c.line();
    (c, answer)
}

/// A nickname is one user's on every process: a second process refuses
/// it (line and IRC, at login and on rename), and frees it when its
/// holder leaves.
#[test]
fn a_nickname_taken_on_one_process_is_refused_on_another() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    let (mut second, answer) = try_name(&b, "Alice");
    assert_eq!(answer, "! Nickname Alice is taken. Choose another.");
    second.send("alicia");
    assert!(second.line().starts_with("* The room contains: "));

    let mut irc = Irc::connect(b.addr);
    irc.send("NICK ALICE");
    irc.send("USER x 0 * :x");
    irc.until(" 433 ");
    irc.send("NICK carol");
    irc.until(" 001 ");
    irc.send("NICK alice");
    irc.until(" 433 ");
    second.send("/nick alice");
    second.line_where(|l| l == "! Nickname alice is taken. Choose another.");
    assert!(metric(b.addr, "loopchat_bridge_claims_taken_total") >= 3);

    // A rename on A gives the old name up. (A private line to nobody goes
    // through Redis after the release: once its answer is back, the
    // release is done.)
    alice.send("/nick alix");
    alice.line_where(|l| l == "* alice is now known as alix");
    alice.send("/msg nobody-here hi");
    alice.line_where(|l| l == "! No such user: nobody-here.");
    second.send("/nick alice");
    second.line_where(|l| l == "* alicia is now known as alice");
    alice.send("/quit");
    alice.expect_closed();
    // (A's release went out before anything A does next.)
    let mut ann = a.join("ann");
    ann.send("/msg nobody-here hi");
    ann.line_where(|l| l == "! No such user: nobody-here.");
    irc.send("NICK alix");
    irc.until(" NICK ");
    for s in [&a, &b] {
        assert_eq!(s.threads(), 1);
    }
}

/// A process killed with SIGKILL says nothing: its lease runs out, a
/// reaper (any process) removes it, and its users vanish from the others
/// within the lease plus a second; their nicknames are free again.
#[test]
fn a_killed_process_vanishes_within_the_lease_and_frees_its_nicknames() {
    let Some(redis) = Redis::start() else { return };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let _alice = a.join("alice");
    wait_channels(&a, 3); // control, #lobby, alice
    let mut carol = Irc::register(b.addr, "carol");
    carol.join("#lobby");
    // B asks who is in #lobby as it subscribes: alice comes as a JOIN.
    carol.until(":alice!alice@loopchat JOIN #lobby");
    let mut bob = b.join("bob");

    a.signal(libc::SIGKILL);
    let killed = Instant::now();
    bob.line_where(|l| l == "* alice has left the room (quit: server A is gone)");
    let took = killed.elapsed();
    carol.until(":alice!alice@loopchat QUIT :Quit: server A is gone");
    eprintln!("alice vanished {took:?} after the kill");
    // Lease 6 s + reaper period 1 s, with half a second for a busy machine.
    assert!(took <= Duration::from_millis(7500), "took {took:?}");
    bob.send("/who");
    bob.line_where(|l| l == "* 2 users online: carol, bob");
    let (_c, answer) = try_name(&b, "alice");
    assert!(answer.starts_with("* The room contains: "), "{answer}");
    assert!(metric(b.addr, "loopchat_bridge_nodes_down_total") >= 1);
    assert_eq!(b.threads(), 1);
}

/// Redis restarted (nothing saved): while it is away, a login that would
/// need the others' word is refused with a clear message (IRC: 437); once
/// it is back, each process claims its users' names again, and a name a
/// user of another process took meanwhile stays with that user: ours,
/// the later claim, is renamed and told.
#[test]
fn redis_restart_settles_a_nickname_collision() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut bob = a.join("bob");
    let mut ann = a.join("ann");
    wait_channels(&a, 4);
    // A change of case only: no new claim, but the new spelling is kept
    // for the fallback below.
    bob.send("/nick Bob");
    ann.line_where(|l| l == "* bob is now known as Bob");

    redis.kill();
    wait_metric(&b, "loopchat_bridge_up", |v| v == 0);
    let (_c, answer) = try_name(&b, "carl");
    assert_eq!(
        answer,
        "! carl cannot be checked against the other servers now (they are unreachable). Try again in a moment."
    );
    let mut irc = Irc::connect(b.addr);
    irc.send("NICK dora");
    irc.send("USER x 0 * :x");
    let refused = irc.until(" 437 ");
    assert!(
        refused.last().is_some_and(|l| l.contains(" dora ")),
        "{refused:?}"
    );
    // Local chat goes on meanwhile.
    ann.send("still here");
    bob.line_where(|l| l == "[ann] still here");

    // A is stopped while Redis comes back, so that a user of B takes
    // `bob` before A can claim it again.
    a.signal(libc::SIGSTOP);
    redis.restart();
    wait_metric(&b, "loopchat_bridge_up", |v| v == 1);
    let mut other_bob = b.join("bob");
    a.signal(libc::SIGCONT);
    bob.line_where(|l| {
        l == "* Bob was also taken on another server while the servers were out of touch; you are now Bob1."
    });
    bob.expect("* Bob is now known as Bob1");
    ann.line_where(|l| l == "* Bob is now known as Bob1");
    wait_metric(&a, "loopchat_bridge_collisions_total", |v| v == 1);
    wait_metric(&a, "loopchat_bridge_lease_renewals_total", |v| v >= 1);
    // Both are in #lobby again, under different names.
    bob.send("I am Bob1 now");
    other_bob.line_where(|l| l == "[Bob1] I am Bob1 now");
    other_bob.send("and I am bob");
    bob.line_where(|l| l == "[bob] and I am bob");
    for s in [&a, &b] {
        assert_eq!(s.threads(), 1);
    }
}

/// A process stopped (SIGSTOP) long enough for its lease to run out and
/// for Redis to drop its subscriber link (client-output-buffer-limit, here
/// made small): the others see its users quit; when it resumes it
/// reconnects, claims its names again and tells the others who is here,
/// and what it missed is counted as a gap, never silently lost.
#[test]
fn a_stopped_process_is_reaped_then_resyncs() {
    let Some(redis) = Redis::start_with(&["--client-output-buffer-limit", "pubsub 256kb 0 0"])
    else {
        return;
    };
    let a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    wait_channels(&a, 3);
    let mut carol = Irc::register(b.addr, "carol");
    carol.join("#lobby");
    // B asks who is in #lobby as it subscribes: alice comes as a JOIN.
    carol.until(":alice!alice@loopchat JOIN #lobby");
    let mut bob = b.join("bob");
    alice.line_where(|l| l == "* carol has entered the room");
    bob.send("first");
    alice.line_where(|l| l == "[bob] first");

    a.signal(libc::SIGSTOP);
    // Fill what A cannot read (the kernel's buffers, then Redis's 256 KB)
    // until Redis drops A's subscriber link: then #lobby has one
    // listener left, B (which reads, and counts the junk as unreadable).
    let channel = "{loopchat}:room:#lobby";
    let junk = vec![b'j'; 8 * 1024];
    let mut publisher = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect to redis");
    publisher
        .set_read_timeout(Some(BRIDGE_TIMEOUT))
        .expect("timeout");
    let mut listeners = 2;
    for _ in 0..20_000 {
        listeners = publish(&mut publisher, channel, &junk);
        if listeners < 2 {
            break;
        }
    }
    assert_eq!(listeners, 1, "Redis never dropped A's subscriber link");
    // Lines A misses now: counted as a gap when it hears B again.
    for i in 0..5 {
        bob.send(&format!("missed {i}"));
    }
    carol.until(":alice!alice@loopchat QUIT :Quit: server A is gone");
    bob.line_where(|l| l == "* alice has left the room (quit: server A is gone)");
    a.signal(libc::SIGCONT);

    // Back: A's users come back to the others, in both dialects.
    carol.until(":alice!alice@loopchat JOIN #lobby");
    bob.line_where(|l| l == "* alice has entered the room");
    wait_metric(&a, "loopchat_bridge_lease_renewals_total", |v| v >= 1);
    wait_metric(&a, "loopchat_bridge_reconnects_total", |v| v >= 1);
    alice.send("back");
    carol.until(":alice!alice@loopchat PRIVMSG #lobby :back");
    bob.send("welcome back");
    alice.line_where(|l| l == "[bob] welcome back");
    assert!(
        metric(a.addr, "loopchat_bridge_gaps_total") >= 1,
        "what A missed must be counted; log:\n{}",
        a.log()
    );
    // The name is still alice's: nobody else can take it.
    let (_c, answer) = try_name(&b, "alice");
    assert_eq!(answer, "! Nickname alice is taken. Choose another.");
    for s in [&a, &b] {
        assert_eq!(s.threads(), 1);
    }
}

/// PUBLISHes `payload` on `channel` through `s`, a plain connection to
/// Redis; returns the
/// number of listeners.
fn publish(s: &mut TcpStream, channel: &str, payload: &[u8]) -> i64 {
    let mut cmd = format!(
        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes();
    cmd.extend_from_slice(payload);
    cmd.extend_from_slice(b"\r\n");
    s.write_all(&cmd).expect("publish");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        s.read_exact(&mut byte).expect("publish reply");
        reply.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&reply);
    text.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PUBLISH answered {text:?}"))
}

/// A TCP proxy that forwards until it is cut; then it forwards nothing
/// and closes nothing, like a network that went away without a FIN.
/// Connections accepted while cut are never forwarded. (The proxy's
/// threads are the test's; the servers stay single-threaded.)
struct Proxy {
    addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { return };
                if flag.load(Ordering::SeqCst) {
                    std::mem::forget(down); // a black hole, never closed
                    continue;
                }
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (
                        down.try_clone().expect("clone"),
                        up.try_clone().expect("clone"),
                    ),
                    (up, down),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => {
                                    if !flag.load(Ordering::SeqCst) {
                                        let _ = to.shutdown(std::net::Shutdown::Write);
                                    }
                                    return;
                                }
                                Ok(n) => {
                                    if flag.load(Ordering::SeqCst) {
                                        // Cut: swallow, and keep both ends
                                        // open for ever (no FIN either way).
                                        std::mem::forget(to.try_clone());
                                        std::mem::forget(from.try_clone());
                                        continue;
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        Proxy { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A network cut between a process and Redis, without FIN: the process
/// notices by its PING timeout (about 3 s) and refuses logins that need
/// Redis; the others reap it when its lease runs out; when the network is
/// back it reconnects and its users are back everywhere.
#[test]
fn a_network_cut_is_noticed_and_healed() {
    let Some(redis) = Redis::start() else { return };
    let upstream: SocketAddr = redis.url().parse().expect("redis addr");
    let proxy = Proxy::start(upstream);
    let a = bridged_at(&proxy.addr.to_string(), "A");
    cut_and_heal(&redis, &a, |cut| proxy.set_cut(cut));
}

/// The same cut made by the network itself: A runs in a network namespace
/// and the link it reaches Redis by is set down (packets stop; nothing
/// sends a FIN or a RST). Needs root and `ip netns`; where the machine
/// does not allow them, the proxy test above stands for it.
#[test]
fn a_network_cut_in_a_namespace_is_noticed_and_healed() {
    let Some(ns) = Netns::create() else { return };
    let Some(redis) = Redis::start_with(&[
        "--bind",
        "127.0.0.1",
        &ns.redis_host_ip,
        "--protected-mode",
        "no",
    ]) else {
        return;
    };
    let url = format!("{}:{}", ns.redis_host_ip, redis.port);
    let listen = format!("{}:0", ns.client_ip);
    let a = TestServer::start_in_netns(
        &ns.name,
        &listen,
        &[
            "--redis",
            &url,
            "--node-id",
            "A",
            "--metrics-from",
            &ns.block,
        ],
    );
    wait_metric(&a, "loopchat_bridge_up", |v| v == 1);
    cut_and_heal(&redis, &a, |cut| ns.set_redis_link(!cut));
}

/// A (bridged, its link to Redis cuttable by `set_cut`) and B (on
/// `redis` directly): A's line user and B's IRC user share #lobby. Cut:
/// A notices by its PING timeout and refuses logins it cannot check; B
/// reaps A. Healed: each side sees the other come back, and they chat.
fn cut_and_heal(redis: &Redis, a: &TestServer, set_cut: impl Fn(bool)) {
    let b = redis.bridged("B", &[]);
    let mut alice = a.join("alice");
    wait_channels(a, 3);
    let mut carol = Irc::register(b.addr, "carol");
    carol.join("#lobby");
    // B asks who is in #lobby as it subscribes: alice comes as a JOIN.
    carol.until(":alice!alice@loopchat JOIN #lobby");
    alice.line_where(|l| l == "* carol has entered the room");

    set_cut(true);
    let cut_at = Instant::now();
    wait_metric(a, "loopchat_bridge_up", |v| v == 0);
    let noticed = cut_at.elapsed();
    eprintln!("A noticed the cut after {noticed:?}");
    assert!(noticed <= Duration::from_secs(6), "{noticed:?}");
    let (_c, answer) = try_name(a, "dave");
    assert!(answer.starts_with("! dave cannot be checked"), "{answer}");
    alice.line_where(|l| l.starts_with("* carol has left the room"));
    carol.until(":alice!alice@loopchat QUIT :Quit: server A is gone");
    let reaped = cut_at.elapsed();
    eprintln!("B reaped A {reaped:?} after the cut");
    assert!(reaped <= Duration::from_millis(7500), "{reaped:?}");

    set_cut(false);
    carol.until(":alice!alice@loopchat JOIN #lobby");
    // A's line user, told carol left, is told she is back.
    alice.line_where(|l| l == "* carol has entered the room");
    // Once A listens again (control, #lobby, alice), what B says reaches
    // it.
    wait_metric(a, "loopchat_bridge_up", |v| v == 1);
    wait_channels(a, 3);
    carol.send("PRIVMSG #lobby :you are back");
    alice.line_where(|l| l == "[carol] you are back");
    alice.send("/who");
    alice.line_where(|l| l == "* 2 users online: alice, carol");
    for s in [a, &b] {
        assert_eq!(s.threads(), 1);
    }
}

/// A network namespace for server A with two veth pairs to ours: one
/// for its clients (and `/metrics`), one by which it reaches Redis, so
/// that cutting the second leaves A reachable. Removed on drop.
struct Netns {
    name: String,
    /// Our end of the client link.
    client_link: String,
    /// Our end of the Redis link (what is set down).
    redis_link: String,
    /// A's address on the client link.
    client_ip: String,
    /// Our address on the Redis link: Redis listens there too.
    redis_host_ip: String,
    /// The block both links are in (for `--metrics-from`).
    block: String,
}

impl Netns {
    /// `None` (after saying why) if this machine does not let us: not
    /// root, no `ip`, or no network namespaces in this container.
    fn create() -> Option<Netns> {
        let pid = std::process::id();
        // A /29 per test process: two /30 links.
        let (x, y) = ((pid >> 5) & 0xff, (pid & 0x1f) * 8);
        let ip = |k: u32| format!("10.213.{x}.{}", y + k);
        let name = format!("lc{pid}");
        let ns = Netns {
            client_link: format!("lc{pid}c"),
            redis_link: format!("lc{pid}r"),
            client_ip: ip(2),
            redis_host_ip: ip(5),
            block: format!("{}/29", ip(0)),
            name: name.clone(),
        };
        let (client_ns, redis_ns) = (format!("lc{pid}d"), format!("lc{pid}s"));
        let client_host = &ns.client_link;
        let host = |args: &[&str]| Self::ip(args);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            Self::ip(&all)
        };
        let client_host_ip = format!("{}/30", ip(1));
        let client_ns_ip = format!("{}/30", ip(2));
        let redis_host_ip = format!("{}/30", ip(5));
        let redis_ns_ip = format!("{}/30", ip(6));
        if let Err(e) = host(&["netns", "add", &name]) {
            eprintln!("SKIPPED: no network namespace here ({e}); the proxy test covers the cut");
            return None;
        }
        let made = host(&[
            "link",
            "add",
            client_host,
            "type",
            "veth",
            "peer",
            "name",
            &client_ns,
        ])
        .and_then(|()| {
            host(&[
                "link",
                "add",
                &ns.redis_link,
                "type",
                "veth",
                "peer",
                "name",
                &redis_ns,
            ])
        })
        .and_then(|()| host(&["link", "set", &client_ns, "netns", &name]))
        .and_then(|()| host(&["link", "set", &redis_ns, "netns", &name]))
        .and_then(|()| host(&["addr", "add", &client_host_ip, "dev", client_host]))
        .and_then(|()| host(&["addr", "add", &redis_host_ip, "dev", &ns.redis_link]))
        .and_then(|()| host(&["link", "set", client_host, "up"]))
        .and_then(|()| host(&["link", "set", &ns.redis_link, "up"]))
        .and_then(|()| inside(&["addr", "add", &client_ns_ip, "dev", &client_ns]))
        .and_then(|()| inside(&["addr", "add", &redis_ns_ip, "dev", &redis_ns]))
        .and_then(|()| inside(&["link", "set", &client_ns, "up"]))
        .and_then(|()| inside(&["link", "set", &redis_ns, "up"]))
        .and_then(|()| inside(&["link", "set", "lo", "up"]));
        match made {
            Ok(()) => Some(ns),
            Err(e) => {
                eprintln!(
                    "SKIPPED: could not wire a network namespace ({e}); the proxy test covers the cut"
                );
                None // dropped: removed
            }
        }
    }

    /// Runs `ip args`; the error says what failed.
    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Sets our end of the Redis link up or down.
    fn set_redis_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        if let Err(e) = Self::ip(&["link", "set", &self.redis_link, state]) {
            panic!("{e}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The veth pairs go with the namespace their peers are in; ours
        // are removed too in case a peer never moved there.
        let _ = Self::ip(&["netns", "del", &self.name]);
        for link in [&self.client_link, &self.redis_link] {
            let _ = Self::ip(&["link", "del", link]);
        }
    }
}

/// A Redis Cluster node is refused with a clear message, and local chat
/// goes on without the bridge.
#[test]
fn a_redis_cluster_is_refused_clearly() {
    let nodes_conf =
        std::env::temp_dir().join(format!("loopchat-cluster-{}.conf", std::process::id()));
    let nodes_conf = nodes_conf.to_string_lossy().into_owned();
    let Some(redis) = Redis::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &nodes_conf,
    ]) else {
        return;
    };
    let a = TestServer::start(&["--redis", &redis.url(), "--node-id", "A"]);
    assert!(
        a.wait_until(BRIDGE_TIMEOUT, |s| s
            .log()
            .contains("Redis Cluster is not supported")),
        "log:\n{}",
        a.log()
    );
    let mut alice = a.join("alice");
    let mut bob = a.join("bob");
    alice.line_where(|l| l == "* bob has entered the room");
    bob.send("local chat works");
    alice.line_where(|l| l == "[bob] local chat works");
    assert_eq!(metric(a.addr, "loopchat_bridge_up"), 0);
    drop(redis);
    let _ = std::fs::remove_file(&nodes_conf);
}

/// A process stopped cleanly (SIGTERM) gives its lease and names back at
/// once: its users, reconnecting elsewhere, need not wait for the lease to
/// run out. WHOIS, USERHOST and ISON on another process know a remote
/// user that shares a room.
#[test]
fn a_clean_stop_frees_names_at_once_and_whois_knows_remote_users() {
    let Some(redis) = Redis::start() else { return };
    let mut a = redis.bridged("A", &[]);
    let b = redis.bridged("B", &[]);
    let _alice = a.join("alice");
    wait_channels(&a, 3);
    let mut carol = Irc::register(b.addr, "carol");
    carol.join("#lobby");
    carol.until(":alice!alice@loopchat JOIN #lobby");
    carol.send("WHOIS alice");
    let whois = carol.until(" 318 ");
    assert!(
        whois.iter().any(|l| l.contains(" 312 carol alice A :")),
        "{whois:?}"
    );
    assert!(
        whois.iter().any(|l| l.contains(" 319 carol alice :#lobby")),
        "{whois:?}"
    );
    carol.send("ISON alice nobody");
    carol.until(" 303 carol :alice");
    carol.send("USERHOST alice");
    carol.until(" 302 carol :alice=+alice@loopchat");

    a.signal(libc::SIGTERM);
    let stopped = Instant::now();
    assert!(a.wait_exit(BRIDGE_TIMEOUT).is_some(), "A did not stop");
    carol.until(":alice!alice@loopchat QUIT :Quit: server shutting down");
    // Redis has A's last words before B's claim in all but a rare race;
    // a few tries at most, all well inside the 6 s lease.
    let mut answer = String::new();
    for _ in 0..5 {
        answer = try_name(&b, "alice").1;
        if answer.starts_with("* The room contains: ") {
            break;
        }
    }
    assert!(answer.starts_with("* The room contains: "), "{answer}");
    assert!(stopped.elapsed() < Duration::from_secs(3));
}
