//! The AF_XDP apps under test (rxdrop, l2fwd), run in a pinned thread of this process so
//! the runner can read their counters between trials, and so the sink can read each
//! frame's send timestamp for latency. The loops are `pipeline::xsk_apps`', the ones
//! `fastpath xsk` runs; the sink only watches them.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use afxdp::{BindMode, Socket};
use hw_profiles::SocketTuning;
use pipeline::xsk_apps::{self, Monitor, Tally};
use trafficgen::monotonic_ns;
use wire::stamp::Stamp;

use crate::{
    error::BenchError,
    socket::{SocketSettings, SocketSteering, XskApp},
};

/// One latency sample per this many frames: reading the payload costs a cache miss.
const SAMPLE_EVERY: u64 = 8;
/// At most this many samples per load point.
const MAX_SAMPLES: usize = 1 << 20;

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

pub(crate) struct Sink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), BenchError>>>,
}

impl Sink {
    /// Binds a copy-mode socket on queue 0 of `iface` (inside `namespace`), registers it
    /// in the attached steering program's XSKMAP and spins on `cpu` until stopped.
    pub fn start(
        app: XskApp,
        namespace: Option<String>,
        iface: String,
        cpu: usize,
        tuning: SocketTuning,
    ) -> Result<Sink, BenchError> {
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
                return Err(BenchError::SinkTimeout { app });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if sink.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return Err(BenchError::SinkStopped {
                app,
                source: sink.stop().err().map(Box::new),
            });
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

    pub fn stop(mut self) -> Result<(), BenchError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(BenchError::SinkPanicked),
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

fn run(app: XskApp, iface: &str, tuning: &SocketTuning, shared: &Shared) -> Result<(), BenchError> {
    let settings = SocketSettings {
        iface: iface.to_string(),
        queue: 0,
        mode: BindMode::Copy,
        busy_poll: false,
        batch: tuning.batch.value,
        frame_size: tuning.frame_size.value,
        ring_size: tuning.ring_size.value,
        multi_buffer: false,
    };
    let (mut socket, pool) = settings.bind(app).map_err(|source| BenchError::Bind {
        iface: iface.to_string(),
        queue: 0,
        source,
    })?;
    let _steering = SocketSteering::register(iface, &socket)?;
    shared.ready.store(true, Ordering::Release);
    let mut monitor = SinkMonitor {
        shared,
        iterations: 0,
        received: 0,
        now: None,
        samples: Vec::new(),
        failed: None,
    };
    match app {
        XskApp::Rxdrop => xsk_apps::rxdrop(&mut socket, pool, tuning.batch.value, &mut monitor)?,
        XskApp::L2fwd => xsk_apps::l2fwd(&mut socket, pool, tuning.batch.value, &mut monitor)?,
        XskApp::Txpush => unreachable!("the line-rate runner sinks traffic, it sends none"),
    };
    match monitor.failed {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// Publishes the loop's counters for the runner, and samples latency from the stamps
/// while the runner records.
struct SinkMonitor<'a> {
    shared: &'a Shared,
    iterations: u32,
    /// Packets seen, counted here for the sampling.
    received: u64,
    /// The receive time of this batch, read once for all its samples.
    now: Option<u64>,
    samples: Vec<u64>,
    /// XDP_STATISTICS failed: the loop stops and the sink reports it.
    failed: Option<afxdp::XskError>,
}

impl Monitor for SinkMonitor<'_> {
    const READS_FRAMES: bool = true;

    fn keep_going(&mut self, socket: &Socket, tally: &Tally) -> bool {
        let shared = self.shared;
        self.now = None;
        shared.received.store(tally.packets, Ordering::Relaxed);
        if !self.samples.is_empty() {
            let mut all = shared.samples.lock().unwrap();
            let room = MAX_SAMPLES.saturating_sub(all.len());
            all.extend(self.samples.drain(..).take(room));
        }
        self.iterations = self.iterations.wrapping_add(1);
        if self.iterations.is_multiple_of(1024) {
            match socket.statistics() {
                Ok(stats) => shared
                    .socket_drops
                    .store(stats.rx_dropped + stats.rx_ring_full, Ordering::Relaxed),
                Err(error) => {
                    self.failed = Some(error);
                    return false;
                }
            }
        }
        !shared.stop.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn received(&mut self, frame: &[u8]) {
        self.received += 1;
        let shared = self.shared;
        if shared.recording.load(Ordering::Relaxed) && self.received.is_multiple_of(SAMPLE_EVERY) {
            let now = *self.now.get_or_insert_with(monotonic_ns);
            let offset = shared.stamp_offset.load(Ordering::Relaxed);
            if let Some(stamp) = Stamp::read(frame, offset) {
                self.samples.push(now.saturating_sub(stamp.sent_ns));
            }
        }
    }
}
