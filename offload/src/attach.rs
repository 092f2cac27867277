//! Attach, replace, detach and inspect the steering program on an interface.

use aya::EbpfLoader;
use std::{
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use hw_profiles::Profiles;

use serde::Serialize;

use crate::{
    OffloadError, Pins, STEER_OBJECT,
    error_chain::error_chain,
    hw,
    mode::{ModeFailure, ModePolicy, XdpMode},
    modules::{
        self, AttachedAs, ModuleError, ModuleObject, Position,
        builtin::{self, STEER_MODULE},
    },
    placement::{self, Layout, Plan, PlanInput},
    rules::Action,
    steering::{self, ActionCounters, HW_PREFILTER, RuleStats, Steering},
    sys,
    xdp_state::{self, ifindex},
};

/// What to attach where: the input of [`attach`] and [`plan_for`].
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// The interface, by name, in this process's network namespace.
    pub iface: String,
    /// Which XDP modes may be tried: `auto` (hw, then drv, then skb) or one forced mode.
    pub policy: ModePolicy,
    /// For IP packets no rule matches.
    pub default_action: Action,
    /// Source addresses the prefilter drops before any rule is looked at.
    pub prefilter: Vec<IpAddr>,
}

/// What `attach` did.
#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    /// The interface.
    pub iface: String,
    /// Its driver as ethtool names it; "unknown" when ethtool would not say.
    pub driver: String,
    /// The mode the steering program runs in.
    pub mode: XdpMode,
    /// The kernel's id of the steering program (`bpftool prog show id N`).
    pub program_id: u32,
    /// Higher modes tried first, and why each failed.
    pub fallbacks: Vec<ModeFailure>,
    /// The action for IP packets no rule matches, as written to the SETTINGS map.
    pub default_action: Action,
    /// The placement as applied: a split plan whose hardware step failed is merged.
    pub plan: Plan,
}

/// The placement plan for `options` on its interface, from the kernel's xdp-features, the
/// matched built-in profile and the offload check. Nothing is changed.
pub fn plan_for(options: &AttachOptions) -> Result<Plan, OffloadError> {
    let ifindex = ifindex(&options.iface)?;
    let driver = nic::ethtool::driver(&options.iface).unwrap_or_else(|_| "unknown".to_string());
    let features = nic::xdp_features::read(&mut nic::Kernel, ifindex).unwrap_or_default();
    let profiles = Profiles::builtin();
    let input = PlanInput::from_facts(
        &driver,
        &features.xdp_features,
        profiles.for_driver(&driver),
        STEER_OBJECT,
        options.prefilter.len(),
    );
    Ok(placement::plan(options.policy, &input))
}

/// Plans, then attaches: see [`plan_for`] and [`attach_planned`].
pub fn attach(options: &AttachOptions) -> Result<Attachment, OffloadError> {
    attach_planned(options, plan_for(options)?)
}

