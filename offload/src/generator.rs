//! The traffic generator, in two modes.
//!
//! **Live frames** (the default, the xdp-trafficgen technique): `BPF_PROG_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`. User space builds a template frame
//! ([`GenFrame`]); the kernel runs the program on it `repeat` times per call in batches, and
//! each XDP_TX leaves through the interface named in the context, via the driver's
//! `ndo_xdp_xmit` (on veth: into the peer's XDP path, which therefore needs an XDP program).
//! Per packet the program sets the flow's source port and writes a sequence number and
//! timestamp into the payload. [`dispatcher_hold`] explains why the program is also
//! attached to a spare interface while it runs.
//!
//! **AF_XDP TX** ([`xsk_tx`]): one socket per core writes the same frames, ports and stamps
//! from user space and hands them to the driver.
//!
//! One thread per core; a rate limit paces each thread. A mix of frame sizes (IMIX) is
//! sent in its proportions: per call in live-frames mode, per frame in AF_XDP mode.
//! The frames come from `lab::frame::Template`, whose notes on checksums apply.

mod dispatcher_hold;
mod xsk_tx;

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
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

/// The simple IMIX: (wire size, share) — 7 frames of 64 bytes, 4 of 594, 1 of 1518.
pub const IMIX: [(usize, u32); 3] = [(64, 7), (594, 4), (1518, 1)];

/// How the frames leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenMode {
    /// `BPF_PROG_RUN` live frames through the driver's XDP transmit path.
    #[default]
    LiveFrames,
    /// An AF_XDP socket per core (zero-copy where the driver has it, else copy).
    XskTx,
}

/// How much to send.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub iface: String,
    pub ifindex: u32,
    pub mode: GenMode,
    /// The frames with their shares: one entry for a fixed size, several for a mix. Their
    /// port and stamp offsets must agree (same headers, different lengths).
    pub frames: Vec<(GenFrame, u32)>,
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
    pub mode: GenMode,
    /// Frames handed to the transmit path (AF_XDP: completed by the driver).
    pub sent: u64,
    pub seconds: f64,
    pub mpps: f64,
    /// The mix's mean size on the wire (the size itself when fixed).
    pub mean_frame_size: f64,
    pub flows: u32,
    /// Frames the driver took for transmission, and frames it refused (e.g. the veth peer's
    /// ring was full), from its `ethtool -S` XDP counters: live frames only, and None when
    /// the driver has no such counters.
    pub transmitted: Option<u64>,
    pub transmit_errors: Option<u64>,
    /// What fell back or was adjusted (AF_XDP copy mode instead of zero-copy...).
    pub notes: Vec<String>,
}

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
        let first = check_frames(&options.frames)?;
        let cores: Vec<Option<usize>> = if options.cores.is_empty() {
            vec![None]
        } else {
            options.cores.iter().map(|&c| Some(c)).collect()
        };
        let threads = cores.len() as u64;
        // Started when the threads are about to send, after any set-up.
        let pacer = || Pacer {
            started: Instant::now(),
            rate: options.rate_pps.map(|r| (r / threads).max(1)),
            count: options.count.map(|c| c.div_ceil(threads)),
            duration: options.duration,
            stop,
        };
        let sent = AtomicU64::new(0);
        let mut notes = Vec::new();
        let (seconds, transmitted) = match options.mode {
            GenMode::LiveFrames => {
                self.configure(first, options.flows)?;
                let program = gen_tx(&mut self.ebpf)?;
                let _hold = DispatcherHold::new(program)
                    .inspect_err(|error| {
                        notes.push(format!(
                            "{error}: every BPF_PROG_RUN call waits for two RCU grace periods, \
                             so the generator sends more slowly"
                        ))
                    })
                    .ok();
                let fd = program
                    .fd()
                    .map_err(|error| OffloadError::bpf("generator", describe(&error)))?
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|error| {
                        OffloadError::syscall("dup the generator program fd", error)
                    })?;
                let before = xmit_counters(&options.iface);
                let pacer = pacer();
                let work = |_: usize| live_loop(fd.as_raw_fd(), options, &pacer, &sent);
                let seconds = on_cores(&cores, work)?;
                let delta = before.zip(xmit_counters(&options.iface)).map(
                    |((taken0, refused0), (taken1, refused1))| {
                        (taken1 - taken0, refused1 - refused0)
                    },
                );
                (seconds, delta)
            }
            GenMode::XskTx => {
                let queues = afxdp::netdev::queue_count(&options.iface)
                    .unwrap_or(1)
                    .max(1);
                if cores.len() as u32 > queues {
                    return Err(OffloadError::bpf(
                        "AF_XDP TX",
                        format!(
                            "{} cores but {} has {queues} queue(s): each core binds its own queue",
                            cores.len(),
                            options.iface
                        ),
                    ));
                }
                let fallbacks = std::sync::Mutex::new(Vec::new());
                let pacer = pacer();
                let work = |thread: usize| {
                    xsk_tx::send_loop(options, thread as u32, &pacer, &sent, &fallbacks)
                };
                let seconds = on_cores(&cores, work)?;
                notes.extend(fallbacks.into_inner().unwrap_or_default());
                (seconds, None)
            }
        };
        let sent = sent.load(Ordering::Relaxed);
        Ok(GenReport {
            mode: options.mode,
            sent,
            seconds,
            mpps: sent as f64 / seconds / 1e6,
            mean_frame_size: mean_wire_size(&options.frames),
            flows: options.flows.max(1),
            transmitted: transmitted.map(|d| d.0),
            transmit_errors: transmitted.map(|d| d.1),
            notes,
        })
    }

    /// The program's per-run settings: flow count and where it writes.
    fn configure(&mut self, frame: &GenFrame, flows: u32) -> Result<(), OffloadError> {
        let mut config: Array<_, GenConfig> = Array::try_from(
            self.ebpf
                .map_mut("GEN_CONFIG")
                .ok_or_else(|| OffloadError::bpf("generator", "no GEN_CONFIG map"))?,
        )
        .map_err(|error| OffloadError::bpf("GEN_CONFIG", error))?;
        let value = GenConfig {
            flows: flows.max(1),
            port_base: frame.first_port,
            sport_offset: frame.sport_offset,
            stamp_offset: frame.stamp_offset,
            _pad: [0; 6],
        };
        config
            .set(0, value, 0)
            .map_err(|error| OffloadError::bpf("write GEN_CONFIG", error))
    }
}

