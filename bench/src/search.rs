//! RFC 2544 section 26.1 throughput: the highest offered rate at which the device loses no
//! frame (NDR), or at most a given fraction (PDR, 0.1% by default), found by a binary
//! search over the offered rate.
//!
//! Real devices are noisy: a trial can lose frames at a rate that passes most of the time.
//! The search therefore confirms its answer: the final rate is tried again, and if it fails
//! the search goes on below it, a bounded number of times.

use serde::{Deserialize, Serialize};

/// What one trial at an offered rate gave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialOutcome {
    /// The offered rate, in packets per second.
    pub rate_pps: f64,
    /// Frames offered.
    pub offered: u64,
    /// Frames received.
    pub received: u64,
}

impl TrialOutcome {
    /// The lost fraction of the offered frames.
    pub fn loss_ratio(&self) -> f64 {
        crate::stats::loss_ratio(self.offered, self.received)
    }
}

/// Runs one trial at an offered rate: the real generator and sink, or a fake in tests.
pub trait Device {
    /// Offers `rate_pps` for one trial and says what arrived.
    fn trial(&mut self, rate_pps: f64) -> TrialOutcome;
}

/// What a trial must meet to pass.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    /// No drop rate: zero loss.
    Ndr,
    /// Partial drop rate: loss at most this fraction.
    Pdr(f64),
}

impl Criterion {
    /// PDR as the issue defines it: at most 0.1% loss.
    pub const PDR: Criterion = Criterion::Pdr(0.001);

    /// Whether `trial` meets the criterion.
    pub fn passes(self, trial: &TrialOutcome) -> bool {
        match self {
            Criterion::Ndr => trial.received >= trial.offered,
            Criterion::Pdr(limit) => trial.loss_ratio() <= limit,
        }
    }
}

/// How the search runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// The highest rate to offer (the line rate, or what the generator can reach).
    pub max_rate_pps: f64,
    /// Stop when the bracket is narrower than this fraction of `max_rate_pps`.
    pub resolution: f64,
    /// Times a final answer may be refuted by a failed confirmation before the search
    /// gives up and reports the highest rate that passed twice, or zero.
    pub confirmations: u32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            max_rate_pps: 1e6,
            resolution: 0.01,
            confirmations: 3,
        }
    }
}

/// What the search found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The criterion it used.
    pub criterion: Criterion,
    /// The throughput found; 0 when not even the lowest rate tried passed.
    pub rate_pps: f64,
    /// Every trial, in order.
    pub trials: Vec<TrialOutcome>,
}

/// The throughput of `device` under `criterion`: a binary search between 0 and the top rate, its answer confirmed.
pub fn search(
    device: &mut dyn Device,
    criterion: Criterion,
    config: &SearchConfig,
) -> SearchResult {
    let mut trials = Vec::new();
    let mut run = |rate: f64, trials: &mut Vec<TrialOutcome>| {
        let trial = device.trial(rate);
        trials.push(trial);
        criterion.passes(&trial)
    };
    let step = config.max_rate_pps * config.resolution;
    let (mut low, mut high) = (0.0, config.max_rate_pps);
    if run(high, &mut trials) {
        low = high;
    }
    let mut refutations = 0;
    loop {
        while high - low > step {
            let middle = (low + high) / 2.0;
            if run(middle, &mut trials) {
                low = middle;
            } else {
                high = middle;
            }
        }
        // Confirm: a pass that does not repeat was noise, and the answer lies below it.
        if low == 0.0 || run(low, &mut trials) {
            break;
        }
        refutations += 1;
        if refutations > config.confirmations {
            low = 0.0;
            break;
        }
        high = low;
        low = 0.0;
    }
    SearchResult {
        criterion,
        rate_pps: low,
        trials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loses nothing up to `capacity`, then everything above it; `noise` makes a trial
    /// below capacity lose a few frames once in a while (a fixed pseudo-random sequence).
    struct FakeDevice {
        capacity: f64,
        noise_every: Option<u32>,
        calls: u32,
    }

    impl Device for FakeDevice {
        fn trial(&mut self, rate: f64) -> TrialOutcome {
            self.calls += 1;
            let offered = rate as u64;
            let mut received = offered.min(self.capacity as u64);
            if let Some(every) = self.noise_every
                && self.calls.wrapping_mul(2_654_435_761).is_multiple_of(every)
            {
                received = received.saturating_sub(3);
            }
            TrialOutcome {
                rate_pps: rate,
                offered,
                received,
            }
        }
    }

    fn config() -> SearchConfig {
        SearchConfig {
            max_rate_pps: 10e6,
            resolution: 0.005,
            confirmations: 3,
        }
    }

    #[test]
    fn the_search_converges_just_below_the_knee() {
        let mut device = FakeDevice {
            capacity: 3.3e6,
            noise_every: None,
            calls: 0,
        };
        let result = search(&mut device, Criterion::Ndr, &config());
        assert!(result.rate_pps <= 3.3e6, "{}", result.rate_pps);
        assert!(
            result.rate_pps >= 3.3e6 - 10e6 * 0.005,
            "{}",
            result.rate_pps
        );
        assert!(
            result.trials.len() < 15,
            "binary: {} trials",
            result.trials.len()
        );
        // Every trial was recorded with its loss.
        assert!(result.trials.iter().any(|t| t.loss_ratio() > 0.0));
    }

    #[test]
    fn a_device_faster_than_the_offer_passes_at_the_maximum() {
        let mut device = FakeDevice {
            capacity: 20e6,
            noise_every: None,
            calls: 0,
        };
        let result = search(&mut device, Criterion::Ndr, &config());
        assert_eq!(result.rate_pps, 10e6);
        assert_eq!(result.trials.len(), 2, "one trial and its confirmation");
    }

    #[test]
    fn noise_never_pushes_the_answer_above_the_knee() {
        for every in [2, 3, 5, 7] {
            let mut device = FakeDevice {
                capacity: 4.2e6,
                noise_every: Some(every),
                calls: 0,
            };
            let result = search(&mut device, Criterion::Ndr, &config());
            assert!(
                result.rate_pps <= 4.2e6,
                "every {every}: {}",
                result.rate_pps
            );
            // PDR tolerates the few frames of noise, so it lands at the knee again.
            let mut device = FakeDevice {
                capacity: 4.2e6,
                noise_every: Some(every),
                calls: 0,
            };
            let result = search(&mut device, Criterion::PDR, &config());
            assert!(
                (4.2e6 - 10e6 * 0.005..=4.2e6 * 1.001).contains(&result.rate_pps),
                "every {every}: {}",
                result.rate_pps
            );
        }
    }

    #[test]
    fn pdr_accepts_a_tenth_of_a_percent_and_no_more() {
        let trial = |received| TrialOutcome {
            rate_pps: 1e6,
            offered: 100_000,
            received,
        };
        assert!(Criterion::PDR.passes(&trial(99_900)));
        assert!(!Criterion::PDR.passes(&trial(99_899)));
        assert!(!Criterion::Ndr.passes(&trial(99_999)));
        assert!(Criterion::Ndr.passes(&trial(100_000)));
    }
}