/// Applies `plan`: the prefilter to the hardware first in a split plan (merged instead when
/// the card refuses, and reported), then the steering program as the IO module `steer` on
/// the interface's module chain, whose entry is attached in the plan's modes when the
/// interface has no chain yet. A chain already there (user modules loaded before) is
/// joined: steer goes last. The hardware slot cannot run the chain (offloaded programs make
/// no tail calls), so a plan's hw mode for the steering program is reported as a fallback.
pub fn attach_planned(options: &AttachOptions, mut plan: Plan) -> Result<Attachment, OffloadError> {
    let iface = options.iface.as_str();
    let ifindex = ifindex(iface)?;
    crate::pins::prune_stale();
    let pins = Pins::for_iface(iface);
    let chain = builtin::chain_summary(iface).map_err(chain_error(iface))?;
    if let Some(chain) = &chain
        && let Some(program_id) = chain.program_of(STEER_MODULE)
    {
        return Err(OffloadError::AlreadyAttached {
            iface: iface.to_string(),
            mode: chain
                .mode
                .map_or_else(|| "?".to_string(), |m| m.to_string()),
            program_id,
        });
    }
    // Pins left by a process that died, or by an interface that was re-created.
    pins.remove_steering()?;
    if chain.is_none()
        && let Some(state) = xdp_state::slots(ifindex)?
            .into_iter()
            .find(|slot| slot.mode != XdpMode::Hw)
    {
        return Err(OffloadError::ForeignProgram {
            iface: iface.to_string(),
            program_id: state.program_id,
        });
    }
    pins.create()?;
    let driver = nic::ethtool::driver(iface).unwrap_or_else(|_| "unknown".to_string());
    let mut fallbacks = plan.skipped.clone();
    if plan.layout == Layout::Split
        && let Err(reason) = attach_hw_prefilter(&pins, ifindex, &driver)
    {
        fallbacks.push(ModeFailure {
            mode: XdpMode::Hw,
            reason: format!(
                "prefilter: {}; merged into the steering program instead",
                error_chain(&reason)
            ),
        });
        plan.layout = Layout::Merged;
        plan.prefilter_mode = None;
    }
    let result = join_chain(options, &pins, chain.as_ref(), &plan.steering_modes);
    let (mode, program_id, failed) = match result {
        Ok(joined) => joined,
        Err(error) => {
            if pins.hw_prefilter().exists() {
                let _ = hw::detach_offloaded(ifindex);
            }
            pins.remove_steering()?;
            return Err(error);
        }
    };
    fallbacks.extend(failed);
    let maps = match plan.layout {
        Layout::Split => HW_PREFILTER,
        _ => "",
    };
    if !options.prefilter.is_empty() {
        Steering::open(iface)?.set_prefilter(maps, &options.prefilter)?;
    }
    Ok(Attachment {
        iface: iface.to_string(),
        driver,
        mode,
        program_id,
        fallbacks,
        default_action: options.default_action,
        plan,
    })
}

/// Makes steer's maps under `pins` (default action written), then loads the `steer` module
/// with them into the chain (attaching its entry in the first of `modes` that works when
/// there is none) and pins its program. Returns the chain's mode, steer's program id and
/// the modes that were skipped or failed before.
fn join_chain(
    options: &AttachOptions,
    pins: &Pins,
    chain: Option<&builtin::ChainSummary>,
    modes: &[XdpMode],
) -> Result<(XdpMode, u32, Vec<ModeFailure>), OffloadError> {
    let iface = options.iface.as_str();
    let mut failed = Vec::new();
    let mut chain_modes = Vec::new();
    for &mode in modes {
        if mode == XdpMode::Hw {
            failed.push(ModeFailure {
                mode,
                reason: "the steering program runs as a module of the IO module chain, whose \
                         tail calls an offloaded program cannot make; hardware placement \
                         applies to the prefilter"
                    .to_string(),
            });
        } else {
            chain_modes.push(mode);
        }
    }
    if let Some(mode) = chain.and_then(|chain| chain.mode)
        && !chain_modes.contains(&mode)
    {
        failed.push(ModeFailure {
            mode: chain_modes.first().copied().unwrap_or(XdpMode::Hw),
            reason: format!(
                "the module chain already on {iface} runs in {mode} mode; steer joins it there \
                 (unload its modules first to choose another mode)"
            ),
        });
        return Err(no_mode_worked(iface, &failed));
    }
    if chain_modes.is_empty() {
        return Err(no_mode_worked(iface, &failed));
    }
    // The maps first, made from the standalone object (same definitions as the module's),
    // so the default action is in place before the first packet meets steer.
    let mut maps = pin_steer_maps(pins)?;
    steering::write_default_action(&mut maps, options.default_action)?;
    drop(maps);
    let frags = chain.is_none_or(|chain| chain.frags);
    let object = builtin::steer_module(frags).map_err(chain_error(iface))?;
    let bound = bound_maps(pins, &object);
    let loaded = builtin::load_bound(iface, object, &Position::Last, &bound, &chain_modes)
        .map_err(chain_error(iface))?;
    crate::kill_point::reached("attach:steer-loaded");
    pin_program_id(loaded.program_id, &pins.program())?;
    let mode = match (
        loaded.attached.and_then(AttachedAs::xdp_mode),
        chain.and_then(|chain| chain.mode),
    ) {
        (Some(mode), _) | (None, Some(mode)) => mode,
        (None, None) => chain_modes[0],
    };
    // Modes before the one the entry got were refused by the kernel.
    for &tried in chain_modes.iter().take_while(|tried| **tried != mode) {
        failed.push(ModeFailure {
            mode: tried,
            reason: format!("the chain's entry could not attach in {tried} mode"),
        });
    }
    Ok((mode, loaded.program_id, failed))
}

