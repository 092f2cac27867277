//! The chain's entry on an interface: attached with the first module, detached with the
//! last; and the lock that keeps one command at a time on a chain.

use std::{
    fs::{self, File},
    os::fd::AsFd,
};

use aya::{
    EbpfLoader,
    programs::{Xdp, links::FdLink, xdp::XdpMode as AyaMode},
};
use nix::fcntl::Flock;
use offload_common::module::{ChainState, maps};

use super::{
    CHAIN_OBJECT, ModuleError,
    chain::{self, Chain, ChainPins},
};
use crate::{bpffs::Bpffs, mode::XdpMode, sys, xdp_state};

/// One command at a time per chain.
pub(super) fn lock(iface: &str) -> Result<Flock<File>, ModuleError> {
    // The name becomes a file name: only an interface that exists here gets a lock file.
    xdp_state::ifindex(iface)?;
    crate::run_lock::exclusive(&format!("{iface}.chain.lock"))
        .map_err(|(call, source)| ModuleError::Syscall { call, source })
}

/// The chain on `iface` when its entry still runs there.
pub(super) fn open_existing(iface: &str) -> Result<Chain, ModuleError> {
    let ifindex = xdp_state::ifindex(iface)?;
    let pins = ChainPins::for_iface(iface);
    if !link_runs_on(&pins, ifindex) {
        return Err(ModuleError::NoChain {
            iface: iface.to_string(),
            dir: pins.shown(),
        });
    }
    Chain::open(iface, pins)
}

fn link_runs_on(pins: &ChainPins, ifindex: u32) -> bool {
    sys::obj_get(&pins.link())
        .and_then(|link| sys::xdp_link_ifindex(link.as_fd()))
        .is_ok_and(|linked| linked == Some(ifindex))
}

/// The modes the chain's entry is tried in when no caller chose: native, then generic
/// (offloaded programs cannot make tail calls).
pub(super) const DEFAULT_MODES: [XdpMode; 2] = [XdpMode::Drv, XdpMode::Skb];

/// The chain on `iface`, attaching an empty one (entry in the given frags flavour, in the
/// first of `modes` the kernel accepts) when there is none; the mode it was attached in
/// when it was.
pub(super) fn open_or_attach(
    iface: &str,
    frags: bool,
    modes: &[XdpMode],
) -> Result<(Chain, Option<XdpMode>), ModuleError> {
    crate::pins::prune_stale();
    let ifindex = xdp_state::ifindex(iface)?;
    let pins = ChainPins::for_iface(iface);
    if link_runs_on(&pins, ifindex) {
        let mut chain = Chain::open(iface, pins)?;
        chain.reconcile()?;
        if !chain.running()?.is_empty() {
            return Ok((chain, None));
        }
        // A chain that runs no module: left by a change killed around its last unload or
        // its first load. Attached anew, it takes this module's frags.
        detach(&chain)?;
    }
    let pins = ChainPins::for_iface(iface);
    // Pins of a chain whose link is gone (the interface was re-created, or an attach died).
    chain::remove_dir(&pins.dir);
    if let Some(state) = xdp_state::query(ifindex)? {
        return Err(ModuleError::InterfaceBusy {
            iface: iface.to_string(),
            program_id: state.program_id,
        });
    }
    Bpffs::get().ready_for_pins(true)?;
    fs::create_dir_all(pins.maps_dir()).map_err(ModuleError::syscall("mkdir under bpffs"))?;
    let mode = match attach_entry(iface, ifindex, &pins, frags, modes) {
        Ok(mode) => mode,
        Err(error) => {
            chain::remove_dir(&pins.dir);
            return Err(error);
        }
    };
    match Chain::open(iface, ChainPins::for_iface(iface)) {
        Ok(chain) => Ok((chain, Some(mode))),
        Err(error) => {
            // Attached but unusable: leave the interface as it was.
            detach_pins(&pins)?;
            Err(error)
        }
    }
}

fn attach_entry(
    iface: &str,
    ifindex: u32,
    pins: &ChainPins,
    frags: bool,
    modes: &[XdpMode],
) -> Result<XdpMode, ModuleError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(CHAIN_OBJECT)
        .map_err(|source| ModuleError::LoadChain(Box::new(source)))?;
    let entry_name = if frags {
        "chain_entry_frags"
    } else {
        "chain_entry"
    };
    {
        let mut state: aya::maps::Array<_, ChainState> = ebpf
            .map_mut(maps::STATE)
            .ok_or_else(|| ModuleError::NoChain {
                iface: iface.to_string(),
                dir: pins.shown(),
            })?
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
    let program: &mut Xdp = ebpf
        .program_mut(entry_name)
        .ok_or_else(|| ModuleError::NoChain {
            iface: iface.to_string(),
            dir: pins.shown(),
        })?
        .try_into()
        .map_err(program_error("open"))?;
    program.load().map_err(program_error("load"))?;
    let mut reasons = Vec::new();
    for &mode in modes {
        let aya_mode = match mode {
            XdpMode::Drv => AyaMode::Driver,
            XdpMode::Skb => AyaMode::Skb,
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
        let link = program
            .take_link(link_id)
            .map_err(program_error("attach"))?;
        let link = FdLink::try_from(link).map_err(|error| ModuleError::Attach {
            iface: iface.to_string(),
            reasons: format!("not a bpf_link: {error}"),
        })?;
        let path = pins.link();
        link.pin(&path)
            .map_err(|source| ModuleError::Pin { path, source })?;
        let path = pins.entry();
        program
            .pin(&path)
            .map_err(|source| ModuleError::Pin { path, source })?;
        return Ok(mode);
    }
    Err(ModuleError::Attach {
        iface: iface.to_string(),
        reasons: reasons.join("; "),
    })
}

/// Detaches the chain's entry and removes the chain's pins.
pub(super) fn detach(chain: &Chain) -> Result<(), ModuleError> {
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
