//! Counters a worker keeps in plain integers and publishes every few milliseconds, so the
//! hot path never touches shared cache lines and readers still see live numbers.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::{drop_reason::DropCounts, nf::Verdict};

/// Per network function: what it saw and what it dropped, by reason.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NfStats {
    /// The function's name (borrowed from the function; owned once read back from JSON).
    pub name: Cow<'static, str>,
    /// Packets it decided (those still undecided when it ran).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// What it dropped, by reason.
    pub drops: DropCounts,
}

impl NfStats {
    /// Zeroed stats for the function `name`.
    pub fn new(name: &'static str) -> NfStats {
        NfStats {
            name: Cow::Borrowed(name),
            ..NfStats::default()
        }
    }

    /// Adds up the same chain's stats from several stages, function by function.
    pub(crate) fn sum<'a>(chains: impl Iterator<Item = &'a [NfStats]>) -> Vec<NfStats> {
        let mut total: Vec<NfStats> = Vec::new();
        for chain in chains {
            if total.is_empty() {
                total = chain
                    .iter()
                    .map(|f| NfStats {
                        name: f.name.clone(),
                        ..NfStats::default()
                    })
                    .collect();
            }
            for (sum, function) in total.iter_mut().zip(chain) {
                sum.packets += function.packets;
                sum.bytes += function.bytes;
                sum.drops.add_all(&function.drops);
            }
        }
        total
    }

    pub(crate) fn count(&mut self, len: usize, verdict: Verdict) {
        self.packets += 1;
        self.bytes += len as u64;
        if let Verdict::Drop(reason) = verdict {
            self.drops.add(reason);
        }
    }
}

/// Per stage: what it ran and how long it took.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageStats {
    /// The core the stage runs on.
    pub core: usize,
    /// Batches it ran the chain on.
    pub batches: u64,
    /// Packets in those batches.
    pub packets: u64,
    /// Cycles it spent running the chain.
    pub busy_cycles: u64,
    /// `busy_cycles` per packet.
    pub cycles_per_packet: f64,
    /// Per function of its chain.
    pub functions: Vec<NfStats>,
}

/// Per worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The interface of the worker's socket.
    pub iface: String,
    /// The queue of the worker's socket.
    pub queue: u32,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames the kernel dropped before the worker saw them: its socket's RX ring was full
    /// or its fill ring empty (XDP_STATISTICS rx_dropped + rx_ring_full).
    pub socket_drops: u64,
    /// Drops by reason: the functions' reasons plus the worker's own ("tx ring full",
    /// "multi-buffer packet", "no such port").
    pub drops: DropCounts,
    /// Non-empty RX batches, and the packets they held: their ratio is the batch fill.
    pub batches: u64,
    /// Packets per non-empty batch.
    pub batch_fill: f64,
    /// TSC cycles (or nanoseconds where there is no TSC) spent from a batch's receive to
    /// its transmit, per packet: the cost of a packet while the worker is busy. At low load
    /// each batch holds few packets, so the per-batch work (the TX wake-up) weighs on it.
    pub cycles_per_packet: f64,
    /// Cycles spent from receive to transmit, over all batches.
    pub busy_cycles: u64,
    /// Cycles since the worker began serving (busy or polling).
    #[serde(default)]
    pub serving_cycles: u64,
    /// How busy the worker's core is: `busy_cycles` over `serving_cycles`, in percent.
    /// Polling an empty ring is not busy.
    #[serde(default)]
    pub busy_percent: f64,
    /// Chains installed since start (hot swaps).
    pub swaps: u64,
    /// Per function, summed over the stages in pipelined mode.
    pub functions: Vec<NfStats>,
    /// Pipelined mode: per stage. In that mode the cycles above are the RX core's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStats>,
}

impl WorkerStats {
    pub(crate) fn finish(&mut self) {
        self.batch_fill = self.rx_packets as f64 / self.batches.max(1) as f64;
        self.cycles_per_packet = self.busy_cycles as f64 / self.rx_packets.max(1) as f64;
        self.busy_percent = 100.0 * self.busy_cycles as f64 / self.serving_cycles.max(1) as f64;
    }

    /// The sum over workers (for a whole-appliance view).
    pub fn total(workers: &[WorkerStats]) -> WorkerStats {
        let mut total = WorkerStats::default();
        for worker in workers {
            total.rx_packets += worker.rx_packets;
            total.rx_bytes += worker.rx_bytes;
            total.tx_packets += worker.tx_packets;
            total.tx_bytes += worker.tx_bytes;
            total.socket_drops += worker.socket_drops;
            total.batches += worker.batches;
            total.busy_cycles += worker.busy_cycles;
            total.serving_cycles += worker.serving_cycles;
            total.drops.add_all(&worker.drops);
        }
        total.finish();
        total
    }
}

/// A cycle counter: the TSC on x86_64, nanoseconds elsewhere.
#[inline]
pub(crate) fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions and every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::{sync::OnceLock, time::Instant};
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}
