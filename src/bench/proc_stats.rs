//! What a process costs, read from /proc: resident memory, CPU time, threads
//! and write syscalls.
//!
//! Used for the server (`--server-pid`) and for the bench itself, so a report
//! can show which side was the limit. Linux only; elsewhere the reads fail
//! and the figures are left out.

use std::io;

/// One reading of /proc/PID.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS over the process's life), KiB.
    pub hwm_kib: u64,
    pub threads: u64,
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// Write-like syscalls so far (`syscw` in /proc/PID/io); `None` when not
    /// readable (another user's process).
    pub syscw: Option<u64>,
}

/// `read` for each of `pids`, summed: memory, CPU and syscalls add up;
/// `threads` is the most any one has (several single-threaded servers
/// show 1). Fails if any of them cannot be read.
pub fn sample_all(
    pids: &[u32],
    read: impl Fn(u32) -> io::Result<ProcSample>,
) -> io::Result<ProcSample> {
    let mut all = ProcSample {
        syscw: Some(0),
        ..ProcSample::default()
    };
    for &pid in pids {
        let s = read(pid)?;
        all.rss_kib += s.rss_kib;
        all.hwm_kib += s.hwm_kib;
        all.threads = all.threads.max(s.threads);
        all.cpu_s += s.cpu_s;
        all.syscw = all.syscw.zip(s.syscw).map(|(a, b)| a + b);
    }
    Ok(all)
}

/// Reads /proc/PID/{status,stat,io}.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let io_text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok();
    let mut s = parse_status(&status);
    s.cpu_s = parse_stat_cpu(&stat, clock_ticks())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc/PID/stat"))?;
    s.syscw = io_text.as_deref().and_then(parse_syscw);
    Ok(s)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn kib_field(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn parse_status(text: &str) -> ProcSample {
    let mut s = ProcSample::default();
    for line in text.lines() {
        if line.starts_with("VmRSS:") {
            s.rss_kib = kib_field(line);
        } else if line.starts_with("VmHWM:") {
            s.hwm_kib = kib_field(line);
        } else if line.starts_with("Threads:") {
            s.threads = kib_field(line);
        }
    }
    s
}

/// utime + stime (fields 14 and 15) in seconds. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu(text: &str, ticks_per_s: f64) -> Option<f64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' comes field 3 (state); utime is field 14: skip 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_s)
}

