//! The live-frames mode: the generator's own eBPF object, loaded once, and the calls into
//! the kernel that send with it.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{Ebpf, maps::Array, programs::Xdp};
use nic::ethtool;
use offload_common::GenConfig;

use crate::{error::GenError, options::GenOptions, pacer::Pacer};

/// The generator's eBPF object (`offload/ebpf/src/trafficgen.rs`), built by offload's build
/// script beside, not inside, the steering object: it holds `gen_tx` and its two maps only.
pub static GENERATOR_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRAFFICGEN_OBJECT"));

/// Frames per `BPF_PROG_RUN` call: bounds the time between rate and stop checks.
const FRAMES_PER_CALL: u32 = 1 << 14;
/// Frames the kernel runs before a transmit flush (its default is 64).
const KERNEL_BATCH: u32 = 64;
/// Frames per call for each share of a mix: a 7:4:1 IMIX sends 1792, 1024 and 256 frames
/// in turn, a mix over ~0.1 ms at these rates.
const MIX_UNIT: u32 = 256;

/// `gen_tx`, loaded and verified, with its settings map.
pub(crate) struct LiveProgram {
    ebpf: Ebpf,
}

impl LiveProgram {
    /// Loads the object and has the verifier check `gen_tx`. Its maps are not pinned: two
    /// generators at once share nothing.
    pub(crate) fn load() -> Result<LiveProgram, GenError> {
        let mut ebpf = Ebpf::load(GENERATOR_OBJECT).map_err(GenError::Load)?;
        program(&mut ebpf)?
            .load()
            .map_err(|source| GenError::Program {
                what: "the verifier rejected gen_tx",
                source,
            })?;
        Ok(LiveProgram { ebpf })
    }

    /// The loaded `gen_tx`.
    pub(crate) fn program(&mut self) -> Result<&mut Xdp, GenError> {
        program(&mut self.ebpf)
    }

    /// A file descriptor of `gen_tx` of the sending threads' own.
    pub(crate) fn fd(&mut self) -> Result<OwnedFd, GenError> {
        self.program()?
            .fd()
            .map_err(|source| GenError::Program {
                what: "the generator program's fd",
                source,
            })?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|error| GenError::syscall("dup the generator program fd", error))
    }

    /// The program's per-run settings: the flows and where it writes.
    pub(crate) fn configure(&mut self, value: GenConfig) -> Result<(), GenError> {
        let map = self
            .ebpf
            .map_mut("GEN_CONFIG")
            .ok_or(GenError::NoMap("GEN_CONFIG"))?;
        let mut config: Array<_, GenConfig> =
            Array::try_from(map).map_err(|source| GenError::Map {
                what: "GEN_CONFIG",
                source,
            })?;
        config.set(0, value, 0).map_err(|source| GenError::Map {
            what: "write GEN_CONFIG",
            source,
        })
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, GenError> {
    ebpf.program_mut("gen_tx")
        .ok_or(GenError::NoProgram)?
        .try_into()
        .map_err(|source| GenError::Program {
            what: "gen_tx is not an XDP program",
            source,
        })
}

/// The driver's XDP transmit counters: (frames taken, frames refused).
pub(crate) fn xmit_counters(iface: &str) -> Option<(u64, u64)> {
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

/// One thread's calls into the kernel.
pub(crate) fn send_loop(
    fd: &OwnedFd,
    options: &GenOptions,
    pacer: &Pacer,
    sent: &AtomicU64,
) -> Result<(), GenError> {
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
        let result = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
        if result < 0 {
            // libbpf returns -errno (its 1.0 convention).
            return Err(GenError::syscall(
                "BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (needs kernel 5.18+ and an \
                 interface whose driver transmits XDP frames)",
                std::io::Error::from_raw_os_error(-result),
            ));
        }
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
    use std::collections::BTreeSet;

    use aya_obj::Object;

    fn names(object: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
        let object = Object::parse(object).expect("a valid eBPF object");
        let programs = object.programs.keys().cloned().collect();
        // Sections such as .rodata are maps to aya too; the declared maps are upper case.
        let maps = object
            .maps
            .keys()
            .filter(|name| !name.starts_with('.'))
            .cloned()
            .collect();
        (programs, maps)
    }

    /// The generator's object holds its program and maps only, and the steering object none
    /// of them: loading one creates nothing of the other.
    #[test]
    fn the_generator_and_steering_objects_share_nothing() {
        let (programs, maps) = names(super::GENERATOR_OBJECT);
        assert_eq!(programs, BTreeSet::from(["gen_tx".to_string()]));
        assert_eq!(
            maps,
            BTreeSet::from(["GEN_CONFIG".to_string(), "GEN_SENT".to_string()])
        );
        let (steer_programs, steer_maps) = names(offload::STEER_OBJECT);
        assert!(steer_programs.contains("steer"), "{steer_programs:?}");
        assert!(programs.is_disjoint(&steer_programs), "{steer_programs:?}");
        assert!(maps.is_disjoint(&steer_maps), "{steer_maps:?}");
    }
}
