//! No single peer can hurt the others. Each test shows both halves: the
//! offender is handled, and everyone else keeps chatting with nothing lost.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestServer};

/// A connection whose receive buffer is tiny, so the server's output to
/// it backs up quickly (a reader on a slow link).
fn connect_with_small_rcvbuf(addr: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    Client::from_stream(socket.into())
}

/// Closes with RST instead of FIN (SO_LINGER 0), like a crashed peer.
fn reset(stream: TcpStream) {
    let socket = socket2::Socket::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
}

/// Two users who can prove, at any point, that the room still works.
fn chatting_pair(s: &TestServer, a: &str, b: &str) -> (Client, Client) {
    let mut x = s.join(a);
    let y = s.join(b);
    x.line_where(|l| l.ends_with("has entered the room"));
    (x, y)
}

fn still_chatting(x: &mut Client, x_nick: &str, y: &mut Client, text: &str) {
    x.send(text);
    y.line_where(|l| l == format!("[{x_nick}] {text}"));
}

/// Protection 1: A client that never reads is cut off with "send queue exceeded" while
/// 20 others exchange messages at full speed and receive every one of them;
/// the server's memory stays below cap x clients + a base.
#[test]
fn slow_reader_is_disconnected_and_nothing_is_lost() {
    const CAP: usize = 64 * 1024;
    const SENDERS: usize = 20;
    let s = TestServer::start(&["--max-rate", "0", "--max-sendq", "64k"]);
    let mut slow = connect_with_small_rcvbuf(s.addr);
    slow.line();
    slow.send("slow");
    slow.line_where(|l| l.starts_with("* Welcome, slow"));

    let mut clients: Vec<Client> = (0..SENDERS).map(|i| s.join(&format!("u{i}"))).collect();
    // Everyone has seen everyone join: the room is settled.
    for (i, c) in clients.iter_mut().enumerate() {
        for j in i + 1..SENDERS {
            c.line_where(|l| l == format!("* u{j} has entered the room"));
        }
    }
    let base_kib = s.rss_kib();
    let peak_kib = Arc::new(AtomicU64::new(base_kib));
    let slow_gone = Arc::new(AtomicBool::new(false));
    // received[r * SENDERS + w]: lines reader r has from writer w.
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..SENDERS * SENDERS).map(|_| AtomicU64::new(0)).collect());
    let payload = "p".repeat(400);

    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let mut writer = c.stream.try_clone().unwrap();
            let stop = slow_gone.clone();
            let got = received.clone();
            let payload = payload.clone();
            // Writer: as fast as the (reading) others can take it: at most
            // WINDOW lines not yet received by all of them. Bounded.
            scope.spawn(move || {
                const WINDOW: u64 = 10;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) && seq < 50_000 && Instant::now() < deadline {
                    let slowest = (0..SENDERS)
                        .filter(|&r| r != i)
                        .map(|r| got[r * SENDERS + i].load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(0);
                    if seq - slowest >= WINDOW {
                        std::thread::yield_now();
                        continue;
                    }
                    let mut batch = Vec::new();
                    for _ in 0..10 {
                        writeln!(batch, "{seq} {payload}").unwrap();
                        seq += 1;
                    }
                    writer.write_all(&batch).unwrap();
                }
                writeln!(writer, "done {seq}").unwrap();
            });
            // Reader: every other sender's sequence must be complete.
            let slow_gone = slow_gone.clone();
            let got = received.clone();
            readers.push(scope.spawn(move || {
                let mut next = [0u64; SENDERS];
                let mut done = 0;
                while done < SENDERS - 1 {
                    let line = c.line();
                    if line == "* slow has left the room (send queue exceeded)" {
                        slow_gone.store(true, Ordering::Relaxed);
                        continue;
                    }
                    let Some(rest) = line.strip_prefix("[u") else {
                        continue;
                    };
                    let (from, text) = rest.split_once("] ").unwrap();
                    let from: usize = from.parse().unwrap();
                    assert_ne!(from, i, "echo");
                    let (first, _) = text.split_once(' ').unwrap();
                    if first == "done" {
                        let total: u64 = text[5..].parse().unwrap();
                        assert_eq!(next[from], total, "u{i} missed lines from u{from}");
                        done += 1;
                    } else {
                        assert_eq!(
                            first.parse::<u64>().unwrap(),
                            next[from],
                            "u{i} from u{from}"
                        );
                        next[from] += 1;
                        got[i * SENDERS + from].store(next[from], Ordering::Relaxed);
                    }
                }
            }));
        }
        // Sample the server's memory while the storm lasts.
        let peak = peak_kib.clone();
        let pid = s.pid();
        let sampling = slow_gone.clone();
        scope.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !sampling.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak.fetch_max(common::proc_status(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        for r in readers {
            r.join().unwrap();
        }
    });

    assert!(slow_gone.load(Ordering::Relaxed));
    let lines = slow.expect_closed();
    // Its queue was replaced by the reason; what the kernel already held
    // for it comes first, in whole lines: the line that was half written
    // when the kick came is finished, never cut and glued to the reason.
    let (last, before) = lines.split_last().expect("the reason, at least");
    assert_eq!(
        last,
        "! Send queue exceeded; you were not reading fast enough."
    );
    for l in before {
        let whole_chat = l
            .strip_prefix("[u")
            .and_then(|rest| rest.split_once("] "))
            .and_then(|(from, text)| Some((from.parse::<usize>().ok()?, text.split_once(' ')?)))
            .is_some_and(|(_, (seq, text))| seq.parse::<u64>().is_ok() && text == payload);
        let notice = l == "* You are alone in the room."
            || (l.starts_with("* u") && l.ends_with(" has entered the room"));
        assert!(whole_chat || notice, "a cut line: {l:?}");
    }
    // A Vec may hold up to twice what it contains; 21 queues at most.
    let bound_kib = base_kib + (2 * CAP * (SENDERS + 1) / 1024) as u64 + 4096;
    let peak = peak_kib.load(Ordering::Relaxed);
    assert!(peak <= bound_kib, "peak RSS {peak} KiB > {bound_kib} KiB");
    assert!(
        s.log()
            .contains("(slow) disconnected: send queue exceeded ("),
        "{}",
        s.log()
    );
}

