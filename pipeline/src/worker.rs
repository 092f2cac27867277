//! One worker: a thread pinned to a core, owning one AF_XDP socket. It runs the chain
//! itself (run-to-completion) or hands batches to stage threads (pipelined, see `stage`).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use afxdp::{Frame, FramePool, Socket, Umem};
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::{
    chain::Chain,
    drop_reason::DropReason,
    error::WorkerError,
    nf::{PacketList, Verdict},
    stage::{StageConfig, Stages},
    stats::{NfStats, WorkerStats, cycles},
};

/// How a worker waits when its RX ring is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin on the rings: lowest latency, a full core.
    Spin,
    /// Sleep in poll(2) until packets arrive: little CPU at low rates.
    Wakeup,
    /// Spin while packets keep coming; after a stretch of empty polls, sleep in poll(2).
    #[default]
    Adaptive,
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The core to pin its thread to (none: unpinned).
    pub core: Option<usize>,
    /// Packets taken from the RX ring at most per batch.
    pub batch: u32,
    /// How it waits while its RX ring is empty.
    pub poll: PollMode,
    /// Pipelined mode: the chain runs on these stage cores, not on the worker's own.
    pub stages: Option<StageConfig>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            core: None,
            batch: 64,
            poll: PollMode::Adaptive,
            stages: None,
        }
    }
}

