//! Flood control: a token bucket per connection. Pure: time is a parameter.
//!
//! Each line costs one token; tokens refill at `rate` per second up to
//! `burst`. When the bucket is empty the event loop simply stops reading that
//! socket until [`TokenBucket::ready_at`]: the kernel's receive buffer fills,
//! TCP flow control slows the sender, and nothing is lost or buffered by us.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; 0 disables the limit.
    rate: u32,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate == 0` means unlimited.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(f64::from(self.burst));
        self.last = now;
    }

    /// Whether a token is available at `now` (without taking it).
    pub fn ready(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Spends a token; call after [`ready`](Self::ready) said yes.
    pub fn take(&mut self) {
        if self.rate != 0 {
            self.tokens -= 1.0;
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let ready = self.ready(now);
        if ready {
            self.take();
        }
        ready
    }

    /// When the next token will be there (`now` if it already is).
    pub fn ready_at(&self, now: Instant) -> Instant {
        if self.rate == 0 || self.tokens >= 1.0 {
            return now;
        }
        let missing = 1.0 - self.tokens;
        self.last + Duration::from_secs_f64(missing / f64::from(self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert_eq!((0..100).filter(|_| b.try_take(t0)).count(), 20);
        let next = b.ready_at(t0);
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(!b.try_take(next - Duration::from_millis(1)));
        assert!(b.try_take(next));
        // one second later: ten more, not more
        let t1 = next + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.try_take(t1)).count(), 10);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!((0..10_000).all(|_| b.try_take(t0)));
    }
}