/// Protection 2: A flooder is slowed to the configured rate, not cut off: all 2,000
/// lines arrive in order, and another user's line is not stuck behind them.
#[test]
fn flooder_is_slowed_not_dropped() {
    let s = TestServer::start(&["--max-rate", "1000", "--burst", "20"]);
    let mut flooder = s.join("flood");
    let mut other = s.join("other");
    let mut watcher = s.join("watch");
    flooder.line_where(|l| l == "* watch has entered the room");
    other.line_where(|l| l == "* watch has entered the room");
    let base_kib = s.rss_kib();

    let mut burst = Vec::new();
    for i in 0..2000 {
        writeln!(burst, "flood {i}").unwrap();
    }
    let start = Instant::now();
    let mut writer = flooder.stream.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&burst).unwrap());

    let mut seen_other_at = None;
    let mut i = 0;
    while i < 2000 {
        let line = watcher.line();
        if line == "[other] not stuck" {
            seen_other_at = Some(i);
            continue;
        }
        assert_eq!(line, format!("[flood] flood {i}"));
        if i == 100 {
            other.send("not stuck");
        }
        i += 1;
    }
    let elapsed = start.elapsed();
    w.join().unwrap();
    let at = seen_other_at.expect("the other user's line arrived during the flood");
    assert!(
        at < 1500,
        "the other user's line waited behind {at} flood lines"
    );
    // 1,980 lines beyond the burst at 1,000/s: at least ~2 s.
    assert!(
        elapsed >= Duration::from_millis(1500),
        "too fast: {elapsed:?}"
    );
    assert!(
        s.rss_kib() < base_kib + 2048,
        "memory grew during the flood"
    );
    // The flooder was told why, and never disconnected.
    flooder.line_where(|l| {
        l.starts_with("* Slow down: at most 1000 lines per second (bursts of 20).")
    });
    still_chatting(&mut flooder, "flood", &mut watcher, "still here");
    assert!(s.log().contains("(flood) throttled: over 1000 lines/s"));
}

/// Protection 3: A connection that chooses no nickname in time is told and closed;
/// 500 such connections do not disturb joined users, and their slots come
/// back.
#[test]
fn registration_timeout_frees_slots() {
    let s = TestServer::start(&["--register-timeout", "1", "--max-clients", "503"]);
    let (mut a, mut b) = chatting_pair(&s, "a", "b");
    let fds_before = s.open_fds();
    let mut idle: Vec<Client> = (0..500).map(|_| s.connect()).collect();
    still_chatting(&mut a, "a", &mut b, "unaffected");
    for c in idle.iter_mut() {
        let lines = c.expect_closed();
        assert_eq!(
            lines,
            [
                "* Welcome to loopchat! What shall I call you?",
                "! Registration timeout: no nickname chosen within 1 s."
            ]
        );
    }
    assert!(s.wait_until(Duration::from_secs(10), |s| s.open_fds() <= fds_before));
    // With 503 slots and 502 used earlier, this join needs freed slots.
    let mut c = s.join("c");
    a.line_where(|l| l == "* c has entered the room");
    still_chatting(&mut c, "c", &mut a, "slots came back");
    // Joined users were not timed out.
    still_chatting(&mut b, "b", &mut a, "still joined");
}

