//! Loss and latency maths for the benchmark reports.

use serde::{Deserialize, Serialize};

/// Lost fraction of the offered frames; 0 when nothing was offered. Received frames beyond
/// the offered (duplicates) count as no loss, not as negative loss.
pub fn loss_ratio(offered: u64, received: u64) -> f64 {
    if offered == 0 {
        return 0.0;
    }
    offered.saturating_sub(received) as f64 / offered as f64
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// The largest sample.
    pub max_ns: u64,
}

/// The nearest-rank percentile (`q` in 0..=1) of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The percentiles of `samples` (in any order).
pub fn latency(mut samples: Vec<u64>) -> Latency {
    samples.sort_unstable();
    Latency {
        samples: samples.len(),
        p50_ns: percentile(&samples, 0.5),
        p99_ns: percentile(&samples, 0.99),
        p999_ns: percentile(&samples, 0.999),
        max_ns: samples.last().copied().unwrap_or(0),
    }
}

/// Points of the empirical CDF, at most `points` of them: (latency ns, fraction <= it).
pub fn cdf(mut samples: Vec<u64>, points: usize) -> Vec<(u64, f64)> {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(points).max(1);
    let mut out: Vec<(u64, f64)> = (step - 1..n)
        .step_by(step)
        .map(|i| (samples[i], (i + 1) as f64 / n as f64))
        .collect();
    if out.last().map(|p| p.1) != Some(1.0) {
        out.push((samples[n - 1], 1.0));
    }
    out
}

/// Frames lost by sequence number: the sink saw `seen` distinct sequence numbers out of
/// `0..sent`; frames seen twice are counted once.
pub fn lost_by_sequence(sent: u64, seen: &[u64]) -> u64 {
    let mut unique: Vec<u64> = seen.iter().copied().filter(|&s| s < sent).collect();
    unique.sort_unstable();
    unique.dedup();
    sent - unique.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_the_missing_fraction() {
        assert_eq!(loss_ratio(1000, 999), 0.001);
        assert_eq!(loss_ratio(1000, 1000), 0.0);
        assert_eq!(
            loss_ratio(1000, 1005),
            0.0,
            "duplicates are no negative loss"
        );
        assert_eq!(loss_ratio(0, 0), 0.0);
        assert_eq!(lost_by_sequence(10, &[0, 1, 1, 2, 5, 9, 42]), 5);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        let l = latency(samples);
        assert_eq!(
            (l.p50_ns, l.p99_ns, l.p999_ns, l.max_ns),
            (500, 990, 999, 1000)
        );
        assert_eq!(latency(vec![7]).p999_ns, 7);
        assert_eq!(latency(Vec::new()), Latency::default());
    }

    #[test]
    fn the_cdf_rises_to_one() {
        let points = cdf((0..100).rev().collect(), 10);
        assert_eq!(points.len(), 10);
        assert_eq!(points[0], (9, 0.1));
        assert_eq!(points.last(), Some(&(99, 1.0)));
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
        assert_eq!(cdf((0..7).collect(), 3).last(), Some(&(6, 1.0)));
    }
}
