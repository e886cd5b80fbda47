//! The server's log: one line per record, to stderr and optionally a file,
//! built so that logging cannot stall the one thread that serves everyone.
//!
//! Lines look like `2026-11-30T04:01:02.345+01:00 [INFO] accepted ...`: the
//! date and local time with its UTC offset (ISO 8601), so a log file that
//! lives for weeks is unambiguous.
//!
//! # Why not a plain `write` to stderr
//!
//! If stderr is a pipe that nobody reads (a crashed log collector, a
//! `2>&1 | less` left in the background), a blocking write stops the whole
//! loop once the pipe's 64 KiB are full: the room freezes. So stderr is
//! written **without ever blocking**; what cannot be written is dropped and
//! counted, and the count is reported (`N log lines dropped ...`) as soon as
//! stderr takes lines again. How depends on what fd 2 is (see [`Stderr`]):
//!
//! - a pipe or a terminal: we open our *own* file description of it
//!   (`/proc/self/fd/2`) with `O_NONBLOCK`. Setting `O_NONBLOCK` on fd 2
//!   itself would change the description we share with the parent (a shell
//!   whose terminal suddenly returns `EAGAIN`), so we do not.
//! - a socket (systemd's journal): `send` with `MSG_DONTWAIT`, per call.
//! - a regular file or anything else: plain writes (a disk file does not
//!   fill up the way a pipe does; `O_NONBLOCK` means nothing to it).
//!
//! The `--log-file` is a regular file, written directly. It is created with
//! mode 0640 (it names users and addresses) and reopened on SIGHUP
//! ([`reopen`]), so logrotate can move it away.
//!
//! # Repeated lines
//!
//! A connection storm would still write a line per connection. The loop
//! asks a [`Limiter`] before logging the lines that come in storms; it lets
//! a few through per kind and address each second and sums up the rest.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use log::{LevelFilter, Log, Metadata, Record};

use crate::config;

/// The installed logger; `None` until [`init`] (tests of the library log
/// nowhere).
static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger: records up to `level` go to stderr, and with
/// `file`, also to that file (appended; created 0640).
pub fn init(level: LevelFilter, file: Option<&Path>) -> Result<(), String> {
    let log_file = file
        .map(|p| {
            open_log_file(p)
                .map(|f| (p.to_path_buf(), f))
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))
        })
        .transpose()?;
    let logger = Logger {
        level,
        state: Mutex::new(State {
            stderr: Stderr::open(),
            tail: Vec::new(),
            dropped: 0,
            file: log_file,
            line: String::new(),
        }),
    };
    if LOGGER.set(logger).is_err() {
        return Err("the logger is already installed".into());
    }
    let Some(logger) = LOGGER.get() else {
        return Err("the logger is not installed".into());
    };
    log::set_logger(logger).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}

/// SIGHUP: closes the log file and opens it again under its name, so after
/// logrotate renamed it the new lines go to a new file. Logs the outcome.
/// Does nothing but log without `--log-file`.
pub fn reopen() {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let reopened = {
        let Ok(mut state) = logger.state.lock() else {
            return;
        };
        state
            .file
            .as_mut()
            .map(|(path, file)| match open_log_file(path) {
                Ok(new) => {
                    *file = new;
                    Ok(path.clone())
                }
                // Keep writing to the old file: a log somewhere beats none.
                Err(e) => Err(format!("{}: {e}", path.display())),
            })
    };
    match reopened {
        None => log::info!("SIGHUP: no --log-file to reopen"),
        Some(Ok(path)) => log::info!("SIGHUP: log file reopened: {}", path.display()),
        Some(Err(e)) => {
            log::warn!("SIGHUP: cannot reopen the log file, still writing the old one: {e}")
        }
    }
}

/// Appending, created 0640 (the umask may take more away).
fn open_log_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

struct Logger {
    level: LevelFilter,
    /// The server has one thread; the lock only satisfies `Log: Sync`.
    state: Mutex<State>,
}

struct State {
    stderr: Stderr,
    /// The unwritten end of a line stderr took only in part (a socket can
    /// take half a line); written before anything else.
    tail: Vec<u8>,
    /// Lines stderr could not take since the last report.
    dropped: u64,
    file: Option<(PathBuf, File)>,
    /// Formatting buffer, reused.
    line: String,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let state = &mut *state;
        let stamp = timestamp();
        state.line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(state.line, "{stamp} [{}] {}", record.level(), record.args());
        if let Some((_, file)) = &mut state.file {
            // A regular file: a plain write (see the module docs).
            let _ = file.write_all(state.line.as_bytes());
        }
        let line = std::mem::take(&mut state.line);
        if state.dropped > 0 {
            let note = format!(
                "{stamp} [WARN] {} log lines dropped: stderr was not being read\n",
                state.dropped
            );
            if !state.offer(note.as_bytes()) {
                state.dropped += 1;
                state.line = line;
                return;
            }
            state.dropped = 0;
        }
        if !state.offer(line.as_bytes()) {
            state.dropped += 1;
        }
        state.line = line;
    }

    fn flush(&self) {}
}

