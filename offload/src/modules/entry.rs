//! The chain's entry on an interface: attached with the first module, detached with the
//! last; and the lock that keeps one command at a time on a chain.

use std::{
    fs::{self, File},
    os::fd::AsFd,
};

use aya::{
    EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, links::FdLink, tc::TcAttachOptions,
        xdp::XdpMode as AyaMode,
    },
};
use nix::fcntl::Flock;
use offload_common::module::{ChainState, maps};

use super::{
    AttachedAs, CHAIN_OBJECT, ChainAt, Hook, ModuleError,
    chain::{self, Chain, ChainPins},
    history::History,
};
use crate::{bpffs::Bpffs, mode::XdpMode, sys, xdp_state};

/// One command at a time per chain.
pub(super) fn lock(at: ChainAt<'_>) -> Result<Flock<File>, ModuleError> {
    // The name becomes a file name: only an interface that exists here gets a lock file.
    xdp_state::ifindex(at.iface)?;
    crate::run_lock::exclusive(&format!("{}.{}.lock", at.iface, at.hook.dir_name()))
        .map_err(|(call, source)| ModuleError::Syscall { call, source })
}

/// The chain `at` when its entry still runs there.
pub(super) fn open_existing(at: ChainAt<'_>) -> Result<Chain, ModuleError> {
    let ifindex = xdp_state::ifindex(at.iface)?;
    let pins = ChainPins::for_chain(at);
    if !link_runs_on(&pins, at.hook, ifindex) {
        return Err(ModuleError::NoChain {
            iface: at.to_string(),
            dir: pins.shown(),
        });
    }
    Chain::open(at, pins)
}

/// Whether the entry's pinned link is attached to `ifindex` on `hook`.
fn link_runs_on(pins: &ChainPins, hook: Hook, ifindex: u32) -> bool {
    let Ok(link) = sys::obj_get(&pins.link()) else {
        return false;
    };
    match tcx_attach_type(hook) {
        None => sys::xdp_link_ifindex(link.as_fd()).is_ok_and(|linked| linked == Some(ifindex)),
        Some(attach_type) => sys::tcx_link_target(link.as_fd())
            .is_ok_and(|target| target == Some((ifindex, attach_type))),
    }
}

/// The kernel's attach type of a tcx hook; None for XDP.
fn tcx_attach_type(hook: Hook) -> Option<u32> {
    match hook {
        Hook::Xdp => None,
        Hook::TcIngress => Some(libbpf_sys::BPF_TCX_INGRESS),
        Hook::TcEgress => Some(libbpf_sys::BPF_TCX_EGRESS),
    }
}

/// The modes the chain's XDP entry is tried in when no caller chose: native, then generic
/// (offloaded programs cannot make tail calls).
pub(super) const DEFAULT_MODES: [XdpMode; 2] = [XdpMode::Drv, XdpMode::Skb];

/// The chain `at`, attaching an empty one (entry in the given frags flavour; for XDP, in
/// the first of `modes` the kernel accepts) when there is none; how it was attached when
/// it was.
pub(super) fn open_or_attach(
    at: ChainAt<'_>,
    frags: bool,
    modes: &[XdpMode],
) -> Result<(Chain, Option<AttachedAs>), ModuleError> {
    crate::pins::prune_stale();
    History::prune_orphans();
    let ifindex = xdp_state::ifindex(at.iface)?;
    let pins = ChainPins::for_chain(at);
    if link_runs_on(&pins, at.hook, ifindex) {
        let mut chain = Chain::open(at, pins)?;
        chain.reconcile()?;
        if !chain.running()?.is_empty() {
            return Ok((chain, None));
        }
        // A chain that runs no module: left by a change killed around its last unload or
        // its first load. Attached anew, it takes this module's frags.
        detach(&chain)?;
    }
    let pins = ChainPins::for_chain(at);
    // Pins of a chain whose link is gone (the interface was re-created, or an attach died).
    chain::remove_dir(&pins.dir);
    History::for_chain(at).clear();
    if !at.hook.is_tc()
        && let Some(state) = xdp_state::query(ifindex)?
    {
        return Err(ModuleError::InterfaceBusy {
            iface: at.iface.to_string(),
            program_id: state.program_id,
        });
    }
    Bpffs::get().ready_for_pins(true)?;
    fs::create_dir_all(pins.maps_dir()).map_err(ModuleError::syscall("mkdir under bpffs"))?;
    let attached = match attach_entry(at, ifindex, &pins, frags, modes) {
        Ok(attached) => attached,
        Err(error) => {
            chain::remove_dir(&pins.dir);
            return Err(error);
        }
    };
    match Chain::open(at, ChainPins::for_chain(at)) {
        Ok(chain) => Ok((chain, Some(attached))),
        Err(error) => {
            // Attached but unusable: leave the interface as it was.
            detach_pins(&pins)?;
            Err(error)
        }
    }
}