/// Loads the standalone steering object against `pins`' maps directory: the maps pinned
/// there are reused, and any this build has that are missing are made and pinned.
fn pin_steer_maps(pins: &Pins) -> Result<aya::Ebpf, OffloadError> {
    EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(STEER_OBJECT)
        .map_err(|source| OffloadError::LoadObject {
            object: "steering",
            source: Box::new(source),
        })
}

/// Each of the module's own maps, bound to its pin under `pins`.
fn bound_maps(pins: &Pins, object: &ModuleObject) -> Vec<(String, PathBuf)> {
    object
        .maps
        .iter()
        .map(|map| (map.name.clone(), pins.map(&map.name)))
        .collect()
}

fn no_mode_worked(iface: &str, failed: &[ModeFailure]) -> OffloadError {
    OffloadError::NoModeWorked {
        iface: iface.to_string(),
        reasons: failed
            .iter()
            .map(|failure| format!("{}: {}", failure.mode, failure.reason))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn chain_error(iface: &str) -> impl Fn(ModuleError) -> OffloadError + '_ {
    move |source| OffloadError::Chain {
        iface: iface.to_string(),
        source: Box::new(source),
    }
}

/// Pins the program `id` at `path`, replacing what was pinned there: pinned beside it, then
/// renamed over it, so the pin names one program or the other at every moment.
fn pin_program_id(id: u32, path: &Path) -> Result<(), OffloadError> {
    // SAFETY: plain FFI call; a fresh fd on success.
    let fd = sys::owned_fd(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) })
        .map_err(|error| OffloadError::syscall("BPF_PROG_GET_FD_BY_ID of steer", error))?;
    let staged = path.with_file_name("prog_new");
    let _ = std::fs::remove_file(&staged);
    pin_fd(&fd, &staged)?;
    std::fs::rename(&staged, path)
        .map_err(|error| OffloadError::syscall("rename the new program pin into place", error))
}

/// Loads the prefilter onto the NIC and pins it, with its maps as `HW_<name>`.
fn attach_hw_prefilter(pins: &Pins, ifindex: u32, driver: &str) -> Result<(), OffloadError> {
    let offloaded = hw::attach_offloaded(STEER_OBJECT, "prefilter", ifindex, driver)?;
    let pinned = pin_fd(&offloaded.program, &pins.hw_prefilter()).and_then(|()| {
        offloaded
            .maps
            .iter()
            .try_for_each(|(name, fd)| pin_fd(fd, &pins.map(&format!("{HW_PREFILTER}{name}"))))
    });
    if pinned.is_err() {
        let _ = hw::detach_offloaded(ifindex);
    }
    pinned
}

fn pin_fd(fd: &std::os::fd::OwnedFd, path: &std::path::Path) -> Result<(), OffloadError> {
    sys::obj_pin(fd.as_fd(), path).map_err(|source| OffloadError::syscall("BPF_OBJ_PIN", source))
}

/// What [`replace`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Replacement {
    /// The interface.
    pub iface: String,
    /// The kernel's id of the program that ran before; 0 when neither the kernel nor the
    /// program pin named one.
    pub old_program_id: u32,
    /// The kernel's id of the program that runs now.
    pub new_program_id: u32,
}