/// Moves `c` to a thread that answers every ping and forwards the other
/// lines: a user who is present, just not talking.
fn answer_pings_in_background(mut c: Client) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(l) = c.try_line() {
            if l.starts_with("* PING") {
                c.send("/pong");
            } else if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

fn recv_until(rx: &std::sync::mpsc::Receiver<String>, want: &str) {
    loop {
        let l = rx.recv_timeout(common::LINE_TIMEOUT).expect("a line");
        if l == want {
            return;
        }
    }
}

/// Protection 4: --idle-timeout: a silent user is pinged; answering keeps it, silence
/// after the ping closes it and the others are told.
#[test]
fn idle_timeout_pings_then_closes() {
    let s = TestServer::start(&["--idle-timeout", "1"]);
    let (mut a, b) = chatting_pair(&s, "a", "b");
    let b_lines = answer_pings_in_background(b);
    a.expect("* PING - send any line within 1 s to stay connected");
    a.send("/pong");
    assert!(a.sync().is_empty());
    // Now say nothing: ping, then the close.
    a.expect("* PING - send any line within 1 s to stay connected");
    assert_eq!(
        a.expect_closed(),
        ["! Idle timeout: nothing received for 1 s."]
    );
    recv_until(&b_lines, "* a has left the room (idle timeout)");
    let mut c = s.join("c");
    c.send("hello");
    recv_until(&b_lines, "[c] hello");
}

/// Protection 5: Out of file descriptors: the loop neither spins nor exits; users
/// keep chatting and accepting resumes once descriptors are free.
#[test]
fn fd_exhaustion_neither_spins_nor_exits() {
    const LIMIT: u64 = 40;
    let s = TestServer::start_with(&[], |cmd| unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    });
    let (mut a, mut b) = chatting_pair(&s, "a", "b");
    let mut extra: Vec<Client> = (0..60).map(|_| s.connect()).collect();
    // Every extra connection hears something: a greeting or the refusal.
    let mut refused = 0;
    for c in extra.iter_mut() {
        if c.line() == "! Server is out of file descriptors. Try again later." {
            refused += 1;
        }
    }
    assert!(refused > 0, "the descriptor limit was never reached");
    still_chatting(&mut a, "a", &mut b, "still fine");

    let ticks = s.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2)); // a measurement window
    let spent = s.cpu_ticks() - ticks;
    assert!(
        spent <= 10,
        "{spent} ticks of CPU in 2 s while out of descriptors"
    );

    extra.clear(); // close them all
    assert!(s.wait_until(Duration::from_secs(10), |s| s.open_fds() < 20));
    let mut c = s.join("c");
    c.send("back");
    a.line_where(|l| l == "[c] back");
    assert!(s.log().contains("out of file descriptors"));
}

/// Protection 6: --max-per-ip: the connection past the limit gets a clear error.
/// Loopback is exempt unless --limit-loopback.
#[test]
fn per_address_limit() {
    let s = TestServer::start(&["--max-per-ip", "2", "--limit-loopback"]);
    let (mut a, mut b) = chatting_pair(&s, "a", "b");
    let mut third = s.connect();
    assert_eq!(
        third.expect_closed(),
        ["! Too many connections from your address (max 2)."]
    );
    still_chatting(&mut a, "a", &mut b, "unaffected");
    b.send("/quit");
    b.line_where(|l| l == "* Goodbye.");
    b.expect_closed();
    a.line_where(|l| l == "* b has left the room (quit)");
    s.join("c"); // the freed place is usable

    let exempt = TestServer::start(&["--max-per-ip", "2"]);
    let _x: Vec<Client> = (0..5).map(|i| exempt.join(&format!("x{i}"))).collect();
}

