//! The traffic generator, in two modes.
//!
//! **Live frames** (the default, the xdp-trafficgen technique): `BPF_PROG_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`. User space builds a template frame
//! ([`GenFrame`]); the kernel runs the program on it `repeat` times per call in batches, and
//! each XDP_TX leaves through the interface named in the context, via the driver's
//! `ndo_xdp_xmit` (on veth: into the peer's XDP path, which therefore needs an XDP program).
//! Per packet the program writes the flow's ports and addresses (flow `n` is the `n`-th
//! point of the 5-tuple ranges, [`FlowSpace`]; the IPv4 header checksum is refreshed) and a
//! sequence number and timestamp into the payload. [`dispatcher_hold`] explains why the program is also
//! attached to a spare interface while it runs.
//!
//! **AF_XDP TX** ([`xsk_tx`]): one socket per core writes the same frames, flows and stamps
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
pub use offload_common::FlowSpace;
use offload_common::{GEN_OFFSET_MASK, GenConfig};
use serde::Serialize;

use nic::ethtool;

use crate::{OffloadError, STEER_OBJECT, Transient, error_chain::error_chain as describe, sys};
use dispatcher_hold::DispatcherHold;

/// Frames per `BPF_PROG_RUN` call: bounds the time between rate and stop checks.
const FRAMES_PER_CALL: u32 = 1 << 14;
/// Frames the kernel runs before a transmit flush (its default is 64).
const KERNEL_BATCH: u32 = 64;

/// A frame to send, built by `lab::frame::Template`, and where the generator writes in it.
#[derive(Clone, Debug)]
pub struct GenFrame {
    pub bytes: Vec<u8>,
    pub fields: FrameFields,
    /// Size on the wire, FCS included.
    pub wire_size: usize,
}

impl GenFrame {
    /// One flow: this frame's own addresses and ports, each range one value long. Widen the
    /// counts for more flows.
    pub fn flow_space(&self) -> FlowSpace {
        let read = |offset: u16, len: usize| {
            let at = usize::from(offset);
            self.bytes[at..at + len]
                .iter()
                .fold(0u32, |word, &byte| word << 8 | u32::from(byte))
        };
        FlowSpace {
            src_base: read(self.fields.src, 4),
            src_count: 1,
            dst_base: read(self.fields.dst, 4),
            dst_count: 1,
            sport_base: read(self.fields.l4, 2) as u16,
            sport_count: 1,
            dport_base: read(self.fields.l4 + 2, 2) as u16,
            dport_count: 1,
        }
    }
}

/// Offsets in a frame of what changes per packet: the flow's ports and addresses, the IPv4
/// header whose checksum covers them, and the stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFields {
    /// The L4 header: source port, then destination port.
    pub l4: u16,
    /// The last 4 bytes of the source and destination addresses.
    pub src: u16,
    pub dst: u16,
    /// The IPv4 header; None for IPv6.
    pub ipv4_header: Option<u16>,
    /// The 16-byte stamp (sequence number, timestamp).
    pub stamp: u16,
    /// The L4 checksum to write per packet; None when the frame carries none (IPv4 UDP).
    pub l4_checksum: Option<L4Checksum>,
}

/// Where a frame's L4 checksum goes and the part of it that never changes (see
/// `GenConfig::l4_checksum`); `lab::frame::TemplateFrame` works it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Checksum {
    pub offset: u16,
    pub base: u32,
    /// 2 for UDP, 1 for TCP.
    pub length_weight: u16,
}

impl FrameFields {
    /// The program's settings for these offsets and flows.
    pub fn config(&self, flows: u32, space: FlowSpace) -> GenConfig {
        GenConfig {
            flows: flows.max(1),
            space,
            l4_offset: self.l4,
            stamp_offset: self.stamp,
            src_offset: self.src,
            dst_offset: self.dst,
            ipv4_offset: self.ipv4_header.unwrap_or(0),
            checksum_offset: self.l4_checksum.map_or(0, |c| c.offset),
            checksum_base: self.l4_checksum.map_or(0, |c| c.base),
            length_weight: self.l4_checksum.map_or(0, |c| c.length_weight),
            _pad: [0; 2],
        }
    }
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
    /// Flows to cycle through, the first `flows` points of `space`.
    pub flows: u32,
    /// The 5-tuple ranges; their bases are the template's own fields.
    pub space: FlowSpace,
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
    let stats = ethtool::statistics(&mut nic::Kernel, iface).ok()?;
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

/// The generator, with its program loaded once for all live-frames runs.
#[derive(Default)]
pub struct Generator {
    ebpf: Option<Ebpf>,
}

impl Generator {
    /// A generator for `mode`: live frames load the program now, so a kernel that refuses
    /// it is reported before any run; AF_XDP TX needs none.
    pub fn for_mode(mode: GenMode) -> Result<Generator, OffloadError> {
        let mut generator = Generator::default();
        if mode == GenMode::LiveFrames {
            generator.program()?;
        }
        Ok(generator)
    }

    /// The loaded `gen_tx`, loading it the first time.
    fn program(&mut self) -> Result<&mut Ebpf, OffloadError> {
        if self.ebpf.is_none() {
            // The object's maps are declared pinned; the generator shares none of them, so
            // they go to a directory of this load's own, removed once loaded.
            let pins = Transient::create()?;
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(pins.pins().maps_dir())
                .load(STEER_OBJECT)
                .map_err(|error| {
                    OffloadError::bpf("load the generator object", describe(&error))
                })?;
            drop(pins);
            gen_tx(&mut ebpf)?
                .load()
                .map_err(|error| OffloadError::bpf("verifier rejected gen_tx", describe(&error)))?;
            self.ebpf = Some(ebpf);
        }
        Ok(self.ebpf.as_mut().expect("loaded above"))
    }

