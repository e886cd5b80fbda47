//! Sequence accounting: what one receiver got from one sender.
//!
//! Each receiver keeps one [`SeqTracker`] per sender. Receipts normally come
//! in order; a gap is remembered as a range of missing numbers, so a late
//! arrival is told apart from a duplicate without storing every number seen.
//! What is still missing when the run ends (gaps and the tail after the last
//! receipt) is lost.
//!
//! A receiver that joins while a sender is already talking (the `storm`
//! workload) cannot know which message was the first one owed to it: the
//! server decides by when it handled the join. Its tracker starts at the
//! first number it receives ([`SeqTracker::late`]); from there on every
//! number is owed, which is exact for a server that relays one sender's
//! messages in order.

/// What one receipt turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// The next number expected.
    InOrder,
    /// Ahead of the next expected number: `skipped` numbers are now missing.
    Gap { skipped: u64 },
    /// A number that was missing: it came after a later one.
    Late,
    /// A number already received.
    Duplicate,
}

impl Receipt {
    /// Whether this receipt is a first delivery of its message.
    pub fn is_new(self) -> bool {
        !matches!(self, Receipt::Duplicate)
    }
}

/// Loss, duplicate and order accounting for one (receiver, sender) pair.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// The first number owed: 0, or (late) the first number received.
    start: u64,
    /// A late tracker that has received nothing yet: nothing is owed.
    waiting: bool,
    /// The next sequence number expected in order.
    next: u64,
    /// Missing numbers below `next`, as sorted disjoint half-open ranges.
    missing: Vec<(u64, u64)>,
    /// Distinct messages received.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl SeqTracker {
    /// A tracker for a receiver that joined after the sender started: it
    /// owes nothing until its first receipt, then everything after it.
    pub fn late() -> SeqTracker {
        SeqTracker {
            waiting: true,
            ..SeqTracker::default()
        }
    }

    pub fn observe(&mut self, seq: u64) -> Receipt {
        if self.waiting {
            self.waiting = false;
            self.start = seq;
            self.next = seq;
        }
        if seq < self.start {
            // Older than the first receipt of a late tracker: it came after
            // a later number, and was not owed.
            self.reordered += 1;
            return Receipt::Late;
        }
        if seq == self.next {
            self.next += 1;
            self.received += 1;
            return Receipt::InOrder;
        }
        if seq > self.next {
            let skipped = seq - self.next;
            self.missing.push((self.next, seq));
            self.next = seq + 1;
            self.received += 1;
            return Receipt::Gap { skipped };
        }
        // Below `next`: either a missing one arriving late, or a duplicate.
        let i = self.missing.partition_point(|&(_, end)| end <= seq);
        match self.missing.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (seq == start, seq + 1 == end) {
                    (true, true) => {
                        self.missing.remove(i);
                    }
                    (true, false) => self.missing[i].0 = seq + 1,
                    (false, true) => self.missing[i].1 = seq,
                    (false, false) => {
                        self.missing[i].1 = seq;
                        self.missing.insert(i + 1, (seq + 1, end));
                    }
                }
                self.received += 1;
                self.reordered += 1;
                Receipt::Late
            }
            _ => {
                self.duplicates += 1;
                Receipt::Duplicate
            }
        }
    }

    /// Messages owed when the sender sent `sent` of them (numbers `0..sent`,
    /// or for a late tracker from its first receipt on).
    pub fn owed(&self, sent: u64) -> u64 {
        if self.waiting {
            0
        } else {
            sent.saturating_sub(self.start)
        }
    }

    /// Messages lost when the sender sent `sent` of them: owed and not
    /// received.
    pub fn lost(&self, sent: u64) -> u64 {
        self.owed(sent).saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order() {
        let mut t = SeqTracker::default();
        for s in 0..10 {
            assert_eq!(t.observe(s), Receipt::InOrder);
        }
        assert_eq!(
            (t.received, t.duplicates, t.reordered, t.lost(10)),
            (10, 0, 0, 0)
        );
        assert_eq!(t.lost(12), 2, "the tail not received is lost");
    }

    #[test]
    fn gap_then_late_then_duplicate() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), Receipt::InOrder);
        assert_eq!(t.observe(5), Receipt::Gap { skipped: 4 });
        assert_eq!(t.observe(3), Receipt::Late); // splits 1..5
        assert_eq!(t.observe(1), Receipt::Late); // trims the start
        assert_eq!(t.observe(4), Receipt::Late); // trims the end
        assert_eq!(t.observe(3), Receipt::Duplicate);
        assert_eq!(t.observe(5), Receipt::Duplicate);
        assert_eq!(t.observe(0), Receipt::Duplicate);
        assert_eq!(t.observe(6), Receipt::InOrder);
        assert_eq!(t.received, 6);
        assert_eq!(t.reordered, 3);
        assert_eq!(t.duplicates, 3);
        assert_eq!(t.lost(7), 1, "2 never came");
        assert_eq!(t.observe(2), Receipt::Late);
        assert_eq!(t.lost(7), 0);
        assert!(t.missing.is_empty());
    }

    #[test]
    fn late_tracker_owes_from_its_first_receipt() {
        let mut t = SeqTracker::late();
        assert_eq!((t.owed(50), t.lost(50)), (0, 0), "nothing received yet");
        assert_eq!(t.observe(40), Receipt::InOrder);
        assert_eq!(t.observe(42), Receipt::Gap { skipped: 1 });
        assert_eq!(t.observe(39), Receipt::Late, "older than the first");
        assert_eq!(t.observe(42), Receipt::Duplicate);
        assert_eq!(t.owed(50), 10);
        assert_eq!(t.lost(50), 8, "41 and 43..50");
        assert_eq!(t.observe(41), Receipt::Late);
        assert_eq!(t.lost(43), 0);
        assert_eq!((t.received, t.reordered, t.duplicates), (3, 2, 1));
    }

    #[test]
    fn matches_a_naive_model() {
        // A fixed pseudo-random permutation with repeats and holes.
        let mut t = SeqTracker::default();
        let mut seen = std::collections::HashSet::new();
        let mut max_seen: Option<u64> = None;
        let (mut dups, mut late) = (0, 0);
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let seq = (x >> 33) % 400;
            let r = t.observe(seq);
            if !seen.insert(seq) {
                dups += 1;
                assert_eq!(r, Receipt::Duplicate);
            } else if max_seen.is_some_and(|m| seq < m) {
                late += 1;
                assert_eq!(r, Receipt::Late);
            } else {
                assert!(matches!(r, Receipt::InOrder | Receipt::Gap { .. }));
            }
            max_seen = max_seen.max(Some(seq));
        }
        assert_eq!(t.duplicates, dups);
        assert_eq!(t.reordered, late);
        assert_eq!(t.received, seen.len() as u64);
        assert_eq!(t.lost(400), 400 - seen.len() as u64);
    }
}