impl State {
    /// Writes `bytes` to stderr without blocking, after any unfinished
    /// line. Returns `false` if nothing of `bytes` could be written (the
    /// line is dropped); a partly written line is finished later.
    fn offer(&mut self, bytes: &[u8]) -> bool {
        while !self.tail.is_empty() {
            match self.stderr.write(&self.tail) {
                Ok(n) if n > 0 => {
                    self.tail.drain(..n);
                }
                _ => return false,
            }
        }
        match self.stderr.write(bytes) {
            Ok(n) if n > 0 => {
                self.tail.extend_from_slice(&bytes[n..]);
                true
            }
            _ => false,
        }
    }
}

/// How stderr is written without blocking; chosen once by what fd 2 is.
enum Stderr {
    /// Our own `O_NONBLOCK` description of the pipe or terminal on fd 2.
    Own(File),
    /// fd 2 is a socket: `send(MSG_DONTWAIT)`.
    Socket,
    /// A regular file (or a pipe we could not reopen): plain writes.
    Plain,
}

impl Stderr {
    fn open() -> Stderr {
        // SAFETY: fstat only fills the struct we pass; zeroed is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(2, &mut st) } != 0 {
            return Stderr::Plain;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFSOCK => Stderr::Socket,
            libc::S_IFIFO | libc::S_IFCHR => {
                use std::os::unix::fs::OpenOptionsExt;
                // O_NOCTTY: opening a terminal must not make it ours.
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open("/proc/self/fd/2")
                    .map_or(Stderr::Plain, Stderr::Own)
            }
            _ => Stderr::Plain,
        }
    }

    /// One write attempt; `WouldBlock` when the reader is behind.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stderr::Own(f) => f.write(bytes),
            Stderr::Plain => io::stderr().write(bytes),
            Stderr::Socket => {
                let fd = io::stderr().as_raw_fd();
                // SAFETY: send reads `bytes.len()` bytes from a valid slice.
                let n = unsafe {
                    libc::send(
                        fd,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }
}

/// `2026-11-30T04:01:02.345+01:00`, local time.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_local(now.as_secs() as i64, now.subsec_millis())
}

fn format_local(unix_secs: i64, millis: u32) -> String {
    let t = unix_secs as libc::time_t;
    // SAFETY: localtime_r only writes the struct we pass; zeroed is a valid tm.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        // No time zone data: print UTC as the seconds count, still dated.
        return format!("{unix_secs}.{millis:03}");
    }
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
}

/// Lines that come in storms, each limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Accepted,
    RefusedFull,
    RefusedPerAddress,
    RefusedNoDescriptors,
}

impl Kind {
    /// What the summary line counts: "N more {noun} from ADDR ...".
    fn noun(self) -> &'static str {
        match self {
            Kind::Accepted => "connections accepted",
            Kind::RefusedFull => "connections refused (server full)",
            Kind::RefusedPerAddress => "connections refused (too many from the address)",
            Kind::RefusedNoDescriptors => "connections refused (out of file descriptors)",
        }
    }
}

/// What a [`Limiter`] held back for one kind and address in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub kind: Kind,
    pub addr: IpAddr,
    pub count: u64,
}

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} more {} from {} in the last second",
            self.count,
            self.kind.noun(),
            self.addr
        )
    }
}

/// Rate limits log lines per kind and address: in each window of
/// [`config::LOG_REPEAT_WINDOW`] from the first line, the first
/// [`config::LOG_REPEATS`] are logged, the rest only counted. Pure: time is
/// a parameter. The loop calls [`Limiter::flush`] every turn and wakes up
/// for [`Limiter::next_flush`], so each count is logged about a second after
/// its window opened.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<(Kind, IpAddr), Window>,
    /// The windows in the order they opened (`now` never goes back), so
    /// the ones that are over are at the front: a turn looks at those only.
    order: VecDeque<(Instant, Kind, IpAddr)>,
    /// Windows that hold a count back.
    holding: usize,
}

#[derive(Debug)]
struct Window {
    logged: u32,
    suppressed: u64,
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// Whether a line of `kind` about `addr` should be logged now; if not,
    /// it is counted for the summary.
    pub fn admit(&mut self, kind: Kind, addr: IpAddr, now: Instant) -> bool {
        let order = &mut self.order;
        let w = self.windows.entry((kind, addr)).or_insert_with(|| {
            order.push_back((now, kind, addr));
            Window {
                logged: 0,
                suppressed: 0,
            }
        });
        if w.logged < config::LOG_REPEATS {
            w.logged += 1;
            return true;
        }
        if w.suppressed == 0 {
            self.holding += 1;
        }
        w.suppressed += 1;
        false
    }