/// Empty spins before an adaptive worker sleeps, and how long each sleep lasts at most.
const ADAPTIVE_SPINS: u32 = 4096;
const POLL_TIMEOUT_MS: i32 = 10;
/// Stats are published this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// On stop, how long in-flight packets get to finish.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// A thread that owns one AF_XDP socket and runs a chain over what it receives; stopped
/// (draining first) on [`Worker::stop`] or drop.
pub struct Worker {
    queue: u32,
    /// Chains the worker runs: one, or one per stage.
    chains: usize,
    stop: Arc<AtomicBool>,
    swaps: Sender<Vec<Chain>>,
    swapped: Receiver<()>,
    stats: Arc<Mutex<WorkerStats>>,
    thread: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl Worker {
    /// Starts a worker on a bound socket. `pool` holds the UMEM's free frames;
    /// `make_chain` builds the chain, once per stage in pipelined mode.
    pub fn start(
        socket: Socket,
        pool: FramePool,
        make_chain: impl FnMut() -> Chain,
        config: WorkerConfig,
    ) -> Result<Worker, WorkerError> {
        let queue = socket.queue();
        let umem = socket.umem().clone();
        let engine = match &config.stages {
            None => Engine::Inline(chains(make_chain, 1).remove(0)),
            Some(stages) => {
                let built = chains(make_chain, stages.cores.len());
                let limit = config.batch as usize;
                Engine::Staged(Stages::start(&umem, queue, built, stages, limit)?)
            }
        };
        if let Some(core) = config.core {
            let known = core_affinity::get_core_ids().unwrap_or_default();
            if !known.iter().any(|id| id.id == core) {
                return Err(WorkerError::Pin { queue, core });
            }
        }
        let config_chains = config.stages.as_ref().map_or(1, |s| s.cores.len());
        let stop = Arc::new(AtomicBool::new(false));
        let (swaps, swap_inbox) = crossbeam_channel::bounded(1);
        let (swap_done, swapped) = crossbeam_channel::bounded(1);
        let stats = Arc::new(Mutex::new(WorkerStats {
            iface: socket.iface().to_string(),
            queue,
            core: config.core,
            ..WorkerStats::default()
        }));
        let run = Run {
            umem,
            socket,
            pool,
            engine,
            config,
            stop: stop.clone(),
            swap_inbox,
            swap_done,
            shared: stats.clone(),
            local: stats.lock().unwrap().clone(),
            frames: Vec::new(),
            verdicts: Vec::new(),
            packets: PacketList::default(),
            overflow: Vec::new(),
            tx_in_flight: 0,
            swap_unconfirmed: false,
            serving_since: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("fp-worker-q{queue}"))
            .spawn(move || run.run())
            .expect("spawn a worker thread");
        Ok(Worker {
            queue,
            chains: config_chains,
            stop,
            swaps,
            swapped,
            stats,
            thread: Some(thread),
        })
    }

    /// The queue of its socket.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Installs chains built by `make_chain` (one per stage) at the next batch boundary,
    /// and waits until they run.
    pub fn swap(
        &self,
        make_chain: impl FnMut() -> Chain,
        timeout: Duration,
    ) -> Result<(), WorkerError> {
        self.swaps
            .send_timeout(chains(make_chain, self.chains), timeout)
            .map_err(|_| WorkerError::Stopped(self.queue))?;
        match self.swapped.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(WorkerError::SwapTimeout(self.queue, timeout))
            }
            Err(_) => Err(WorkerError::Stopped(self.queue)),
        }
    }

    /// True once the worker's thread has ended: stopped, failed (its socket broke) or
    /// panicked. [`Worker::stop`] then says which.
    pub fn has_stopped(&self) -> bool {
        self.thread
            .as_ref()
            .is_none_or(|thread| thread.is_finished())
    }

    /// The stats as last published (at most a few milliseconds old).
    pub fn stats(&self) -> WorkerStats {
        self.stats.lock().unwrap().clone()
    }

    /// Stops the worker: it finishes the batch in hand, lets sent frames complete, and
    /// returns every frame to its pool before the socket closes.
    pub fn stop(mut self) -> Result<WorkerStats, WorkerError> {
        self.halt()?;
        Ok(self.stats())
    }

    fn halt(&mut self) -> Result<(), WorkerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| WorkerError::Panicked(self.queue))?,
            None => Ok(()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn chains(mut make_chain: impl FnMut() -> Chain, count: usize) -> Vec<Chain> {
    (0..count).map(|_| make_chain()).collect()
}

/// Where the chain runs.
enum Engine {
    /// On the worker's thread.
    Inline(Chain),
    /// On stage threads.
    Staged(Stages),
}

/// The worker thread's state.
struct Run {
    socket: Socket,
    umem: Umem,
    pool: FramePool,
    engine: Engine,
    config: WorkerConfig,
    stop: Arc<AtomicBool>,
    swap_inbox: Receiver<Vec<Chain>>,
    swap_done: Sender<()>,
    shared: Arc<Mutex<WorkerStats>>,
    local: WorkerStats,
    frames: Vec<Frame>,
    verdicts: Vec<Verdict>,
    /// The memory of the batch's packet list (run to completion).
    packets: PacketList,
    /// Frames a full stage queue turned away.
    overflow: Vec<Frame>,
    tx_in_flight: u64,
    /// A swap sent to the stages that not all of them have confirmed yet.
    swap_unconfirmed: bool,
    /// The cycle counter when the worker began serving: how busy it is is its busy cycles
    /// over the cycles since.
    serving_since: u64,
}

impl Run {
    fn run(mut self) -> Result<(), WorkerError> {
        if let Some(core) = self.config.core
            && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
        {
            return Err(WorkerError::Pin {
                queue: self.socket.queue(),
                core,
            });
        }
        // Half the frames wait in the fill ring; the rest circulate through RX and TX.
        let half = (self.pool.len() / 2) as u32;
        self.socket.fill(&mut self.pool, half);
        let result = self.serve();
        self.drain();
        if let Engine::Staged(stages) = &mut self.engine {
            stages.stop();
        }
        self.publish();
        let mut pool = self.pool;
        self.socket.shutdown(&mut pool);
        result
    }

    fn serve(&mut self) -> Result<(), WorkerError> {
        self.serving_since = cycles();
        let mut empty_spins = 0u32;
        let mut last_publish = Instant::now();
        let mut iterations = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            self.take_swap();
            let handled = self.step()?;
            iterations += 1;
            if iterations.is_multiple_of(64) && last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
                last_publish = Instant::now();
            }
            if handled > 0 || self.stages_busy() {
                empty_spins = 0;
                continue;
            }
            empty_spins = empty_spins.saturating_add(1);
            let sleep = match self.config.poll {
                PollMode::Spin => false,
                PollMode::Wakeup => true,
                PollMode::Adaptive => empty_spins > ADAPTIVE_SPINS,
            };
            if sleep {
                self.socket.poll(POLL_TIMEOUT_MS)?;
                if last_publish.elapsed() >= PUBLISH_EVERY {
                    self.publish();
                    last_publish = Instant::now();
                }
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }

    /// One batch: recycle completed frames, receive, run the chain, transmit. Returns how
    /// many frames were received.
    fn step(&mut self) -> Result<usize, WorkerError> {
        let batch = self.config.batch;
        let completed = self.socket.complete(&mut self.pool, batch * 2);
        self.tx_in_flight -= u64::from(completed);
        self.socket.refill(&mut self.pool, completed);
        if self.socket.is_busy_polling() || self.socket.fill_needs_wakeup() {
            self.socket.wake_rx()?;
        }
        self.send_finished()?;
        // Take no more than the TX ring can hold, so every forwarded frame can leave.
        let room = self.socket.tx_room(batch);
        self.frames.extend(self.socket.receive(room));
        let received = self.frames.len();
        if received == 0 {
            if self.tx_in_flight > 0 && self.socket.tx_needs_wakeup() {
                self.socket.wake_tx()?;
            }
            return Ok(0);
        }
        let start = cycles();
        self.mark_multi_buffer();
        self.local.batches += 1;
        if let Engine::Inline(chain) = &mut self.engine {
            let queue = self.socket.queue();
            let mut packets = self.packets.fill(&self.umem, &mut self.frames, queue);
            chain.run(&mut packets, &mut self.verdicts);
            self.packets.keep(packets);
            self.send()?;
        } else {
            self.dispatch();
        }
        self.local.busy_cycles += cycles().wrapping_sub(start);
        Ok(received)
    }

    /// Counts the batch in `frames` and gives each frame its first verdict: `Next`, or a
    /// drop for multi-buffer packets.
    fn mark_multi_buffer(&mut self) {
        self.verdicts.clear();
        let mut in_chain = false;
        for frame in &self.frames {
            self.local.rx_packets += 1;
            self.local.rx_bytes += u64::from(frame.len());
            // This pipeline handles single-buffer packets; a multi-buffer chain is dropped
            // whole (its first frame and every continuation).
            let multi = frame.continues() || in_chain;
            in_chain = frame.continues();
            self.verdicts.push(if multi {
                Verdict::Drop(DropReason::MultiBufferPacket)
            } else {
                Verdict::Next
            });
        }
    }

    /// Pipelined mode: hands the batch to the stages, drops what a full queue turned away.
    fn dispatch(&mut self) {
        let Engine::Staged(stages) = &mut self.engine else {
            return;
        };
        // Multi-buffer frames are dropped here; the rest go out by flow.
        let mut verdicts = self.verdicts.iter();
        let local = &mut self.local;
        let refused = self.frames.extract_if(.., |_| match verdicts.next() {
            Some(&Verdict::Drop(reason)) => {
                local.drops.add(reason);
                true
            }
            _ => false,
        });
        self.overflow.extend(refused);
        let before = self.overflow.len();
        stages.dispatch(&self.umem, &mut self.frames, &mut self.overflow);
        self.drop_overflow(before);
    }

    /// Drops the frames the stages turned away (those from `counted` on are counted as
    /// `DropReason::StageQueueFull`; the others were counted already) and refills the fill ring.
    fn drop_overflow(&mut self, counted: usize) {
        for _ in counted..self.overflow.len() {
            self.local.drops.add(DropReason::StageQueueFull);
        }
        let dropped = self.overflow.len() as u32;
        for frame in self.overflow.drain(..) {
            self.pool.put(frame, &self.umem);
        }
        self.socket.refill(&mut self.pool, dropped);
    }

    /// Pipelined mode: sends batches that waited for room in a stage queue, and transmits
    /// every batch the stages have finished.
    fn send_finished(&mut self) -> Result<(), WorkerError> {
        if let Engine::Staged(stages) = &mut self.engine {
            stages.flush(&mut self.overflow);
            self.drop_overflow(0);
        }
        loop {
            let Engine::Staged(stages) = &mut self.engine else {
                return Ok(());
            };
            if !stages.collect(&mut self.frames, &mut self.verdicts) {
                return Ok(());
            }
            self.send()?;
        }
    }

    /// Installs a chain that `swap` sent; in pipelined mode, confirms once every stage has.
    fn take_swap(&mut self) {
        if let Ok(mut chains) = self.swap_inbox.try_recv() {
            match &mut self.engine {
                Engine::Inline(chain) => {
                    let mut new = chains.remove(0);
                    new.adopt(chain);
                    *chain = new;
                    self.swap_unconfirmed = true;
                }
                Engine::Staged(stages) => {
                    stages.swap(chains);
                    self.swap_unconfirmed = true;
                }
            }
        }
        let confirmed = match &self.engine {
            Engine::Inline(_) => true,
            Engine::Staged(stages) => stages.swaps_pending() == 0,
        };
        if self.swap_unconfirmed && confirmed {
            self.swap_unconfirmed = false;
            self.local.swaps += 1;
            let _ = self.swap_done.send(());
        }
    }

    /// Sends what the chain let through; drops the rest into the pool.
    fn send(&mut self) -> Result<(), WorkerError> {
        let umem = &self.umem;
        let mut dropped = 0;
        let mut tx = self
            .socket
            .transmit(&mut self.pool, self.frames.len() as u32);
        for (frame, verdict) in self.frames.drain(..).zip(self.verdicts.drain(..)) {
            let reason = match verdict {
                Verdict::Next | Verdict::Transmit { port: 0 } => {
                    let len = u64::from(frame.len());
                    match tx.push(frame) {
                        Ok(()) => {
                            self.local.tx_packets += 1;
                            self.local.tx_bytes += len;
                            continue;
                        }
                        Err(frame) => {
                            tx.pool().put(frame, umem);
                            DropReason::TxRingFull
                        }
                    }
                }
                Verdict::Transmit { .. } => {
                    tx.pool().put(frame, umem);
                    DropReason::NoSuchPort
                }
                Verdict::Drop(reason) => {
                    tx.pool().put(frame, umem);
                    reason
                }
            };
            dropped += 1;
            self.local.drops.add(reason);
        }
        self.tx_in_flight += u64::from(tx.commit());
        self.socket.refill(&mut self.pool, dropped);
        if self.tx_in_flight > 0 && self.socket.tx_needs_wakeup() {
            self.socket.wake_tx()?;
        }
        Ok(())
    }

    /// After a stop: serve what is already in the RX ring, then let sent frames complete.
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_TIME;
        while Instant::now() < deadline {
            match self.step() {
                Ok(0) if self.tx_in_flight == 0 && !self.stages_busy() => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn stages_busy(&self) -> bool {
        matches!(&self.engine, Engine::Staged(stages) if stages.busy())
    }

    fn publish(&mut self) {
        match &self.engine {
            Engine::Inline(chain) => self.local.functions = chain.stats().to_vec(),
            Engine::Staged(stages) => {
                self.local.stages = stages.stats();
                let per_stage = self.local.stages.iter().map(|s| s.functions.as_slice());
                self.local.functions = NfStats::sum(per_stage);
            }
        }
        // A failed read keeps the last figure: the counter only grows.
        if let Ok(statistics) = self.socket.statistics() {
            self.local.socket_drops = statistics.rx_dropped + statistics.rx_ring_full;
        }
        self.local.serving_cycles = cycles().wrapping_sub(self.serving_since);
        self.local.finish();
        *self.shared.lock().unwrap() = self.local.clone();
    }
}
