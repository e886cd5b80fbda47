//! Golden transcripts: what each user received, byte for byte, kept in
//! `tests/transcripts/NAME.txt` and compared on every run.
//!
//! They pin today's output so that a reshaped chat core (events rendered by
//! a dialect) can be shown to produce exactly the same bytes. When a change
//! of output is intended, regenerate them and review the diff:
//!
//! ```text
//! LOOPCHAT_BLESS=1 cargo test --test transcripts --test core_properties
//! git diff tests/transcripts/
//! ```
//!
//! A transcript lists the steps of a script, then, for each connection, the
//! lines it received, each tagged with the step that caused it. Bytes are
//! written with `escape_ascii`, so a missing `\n`, a `\r` or a non-ASCII
//! byte is visible and exact.
#![allow(dead_code)] // each test file uses a different part of this

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use loopchat::accounts::AuthJob;
use loopchat::chat::{ConnId, Event, LeaveReason, Refusal};
use loopchat::framing::{Frame, LineFramer};
use loopchat::hub::{Hub, Outbox};

/// Set to regenerate the golden files instead of comparing with them.
pub const BLESS_VAR: &str = "LOOPCHAT_BLESS";

/// Bytes as text: printable ASCII as is, everything else escaped.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// One connection's received bytes, cut after each `\n`, each piece
/// tagged with `step`.
pub fn push_lines(into: &mut Vec<(usize, String)>, step: usize, bytes: &[u8]) {
    for piece in bytes.split_inclusive(|&b| b == b'\n') {
        into.push((step, format!("< \"{}\"", escape(piece))));
    }
}

/// Compares `text` with `tests/transcripts/{name}.txt`, or writes it there
/// when `LOOPCHAT_BLESS` is set. Panics with the first difference.
#[track_caller]
pub fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(format!("{name}.txt"));
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .expect("create tests/transcripts");
        std::fs::write(&path, text).expect("write the golden transcript");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with {BLESS_VAR}=1 to create it",
            path.display()
        )
    });
    if want == text {
        return;
    }
    let line = want
        .lines()
        .zip(text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| want.lines().count().min(text.lines().count()));
    panic!(
        "{} differs from this run at line {}:\n  golden: {:?}\n  now:    {:?}\n\
         (if the change is intended: {BLESS_VAR}=1 cargo test --test NAME, then review git diff)\n\
         --- whole transcript now ---\n{text}",
        path.display(),
        line + 1,
        want.lines().nth(line).unwrap_or("<end>"),
        text.lines().nth(line).unwrap_or("<end>"),
    );
}

/// Everything the room asked of its outbox, per connection.
#[derive(Default)]
pub struct Recording {
    /// The step being run; every output is tagged with it.
    pub step: usize,
    pub per_conn: BTreeMap<ConnId, Vec<(usize, String)>>,
    /// Connections the room closed and has not seen reconnect.
    pub closed: Vec<ConnId>,
    /// Password checks asked for, oldest first.
    pub jobs: Vec<(ConnId, AuthJob)>,
}

impl Outbox for Recording {
    fn send(&mut self, to: ConnId, line: &[u8]) {
        let step = self.step;
        push_lines(self.per_conn.entry(to).or_default(), step, line);
    }
    fn close(&mut self, conn: ConnId) {
        let step = self.step;
        self.per_conn
            .entry(conn)
            .or_default()
            .push((step, "closed".to_string()));
        self.closed.push(conn);
    }
    fn authenticate(&mut self, conn: ConnId, job: AuthJob) {
        let step = self.step;
        self.per_conn
            .entry(conn)
            .or_default()
            .push((step, format!("password check asked for {:?}", job.name)));
        self.jobs.push((conn, job));
    }
    fn wake_at(&mut self, _at: Instant) {
        // Deadlines are instants, not bytes; the scripts expire explicitly.
    }
}

/// A room driven by a script, through real line framers, recording a
/// transcript of inputs and of what each connection received.
pub struct Script {
    pub room: Hub,
    pub out: Recording,
    framers: BTreeMap<ConnId, LineFramer>,
    max_line: usize,
    steps: String,
    /// The script's clock: a fixed start plus what `advance` added.
    pub now: Instant,
}

impl Script {
    pub fn new(max_line: usize) -> Script {
        let now = Instant::now();
        let mut room = Hub::new(max_line);
        room.set_now(now);
        Script {
            room,
            out: Recording::default(),
            framers: BTreeMap::new(),
            max_line,
            steps: String::new(),
            now,
        }
    }