/// The first frame, once the mix is known to be usable: not empty, shares above zero, and
/// the same write offsets in every frame (the program has one setting for all).
fn check_frames(frames: &[(GenFrame, u32)]) -> Result<&GenFrame, OffloadError> {
    let bad = |why: String| OffloadError::bpf("generator frames", why);
    let (first, _) = frames
        .first()
        .ok_or_else(|| bad("no frame to send".into()))?;
    for (frame, share) in frames {
        if *share == 0 {
            return Err(bad(format!(
                "the {}-byte frame has a share of 0",
                frame.wire_size
            )));
        }
        let offsets = (frame.sport_offset, frame.stamp_offset, frame.first_port);
        if offsets != (first.sport_offset, first.stamp_offset, first.first_port) {
            return Err(bad("the frames of a mix must share their headers".into()));
        }
    }
    if first.stamp_offset.max(first.sport_offset) >= GEN_OFFSET_MASK {
        return Err(bad(format!(
            "write offset {} beyond {GEN_OFFSET_MASK}",
            first.stamp_offset
        )));
    }
    Ok(first)
}

fn mean_wire_size(frames: &[(GenFrame, u32)]) -> f64 {
    let shares: u32 = frames.iter().map(|(_, share)| share).sum();
    let weighted: f64 = frames
        .iter()
        .map(|(frame, share)| frame.wire_size as f64 * f64::from(*share))
        .sum();
    weighted / f64::from(shares.max(1))
}

/// Runs `work(thread index)` on one thread per core (pinned where a core is given) and
/// returns the seconds they took together.
fn on_cores(
    cores: &[Option<usize>],
    work: impl Fn(usize) -> Result<(), OffloadError> + Sync,
) -> Result<f64, OffloadError> {
    let started = Instant::now();
    let results: Vec<Result<(), OffloadError>> = std::thread::scope(|scope| {
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

fn gen_tx(ebpf: &mut Ebpf) -> Result<&mut Xdp, OffloadError> {
    ebpf.program_mut("gen_tx")
        .ok_or_else(|| OffloadError::bpf("generator", "no gen_tx program"))?
        .try_into()
        .map_err(|error| OffloadError::bpf("generator", describe(&error)))
}

/// When one thread may send: its share of the rate and count, and the common deadline.
struct Pacer<'a> {
    started: Instant,
    rate: Option<u64>,
    count: Option<u64>,
    duration: Duration,
    stop: &'a AtomicBool,
}

impl Pacer<'_> {
    /// How many frames may go now, at most `max`, with `done` gone so far: None when the
    /// thread is finished, 0 (after a short sleep) when it is ahead of its rate.
    fn allowance(&self, done: u64, max: u32) -> Option<u32> {
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

/// Frames per call for each share of a mix: a 7:4:1 IMIX sends 1792, 1024 and 256 frames
/// in turn, a mix over ~0.1 ms at these rates.
const MIX_UNIT: u32 = 256;

/// One thread's calls into the kernel.
fn live_loop(
    fd: i32,
    options: &GenOptions,
    pacer: &Pacer,
    sent: &AtomicU64,
) -> Result<(), OffloadError> {
    let frames = &options.frames;
    let quota_of = |turn: usize| match frames.len() {
        1 => FRAMES_PER_CALL,
        _ => frames[turn].1 * MIX_UNIT,
    };
    let (mut turn, mut quota) = (0, quota_of(0));
    let mut mine: u64 = 0;
    while let Some(chunk) = pacer.allowance(mine, quota) {
        if chunk == 0 {
            continue;
        }
        let frame = &frames[turn].0.bytes;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
        // The kernel insists that data_end equals the frame's length (bpf_prog_test_run_xdp).
        let context = [0, frame.len() as u32, 0, options.ifindex, 0, 0];
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
        quota -= chunk;
        if quota == 0 {
            turn = (turn + 1) % frames.len();
            quota = quota_of(turn);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(size: usize, sport_offset: u16) -> GenFrame {
        GenFrame {
            bytes: vec![0; size - 4],
            sport_offset,
            stamp_offset: 42,
            first_port: 1024,
            wire_size: size,
        }
    }

    #[test]
    fn a_mix_must_share_headers_and_have_shares() {
        let error = |frames: &[(GenFrame, u32)]| check_frames(frames).unwrap_err().to_string();
        assert!(error(&[]).contains("no frame to send"));
        assert!(error(&[(frame(64, 34), 0)]).contains("64-byte frame has a share of 0"));
        let mixed = [(frame(64, 34), 1), (frame(128, 54), 1)];
        assert!(error(&mixed).contains("must share their headers"));
        let imix: Vec<_> = IMIX
            .iter()
            .map(|&(size, share)| (frame(size, 34), share))
            .collect();
        assert_eq!(check_frames(&imix).unwrap().wire_size, 64);
        assert!((mean_wire_size(&imix) - 4342.0 / 12.0).abs() < 1e-9);
    }
}
