//! When each sending thread may send, the threads themselves, and the stamps' clock.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::error::GenError;

/// CLOCK_MONOTONIC in nanoseconds: the clock of the stamps (`bpf_ktime_get_ns` in live
/// frames), for sinks computing latency.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// When one thread may send: its share of the rate and count, and the common deadline.
pub(crate) struct Pacer<'a> {
    pub(crate) started: Instant,
    pub(crate) rate: Option<u64>,
    pub(crate) count: Option<u64>,
    pub(crate) duration: Duration,
    pub(crate) stop: &'a AtomicBool,
}

impl Pacer<'_> {
    /// How many frames may go now, at most `max`, with `done` gone so far: None when the
    /// thread is finished, 0 (after a short sleep) when it is ahead of its rate.
    pub(crate) fn allowance(&self, done: u64, max: u32) -> Option<u32> {
        if self.stop.load(Ordering::Relaxed) || self.started.elapsed() >= self.duration {
            return None;
        }
        let left = self.count.map_or(u64::MAX, |c| c.saturating_sub(done));
        if left == 0 {
            return None;
        }
        let mut allowed = left.min(u64::from(max));
        if let Some(rate) = self.rate {
            let due = (self.started.elapsed().as_secs_f64() * rate as f64) as u64;
            if done >= due {
                std::thread::sleep(Duration::from_micros(200));
                return Some(0);
            }
            allowed = allowed.min(due - done);
        }
        Some(allowed as u32)
    }
}

/// Runs `work(thread index)` on one thread per core (pinned where a core is given) and
/// returns the seconds they took together.
pub(crate) fn on_cores(
    cores: &[Option<usize>],
    work: impl Fn(usize) -> Result<(), GenError> + Sync,
) -> Result<f64, GenError> {
    let started = Instant::now();
    let results: Vec<Result<(), GenError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cores
            .iter()
            .enumerate()
            .map(|(thread, core)| {
                let work = &work;
                scope.spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: *core });
                    }
                    work(thread)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread panicked"))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(started.elapsed().as_secs_f64())
}
