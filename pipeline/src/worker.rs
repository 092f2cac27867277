//! One worker: a thread pinned to a core, owning one AF_XDP socket, running
//! run-to-completion until told to stop.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use afxdp::{Frame, FramePool, Socket, Umem, XskError};
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::{
    chain::Chain,
    nf::{Packet, Verdict},
    stats::{WorkerStats, cycles},
};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Socket(#[from] XskError),
    #[error("cannot pin the worker for queue {queue} to core {core}: no such core, or not allowed")]
    Pin { queue: u32, core: usize },
    #[error("the worker for queue {0} has stopped")]
    Stopped(u32),
    #[error("the worker for queue {0} did not take the new chain within {1:?}")]
    SwapTimeout(u32, Duration),
    #[error("the worker for queue {0} panicked")]
    Panicked(u32),
}

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

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub core: Option<usize>,
    pub batch: u32,
    pub poll: PollMode,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            core: None,
            batch: 64,
            poll: PollMode::Adaptive,
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

pub struct Worker {
    queue: u32,
    stop: Arc<AtomicBool>,
    swaps: Sender<Chain>,
    swapped: Receiver<()>,
    stats: Arc<Mutex<WorkerStats>>,
    thread: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl Worker {
    /// Starts a worker on a bound socket. `pool` holds the UMEM's free frames.
    pub fn start(
        socket: Socket,
        pool: FramePool,
        chain: Chain,
        config: WorkerConfig,
    ) -> Result<Worker, WorkerError> {
        let queue = socket.queue();
        if let Some(core) = config.core {
            let known = core_affinity::get_core_ids().unwrap_or_default();
            if !known.iter().any(|id| id.id == core) {
                return Err(WorkerError::Pin { queue, core });
            }
        }
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
            umem: socket.umem().clone(),
            socket,
            pool,
            chain,
            config,
            stop: stop.clone(),
            swap_inbox,
            swap_done,
            shared: stats.clone(),
            local: stats.lock().unwrap().clone(),
            frames: Vec::new(),
            verdicts: Vec::new(),
            tx_in_flight: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("fp-worker-q{queue}"))
            .spawn(move || run.run())
            .expect("spawn a worker thread");
        Ok(Worker {
            queue,
            stop,
            swaps,
            swapped,
            stats,
            thread: Some(thread),
        })
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Installs `chain` at the worker's next batch boundary and waits until it runs.
    pub fn swap(&self, chain: Chain, timeout: Duration) -> Result<(), WorkerError> {
        self.swaps
            .send_timeout(chain, timeout)
            .map_err(|_| WorkerError::Stopped(self.queue))?;
        match self.swapped.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(WorkerError::SwapTimeout(self.queue, timeout))
            }
            Err(_) => Err(WorkerError::Stopped(self.queue)),
        }
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

/// The worker thread's state.
struct Run {
    socket: Socket,
    umem: Umem,
    pool: FramePool,
    chain: Chain,
    config: WorkerConfig,
    stop: Arc<AtomicBool>,
    swap_inbox: Receiver<Chain>,
    swap_done: Sender<()>,
    shared: Arc<Mutex<WorkerStats>>,
    local: WorkerStats,
    frames: Vec<Frame>,
    verdicts: Vec<Verdict>,
    tx_in_flight: u64,
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
        self.publish();
        let mut pool = self.pool;
        self.socket.shutdown(&mut pool);
        result
    }

    fn serve(&mut self) -> Result<(), WorkerError> {
        let mut empty_spins = 0u32;
        let mut last_publish = Instant::now();
        let mut iterations = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok(mut chain) = self.swap_inbox.try_recv() {
                chain.adopt(&mut self.chain);
                self.chain = chain;
                self.local.swaps += 1;
                let _ = self.swap_done.send(());
            }
            let handled = self.step()?;
            iterations += 1;
            if iterations.is_multiple_of(64) && last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
                last_publish = Instant::now();
            }
            if handled > 0 {
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
        if completed > 0 {
            self.socket.fill(&mut self.pool, completed);
        }
        if self.socket.is_busy_polling() || self.socket.fill_needs_wakeup() {
            self.socket.wake_rx()?;
        }
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
        self.decide();
        self.send()?;
        self.local.busy_cycles += cycles().wrapping_sub(start);
        self.local.batches += 1;
        Ok(received)
    }

    /// Runs the chain over the batch in `frames`, leaving a verdict per frame.
    fn decide(&mut self) {
        let queue = self.socket.queue();
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
                Verdict::Drop("multi-buffer packet")
            } else {
                Verdict::Next
            });
        }
        let mut packets: Vec<Packet<'_>> = self
            .frames
            .iter_mut()
            .map(|frame| Packet::new(&self.umem, frame, queue))
            .collect();
        self.chain.run(&mut packets, &mut self.verdicts);
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
                            "tx ring full"
                        }
                    }
                }
                Verdict::Transmit { .. } => {
                    tx.pool().put(frame, umem);
                    "no such port"
                }
                Verdict::Drop(reason) => {
                    tx.pool().put(frame, umem);
                    reason
                }
            };
            dropped += 1;
            self.local.drop(reason);
        }
        self.tx_in_flight += u64::from(tx.commit());
        if dropped > 0 {
            self.socket.fill(&mut self.pool, dropped);
        }
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
                Ok(0) if self.tx_in_flight == 0 => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn publish(&mut self) {
        self.local.functions = self.chain.stats().to_vec();
        self.local.finish();
        *self.shared.lock().unwrap() = self.local.clone();
    }
}
