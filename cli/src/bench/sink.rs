//! The AF_XDP apps under test (rxdrop, l2fwd), run in a pinned thread of this process so
//! the runner can read their counters between trials, and so the sink can read each
//! frame's send timestamp for latency.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use afxdp::{BindMode, Frame, Socket, SocketConfig, Umem, UmemConfig};
use anyhow::{Context, bail};
use lab::frame::swap_macs;
use offload::generator::monotonic_ns;

use crate::xsk::{SteeringGuard, refill};

/// One latency sample per this many frames: reading the payload costs a cache miss.
const SAMPLE_EVERY: u64 = 8;
/// At most this many samples per load point.
const MAX_SAMPLES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkApp {
    Rxdrop,
    L2fwd,
}

#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub batch: u32,
    pub ring_size: u32,
    pub frame_size: u32,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ready: AtomicBool,
    received: AtomicU64,
    /// rx_dropped + rx_ring_full from XDP_STATISTICS.
    socket_drops: AtomicU64,
    recording: AtomicBool,
    stamp_offset: AtomicUsize,
    samples: Mutex<Vec<u64>>,
}

pub struct Sink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Sink {
    /// Binds a copy-mode socket on queue 0 of `iface` (inside `namespace`), registers it
    /// in the attached steering program's XSKMAP and spins on `cpu` until stopped.
    pub fn start(
        app: SinkApp,
        namespace: Option<String>,
        iface: String,
        cpu: usize,
        tuning: Tuning,
    ) -> anyhow::Result<Sink> {
        let shared = Arc::new(Shared::default());
        let inner = shared.clone();
        let thread = std::thread::spawn(move || {
            if let Some(namespace) = &namespace {
                lab::netns::enter(namespace)?;
            }
            core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            let result = run(app, &iface, &tuning, &inner);
            // Wake a runner still waiting for `ready`.
            inner.ready.store(true, Ordering::Release);
            result
        });
        let sink = Sink {
            shared,
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sink.shared.ready.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                bail!("the {app:?} sink did not come up within 10 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if sink.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return sink
                .stop()
                .and_then(|()| bail!("the {app:?} sink stopped at once"));
        }
        Ok(sink)
    }

    /// (packets received, packets the kernel dropped at the socket) so far.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.shared.received.load(Ordering::Relaxed),
            self.shared.socket_drops.load(Ordering::Relaxed),
        )
    }

    /// Starts recording latency samples from frames stamped at `stamp_offset`.
    pub fn record_latency(&self, stamp_offset: usize) {
        self.shared.samples.lock().unwrap().clear();
        self.shared
            .stamp_offset
            .store(stamp_offset, Ordering::Relaxed);
        self.shared.recording.store(true, Ordering::Relaxed);
    }

    /// Stops recording and returns the samples (ns from send to receive).
    pub fn take_latency(&self) -> Vec<u64> {
        self.shared.recording.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.shared.samples.lock().unwrap())
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the sink thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The send time the generator wrote at `offset` (GenStamp: sequence, then ns).
fn stamp(data: &[u8], offset: usize) -> Option<u64> {
    let bytes = data.get(offset + 8..offset + 16)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

fn run(app: SinkApp, iface: &str, tuning: &Tuning, shared: &Shared) -> anyhow::Result<()> {
    let ring = tuning.ring_size;
    let (umem, mut pool) = Umem::new(UmemConfig {
        frame_size: tuning.frame_size,
        frame_count: ring * 4,
        ..UmemConfig::default()
    })?;
    let mut socket = Socket::bind(
        &umem,
        iface,
        0,
        &SocketConfig {
            mode: BindMode::Copy,
            rx_size: ring,
            tx_size: if app == SinkApp::L2fwd { ring } else { 0 },
            fill_size: ring,
            completion_size: ring,
            need_wakeup: true,
            multi_buffer: false,
            busy_poll: None,
        },
    )
    .with_context(|| format!("bind an AF_XDP socket on {iface} queue 0"))?;
    let _steering = SteeringGuard::register(iface, &socket)?;
    let batch = tuning.batch;
    // l2fwd keeps half the frames for the TX side.
    let filled = if app == SinkApp::L2fwd {
        (pool.len() / 2) as u32
    } else {
        u32::MAX
    };
    socket.fill(&mut pool, filled);
    shared.ready.store(true, Ordering::Release);
    let mut received = 0u64;
    let mut used = 0;
    let mut iterations = 0u32;
    let mut outgoing: Vec<Frame> = Vec::with_capacity(batch as usize);
    let mut samples = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let returned = if app == SinkApp::L2fwd {
            socket.complete(&mut pool, batch * 2)
        } else {
            used
        };
        refill(&mut socket, &mut pool, returned)?;
        used = 0;
        let recording = shared.recording.load(Ordering::Relaxed);
        let offset = shared.stamp_offset.load(Ordering::Relaxed);
        let room = if app == SinkApp::L2fwd {
            socket.tx_room(batch)
        } else {
            batch
        };
        let mut now = None;
        for mut frame in socket.receive(room) {
            received += 1;
            if recording && received.is_multiple_of(SAMPLE_EVERY) {
                let now = *now.get_or_insert_with(monotonic_ns);
                if let Some(sent) = stamp(umem.data(&frame), offset) {
                    samples.push(now.saturating_sub(sent));
                }
            }
            match app {
                SinkApp::Rxdrop => {
                    pool.put(frame, &umem);
                    used += 1;
                }
                SinkApp::L2fwd => {
                    swap_macs(umem.data_mut(&mut frame));
                    outgoing.push(frame);
                }
            }
        }
        if !outgoing.is_empty() {
            let mut tx = socket.transmit(&mut pool, outgoing.len() as u32);
            for frame in outgoing.drain(..) {
                if let Err(frame) = tx.push(frame) {
                    tx.pool().put(frame, &umem);
                }
            }
            tx.commit();
        }
        if app == SinkApp::L2fwd && socket.tx_needs_wakeup() {
            socket.wake_tx()?;
        }
        shared.received.store(received, Ordering::Relaxed);
        if !samples.is_empty() {
            let mut all = shared.samples.lock().unwrap();
            let room = MAX_SAMPLES.saturating_sub(all.len());
            all.extend(samples.drain(..).take(room));
        }
        iterations = iterations.wrapping_add(1);
        if iterations.is_multiple_of(1024) {
            let stats = socket.statistics()?;
            shared
                .socket_drops
                .store(stats.rx_dropped + stats.rx_ring_full, Ordering::Relaxed);
        }
    }
    Ok(())
}