    /// Starts a step described by `what`; returns nothing, outputs that
    /// follow are tagged with it.
    fn step(&mut self, what: &str) {
        self.out.step += 1;
        let _ = writeln!(self.steps, "{:4} {what}", self.out.step);
    }

    /// Whether `c` is connected (and not closed by the room).
    pub fn is_open(&self, c: ConnId) -> bool {
        self.framers.contains_key(&c)
    }

    pub fn connect(&mut self, c: ConnId) {
        self.step(&format!("#{c} connects"));
        self.framers.insert(c, LineFramer::new(self.max_line));
        self.out.closed.retain(|&k| k != c);
        self.room.connected(c, &mut self.out);
    }

    /// `c` sends `bytes` in one read; every complete frame is handled, as
    /// the loop does, until the room closes `c`.
    pub fn send_bytes(&mut self, c: ConnId, bytes: &[u8]) {
        self.step(&format!("#{c} sends \"{}\"", escape(bytes)));
        self.feed(c, bytes);
    }

    /// `c` sends `line` and a `\n`.
    pub fn say(&mut self, c: ConnId, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send_bytes(c, &bytes);
    }

    /// Feeds bytes to `c`'s framer and the room, without a step of its own.
    pub fn feed(&mut self, c: ConnId, bytes: &[u8]) {
        let Some(framer) = self.framers.get_mut(&c) else {
            return;
        };
        framer.push(bytes);
        while let Some(framer) = self.framers.get_mut(&c) {
            let line = match framer.next_frame() {
                None => break,
                Some(Frame::TooLong) => None,
                Some(Frame::Line(l)) => Some(l.to_vec()),
            };
            match &line {
                Some(l) => self.room.handle_frame(c, Frame::Line(l), &mut self.out),
                None => self.room.handle_frame(c, Frame::TooLong, &mut self.out),
            }
            if self.out.closed.contains(&c) {
                self.framers.remove(&c);
            }
        }
    }

    /// The loop noticed `c` is gone for `reason`.
    pub fn gone(&mut self, c: ConnId, reason: LeaveReason) {
        self.step(&format!("#{c} is gone: {reason:?}"));
        self.framers.remove(&c);
        self.room.disconnected(c, &reason, &mut self.out);
    }

    /// The loop kicks `c`: it sends `refusal`'s line (the loop's, not the
    /// room's), then the room hears `c` left.
    pub fn kick(&mut self, c: ConnId, refusal: Refusal, reason: LeaveReason) {
        self.step(&format!("#{c} is kicked: {refusal:?}"));
        self.framers.remove(&c);
        let step = self.out.step;
        let line = loopchat::dialect::line::refusal_line(refusal);
        push_lines(
            self.out.per_conn.entry(c).or_default(),
            step,
            line.as_bytes(),
        );
        self.room.disconnected(c, &reason, &mut self.out);
    }

    /// Answers the oldest password check with `outcome`.
    pub fn auth_done(&mut self, outcome: loopchat::accounts::AuthOutcome) {
        let (c, _job) = self.out.jobs.remove(0);
        self.step(&format!("#{c}'s password check answers {outcome:?}"));
        self.room.auth_done(c, outcome, &mut self.out);
    }

    /// Time passes (for invitations), then the loop's expiry timer runs.
    pub fn advance_and_expire(&mut self, by: std::time::Duration) {
        self.now += by;
        self.step(&format!("{} s pass; invitations expire", by.as_secs()));
        self.room.set_now(self.now);
        self.room.expire_invites(&mut self.out);
    }

    /// The idle-timeout ping for `c`.
    pub fn ping(&mut self, c: ConnId, grace_secs: u64) {
        self.step(&format!("#{c} is pinged ({grace_secs} s grace)"));
        self.room
            .notify(c, &Event::Ping { grace_secs }, &mut self.out);
    }

    /// `--timestamps`: the clock the room shows from now on.
    pub fn clock(&mut self, hhmmss: Option<&str>) {
        self.step(&format!("the clock shows {hhmmss:?}"));
        self.room.set_clock(hhmmss);
    }

    pub fn shutdown(&mut self) {
        self.step("the server shuts down");
        self.room.shutdown(&mut self.out);
    }

    /// The transcript: the steps, then each connection's received lines.
    pub fn transcript(&self, title: &str) -> String {
        let mut t = format!("# {title}\n\nsteps:\n{}", self.steps);
        for (c, lines) in &self.out.per_conn {
            let _ = writeln!(t, "\nreceived by #{c}:");
            for (step, l) in lines {
                let _ = writeln!(t, "{step:4} {l}");
            }
        }
        t
    }
}
