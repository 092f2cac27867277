//! The traffic generator: `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`.
//!
//! User space builds one template frame ([`Template`]); the kernel runs the program on it
//! `repeat` times per call in batches, and each XDP_TX leaves through the interface named in
//! the context, via the driver's `ndo_xdp_xmit` (on veth: into the peer's XDP path, which
//! therefore needs an XDP program). Per packet the program sets the flow's source port and
//! writes a sequence number and timestamp into the payload. One thread per core calls the
//! kernel; a rate limit paces the calls.
//!
//! Checksums: IPv4 UDP sends a zero checksum (allowed); the IPv6 and TCP checksums are those
//! of the template, so after the port rewrite they are wrong for every flow but the first.
//! XDP and AF_XDP sinks do not check them; a kernel socket would drop such packets.

use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{ProgramFd, Xdp},
};
use offload_common::{GEN_OFFSET_MASK, GenConfig};
use serde::Serialize;

use crate::{OffloadError, STEER_OBJECT, attach::describe, probe::ethtool, sys};

/// Frames per `BPF_PROG_RUN` call: bounds the time between rate and stop checks.
const FRAMES_PER_CALL: u32 = 1 << 14;
/// Frames the kernel runs before a transmit flush (its default is 64).
const KERNEL_BATCH: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Kind {
    Udp,
    /// TCP with SYN set.
    TcpSyn,
    /// TCP with ACK set (an established flow's segment).
    TcpAck,
}

/// What one generated frame looks like.
#[derive(Clone, Debug)]
pub struct Template {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4Kind,
    pub dst_port: u16,
    /// First source port; flows use consecutive ports from here.
    pub src_port: u16,
    /// Frame size without the FCS, 64 to 1518 as on the wire (the 4 FCS bytes included in
    /// that count, as RFC 2544 counts them).
    pub frame_size: usize,
}

/// Bytes of Ethernet FCS the NIC adds: a 64-byte frame is 60 bytes in memory.
pub const FCS: usize = 4;
/// The Simple IMIX (7:4:1 of 64, 594 and 1518 bytes, on the wire).
pub const IMIX: [(usize, u32); 3] = [(64, 7), (594, 4), (1518, 1)];

