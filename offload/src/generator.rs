//! The traffic generator: `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`.
//!
//! User space builds one template frame ([`Template`]); the kernel runs the program on it
//! `repeat` times per call in batches, and each XDP_TX leaves through the interface named in
//! the context, via the driver's `ndo_xdp_xmit` (on veth: into the peer's XDP path, which
//! therefore needs an XDP program). Per packet the program sets the flow's source port and
//! writes a sequence number and timestamp into the payload. One thread per core calls the
//! kernel; a rate limit paces the calls.
//!
//! The frame comes from `lab::frame::Template`, whose notes on checksums apply.
//! [`dispatcher_hold`] explains why the program is also attached to a spare interface.

mod dispatcher_hold;

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::{Ebpf, EbpfLoader, maps::Array, programs::Xdp};
use offload_common::{GEN_OFFSET_MASK, GenConfig};
use serde::Serialize;

use crate::{OffloadError, STEER_OBJECT, attach::describe, probe::ethtool, sys};
use dispatcher_hold::DispatcherHold;

/// Frames per `BPF_PROG_RUN` call: bounds the time between rate and stop checks.
const FRAMES_PER_CALL: u32 = 1 << 14;
/// Frames the kernel runs before a transmit flush (its default is 64).
const KERNEL_BATCH: u32 = 64;

/// A frame to send, built by `lab::frame::Template`, and where the program writes in it.
#[derive(Clone, Debug)]
pub struct GenFrame {
    pub bytes: Vec<u8>,
    /// Offset of the L4 source port.
    pub sport_offset: u16,
    /// Offset of the 16-byte stamp (sequence number, timestamp).
    pub stamp_offset: u16,
    /// Source port of flow 0; flow `n` uses `first_port + n`.
    pub first_port: u16,
    /// Size on the wire, FCS included.
    pub wire_size: usize,
}

/// How much to send.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub iface: String,
    pub ifindex: u32,
    pub frame: GenFrame,
    pub flows: u32,
    /// Frames per second over all cores; None sends as fast as the cores can.
    pub rate_pps: Option<u64>,
    pub duration: Duration,
    /// Stop after this many frames, if sooner.
    pub count: Option<u64>,
    /// Cores to send from, one thread each; empty means the current one.
    pub cores: Vec<usize>,
}

/// What was offered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenReport {
    /// Frames the program ran on and handed to the transmit path.
    pub sent: u64,
    pub seconds: f64,
    pub mpps: f64,
    pub frame_size: usize,
    pub flows: u32,
    /// Frames the driver took for transmission, and frames it refused (e.g. the veth peer's
    /// ring was full), from its `ethtool -S` counters; None when it has no such counters.
    pub transmitted: Option<u64>,
    pub transmit_errors: Option<u64>,
}

/// The driver's XDP transmit counters: (frames taken, frames refused).
fn xmit_counters(iface: &str) -> Option<(u64, u64)> {
    let stats = ethtool::statistics(&mut ethtool::Ioctl, iface).ok()?;
    stats
        .iter()
        .any(|(name, _)| name.ends_with("xdp_xmit"))
        .then(|| {
            (
                ethtool::sum_of(&stats, "xdp_xmit"),
                ethtool::sum_of(&stats, "xdp_xmit_errors"),
            )
        })
}

/// The loaded generator program.
pub struct Generator {
    ebpf: Ebpf,
}

impl Generator {
    pub fn load() -> Result<Generator, OffloadError> {
        let mut ebpf = EbpfLoader::new()
            .load(STEER_OBJECT)
            .map_err(|error| OffloadError::bpf("load the generator object", describe(&error)))?;
        gen_tx(&mut ebpf)?
            .load()
            .map_err(|error| OffloadError::bpf("verifier rejected gen_tx", describe(&error)))?;
        Ok(Generator { ebpf })
    }

