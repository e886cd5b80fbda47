//! Every timer the loop has, in one min-heap.
//!
//! The loop sleeps in `poll()` for exactly as long as the earliest timer
//! allows, and with no timeout at all when there is none: an idle server
//! makes no wake-ups. Timers are never removed one by one; each names the
//! connection it is for by slab key *and* serial number, and when it fires
//! the loop checks that the connection still exists and still needs it
//! (lazy cancellation). That is cheaper and simpler than finding and removing
//! a heap entry every time a user does something.
//!
//! Lazy cancellation alone lets dead entries pile up under churn: every
//! connection leaves a registration deadline behind, so a server seeing 100
//! joins a second would hold 3,000 dead entries at the default 30 s. So when
//! the heap has doubled since it was last compacted, the loop rebuilds it
//! with only the live timers ([`Timers::needs_compaction`],
//! [`Timers::retain`]): O(n) once per doubling, O(1) per timer on average.
//! And like the send queues, the heap gives back memory a burst left behind.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What should happen when a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Close the connection if it has no nickname yet.
    RegisterDeadline { key: usize, serial: u64 },
    /// Check whether the connection has been silent too long.
    IdleCheck { key: usize, serial: u64 },
    /// The greeting hold is over: greet the connection if it said nothing.
    Greet { key: usize, serial: u64 },
    /// The connection's rate-limit bucket has a token again: resume reading.
    Refill { key: usize, serial: u64 },
    /// Give up on flushing a closing connection and close it now.
    Linger { key: usize, serial: u64 },
    /// Try `accept()` again after running out of file descriptors.
    ResumeAccept,
    /// Stop waiting for output to drain during shutdown.
    ShutdownDeadline,
    /// A private-conversation invitation is due to expire (the room asked).
    InviteExpiry,
    /// The Redis bridge's next deadline: a reconnect after backoff, a
    /// PING, a PING or connect timeout (see [`crate::bridge`]).
    Bridge,
}

/// How long `poll()` may sleep from `now` to wake at `at` (zero if past).
/// Rounded up to the next millisecond, epoll's resolution: rounding down
/// would wake us just before the deadline, find nothing due, and go around
/// again with a zero timeout.
pub fn until(at: Instant, now: Instant) -> Duration {
    let d = at.saturating_duration_since(now);
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(ms as u64)
}

/// Below this many entries the heap is never compacted: there is nothing
/// worth the scan.
const COMPACT_MIN: usize = 1024;
/// Capacity (entries) the heap keeps however empty it gets.
const KEEP_CAPACITY: usize = 64;

impl Timer {
    /// The kind's name, for `--trace-turns`.
    pub fn name(&self) -> &'static str {
        match self {
            Timer::RegisterDeadline { .. } => "RegisterDeadline",
            Timer::IdleCheck { .. } => "IdleCheck",
            Timer::Greet { .. } => "Greet",
            Timer::Refill { .. } => "Refill",
            Timer::Linger { .. } => "Linger",
            Timer::ResumeAccept => "ResumeAccept",
            Timer::ShutdownDeadline => "ShutdownDeadline",
            Timer::InviteExpiry => "InviteExpiry",
            Timer::Bridge => "Bridge",
        }
    }
}

/// A min-heap of (deadline, timer).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Twice the entries left by the last compaction: the next one is due
    /// when the heap is back to this size (and at least `COMPACT_MIN`).
    compact_at: usize,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    pub fn schedule(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// How long `poll()` may sleep: `None` (forever) when no timer is set.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| until(*at, now))
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let timer = self.heap.pop().map(|Reverse((_, t))| t);
                self.shrink();
                timer
            }
            _ => None,
        }
    }

    /// Whether the heap has grown enough since the last [`retain`] that
    /// the caller should run it again (it may be mostly dead entries).
    ///
    /// [`retain`]: Self::retain
    pub fn needs_compaction(&self) -> bool {
        self.heap.len() >= self.compact_at.max(COMPACT_MIN)
    }

    /// Keeps only the timers for which `live` says yes: those that would
    /// still do something when they fire. Order is kept; memory the dropped
    /// entries held is given back.
    pub fn retain(&mut self, mut live: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse((_, t))| live(t));
        self.compact_at = 2 * self.heap.len();
        self.shrink();
    }

    /// Gives back capacity once the heap uses a quarter of it or less,
    /// keeping twice what it holds (so shrinking again needs it to halve:
    /// a reallocation is paid for by the pops or pushes before it).
    fn shrink(&mut self) {
        let (len, capacity) = (self.heap.len(), self.heap.capacity());
        if capacity > KEEP_CAPACITY && capacity >= 4 * len {
            self.heap.shrink_to((2 * len).max(KEEP_CAPACITY));
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Entries the heap has room for without reallocating.
    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_no_timeout_when_empty() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        assert_eq!(timers.poll_timeout(t0), None);
        timers.schedule(t0 + Duration::from_secs(2), Timer::ShutdownDeadline);
        timers.schedule(t0 + Duration::from_micros(1500), Timer::ResumeAccept);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(2)));
        assert_eq!(timers.pop_due(t0), None);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(timers.pop_due(later), Some(Timer::ResumeAccept));
        assert_eq!(timers.pop_due(later), Some(Timer::ShutdownDeadline));
        assert!(timers.is_empty());
    }

    fn deadline(key: usize) -> Timer {
        Timer::RegisterDeadline {
            key,
            serial: key as u64,
        }
    }

    /// Churn: many timers, most of them dead by the time the heap is big.
    /// Compaction keeps the live ones in order and gives the memory back,
    /// and is not asked for again until the heap has doubled.
    #[test]
    fn compaction_keeps_live_timers_and_shrinks() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut asked = 0;
        for key in 0..5000 {
            // Later keys are due earlier, so the order is worth checking.
            timers.schedule(t0 + Duration::from_secs(10_000 - key as u64), deadline(key));
            if timers.needs_compaction() {
                asked += 1;
                timers
                    .retain(|t| matches!(t, Timer::RegisterDeadline { key, .. } if key % 100 == 0));
                assert!(timers.len() <= 50, "{}", timers.len());
                assert!(
                    timers.capacity() <= 2 * KEEP_CAPACITY,
                    "{}",
                    timers.capacity()
                );
            }
        }
        // The heap never held more than COMPACT_MIN entries at once: a
        // compaction at each 1,024 (never twice in a row).
        assert_eq!(asked, 4);
        assert!(timers.len() < COMPACT_MIN, "{}", timers.len());
        timers.retain(|t| matches!(t, Timer::RegisterDeadline { key, .. } if key % 100 == 0));
        assert_eq!(timers.len(), 50);
        assert!(!timers.needs_compaction());
        let later = t0 + Duration::from_secs(20_000);
        let keys: Vec<usize> = std::iter::from_fn(|| timers.pop_due(later))
            .map(|t| match t {
                Timer::RegisterDeadline { key, .. } => key,
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<usize> = (0..50).rev().map(|k| k * 100).collect();
        assert_eq!(keys, want);
    }

    /// A burst of live timers: once they have fired, the memory is back.
    #[test]
    fn capacity_shrinks_after_a_burst() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        for key in 0..100_000 {
            timers.schedule(t0, deadline(key));
        }
        assert!(timers.capacity() >= 100_000);
        let mut fired = 0;
        while timers.pop_due(t0).is_some() {
            fired += 1;
        }
        assert_eq!(fired, 100_000);
        assert!(timers.capacity() <= KEEP_CAPACITY, "{}", timers.capacity());
    }
}
