//! Several servers at once: which one each client connects to.
//!
//! `loopchat-bench A,B` spreads its clients over loopchat processes bridged
//! through Redis (docs/scale-out.md). Senders and receivers are spread
//! separately, each round-robin, so that with N servers every server has
//! its share of both: sender `g` (global number, across `--workers`) is on
//! server `g mod N`, and receiver `r` (global number among the receivers)
//! on server `r mod N`. Every receiver then hears senders on its own
//! server and on the others, and the report can split latency by path
//! (same server, or across the bridge) from the sender's number alone,
//! even when the sender is in another worker process.

use super::cli::Config;

/// The assignment for one bench process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Servers (1: everything on `--addr`).
    pub targets: usize,
    /// This process's senders: its first clients.
    senders: usize,
    /// The global numbers of this process's first sender and first
    /// receiver (0 without `--workers`).
    sender_base: usize,
    receiver_base: usize,
}

impl Spread {
    /// `targets` servers; this process has `senders` senders, numbered
    /// globally from `sender_base`, and its first client is client
    /// `client_base` of all the workers' (whose first clients are senders).
    pub fn new(targets: usize, senders: usize, sender_base: usize, client_base: usize) -> Spread {
        Spread {
            targets: targets.max(1),
            senders,
            sender_base,
            receiver_base: client_base.saturating_sub(sender_base),
        }
    }

    /// The spread `cfg` asks for (a worker's share included).
    pub fn of(cfg: &Config) -> Spread {
        let (sender_base, client_base) = cfg
            .worker
            .map_or((0, 0), |r| (r.share.sender_base, r.share.client_base));
        Spread::new(
            1 + cfg.more_addrs.len(),
            cfg.senders,
            sender_base,
            client_base,
        )
    }

    /// The server of this process's client `nick` (1, 2, ... in the order
    /// they are started; the first `senders` are the senders).
    pub fn of_client(&self, nick: u64) -> usize {
        let i = nick.saturating_sub(1) as usize;
        if i < self.senders {
            self.of_sender(self.sender_base + i)
        } else {
            (self.receiver_base + i - self.senders) % self.targets
        }
    }

    /// The server of global sender `g`.
    pub fn of_sender(&self, g: usize) -> usize {
        g % self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::super::workers::Share;
    use super::*;

    fn count(spread: &Spread, nicks: std::ops::RangeInclusive<u64>) -> Vec<usize> {
        let mut n = vec![0; spread.targets];
        for nick in nicks {
            n[spread.of_client(nick)] += 1;
        }
        n
    }

    /// One process, two servers: 4 senders alternate, then 96 receivers
    /// alternate, so each server has 2 senders and 48 receivers.
    #[test]
    fn senders_and_receivers_alternate() {
        let s = Spread::new(2, 4, 0, 0);
        let got: Vec<usize> = (1..=8).map(|n| s.of_client(n)).collect();
        assert_eq!(got, [0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(count(&s, 1..=4), [2, 2]);
        assert_eq!(count(&s, 5..=100), [48, 48]);
        // An odd number of senders: receivers still start on server 0.
        let s = Spread::new(2, 3, 0, 0);
        assert_eq!(
            (1..=6).map(|n| s.of_client(n)).collect::<Vec<_>>(),
            [0, 1, 0, 0, 1, 0]
        );
        // Three servers; one server: everything on it.
        let s = Spread::new(3, 5, 0, 0);
        assert_eq!(count(&s, 1..=5), [2, 2, 1]);
        assert_eq!(count(&s, 6..=35), [10, 10, 10]);
        assert_eq!(count(&Spread::new(1, 4, 0, 0), 1..=10), [10]);
        assert_eq!(Spread::new(0, 4, 0, 0).of_client(3), 0);
    }

    /// With `--workers`, numbers are global: two workers with one sender
    /// each put them on different servers, and the receivers of all the
    /// workers together split evenly.
    #[test]
    fn workers_spread_globally() {
        for (clients, senders, workers, targets) in
            [(100, 2, 2, 2), (101, 5, 2, 2), (90, 6, 3, 2), (99, 3, 3, 3)]
        {
            let mut per_sender = vec![0; targets];
            let mut per_receiver = vec![0; targets];
            for w in 0..workers {
                let share = Share::of(clients, senders, workers, w);
                let s = Spread::new(targets, share.senders, share.sender_base, share.client_base);
                for nick in 1..=share.clients as u64 {
                    let t = s.of_client(nick);
                    if (nick as usize) <= share.senders {
                        assert_eq!(t, s.of_sender(share.sender_base + nick as usize - 1));
                        per_sender[t] += 1;
                    } else {
                        per_receiver[t] += 1;
                    }
                }
            }
            let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
            assert!(spread(&per_sender) <= 1, "{per_sender:?}");
            assert!(spread(&per_receiver) <= 1, "{per_receiver:?}");
            assert_eq!(per_sender.iter().sum::<usize>(), senders);
        }
    }
}