/// Loads the chain's entry object with its shared maps pinned under `pins` and an empty
/// revision in `FP_STATE`, and its entry program for `hook` (the frags flavour or not, for
/// XDP) into the kernel, attached nowhere. Returns the object and the entry program's
/// name. `label` names the chain in errors.
pub(super) fn load_entry(
    label: &str,
    pins: &ChainPins,
    hook: Hook,
    frags: bool,
) -> Result<(aya::Ebpf, &'static str), ModuleError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(CHAIN_OBJECT)
        .map_err(|source| ModuleError::LoadChain(Box::new(source)))?;
    let entry_name = match (hook, frags) {
        (Hook::Xdp, false) => "chain_entry",
        (Hook::Xdp, true) => "chain_entry_frags",
        (_, _) => "chain_entry_tc",
    };
    let missing = || ModuleError::NoChain {
        iface: label.to_string(),
        dir: pins.shown(),
    };
    {
        let mut state: aya::maps::Array<_, ChainState> = ebpf
            .map_mut(maps::STATE)
            .ok_or_else(missing)?
            .try_into()
            .map_err(ModuleError::map("open", maps::STATE))?;
        let initial = ChainState {
            frags: frags as u32,
            applied_at: chain::now(),
            ..ChainState::default()
        };
        state
            .set(0, initial, 0)
            .map_err(ModuleError::map("write", maps::STATE))?;
    }
    let program_error = |step| ModuleError::program("(chain entry)", entry_name, step);
    let program = ebpf.program_mut(entry_name).ok_or_else(missing)?;
    if hook.is_tc() {
        let program: &mut SchedClassifier = program.try_into().map_err(program_error("open"))?;
        program.load().map_err(program_error("load"))?;
    } else {
        let program: &mut Xdp = program.try_into().map_err(program_error("open"))?;
        program.load().map_err(program_error("load"))?;
    }
    Ok((ebpf, entry_name))
}

fn attach_entry(
    at: ChainAt<'_>,
    ifindex: u32,
    pins: &ChainPins,
    frags: bool,
    modes: &[XdpMode],
) -> Result<AttachedAs, ModuleError> {
    let (mut ebpf, entry_name) = load_entry(&at.to_string(), pins, at.hook, frags)?;
    let program_error = |step| ModuleError::program("(chain entry)", entry_name, step);
    let program = ebpf.program_mut(entry_name).expect("load_entry loaded it");
    let (link, attached_as) = if at.hook.is_tc() {
        let program: &mut SchedClassifier = program.try_into().map_err(program_error("open"))?;
        let attach_type = if at.hook == Hook::TcIngress {
            TcAttachType::Ingress
        } else {
            TcAttachType::Egress
        };
        let link_id = program
            .attach_with_options(
                at.iface,
                attach_type,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|error| ModuleError::Attach {
                iface: at.to_string(),
                reasons: format!("tcx: {}", crate::error_chain(&error)),
            })?;
        let link = program
            .take_link(link_id)
            .map_err(program_error("attach"))?;
        let link = FdLink::try_from(link).map_err(|error| ModuleError::Attach {
            iface: at.to_string(),
            reasons: format!("not a bpf_link: {error}"),
        })?;
        (link, AttachedAs::Tcx)
    } else {
        let program: &mut Xdp = program.try_into().map_err(program_error("open"))?;
        attach_xdp(at, ifindex, program, modes)?
    };
    let path = pins.entry();
    ebpf.program_mut(entry_name)
        .expect("load_entry loaded it")
        .pin(&path)
        .map_err(|source| ModuleError::Pin { path, source })?;
    let path = pins.link();
    link.pin(&path)
        .map_err(|source| ModuleError::Pin { path, source })?;
    Ok(attached_as)
}

/// Attaches the XDP entry in the first of `modes` the kernel accepts; each refusal is
/// reported.
fn attach_xdp(
    at: ChainAt<'_>,
    ifindex: u32,
    program: &mut Xdp,
    modes: &[XdpMode],
) -> Result<(FdLink, AttachedAs), ModuleError> {
    let mut reasons = Vec::new();
    for &mode in modes {
        let (attached_as, aya_mode) = match mode {
            XdpMode::Drv => (AttachedAs::Drv, AyaMode::Driver),
            XdpMode::Skb => (AttachedAs::Skb, AyaMode::Skb),
            XdpMode::Hw => {
                reasons.push(format!(
                    "{mode}: an offloaded program cannot make the chain's tail calls"
                ));
                continue;
            }
        };
        let link_id = match program.attach_to_if_index(ifindex, aya_mode) {
            Ok(link_id) => link_id,
            Err(error) => {
                reasons.push(format!("{mode}: {}", crate::error_chain(&error)));
                continue;
            }
        };
        let link = program.take_link(link_id).map_err(ModuleError::program(
            "(chain entry)",
            "chain_entry",
            "attach",
        ))?;
        let link = FdLink::try_from(link).map_err(|error| ModuleError::Attach {
            iface: at.to_string(),
            reasons: format!("not a bpf_link: {error}"),
        })?;
        return Ok((link, attached_as));
    }
    Err(ModuleError::Attach {
        iface: at.to_string(),
        reasons: reasons.join("; "),
    })
}

/// Detaches the chain's entry and removes the chain's pins.
pub(super) fn detach(chain: &Chain) -> Result<(), ModuleError> {
    History::for_chain(chain.at()).clear();
    detach_pins(&chain.pins)
}

/// Detaches the entry pinned under `pins` and removes the chain's pins.
fn detach_pins(pins: &ChainPins) -> Result<(), ModuleError> {
    if let Ok(link) = sys::obj_get(&pins.link()) {
        sys::link_detach(link.as_fd())
            .map_err(ModuleError::syscall("BPF_LINK_DETACH of the chain entry"))?;
    }
    chain::remove_dir(&pins.dir);
    // The interface's directory, when the chain was all it held.
    if let Some(parent) = pins.dir.parent() {
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}
