//! Pipelined mode: the RX core hands batches to stage threads on other cores through
//! bounded `crossbeam` queues, each stage runs its own copy of the chain, and the batches
//! come back to the RX core, which alone owns the socket and transmits them.
//!
//! ```text
//!                   +-> [queue, depth D] -> stage 0 (core a, chain) -+
//! RX core: receive -+-> [queue, depth D] -> stage 1 (core b, chain) -+-> returns -> TX
//!          by flow hash    full: frames gather, then are dropped and counted, never waited for
//! ```
//!
//! A flow always meets the same stage, so per-stage state sees the whole flow. Every batch
//! sent out comes back, so no frame leaves the UMEM's accounting. The way back is a bounded
//! channel that a stage never waits on: a batch holds at least one frame, so no more
//! batches can be out than the UMEM has frames (plus one swap confirmation per stage). An
//! unbounded channel would allocate on the stage's path (a block every 31 messages).
//! While a queue is full, packets for it gather into one more batch; only beyond that are
//! they dropped.

use std::{
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    chain::Chain,
    error::WorkerError,
    flow::flow_hash,
    nf::{PacketList, Verdict},
    stats::{StageStats, cycles},
};
use afxdp::{Frame, Umem};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

/// Where the stages run and how many batches each may have waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageConfig {
    /// One stage per core listed.
    pub cores: Vec<usize>,
    /// Batches waiting per stage before the RX core drops instead.
    pub depth: usize,
}

/// A batch on its way to a stage and back.
#[derive(Default)]
pub(crate) struct Batch {
    pub frames: Vec<Frame>,
    pub verdicts: Vec<Verdict>,
}

enum ToStage {
    Batch(Batch),
    Swap(Chain),
}

enum FromStage {
    Batch(Batch),
    Swapped,
}

pub(crate) struct Stages {
    inboxes: Vec<Sender<ToStage>>,
    returns: Receiver<FromStage>,
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<StageStats>>>,
    /// Batches handed out and not yet back.
    in_flight: usize,
    /// The most frames a batch for a stage may gather.
    batch_limit: usize,
    /// Stages that have not yet confirmed the last swap.
    swaps_pending: usize,
    /// Per stage, the batch being filled by `dispatch`.
    filling: Vec<Batch>,
    /// Emptied batches, to reuse their buffers.
    spare: Vec<Batch>,
}

impl Stages {
    /// Starts one thread per core of `config`, each with one of `chains`.
    pub fn start(
        umem: &Umem,
        queue: u32,
        chains: Vec<Chain>,
        config: &StageConfig,
        batch_limit: usize,
    ) -> Result<Stages, WorkerError> {
        let known = core_affinity::get_core_ids().unwrap_or_default();
        if let Some(&core) = config
            .cores
            .iter()
            .find(|&&core| !known.iter().any(|id| id.id == core))
        {
            return Err(WorkerError::Pin { queue, core });
        }
        assert_eq!(chains.len(), config.cores.len(), "one chain per stage");
        let room = umem.frame_count() as usize + config.cores.len();
        let (done, returns) = crossbeam_channel::bounded(room);
        let mut stages = Stages {
            inboxes: Vec::new(),
            returns,
            threads: Vec::new(),
            stats: Vec::new(),
            in_flight: 0,
            batch_limit,
            swaps_pending: 0,
            filling: Vec::new(),
            spare: Vec::new(),
        };
        for (chain, &core) in chains.into_iter().zip(&config.cores) {
            let (inbox, work) = crossbeam_channel::bounded(config.depth.max(1));
            let stats = Arc::new(Mutex::new(StageStats {
                core,
                ..StageStats::default()
            }));
            let stage = Stage {
                umem: umem.clone(),
                queue,
                chain,
                packets: PacketList::default(),
                work,
                done: done.clone(),
                shared: stats.clone(),
                local: stats.lock().unwrap().clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("fp-stage-q{queue}-c{core}"))
                .spawn(move || stage.run(core))
                .expect("spawn a stage thread");
            stages.inboxes.push(inbox);
            stages.threads.push(thread);
            stages.stats.push(stats);
            stages.filling.push(Batch::default());
        }
        Ok(stages)
    }

    pub fn swaps_pending(&self) -> usize {
        self.swaps_pending
    }

    /// Hands `frames` to the stages by flow. While a stage's queue is full, its frames
    /// gather in the batch waiting for it; once that batch is full too, further frames go
    /// to `overflow`, for the caller to drop and count. The RX core never waits.
    pub fn dispatch(&mut self, umem: &Umem, frames: &mut Vec<Frame>, overflow: &mut Vec<Frame>) {
        let stages = self.inboxes.len() as u32;
        for frame in frames.drain(..) {
            let waiting = &mut self.filling[(flow_hash(umem.data(&frame)) % stages) as usize];
            if waiting.frames.len() < self.batch_limit {
                waiting.frames.push(frame);
            } else {
                overflow.push(frame);
            }
        }
        self.flush(overflow);
    }