/// Replaces the running `steer` module with `object` (default: this build's, in the chain's
/// frags flavour) through a module swap: the new version is loaded against steer's pinned
/// maps and the chain switches revisions in one map update, so every packet sees either
/// the old or the new program, and rules and counters carry over. `object` must be a
/// `steer` module object (see docs/modules.md) whose maps keep their shapes.
pub fn replace(iface: &str, object: Option<&[u8]>) -> Result<Replacement, OffloadError> {
    let pins = Pins::for_iface(iface);
    ifindex(iface)?;
    let chain = builtin::chain_summary(iface).map_err(chain_error(iface))?;
    let Some((chain, old_program_id)) = chain.and_then(|chain| {
        let id = chain.program_of(STEER_MODULE)?;
        Some((chain, id))
    }) else {
        return Err(not_attached(iface, &pins));
    };
    let object = match object {
        Some(bytes) => ModuleObject::parse(Path::new("--object"), bytes.to_vec()),
        None => builtin::steer_module(chain.frags),
    }
    .map_err(chain_error(iface))?;
    let bound = bound_maps(&pins, &object);
    // A build before EXACT_V4 kept IPv4 exact rules in EXACT_RULES: fill EXACT_V4 before
    // the swap (the running program still reads EXACT_RULES), empty the old keys after.
    // The prefix hashes of a build before them are filled the same way; until they are,
    // their lengths say "trie", so the new build would find every prefix anyway.
    let narrow_v4 = object.maps.iter().any(|map| map.name == "EXACT_V4");
    if narrow_v4 {
        pin_steer_maps(&pins)?;
        Steering::open(iface)?.fill_match_maps()?;
    }
    let swapped =
        builtin::swap_bound(iface, STEER_MODULE, object, &bound).map_err(chain_error(iface))?;
    crate::kill_point::reached("replace:steer-swapped");
    if narrow_v4 {
        Steering::open(iface)?.drop_wide_v4_keys()?;
    }
    pin_program_id(swapped.new_program_id, &pins.program())?;
    Ok(Replacement {
        iface: iface.to_string(),
        old_program_id,
        new_program_id: swapped.new_program_id,
    })
}

/// Unloads the `steer` module (the chain's entry goes with the last module; user modules
/// keep running) and removes steer's pins (rules and counters go with them).
pub fn detach(iface: &str) -> Result<(), OffloadError> {
    let ifindex = ifindex(iface)?;
    let pins = Pins::for_iface(iface);
    let steer_runs = builtin::chain_summary(iface)
        .map_err(chain_error(iface))?
        .is_some_and(|chain| chain.program_of(STEER_MODULE).is_some());
    // Maps without a program pin are an attach killed half way: still detachable.
    if !steer_runs && !pins.exists() && !pins.maps_dir().exists() {
        return Err(not_attached(iface, &pins));
    }
    if pins.hw_prefilter().exists() {
        hw::detach_offloaded(ifindex)
            .map_err(|error| OffloadError::syscall("XDP detach of the prefilter (hw)", error))?;
    }
    if steer_runs {
        modules::unload(iface, STEER_MODULE).map_err(chain_error(iface))?;
    }
    pins.remove_steering()?;
    // The rule lock (and journal) of an attachment that is no more.
    let _ = std::fs::remove_file(steering::lock_path(iface));
    Ok(())
}

/// For an interface that is gone (deleted, or moved out of this namespace; the kernel has
/// detached its link): removes the pins it left, and its rule lock, which `detach` cannot
/// reach without the interface.
pub fn forget_vanished(iface: &str) {
    crate::pins::prune_stale();
    if !Pins::for_iface(iface).dir.exists() {
        let _ = std::fs::remove_file(steering::lock_path(iface));
    }
}