pub fn parse_syscw(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The syscalls that write to a socket. `syscw` in /proc/PID/io misses
/// `send`/`sendto`/`sendmsg` (Rust's std and mio write sockets with `send`),
/// so the write count comes from perf's syscall tracepoints when perf is
/// available, and from `syscw` otherwise.
pub const WRITE_SYSCALLS: &str = "syscalls:sys_enter_write,syscalls:sys_enter_writev,\
syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg";

/// A `perf stat` attached to a process, counting its write syscalls.
pub struct SyscallCounter {
    child: std::process::Child,
}

impl SyscallCounter {
    /// Attaches to `pids` (all their threads). `None` if there are none
    /// or perf cannot run.
    pub fn start(pids: &[u32]) -> Option<SyscallCounter> {
        if pids.is_empty() {
            return None;
        }
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = std::process::Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                WRITE_SYSCALLS,
                "-p",
                &pids.join(","),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        Some(SyscallCounter { child })
    }

    /// Stops perf and returns the total, `None` if it counted nothing usable.
    ///
    /// perf prints its counts when SIGINT stops it, but a SIGINT that comes
    /// while it is still attaching (a window of a few milliseconds after
    /// `start`) can be lost, and perf then runs on: waiting for it hung a
    /// peers bench for minutes. So SIGINT is repeated for at most
    /// `PERF_STOP`, then perf is killed and its figure is `None`.
    pub fn stop(mut self) -> Option<u64> {
        const PERF_STOP: std::time::Duration = std::time::Duration::from_secs(3);
        const RETRY: std::time::Duration = std::time::Duration::from_millis(50);
        let pid = libc::pid_t::try_from(self.child.id()).ok()?;
        let give_up = std::time::Instant::now() + PERF_STOP;
        loop {
            // SAFETY: signalling our own child process, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
            std::thread::sleep(RETRY);
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < give_up => {}
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
        let mut err = String::new();
        use std::io::Read as _;
        self.child.stderr.take()?.read_to_string(&mut err).ok()?;
        parse_perf_csv(&err)
    }
}

/// Sums the counts in `perf stat -x,` output (`count,unit,event,...` lines).
pub fn parse_perf_csv(text: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines() {
        let mut f = line.split(',');
        let (Some(count), Some(_unit), Some(event)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if !event.starts_with("syscalls:") {
            continue;
        }
        if let Ok(n) = count.trim().parse::<u64>() {
            total = Some(total.unwrap_or(0) + n);
        }
    }
    total
}

/// Reads only VmRSS and VmHWM (/proc/PID/status): what the frequent memory
/// sampling needs, one small read instead of three files.
pub fn sample_rss(pid: u32) -> io::Result<ProcSample> {
    Ok(parse_status(&std::fs::read_to_string(format!(
        "/proc/{pid}/status"
    ))?))
}

/// The server's resident memory sampled often over a run, so that a peak
/// lasting a fraction of a second (a join storm's send queues, a backlog
/// held for paused readers) is seen. VmHWM alone would not do: it is the
/// peak over the process's whole life, earlier runs and phases included.
#[derive(Debug, Clone, Default)]
pub struct RssTrack {
    pub samples: u64,
    pub start_kib: u64,
    pub last_kib: u64,
    pub peak_kib: u64,
    /// When the peak was sampled (seconds since the track began) and in
    /// which phase of the run.
    pub peak_at_s: f64,
    pub peak_phase: &'static str,
    /// Each phase's peak, in the order the phases began.
    pub by_phase: Vec<(&'static str, u64)>,
    /// Each phase's first sample (taken as it begins): the RSS the phase
    /// started from.
    pub phase_start: Vec<(&'static str, u64)>,
    /// VmHWM at the last sample.
    pub hwm_kib: u64,
    phase: &'static str,
}

impl RssTrack {
    pub fn new(phase: &'static str) -> RssTrack {
        RssTrack {
            phase,
            peak_phase: phase,
            ..RssTrack::default()
        }
    }

    /// From now on samples belong to `phase`.
    pub fn set_phase(&mut self, phase: &'static str) {
        self.phase = phase;
    }

    pub fn phase(&self) -> &'static str {
        self.phase
    }

    /// Records one reading taken `at_s` seconds into the track.
    pub fn record(&mut self, s: ProcSample, at_s: f64) {
        if self.samples == 0 {
            self.start_kib = s.rss_kib;
        }
        self.samples += 1;
        self.last_kib = s.rss_kib;
        self.hwm_kib = s.hwm_kib;
        if s.rss_kib > self.peak_kib {
            self.peak_kib = s.rss_kib;
            self.peak_at_s = at_s;
            self.peak_phase = self.phase;
        }
        match self.by_phase.iter_mut().find(|(p, _)| *p == self.phase) {
            Some((_, peak)) => *peak = (*peak).max(s.rss_kib),
            None => {
                self.by_phase.push((self.phase, s.rss_kib));
                self.phase_start.push((self.phase, s.rss_kib));
            }
        }
    }

    /// The first sample of `phase` (0 when it was not sampled).
    pub fn start_of(&self, phase: &str) -> u64 {
        self.phase_start
            .iter()
            .find(|(p, _)| *p == phase)
            .map_or(0, |&(_, kib)| kib)
    }

    /// The highest sample over `phases` (0 when none was sampled in them).
    pub fn peak_in(&self, phases: &[&str]) -> u64 {
        self.by_phase
            .iter()
            .filter(|(p, _)| phases.contains(p))
            .map(|&(_, kib)| kib)
            .max()
            .unwrap_or(0)
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (10,000 clients
/// need 10,000 descriptors). Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for the duration of the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_several_processes_add_up() {
        let one = |pid: u32| -> io::Result<ProcSample> {
            Ok(ProcSample {
                rss_kib: 1000 * u64::from(pid),
                hwm_kib: 2000 * u64::from(pid),
                threads: u64::from(pid),
                cpu_s: 0.5,
                syscw: (pid != 3).then_some(7),
            })
        };
        let s = sample_all(&[1, 2], one).unwrap();
        assert_eq!((s.rss_kib, s.hwm_kib, s.threads), (3000, 6000, 2));
        assert_eq!((s.cpu_s, s.syscw), (1.0, Some(14)));
        // One without syscw (another user's): no total.
        assert_eq!(sample_all(&[1, 3], one).unwrap().syscw, None);
        let gone = |_| Err(io::Error::from(io::ErrorKind::NotFound));
        assert!(sample_all(&[1], gone).is_err());
    }

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n";
        let s = parse_status(status);
        assert_eq!((s.rss_kib, s.hwm_kib, s.threads), (1024, 2048, 3));
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(stat, 100.0), Some(2.0));
        assert_eq!(parse_syscw("rchar: 1\nsyscw: 77\n"), Some(77));
        let perf = "12,,syscalls:sys_enter_write,1000,100.00,,\n30,,syscalls:sys_enter_sendto,1000,100.00,,\n<not counted>,,syscalls:sys_enter_writev,0,0,,\n";
        assert_eq!(parse_perf_csv(perf), Some(42));
        assert_eq!(parse_perf_csv("garbage"), None);
    }

    #[test]
    fn samples_itself() {
        let s = sample(std::process::id()).expect("own /proc");
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
        let r = sample_rss(std::process::id()).expect("own /proc");
        assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib, "{r:?}");
    }

    #[test]
    fn rss_track_keeps_peaks_by_phase() {
        let at = |rss_kib, hwm_kib| ProcSample {
            rss_kib,
            hwm_kib,
            ..ProcSample::default()
        };
        let mut t = RssTrack::new("join");
        t.record(at(100, 100), 0.0);
        t.record(at(300, 300), 0.5);
        t.set_phase("send");
        t.record(at(200, 300), 1.0);
        t.record(at(250, 300), 1.5);
        t.set_phase("join");
        t.record(at(120, 300), 2.0);
        assert_eq!((t.samples, t.start_kib, t.last_kib), (5, 100, 120));
        assert_eq!((t.peak_kib, t.peak_at_s, t.peak_phase), (300, 0.5, "join"));
        assert_eq!(t.by_phase, [("join", 300), ("send", 250)]);
        assert_eq!(t.phase_start, [("join", 100), ("send", 200)]);
        assert_eq!((t.start_of("send"), t.start_of("drain")), (200, 0));
        assert_eq!(t.peak_in(&["send", "drain"]), 250);
        assert_eq!(t.peak_in(&["drain"]), 0);
        assert_eq!(t.hwm_kib, 300);
    }
}
