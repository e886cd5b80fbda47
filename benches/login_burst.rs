//! Chat latency while a burst of logins hashes passwords on the one loop.
//!
//! Starts the release server with `--accounts` on a temporary file and
//! `--max-rate 0`; 50 users are logged in; 5 of them send 100 lines/s each
//! (a send timestamp in the payload) and every user measures each line's
//! latency on receipt. After a baseline period, 20 more clients log in or
//! register at the same moment. Reports p50/p99/max for the baseline and
//! for the burst window, and the cost of one hash.
//!
//! `cargo bench --bench login_burst` runs it (about 15 s). Without
//! `--bench` (as `cargo test --all-targets` runs it) it exits at once.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USERS: usize = 50;
const SENDERS: usize = 5;
const RATE_PER_SENDER: u64 = 100;
const BURST: usize = 20;
/// Of the burst, how many log in to accounts that exist (the rest register).
const BURST_LOGINS: usize = 10;
const WARMUP: Duration = Duration::from_secs(2);
const BASELINE: Duration = Duration::from_secs(5);
/// Chat goes on this long after the burst has finished.
const AFTER_BURST: Duration = Duration::from_secs(2);
const PASSWORD: &str = "bench-password";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("login_burst: skipped (run `cargo bench --bench login_burst`)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("loopchat-login-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("accounts.txt");
    let (mut server, addr) = start_server(&file);
    let result = run(addr);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("login_burst: {e}");
        std::process::exit(1);
    }
}

fn start_server(file: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--max-rate",
            "0",
            "--log-level",
            "warn",
            // Every client registers from 127.0.0.1: no budget of new accounts.
            "--new-accounts-per-ip",
            "0",
            "--new-accounts-per-minute",
            "0",
        ])
        .arg("--accounts")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn loopchat-server");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("listening line");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .expect("an address");
    (child, addr)
}

/// Connects, sends name and password, reads up to the welcome line.
/// Returns the connection and how long the login took.
fn login(addr: SocketAddr, name: &str) -> Result<(BufReader<TcpStream>, Duration), String> {
    let t0 = Instant::now();
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    w.write_all(format!("{name}\n{PASSWORD}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!("{name}: closed during login"));
        }
        if line.starts_with("! ") {
            return Err(format!("{name}: {}", line.trim_end()));
        }
        if line.starts_with(&format!("* Welcome, {name}!")) {
            return Ok((r, t0.elapsed()));
        }
    }
}

/// (send time since epoch, latency), both in ns.
type Samples = Arc<Mutex<Vec<(u64, u64)>>>;

fn run(addr: SocketAddr) -> Result<(), String> {
    // Accounts for the burst's logins exist beforehand.
    for i in 0..BURST_LOGINS {
        login(addr, &format!("old{i}"))?;
    }
    let mut readers = Vec::new();
    for i in 0..USERS {
        readers.push(login(addr, &format!("u{i}"))?.0);
    }
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::new(Mutex::new(Vec::new()));

    let mut threads = Vec::new();
    let mut writers = Vec::new();
    for (i, mut r) in readers.into_iter().enumerate() {
        if i < SENDERS {
            writers.push(r.get_ref().try_clone().map_err(|e| e.to_string())?);
        }
        let (stop, samples) = (stop.clone(), samples.clone());
        let _ = r
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
        threads.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let now = epoch.elapsed().as_nanos() as u64;
                        // "[uN] SEQ SENT_NS"
                        if let Some(sent) = line
                            .strip_prefix('[')
                            .and_then(|l| l.split_whitespace().nth(2))
                            .and_then(|t| t.parse::<u64>().ok())
                        {
                            mine.push((sent, now.saturating_sub(sent)));
                        }
                    }
                    Err(_) => continue, // timeout: check `stop`
                }
            }
            if let Ok(mut all) = samples.lock() {
                all.extend(mine);
            }
        }));
    }
    for (i, mut w) in writers.into_iter().enumerate() {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_SENDER);
            // Staggered so the senders do not all write in the same instant.
            let mut next = Instant::now() + interval * i as u32 / SENDERS as u32;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                next += interval;
                seq += 1;
                let sent = epoch.elapsed().as_nanos() as u64;
                if w.write_all(format!("{seq} {sent}\n").as_bytes()).is_err() {
                    break;
                }
            }
        }));
    }

    std::thread::sleep(WARMUP + BASELINE);
    let burst_start = epoch.elapsed();
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let name = if i < BURST_LOGINS {
                format!("old{i}")
            } else {
                format!("new{i}")
            };
            std::thread::spawn(move || login(addr, &name))
        })
        .collect();
    let mut login_times = Vec::new();
    let mut keep = Vec::new();
    for t in burst {
        let (r, d) = t.join().map_err(|_| "burst thread panicked")??;
        login_times.push(d);
        keep.push(r);
    }
    let burst_end = epoch.elapsed();
    std::thread::sleep(AFTER_BURST);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    let all = samples.lock().map_err(|_| "poisoned")?.clone();
    let window = |from: Duration, to: Duration| -> Vec<u64> {
        let (from, to) = (from.as_nanos() as u64, to.as_nanos() as u64);
        all.iter()
            .filter(|(sent, _)| (from..to).contains(sent))
            .map(|&(_, lat)| lat)
            .collect()
    };
    let baseline = window(WARMUP, WARMUP + BASELINE);
    let during = window(burst_start, burst_end);
    login_times.sort();

    // The cost of one hash with the server's parameters, in this process
    // (same code, same build profile).
    let mut hash_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        loopchat::accounts::hash_password(PASSWORD)?;
        hash_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    hash_ms.sort_by(f64::total_cmp);

    // For comparison (docs/architecture.md): OWASP's first argon2id setting.
    let owasp = median_ms(|| {
        use argon2::password_hash::PasswordHasher;
        let params = argon2::Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;

    println!(
        "login_burst: {USERS} users, {SENDERS} senders x {RATE_PER_SENDER} lines/s, burst of {BURST} logins ({BURST_LOGINS} existing accounts, {} registrations)",
        BURST - BURST_LOGINS
    );
    println!("{}", summary("baseline", &baseline));
    println!("{}", summary("during burst", &during));
    println!(
        "burst: {:.1} ms from start to the last welcome; per-login time to welcome p50 {:.1} ms, max {:.1} ms",
        (burst_end - burst_start).as_secs_f64() * 1e3,
        login_times[login_times.len() / 2].as_secs_f64() * 1e3,
        login_times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    println!(
        "one argon2id hash (m=8 MiB, t=2, p=1): median {:.2} ms, min {:.2} ms, max {:.2} ms",
        hash_ms[hash_ms.len() / 2],
        hash_ms[0],
        hash_ms[hash_ms.len() - 1]
    );
    println!("for comparison, OWASP's m=19 MiB, t=2, p=1: median {owasp:.2} ms");
    drop(keep);
    Ok(())
}

/// The median of 10 runs of `f`, in ms.
fn median_ms(mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// `NAME: N lines, p50 .. p99 .. max ..` in ms.
fn summary(name: &str, lat: &[u64]) -> String {
    if lat.is_empty() {
        return format!("{name}: no lines");
    }
    let mut v = lat.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    format!(
        "{name}: {} deliveries, latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        v.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