/// Protection 7: Hostile bytes: none of it crashes the server, stops the others from
/// chatting, or grows memory without bound.
#[test]
fn hostile_bytes_do_not_hurt_the_others() {
    let s = TestServer::start(&["--max-rate", "0"]);
    let (mut a, mut b) = chatting_pair(&s, "a", "b");
    let base_kib = s.rss_kib();

    // Random binary with NULs, from a fixed-seed xorshift.
    let mut x = 0x2545F4914F6CDD1Du64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut r = s.connect();
    r.send_raw(&noise);
    r.send_raw(&[0u8; 4096]);
    still_chatting(&mut a, "a", &mut b, "after noise");

    // 10 MB without a newline.
    let mut big = s.join("big");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        big.send_raw(&chunk);
    }
    big.send_raw(b"\n");
    big.line_where(|l| l.starts_with("! Line too long"));
    still_chatting(&mut a, "a", &mut b, "after 10MB");
    assert!(
        s.rss_kib() < base_kib + 4096,
        "memory grew with a line's length"
    );

    // Telnet commands, lone CRs, invalid UTF-8 at every position.
    big.send_raw(&[255, 250, 1, 2, 3, 255, 240, 255, 251, 1, 255, 244]);
    big.send_raw(b"a\rb\r\rc\n");
    // IAC DONT ECHO (the refusal of WILL ECHO, shown lossily), then the error.
    big.line_where(|l| {
        l == "\u{FFFD}\u{FFFD}\u{1}! Control characters are not allowed; line discarded."
    });
    let text = b"invalid here";
    for i in 0..=text.len() {
        let mut line = text[..i].to_vec();
        line.push(0x80);
        line.extend_from_slice(&text[i..]);
        line.push(b'\n');
        big.send_raw(&line);
        big.expect("! Line is not valid UTF-8; discarded.");
    }

    // A line dribbled one byte every 100 ms still arrives whole.
    let mut dribble = s.join("drib");
    b.line_where(|l| l == "* drib has entered the room");
    for byte in b"drip drip\n" {
        still_chatting(&mut a, "a", &mut b, "meanwhile");
        dribble.send_raw(&[*byte]);
        std::thread::sleep(Duration::from_millis(100)); // the dribble itself
    }
    b.line_where(|l| l == "[drib] drip drip");

    // 5,000 connect-and-reset cycles.
    for _ in 0..5000 {
        reset(TcpStream::connect(s.addr).unwrap());
    }
    still_chatting(&mut a, "a", &mut b, "after resets");

    // A reader that resets while the server is writing to it.
    let mut victim = connect_with_small_rcvbuf(s.addr);
    victim.line();
    victim.send("victim");
    victim.line_where(|l| l.starts_with("* Welcome, victim"));
    let big_line = "w".repeat(3000);
    for _ in 0..200 {
        a.send(&big_line);
    }
    reset(victim.stream.try_clone().unwrap());
    drop(victim);
    b.line_where(|l| l.starts_with("* victim has left the room ("));
    still_chatting(&mut a, "a", &mut b, "after the reset mid-write");

    assert_eq!(s.threads(), 1);
    assert!(
        s.rss_kib() < base_kib + 8192,
        "memory: {} KiB from {base_kib}",
        s.rss_kib()
    );
}

/// All at once: a client that reads nothing, a flooder and 500 clients
/// that never register do not stop three ordinary users from chatting.
#[test]
fn everything_at_once_three_users_keep_chatting() {
    let s = TestServer::start(&["--max-sendq", "64k", "--register-timeout", "5"]);
    let mut users: Vec<Client> = ["x", "y", "z"].iter().map(|n| s.join(n)).collect();
    users[0].line_where(|l| l == "* z has entered the room");
    users[1].line_where(|l| l == "* z has entered the room");

    let mut slow = connect_with_small_rcvbuf(s.addr);
    slow.line();
    slow.send("slow");
    let flooder = s.join("flood");
    let mut writer = flooder.stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let line = format!("{}\n", "f".repeat(2000));
        for _ in 0..2000 {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    let _unregistered: Vec<Client> = (0..500).map(|_| s.connect()).collect();

    for round in 0..20 {
        for i in 0..3 {
            let text = format!("round {round} from {i}");
            users[i].send(&text);
            let want = format!("[{}] {text}", ["x", "y", "z"][i]);
            for (_, other) in users.iter_mut().enumerate().filter(|(j, _)| *j != i) {
                other.line_where(|l| l == want);
            }
        }
    }
    drop(flooder);
    let _ = flood.join();
    assert_eq!(s.threads(), 1);
}

/// Idle means idle: with many connected users and nothing happening, the
/// server uses (almost) no CPU: no periodic wake-ups, no WRITABLE spin.
#[test]
fn idle_server_uses_no_cpu() {
    let s = TestServer::start(&["--max-clients", "2000"]);
    let mut users: Vec<Client> = (0..200).map(|i| s.join(&format!("i{i}"))).collect();
    users[0].sync();
    users[199].sync();
    let ticks = s.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2)); // a measurement window
    let spent = s.cpu_ticks() - ticks;
    assert!(spent <= 2, "{spent} ticks in 2 s of idleness");
}
