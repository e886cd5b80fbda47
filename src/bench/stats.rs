//! Latency histograms that never clip silently.
//!
//! Values are recorded in microseconds from 0 to one hour with 3 significant
//! digits; anything above is recorded at the top and counted in
//! `out_of_range`, which the reports show.
//!
//! Two ways out of the process: [`LatencyHist::write_hgrm`] prints the
//! percentile distribution in HdrHistogram's text format (`--hist-out`, the
//! `.hgrm` files wrk2 writes and the HdrHistogram plotter reads), and
//! [`LatencyHist::to_hex`] / [`LatencyHist::from_hex`] carry the whole
//! histogram between processes (`--workers`) in HdrHistogram's V2 binary
//! encoding, hex on a line of JSON, so the parent's merge loses nothing.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use std::fmt::Write as _;

const HIGHEST_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct LatencyHist {
    hist: Histogram<u64>,
    pub out_of_range: u64,
}

/// A run's histograms, kept whole in the report for `--hist-out` and for
/// the `--workers` merge.
#[derive(Debug, Clone, Default)]
pub struct RunHists {
    /// From the intended send time (what the report calls corrected).
    pub latency: LatencyHist,
    /// From the actual send time.
    pub latency_uncorrected: LatencyHist,
    /// Connect to joined.
    pub join: LatencyHist,
    /// Several servers: the corrected latency of deliveries from a sender
    /// on the receiver's own server, and from a sender on another one.
    pub same_target: LatencyHist,
    pub cross_target: LatencyHist,
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