    /// Sends each stage its waiting batch, where its queue has room. Frames for a stage
    /// that is gone (its function panicked) go to `overflow`.
    pub fn flush(&mut self, overflow: &mut Vec<Frame>) {
        for (waiting, inbox) in self.filling.iter_mut().zip(&self.inboxes) {
            if waiting.frames.is_empty() {
                continue;
            }
            let fresh = self.spare.pop().unwrap_or_default();
            let batch = std::mem::replace(waiting, fresh);
            match inbox.try_send(ToStage::Batch(batch)) {
                Ok(()) => self.in_flight += 1,
                Err(TrySendError::Full(ToStage::Batch(batch))) => {
                    self.spare.push(std::mem::replace(waiting, batch));
                }
                Err(TrySendError::Disconnected(ToStage::Batch(mut batch))) => {
                    overflow.append(&mut batch.frames);
                    self.spare.push(batch);
                }
                Err(_) => unreachable!("only batches are sent here"),
            }
        }
    }

    /// Whether frames are still out: queued, in a stage, or waiting for a queue's room.
    pub fn busy(&self) -> bool {
        self.in_flight > 0 || self.filling.iter().any(|b| !b.frames.is_empty())
    }

    /// Takes back one finished batch, if one is ready: its frames and verdicts are appended
    /// to `frames` and `verdicts`. Returns false when none is ready.
    pub fn collect(&mut self, frames: &mut Vec<Frame>, verdicts: &mut Vec<Verdict>) -> bool {
        while let Ok(message) = self.returns.try_recv() {
            match message {
                FromStage::Swapped => self.swaps_pending -= 1,
                FromStage::Batch(mut batch) => {
                    self.in_flight -= 1;
                    frames.append(&mut batch.frames);
                    verdicts.append(&mut batch.verdicts);
                    self.spare.push(batch);
                    return true;
                }
            }
        }
        false
    }

    /// Sends each stage its new chain, behind the batches already queued. This may wait
    /// for room in a queue (a control action, not the packet path); `swaps_pending` drops
    /// to zero once every stage runs its new chain.
    pub fn swap(&mut self, chains: Vec<Chain>) {
        assert_eq!(chains.len(), self.inboxes.len(), "one chain per stage");
        for (inbox, chain) in self.inboxes.iter().zip(chains) {
            if inbox.send(ToStage::Swap(chain)).is_ok() {
                self.swaps_pending += 1;
            }
        }
    }

