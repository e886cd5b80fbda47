//! Latency histograms that never clip silently.
//!
//! Values are recorded in microseconds from 0 to one hour with 3 significant
//! digits; anything above is recorded at the top and counted in
//! `out_of_range`, which the reports show.

use hdrhistogram::Histogram;

const HIGHEST_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct LatencyHist {
    hist: Histogram<u64>,
    pub out_of_range: u64,
}

/// The summary a report prints, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub out_of_range: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    pub fn new() -> LatencyHist {
        LatencyHist {
            // 1..=HIGHEST with 3 digits is a valid configuration.
            hist: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits")),
            out_of_range: 0,
        }
    }

    pub fn record_us(&mut self, us: u64) {
        if us > HIGHEST_US || self.hist.record(us).is_err() {
            self.out_of_range += 1;
            self.hist.saturating_record(us);
        }
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    pub fn reset(&mut self) {
        self.hist.reset();
        self.out_of_range = 0;
    }

    pub fn quantile(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.hist.len(),
            p50: self.hist.value_at_quantile(0.5),
            p90: self.hist.value_at_quantile(0.9),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            max: self.hist.max(),
            out_of_range: self.out_of_range,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_flags_out_of_range() {
        let mut h = LatencyHist::new();
        for v in 0..1000 {
            h.record_us(v);
        }
        assert_eq!(h.len(), 1000);
        let s = h.summary();
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert_eq!(s.out_of_range, 0);
        h.record_us(u64::MAX);
        assert_eq!(h.summary().out_of_range, 1);
    }
}