    /// Adds `other`'s values (same bounds: both come from [`LatencyHist::new`]).
    pub fn merge(&mut self, other: &LatencyHist) {
        if self.hist.add(&other.hist).is_err() {
            // Cannot happen with equal bounds; never lose values silently.
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.out_of_range += other.out_of_range;
    }

    /// The histogram in HdrHistogram's V2 encoding (uncompressed), as hex.
    pub fn to_hex(&self) -> String {
        let mut bytes = Vec::new();
        // Writing to a Vec fails only on an impossible histogram.
        if V2Serializer::new()
            .serialize(&self.hist, &mut bytes)
            .is_err()
        {
            bytes.clear();
        }
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// The inverse of [`LatencyHist::to_hex`]; `None` for anything else.
    /// The result has this module's bounds whatever the encoding said, so
    /// it merges with any other.
    pub fn from_hex(hex: &str, out_of_range: u64) -> Option<LatencyHist> {
        if hex.len() % 2 != 0 || !hex.is_ascii() {
            return None;
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        let decoded: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).ok()?;
        let mut h = LatencyHist::new();
        for v in decoded.iter_recorded() {
            h.hist
                .saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
        h.out_of_range = out_of_range;
        Some(h)
    }

    /// Writes the percentile distribution in HdrHistogram's text format
    /// (as `outputPercentileDistribution` in the Java library and wrk2's
    /// `--u_latency` print it), values in milliseconds: the `Value
    /// Percentile TotalCount 1/(1-Percentile)` rows at 5 ticks per half
    /// distance to 100 %, then the `#[Mean ...]`, `#[Max ...]` and
    /// `#[Buckets ...]` footer.
    pub fn write_hgrm(&self, out: &mut String) {
        const TICKS_PER_HALF: u32 = 5;
        const US_PER_MS: f64 = 1000.0;
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        if !self.hist.is_empty() {
            for v in self.hist.iter_quantiles(TICKS_PER_HALF) {
                total += v.count_since_last_iteration();
                let ms = v.value_iterated_to() as f64 / US_PER_MS;
                let q = v.quantile_iterated_to();
                if q < 1.0 {
                    let _ = writeln!(
                        out,
                        "{ms:12.3} {q:2.12} {total:10} {:14.2}",
                        1.0 / (1.0 - q)
                    );
                } else {
                    let _ = writeln!(out, "{ms:12.3} {q:2.12} {total:10}");
                }
            }
        }
        let (mean, sd) = if self.hist.is_empty() {
            (0.0, 0.0)
        } else {
            (self.hist.mean(), self.hist.stdev())
        };
        let _ = writeln!(
            out,
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
            mean / US_PER_MS,
            sd / US_PER_MS
        );
        let _ = writeln!(
            out,
            "#[Max     = {:12.3}, Total count    = {:12}]",
            self.hist.max() as f64 / US_PER_MS,
            self.hist.len()
        );
        let _ = writeln!(
            out,
            "#[Buckets = {:12}, SubBuckets     = {:12}]",
            self.hist.buckets(),
            sub_buckets(self.hist.sigfig())
        );
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

/// The sub-buckets per bucket for `sigfig` significant digits with a
/// lowest value of 1 (HdrHistogram's sizing: the power of two that holds
/// 2 × 10^sigfig values at unit resolution; 2048 for 3 digits).
fn sub_buckets(sigfig: u8) -> u64 {
    let single_unit = 2 * 10u64.pow(u32::from(sigfig));
    single_unit.next_power_of_two()
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

    /// The `.hgrm` text: a header, rows whose value and percentile never
    /// go down, a last row at 100 % whose total is the count, and the
    /// footer the HdrHistogram plotter expects.
    #[test]
    fn hgrm_format() {
        let mut h = LatencyHist::new();
        for v in 1..=10_000u64 {
            h.record_us(v * 10); // 10 us .. 100 ms
        }
        let mut text = String::new();
        h.write_hgrm(&mut text);
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<f64>> = lines
            .clone()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20, "{text}");
        for w in rows.windows(2) {
            assert!(w[1][0] >= w[0][0], "values go up: {w:?}");
            assert!(w[1][1] >= w[0][1], "percentiles go up: {w:?}");
            assert!(w[1][2] >= w[0][2], "counts go up: {w:?}");
        }
        for r in &rows[..rows.len() - 1] {
            assert_eq!(r.len(), 4);
            assert!((r[3] - 1.0 / (1.0 - r[1])).abs() < 0.01 * r[3], "{r:?}");
        }
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100 % row has no 1/(1-p)");
        assert_eq!((last[1], last[2]), (1.0, 10_000.0));
        assert!((last[0] - 100.0).abs() < 0.1, "max in ms: {last:?}");
        // p50 in ms, like wrk2.
        let p50 = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((p50[0] - 50.0).abs() < 0.1, "{p50:?}");
        let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3, "{text}");
        assert!(footer[0].starts_with("#[Mean    =") && footer[0].contains("StdDeviation   ="));
        assert!(
            footer[1].contains("Total count    =        10000]"),
            "{}",
            footer[1]
        );
        assert!(
            footer[2].contains("SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
        let mean: f64 = footer[0]
            .trim_start_matches("#[Mean    =")
            .split(',')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((mean - 50.005).abs() < 0.1, "{mean}");

        let mut empty = String::new();
        LatencyHist::new().write_hgrm(&mut empty);
        assert!(empty.contains("Total count    =            0]"), "{empty}");
    }

    #[test]
    fn hex_round_trip_and_merge() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for v in 0..1000 {
            a.record_us(v);
            b.record_us(v * 1000);
        }
        b.record_us(u64::MAX);
        let back = LatencyHist::from_hex(&b.to_hex(), b.out_of_range).unwrap();
        assert_eq!(back.summary(), b.summary());
        a.merge(&back);
        assert_eq!(a.len(), 2001);
        assert_eq!(a.out_of_range, 1);
        assert_eq!(
            a.quantile(0.25),
            LatencyHist::from_hex(&a.to_hex(), 0)
                .unwrap()
                .quantile(0.25)
        );
        assert!(LatencyHist::from_hex("zz", 0).is_none());
        assert!(LatencyHist::from_hex("1c84", 0).is_none());
    }
}