    /// Sends until the duration or count is reached, or `stop` is set.
    pub fn run(
        &mut self,
        options: &GenOptions,
        stop: &AtomicBool,
    ) -> Result<GenReport, OffloadError> {
        let GenFrame {
            bytes: frame,
            sport_offset,
            stamp_offset,
            ..
        } = options.frame.clone();
        if stamp_offset.max(sport_offset) >= GEN_OFFSET_MASK {
            return Err(OffloadError::bpf(
                "generator frame",
                format!("write offset {stamp_offset} beyond {GEN_OFFSET_MASK}"),
            ));
        }
        let mut config: Array<_, GenConfig> = Array::try_from(
            self.ebpf
                .map_mut("GEN_CONFIG")
                .ok_or_else(|| OffloadError::bpf("generator", "no GEN_CONFIG map"))?,
        )
        .map_err(|error| OffloadError::bpf("GEN_CONFIG", error))?;
        config
            .set(
                0,
                GenConfig {
                    flows: options.flows.max(1),
                    port_base: options.frame.first_port,
                    sport_offset,
                    stamp_offset,
                    _pad: [0; 6],
                },
                0,
            )
            .map_err(|error| OffloadError::bpf("write GEN_CONFIG", error))?;
        let program = gen_tx(&mut self.ebpf)?;
        let _hold = DispatcherHold::new(program)
            .inspect_err(|error| {
                eprintln!(
                    "warning: {error}; every BPF_PROG_RUN call will wait for two RCU grace \
                     periods, so the generator sends more slowly"
                )
            })
            .ok();
        let fd = program
            .fd()
            .map_err(|error| OffloadError::bpf("generator", describe(&error)))?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|error| OffloadError::syscall("dup the generator program fd", error))?;
        let fd = Arc::new(fd);
        let cores = if options.cores.is_empty() {
            vec![None]
        } else {
            options.cores.iter().map(|&c| Some(c)).collect()
        };
        let per_thread_rate = options.rate_pps.map(|r| (r / cores.len() as u64).max(1));
        let per_thread_count = options.count.map(|c| c.div_ceil(cores.len() as u64));
        let sent = Arc::new(AtomicU64::new(0));
        let before = xmit_counters(&options.iface);
        let started = Instant::now();
        let results: Vec<Result<(), OffloadError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cores
                .iter()
                .map(|core| {
                    let (fd, sent, frame) = (fd.clone(), sent.clone(), frame.clone());
                    let core = *core;
                    scope.spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core_affinity::CoreId { id: core });
                        }
                        send_loop(
                            fd.as_raw_fd(),
                            &frame,
                            options.ifindex,
                            per_thread_rate,
                            per_thread_count,
                            options.duration,
                            stop,
                            &sent,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("generator thread panicked"))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let seconds = started.elapsed().as_secs_f64();
        let sent = sent.load(Ordering::Relaxed);
        let delta = before
            .zip(xmit_counters(&options.iface))
            .map(|((taken0, refused0), (taken1, refused1))| (taken1 - taken0, refused1 - refused0));
        Ok(GenReport {
            transmitted: delta.map(|d| d.0),
            transmit_errors: delta.map(|d| d.1),
            sent,
            seconds,
            mpps: sent as f64 / seconds / 1e6,
            frame_size: options.frame.wire_size,
            flows: options.flows.max(1),
        })
    }
}

fn gen_tx(ebpf: &mut Ebpf) -> Result<&mut Xdp, OffloadError> {
    ebpf.program_mut("gen_tx")
        .ok_or_else(|| OffloadError::bpf("generator", "no gen_tx program"))?
        .try_into()
        .map_err(|error| OffloadError::bpf("generator", describe(&error)))
}

/// One thread's calls into the kernel, paced to `rate` frames per second when given.
#[allow(clippy::too_many_arguments)]
fn send_loop(
    fd: i32,
    frame: &[u8],
    ifindex: u32,
    rate: Option<u64>,
    count: Option<u64>,
    duration: Duration,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> Result<(), OffloadError> {
    let started = Instant::now();
    let mut mine: u64 = 0;
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
    // The kernel insists that data_end equals the frame's length (bpf_prog_test_run_xdp).
    let mut context = [0u32; 6];
    context[1] = frame.len() as u32;
    context[3] = ifindex;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < duration {
        let left = count.map_or(u64::MAX, |c| c.saturating_sub(mine));
        if left == 0 {
            break;
        }
        let mut chunk = FRAMES_PER_CALL;
        if let Some(rate) = rate {
            // Frames due by now; sleep until the next chunk is due when ahead.
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            if mine >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            chunk = chunk.min((due - mine) as u32).max(1);
        }
        let chunk = chunk.min(left.min(u64::from(u32::MAX)) as u32);
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            ctx_in: context.as_ptr().cast(),
            ctx_size_in: size_of_val(&context) as u32,
            repeat: chunk as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: KERNEL_BATCH,
            ..Default::default()
        };
        // SAFETY: the frame, context and opts outlive the call; sizes match the buffers.
        let result = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
        sys::check(result).map_err(|error| {
            OffloadError::syscall(
                "BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (needs kernel 5.18+ and an \
                 interface whose driver transmits XDP frames)",
                error,
            )
        })?;
        mine += u64::from(chunk);
        sent.fetch_add(u64::from(chunk), Ordering::Relaxed);
    }
    Ok(())
}