    /// Ends the windows that are over, passing each held-back count to
    /// `report` (a window with nothing held back ends silently).
    pub fn flush(&mut self, now: Instant, mut report: impl FnMut(Suppressed)) {
        while let Some(&(start, kind, addr)) = self.order.front() {
            if now.saturating_duration_since(start) < config::LOG_REPEAT_WINDOW {
                return;
            }
            self.order.pop_front();
            let Some(w) = self.windows.remove(&(kind, addr)) else {
                continue;
            };
            if w.suppressed > 0 {
                self.holding -= 1;
                report(Suppressed {
                    kind,
                    addr,
                    count: w.suppressed,
                });
            }
        }
    }

    /// When the loop must next wake to log a held-back count: the end of
    /// the oldest window (perhaps one with nothing held back: one spare
    /// wake-up). `None` if nothing is held back, so an idle loop sleeps.
    pub fn next_flush(&self) -> Option<Instant> {
        if self.holding == 0 {
            return None;
        }
        self.order
            .front()
            .map(|&(start, ..)| start + config::LOG_REPEAT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_few_lines_then_a_summary_per_kind_and_address() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let n = config::LOG_REPEATS as usize;
        let logged = (0..100).filter(|_| l.admit(Kind::Accepted, a, t0)).count();
        assert_eq!(logged, n);
        // Another address and another kind have budgets of their own.
        assert!(l.admit(Kind::Accepted, b, t0));
        assert!(l.admit(Kind::RefusedFull, a, t0));
        assert_eq!(l.next_flush(), Some(t0 + config::LOG_REPEAT_WINDOW));
        let mut out = Vec::new();
        l.flush(t0 + Duration::from_millis(999), |s| out.push(s));
        assert!(out.is_empty(), "the window is not over yet");
        l.flush(t0 + config::LOG_REPEAT_WINDOW, |s| out.push(s));
        assert_eq!(
            out,
            [Suppressed {
                kind: Kind::Accepted,
                addr: a,
                count: 100 - n as u64
            }]
        );
        assert_eq!(
            out[0].to_string(),
            format!(
                "{} more connections accepted from 10.0.0.1 in the last second",
                100 - n
            )
        );
        // Everything flushed: nothing left to wake up for, a fresh budget.
        assert_eq!(l.next_flush(), None);
        assert!(l.windows.is_empty() && l.order.is_empty());
        assert!(l.admit(Kind::Accepted, a, t0 + config::LOG_REPEAT_WINDOW));
    }

    #[test]
    fn windows_end_one_by_one() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..10 {
            l.admit(Kind::RefusedFull, a, t0);
        }
        for _ in 0..7 {
            l.admit(Kind::RefusedFull, b, t1);
        }
        let mut out = Vec::new();
        l.flush(t0 + config::LOG_REPEAT_WINDOW, |s| out.push(s));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].addr, out[0].count),
            (a, 10 - config::LOG_REPEATS as u64)
        );
        assert_eq!(l.next_flush(), Some(t1 + config::LOG_REPEAT_WINDOW));
        l.flush(t1 + config::LOG_REPEAT_WINDOW, |s| out.push(s));
        assert_eq!(
            (out[1].addr, out[1].count),
            (b, 7 - config::LOG_REPEATS as u64)
        );
        assert_eq!(l.next_flush(), None);
    }

    #[test]
    fn quiet_kinds_are_never_summarised() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let a: IpAddr = "::1".parse().unwrap();
        assert!(l.admit(Kind::RefusedPerAddress, a, t0));
        assert_eq!(l.next_flush(), None);
        let mut out = Vec::new();
        l.flush(t0 + Duration::from_secs(5), |s| out.push(s));
        assert!(out.is_empty());
    }

    #[test]
    fn timestamps_carry_the_date_and_offset() {
        let s = format_local(1_700_000_000, 7);
        // e.g. 2023-11-14T22:13:20.007+00:00
        assert_eq!(s.len(), 29, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
        assert_eq!(&s[19..23], ".007");
        assert!(s[23..24] == *"+" || s[23..24] == *"-", "{s}");
    }

    #[test]
    fn a_full_pipe_drops_and_counts_then_reports() {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors, which we then own.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let mut state = State {
            stderr: Stderr::Own(wr),
            tail: Vec::new(),
            dropped: 0,
            file: None,
            line: String::new(),
        };
        let line = [b'x'; 1000];
        let mut accepted = 0;
        let mut refused = 0;
        for _ in 0..1000 {
            if state.offer(&line) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(refused > 0 && accepted > 0, "{accepted} {refused}");
        // Draining the pipe lets lines through again, never blocking.
        let mut sink = vec![0u8; 1 << 20];
        use std::io::Read;
        let _ = rd.read(&mut sink).unwrap();
        assert!(state.offer(b"again\n"));
    }
}