/// What `fastpath xdp status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The interface.
    pub iface: String,
    /// The mode of the module chain steer runs in, as the kernel reports it; None when
    /// nothing is attached.
    pub mode: Option<XdpMode>,
    /// The kernel's id of the steering program (the `steer` module), None when nothing is
    /// attached.
    pub program_id: Option<u32>,
    /// The interface's module chain in the order packets meet it (`steer` among them);
    /// `fastpath module list` shows their counters.
    pub modules: Vec<String>,
    /// What runs where: every XDP slot the kernel reports in use, with the program's name.
    pub placements: Vec<Placed>,
    /// The action for IP packets no rule matches.
    pub default_action: Action,
    /// Packets per action since the attach, summed over CPUs.
    pub counters: ActionCounters,
    /// The prefilter's source addresses and the packets dropped from each.
    pub prefilter: Vec<PrefilterEntry>,
    /// The rules, by id, with the packets and bytes each matched.
    pub rules: Vec<RuleStats>,
    /// How the destination prefixes are looked up: a hash per length or the trie.
    pub prefix_lookup: crate::rules::tuple_space::PrefixLookup,
    /// How the exact rules are looked up: each family's table, or the kernel hash.
    pub exact_lookup: crate::rules::exact_table::ExactLookup,
    /// Which bpffs the pins were found in, and why: see [`crate::bpffs`].
    pub bpffs: String,
}

/// One XDP slot of an interface in use, as the kernel reports it: whichever program is
/// there, fastpath's or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placed {
    /// The slot: hw, drv or skb.
    pub mode: XdpMode,
    /// The kernel's id of the program in it.
    pub program_id: u32,
    /// The name it was loaded with ("chain_entry_fra" for the module chain's entry,
    /// "prefilter" in the hardware slot...; the kernel keeps at most 15 characters), "?"
    /// when the kernel no longer lists it.
    pub program: String,
}

/// A source address the prefilter drops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefilterEntry {
    /// The source address.
    pub source: IpAddr,
    /// Packets dropped from it since the prefilter was last set (which zeroes every
    /// count); a lower bound, as CPUs dropping at the same instant can lose a count.
    pub drops: u64,
}

/// What runs on `iface` and what it has done: modes, programs, default action, counters,
/// prefilter and rules, read from the kernel and the pinned maps. Changes nothing.
pub fn status(iface: &str) -> Result<Status, OffloadError> {
    let ifindex = ifindex(iface)?;
    let steering = Steering::open(iface)?;
    let placements: Vec<Placed> = xdp_state::slots(ifindex)?
        .into_iter()
        .map(|slot| Placed {
            mode: slot.mode,
            program_id: slot.program_id,
            program: program_name(slot.program_id),
        })
        .collect();
    let chain = builtin::chain_summary(iface).map_err(chain_error(iface))?;
    let steer_id = chain
        .as_ref()
        .and_then(|chain| chain.program_of(STEER_MODULE));
    let prefilter_maps = if Pins::for_iface(iface).hw_prefilter().exists() {
        HW_PREFILTER
    } else {
        ""
    };
    Ok(Status {
        bpffs: crate::bpffs::Bpffs::get().describe(),
        iface: iface.to_string(),
        mode: steer_id.and(chain.as_ref().and_then(|chain| chain.mode)),
        program_id: steer_id,
        modules: chain.map_or_else(Vec::new, |chain| {
            chain.modules.into_iter().map(|(name, _)| name).collect()
        }),
        default_action: steering.default_action()?,
        counters: steering.counters()?,
        prefilter: steering
            .prefilter(prefilter_maps)?
            .into_iter()
            .map(|(source, drops)| PrefilterEntry { source, drops })
            .collect(),
        rules: steering.rule_stats()?,
        prefix_lookup: steering.prefix_lookup()?,
        exact_lookup: steering.exact_lookup()?,
        placements,
    })
}

/// The name the program was loaded with, "?" when the kernel no longer lists it.
fn program_name(id: u32) -> String {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .and_then(|info| info.name_as_str().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn not_attached(iface: &str, pins: &Pins) -> OffloadError {
    OffloadError::NotAttached(iface.to_string(), pins.shown())
}
