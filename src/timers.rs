//! Every timer the loop has, in one min-heap.
//!
//! The loop sleeps in `poll()` for exactly as long as the earliest timer
//! allows, and with no timeout at all when there is none: an idle server
//! makes no wake-ups. Timers are never removed early; each one names the
//! connection it is for by slab key *and* serial number, and when it fires
//! the loop checks that the connection still exists and still needs it
//! (lazy cancellation). That is cheaper and simpler than finding and removing
//! a heap entry every time a user does something.

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

/// A min-heap of (deadline, timer).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
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
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
}