    pub fn stats(&self) -> Vec<StageStats> {
        self.stats
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Closes the queues and waits for the threads. Call once nothing is in flight.
    pub fn stop(&mut self) {
        self.inboxes.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stage thread's state.
struct Stage {
    umem: Umem,
    queue: u32,
    chain: Chain,
    /// The memory of each batch's packet list.
    packets: PacketList,
    work: Receiver<ToStage>,
    done: Sender<FromStage>,
    shared: Arc<Mutex<StageStats>>,
    local: StageStats,
}

const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Empty polls of the queue before a stage sleeps on it.
const SPINS_BEFORE_SLEEP: u32 = 4096;

impl Stage {
    fn run(mut self, core: usize) {
        // The core was checked at start; a refusal here (cgroup limits) leaves the
        // thread unpinned, which is slower but correct.
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
        let mut last_publish = Instant::now();
        loop {
            match self.next_message() {
                Ok(ToStage::Batch(batch)) => {
                    let batch = self.process(batch);
                    if self.done.send(FromStage::Batch(batch)).is_err() {
                        break;
                    }
                }
                Ok(ToStage::Swap(mut chain)) => {
                    chain.adopt(&mut self.chain);
                    self.chain = chain;
                    let _ = self.done.send(FromStage::Swapped);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
                last_publish = Instant::now();
            }
        }
        self.publish();
    }

    /// Spins a while before sleeping on the queue: waking a sleeping thread costs
    /// microseconds, which at line rate is many batches.
    fn next_message(&self) -> Result<ToStage, RecvTimeoutError> {
        for _ in 0..SPINS_BEFORE_SLEEP {
            match self.work.try_recv() {
                Ok(message) => return Ok(message),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(RecvTimeoutError::Disconnected);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        self.work.recv_timeout(PUBLISH_EVERY)
    }

    fn process(&mut self, mut batch: Batch) -> Batch {
        let start = cycles();
        batch.verdicts.clear();
        batch.verdicts.resize(batch.frames.len(), Verdict::Next);
        let mut packets = self.packets.fill(&self.umem, &mut batch.frames, self.queue);
        self.chain.run(&mut packets, &mut batch.verdicts);
        self.packets.keep(packets);
        self.local.batches += 1;
        self.local.packets += batch.frames.len() as u64;
        self.local.busy_cycles += cycles().wrapping_sub(start);
        batch
    }

    fn publish(&mut self) {
        self.local.functions = self.chain.stats().to_vec();
        self.local.cycles_per_packet =
            self.local.busy_cycles as f64 / self.local.packets.max(1) as f64;
        *self.shared.lock().unwrap() = self.local.clone();
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use afxdp::UmemConfig;

    use super::*;
    use crate::{
        drop_reason::DropReason,
        nf::{NetworkFunction, Packet},
    };

    /// Holds each batch until the test lets it go, to fill the stage queues on demand.
    struct Gate(Receiver<()>);

    impl NetworkFunction for Gate {
        fn name(&self) -> &'static str {
            "gate"
        }
        fn process(&mut self, _packet: &mut Packet<'_>) -> Verdict {
            Verdict::Drop(DropReason::NotForVip)
        }
        fn process_batch(&mut self, packets: &mut [Packet<'_>], verdicts: &mut [Verdict]) {
            let _ = self.0.recv();
            for (packet, verdict) in packets.iter_mut().zip(verdicts.iter_mut()) {
                *verdict = self.process(packet);
            }
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    #[test]
    fn a_full_stage_queue_drops_without_waiting_and_every_batch_comes_back() {
        let (umem, mut pool) = Umem::new(UmemConfig::default()).unwrap();
        let (open, gate) = crossbeam_channel::unbounded();
        let config = StageConfig {
            cores: vec![0],
            depth: 1,
        };
        let chain = Chain::new(vec![Box::new(Gate(gate))]);
        let mut stages = Stages::start(&umem, 0, vec![chain], &config, 4).unwrap();
        let mut overflow = Vec::new();
        let mut sent = 0;
        // The stage holds one batch at the gate, one waits in the queue, and one more
        // (4 frames at most) gathers; then frames must overflow, without blocking.
        for _ in 0..20 {
            let mut frames = vec![pool.take().unwrap(), pool.take().unwrap()];
            for frame in &mut frames {
                umem.write(frame, &[0; 60]).unwrap();
            }
            sent += frames.len();
            stages.dispatch(&umem, &mut frames, &mut overflow);
            // Let the stage take the first batch to the gate before going on.
            let deadline = Instant::now() + Duration::from_secs(5);
            while sent == 2 && !stages.inboxes[0].is_empty() {
                assert!(Instant::now() < deadline, "the stage never took a batch");
                std::thread::yield_now();
            }
        }
        assert_eq!(stages.in_flight, 2, "one at the gate, one queued");
        assert_eq!(overflow.len(), sent - 2 - 2 - 4, "the rest overflows");
        for _ in 0..3 {
            open.send(()).unwrap();
        }
        let (mut frames, mut verdicts) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        while stages.busy() && Instant::now() < deadline {
            stages.flush(&mut overflow);
            stages.collect(&mut frames, &mut verdicts);
        }
        assert_eq!(stages.in_flight, 0, "every batch came back");
        assert_eq!(
            frames.len() + overflow.len(),
            sent,
            "no frame lost track of"
        );
        assert!(
            verdicts
                .iter()
                .all(|v| *v == Verdict::Drop(DropReason::NotForVip))
        );
        stages.stop();
        assert_eq!(stages.stats()[0].packets, frames.len() as u64);
    }

    #[test]
    fn a_swap_reaches_every_stage_behind_the_queued_batches() {
        let (umem, _pool) = Umem::new(UmemConfig::default()).unwrap();
        let (_open, gate) = crossbeam_channel::unbounded::<()>();
        drop(_open); // an open gate: recv fails at once
        let config = StageConfig {
            cores: vec![0, 0],
            depth: 4,
        };
        let chains = || {
            (0..2)
                .map(|_| {
                    Chain::new(vec![
                        Box::new(Gate(gate.clone())) as Box<dyn NetworkFunction>
                    ])
                })
                .collect::<Vec<_>>()
        };
        let mut stages = Stages::start(&umem, 0, chains(), &config, 64).unwrap();
        stages.swap(chains());
        assert_eq!(stages.swaps_pending(), 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stages.swaps_pending() > 0 && Instant::now() < deadline {
            stages.collect(&mut Vec::new(), &mut Vec::new());
        }
        assert_eq!(stages.swaps_pending(), 0, "both stages confirmed");
    }
}