impl Template {
    /// The frame bytes, and the offsets the program writes at (source port, stamp).
    pub fn build(&self) -> Result<(Vec<u8>, u16, u16), String> {
        let (l3_len, ethertype) = match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (20, [0x08, 0x00]),
            (IpAddr::V6(_), IpAddr::V6(_)) => (40, [0x86, 0xdd]),
            _ => return Err("source and destination are of different IP families".into()),
        };
        let l4_len = if self.l4 == L4Kind::Udp { 8 } else { 20 };
        let headers = 14 + l3_len + l4_len;
        let min = (headers + 16 + FCS).max(64);
        if !(min..=1518).contains(&self.frame_size) {
            return Err(format!(
                "frame size {} out of range: {min} to 1518 bytes for this header stack",
                self.frame_size
            ));
        }
        let len = self.frame_size - FCS;
        let mut frame = vec![0u8; len];
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        frame[12..14].copy_from_slice(&ethertype);
        let l3 = 14;
        let l4 = l3 + l3_len;
        let proto = if self.l4 == L4Kind::Udp { 17 } else { 6 };
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ip = &mut frame[l3..l4];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                ip[8] = 64;
                ip[9] = proto;
                ip[12..16].copy_from_slice(&src.octets());
                ip[16..20].copy_from_slice(&dst.octets());
                let checksum = internet_checksum(ip);
                ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let ip = &mut frame[l3..l4];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
                ip[6] = proto;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&src.octets());
                ip[24..40].copy_from_slice(&dst.octets());
            }
            _ => unreachable!("families checked above"),
        }
        frame[l4..l4 + 2].copy_from_slice(&self.src_port.to_be_bytes());
        frame[l4 + 2..l4 + 4].copy_from_slice(&self.dst_port.to_be_bytes());
        match self.l4 {
            L4Kind::Udp => {
                frame[l4 + 4..l4 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
            }
            L4Kind::TcpSyn | L4Kind::TcpAck => {
                frame[l4 + 12] = 5 << 4;
                frame[l4 + 13] = if self.l4 == L4Kind::TcpSyn {
                    0x02
                } else {
                    0x10
                };
                frame[l4 + 14..l4 + 16].copy_from_slice(&65535u16.to_be_bytes());
            }
        }
        Ok((frame, l4 as u16, headers as u16))
    }
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// How much to send.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub iface: String,
    pub ifindex: u32,
    pub template: Template,
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
        let program: &mut Xdp = ebpf
            .program_mut("gen_tx")
            .ok_or_else(|| OffloadError::bpf("load", "no gen_tx program"))?
            .try_into()
            .map_err(|error| OffloadError::bpf("load", describe(&error)))?;
        program
            .load()
            .map_err(|error| OffloadError::bpf("verifier rejected gen_tx", describe(&error)))?;
        Ok(Generator { ebpf })
    }

    fn program_fd(&self) -> Result<&ProgramFd, OffloadError> {
        let program: &Xdp = self
            .ebpf
            .program("gen_tx")
            .ok_or_else(|| OffloadError::bpf("generator", "no gen_tx program"))?
            .try_into()
            .map_err(|error| OffloadError::bpf("generator", describe(&error)))?;
        program
            .fd()
            .map_err(|error| OffloadError::bpf("generator", describe(&error)))
    }

    /// Sends until the duration or count is reached, or `stop` is set.
    pub fn run(
        &mut self,
        options: &GenOptions,
        stop: &AtomicBool,
    ) -> Result<GenReport, OffloadError> {
        let (frame, sport_offset, stamp_offset) = options
            .template
            .build()
            .map_err(|reason| OffloadError::bpf("generator template", reason))?;
        debug_assert!(stamp_offset < GEN_OFFSET_MASK);
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
                    port_base: options.template.src_port,
                    sport_offset,
                    stamp_offset,
                    _pad: [0; 6],
                },
                0,
            )
            .map_err(|error| OffloadError::bpf("write GEN_CONFIG", error))?;
        let fd = self
            .program_fd()?
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
            frame_size: options.template.frame_size,
            flows: options.flows.max(1),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn template(src: &str, dst: &str, l4: L4Kind, size: usize) -> Template {
        Template {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            l4,
            dst_port: 9,
            src_port: 1024,
            frame_size: size,
        }
    }

    #[test]
    fn templates_have_the_asked_size_valid_headers_and_room_for_the_stamp() {
        let (frame, sport, stamp) = template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 64)
            .build()
            .unwrap();
        assert_eq!(frame.len(), 60, "64 bytes on the wire, FCS excluded");
        assert_eq!((sport, stamp), (34, 42));
        assert_eq!(internet_checksum(&frame[14..34]), 0, "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 46);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 26, "UDP length");

        let (frame, sport, stamp) = template("fd00::1", "fd00::2", L4Kind::TcpSyn, 1518)
            .build()
            .unwrap();
        assert_eq!(frame.len(), 1514);
        assert_eq!((sport, stamp), (54, 74));
        assert_eq!(frame[20], 6, "next header TCP");
        assert_eq!(frame[54 + 13], 0x02, "SYN");
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 1514 - 54);
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let error = template("10.0.0.1", "fd00::2", L4Kind::Udp, 64)
            .build()
            .unwrap_err();
        assert!(error.contains("different IP families"), "{error}");
        let error = template("fd00::1", "fd00::2", L4Kind::TcpAck, 64)
            .build()
            .unwrap_err();
        assert!(error.contains("out of range: 94 to 1518"), "{error}");
        let error = template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 9000)
            .build()
            .unwrap_err();
        assert!(error.contains("frame size 9000"), "{error}");
    }
}