    /// Sends until the duration or count is reached, or `stop` is set.
    pub fn run(
        &mut self,
        options: &GenOptions,
        stop: &AtomicBool,
    ) -> Result<GenReport, OffloadError> {
        let config = check(options)?;
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
                self.configure(config)?;
                let program = gen_tx(self.program()?)?;
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
                let queues = nic::ethtool::queue_count(&options.iface)
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
                    xsk_tx::send_loop(options, &config, thread as u32, &pacer, &sent, &fallbacks)
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

    /// The program's per-run settings: the flows and where it writes.
    fn configure(&mut self, value: GenConfig) -> Result<(), OffloadError> {
        let mut config: Array<_, GenConfig> = Array::try_from(
            self.program()?
                .map_mut("GEN_CONFIG")
                .ok_or_else(|| OffloadError::bpf("generator", "no GEN_CONFIG map"))?,
        )
        .map_err(|error| OffloadError::bpf("GEN_CONFIG", error))?;
        config
            .set(0, value, 0)
            .map_err(|error| OffloadError::bpf("write GEN_CONFIG", error))
    }
}

/// The settings for a run, once the options are known to be usable: a mix that is not
/// empty, with shares above zero and the same write offsets in every frame (the program has
/// one setting for all), and no more flows than the ranges hold.
fn check(options: &GenOptions) -> Result<GenConfig, OffloadError> {
    let bad = |why: String| OffloadError::bpf("generator frames", why);
    let (first, _) = options
        .frames
        .first()
        .ok_or_else(|| bad("no frame to send".into()))?;
    for (frame, share) in &options.frames {
        if *share == 0 {
            return Err(bad(format!(
                "the {}-byte frame has a share of 0",
                frame.wire_size
            )));
        }
        if frame.fields != first.fields {
            return Err(bad("the frames of a mix must share their headers".into()));
        }
    }
    let fields = first.fields;
    let checksum = fields.l4_checksum.map_or(0, |c| c.offset);
    let offsets = [fields.l4, fields.src, fields.dst, fields.stamp, checksum];
    if let Some(&offset) = offsets.iter().find(|&&o| o >= GEN_OFFSET_MASK) {
        return Err(bad(format!(
            "write offset {offset} beyond {GEN_OFFSET_MASK}"
        )));
    }
    let distinct = options.space.size();
    if u64::from(options.flows) > distinct {
        return Err(OffloadError::bpf(
            "generator flows",
            format!(
                "{} flows, but the address and port ranges hold only {distinct} distinct 5-tuples",
                options.flows
            ),
        ));
    }
    Ok(fields.config(options.flows, options.space))
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

/// A frame of `size` bytes with IPv4 UDP offsets (the L4 header at `l4`), for unit tests.
#[cfg(test)]
fn test_frame(size: usize, l4: u16) -> GenFrame {
    GenFrame {
        bytes: vec![0; size - 4],
        fields: FrameFields {
            l4,
            src: 26,
            dst: 30,
            ipv4_header: Some(14),
            stamp: 42,
            l4_checksum: None,
        },
        wire_size: size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(size: usize, l4: u16) -> GenFrame {
        test_frame(size, l4)
    }

    fn options(frames: Vec<(GenFrame, u32)>, flows: u32) -> GenOptions {
        GenOptions {
            iface: "test0".into(),
            ifindex: 1,
            mode: GenMode::LiveFrames,
            frames,
            flows,
            space: FlowSpace {
                sport_base: 1024,
                sport_count: 100,
                dport_count: 2,
                ..FlowSpace::default()
            },
            rate_pps: None,
            duration: Duration::from_secs(1),
            count: None,
            cores: Vec::new(),
        }
    }

    #[test]
    fn a_mix_must_share_headers_and_have_shares() {
        let error =
            |frames: Vec<(GenFrame, u32)>| check(&options(frames, 1)).unwrap_err().to_string();
        assert!(error(vec![]).contains("no frame to send"));
        assert!(error(vec![(frame(64, 34), 0)]).contains("64-byte frame has a share of 0"));
        let mixed = vec![(frame(64, 34), 1), (frame(128, 54), 1)];
        assert!(error(mixed).contains("must share their headers"));
        assert!(error(vec![(frame(64, 0x7ff), 1)]).contains("write offset 2047"));
        let imix: Vec<_> = IMIX
            .iter()
            .map(|&(size, share)| (frame(size, 34), share))
            .collect();
        assert!((mean_wire_size(&imix) - 4342.0 / 12.0).abs() < 1e-9);
        let config = check(&options(imix, 200)).unwrap();
        assert_eq!(
            (config.flows, config.l4_offset, config.ipv4_offset),
            (200, 34, 14)
        );
    }

    #[test]
    fn more_flows_than_the_ranges_hold_is_refused() {
        let error = check(&options(vec![(frame(64, 34), 1)], 201)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("201 flows, but the address and port ranges hold only 200"),
            "{error}"
        );
    }

    #[test]
    fn a_frames_own_fields_are_its_one_flow() {
        let mut frame = frame(64, 34);
        frame.bytes[26..38].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 4, 0, 0, 9]);
        let space = frame.flow_space();
        assert_eq!(space.size(), 1);
        let flow = space.flow(0);
        assert_eq!(
            (flow.src, flow.dst, flow.sport, flow.dport),
            (0x0a00_0001, 0x0a00_0002, 1024, 9)
        );
    }
}
