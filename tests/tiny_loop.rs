//! `examples/tiny_loop.rs`, the 150-line loop (issue 16), as a chat between
//! two clients that behave like `nc`, so the example never rots; and one of
//! its deliberate flaws, shown, since that flaw is what loopchat fixes.
//!
//! The example's binary is `target/<profile>/examples/tiny_loop`. A test
//! cannot ask cargo for it, so it is looked up beside this test's own
//! executable. `cargo build --examples` and a plain `cargo test` build it;
//! `cargo test --all-targets` does not (it builds examples as test
//! harnesses, without their `main`), so .ci/run runs `cargo build
//! --examples` first. When the binary is missing or older than its source,
//! the tests say so on stderr (uncaptured) and pass.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Client;

const GREETING: &str = "* Welcome to tiny_loop! What shall I call you?";

/// The example's binary: tests run from `target/<profile>/deps/`, examples
/// are built into `target/<profile>/examples/`. `Err` says why it cannot
/// be used.
fn example_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("no target dir")?;
    let bin = profile_dir
        .join("examples")
        .join(format!("tiny_loop{}", std::env::consts::EXE_SUFFIX));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let Ok(built) = modified(&bin) else {
        return Err(format!("{} is not built", bin.display()));
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny_loop.rs");
    match modified(&source) {
        Ok(edited) if edited > built => Err(format!("{} is older than its source", bin.display())),
        _ => Ok(bin),
    }
}

/// The example running on a free port, killed when dropped.
struct TinyLoop {
    child: Child,
    addr: SocketAddr,
}

impl TinyLoop {
    /// Starts it on 127.0.0.1:0; `None` (with a note on stderr) if it is
    /// not built or stale.
    fn start() -> Option<TinyLoop> {
        let bin = match example_binary() {
            Ok(bin) => bin,
            Err(why) => {
                // .ci/run builds the examples first: there, missing is a bug.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must run the tiny loop: {why}"
                );
                // Straight to stderr, not `eprintln!`, which the test
                // harness captures and hides for a test that passes.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {why}; run `cargo build --examples`, then this test again"
                );
                return None;
            }
        };
        let mut child = Command::new(&bin)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut first)
            .expect("read the listening line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("an address");
        Some(TinyLoop { child, addr })
    }

    /// Connects, checks the greeting, and gives `nick` as the first line.
    fn join(&self, nick: &str) -> Client {
        let mut c = Client::connect(self.addr);
        c.expect(GREETING);
        c.send(nick);
        c
    }

    /// The server's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        common::proc_status(self.child.id(), "VmRSS")
    }
}

impl Drop for TinyLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two users chat through the tiny loop as they would with `nc`: greeting,
/// nickname, join notice, lines both ways, a line split across two writes
/// (with `\r\n`, as `nc -C` sends), and the leave notice, with the last line
/// a client sent just before closing still relayed (`Ok(0)` comes after it).
#[test]
fn two_users_chat_through_the_tiny_loop() {
    let Some(server) = TinyLoop::start() else {
        return;
    };
    let mut alice = server.join("alice");
    alice.expect("* Welcome, alice! 1 online.");
    let mut bob = server.join("bob");
    bob.expect("* Welcome, bob! 2 online.");
    alice.expect("* bob has joined");

    alice.send("hi bob");
    bob.expect("[alice] hi bob");
    bob.send("hi alice");
    alice.expect("[bob] hi alice");

    // The first half, then a round trip through the server, so that it has
    // almost surely read the halves apart (the assertion holds either way).
    alice.send_raw(b"half a ");
    bob.send("ping");
    alice.expect("[bob] ping");
    alice.send_raw(b"line\r\n");
    bob.expect("[alice] half a line");

    bob.send_raw(b"last words\n");
    bob.shutdown_write();
    alice.expect("[bob] last words");
    alice.expect("* bob has left");
    drop(bob);
}

/// Deliberate flaw 3, shown: the tiny loop has no line-length limit, so
/// 8 MiB sent without a newline all stay in its memory, and its resident
/// size grows by about as much. This is what the real server fixes:
/// loopchat's `LineFramer` (src/framing.rs) reports the line as too long
/// before its newline and drops the rest as it streams in, so the same
/// attack costs it at most `--max-line` bytes
/// (`hostile_bytes_do_not_hurt_the_others` in tests/protections.rs sends
/// 10 MB and allows 4 MiB of growth).
#[test]
fn flaw_a_line_without_newline_grows_its_memory() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: u64 = 8;
    let Some(server) = TinyLoop::start() else {
        return;
    };
    let mut alice = server.join("alice");
    alice.expect("* Welcome, alice! 1 online.");
    let base_kib = server.rss_kib();

    let mut big = Client::connect(server.addr);
    big.expect(GREETING);
    let chunk = vec![b'x'; CHUNK];
    for _ in 0..CHUNKS {
        big.send_raw(&chunk);
    }
    // Nothing answers a line that never ends, so watch /proc instead.
    let want_kib = base_kib + CHUNKS * 1024 * 3 / 4;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut rss_kib = server.rss_kib();
    while rss_kib < want_kib && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        rss_kib = server.rss_kib();
    }
    assert!(
        rss_kib >= want_kib,
        "RSS {rss_kib} KiB from {base_kib} KiB after {CHUNKS} MiB without a newline: \
         the tiny loop was expected to keep it all"
    );

    // Memory, not a crash: the room still works.
    let mut bob = server.join("bob");
    bob.expect("* Welcome, bob! 2 online.");
    alice.expect("* bob has joined");
    bob.send("still here?");
    alice.expect("[bob] still here?");
}
