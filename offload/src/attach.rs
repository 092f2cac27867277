//! Attach, replace, detach and inspect the steering program on an interface.

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramInfo, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpMode as AyaMode},
    },
};
use std::{net::IpAddr, os::fd::AsFd};

use hw_profiles::Profiles;

use serde::Serialize;

use crate::{
    OffloadError, Pins, STEER_OBJECT,
    error::ProgramAction,
    error_chain::error_chain,
    hw,
    mode::{ModeAttempt, ModeFailure, ModePolicy, XdpMode, choose_mode},
    placement::{self, Layout, Plan, PlanInput},
    rules::Action,
    steering::{self, ActionCounters, HW_PREFILTER, RuleStats, Steering},
    sys,
    xdp_state::{self, XdpState, ifindex},
};

const PROGRAM: &str = "steer";

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
/// the card refuses, and reported), then the steering program in the plan's modes.
pub fn attach_planned(options: &AttachOptions, mut plan: Plan) -> Result<Attachment, OffloadError> {
    let iface = options.iface.as_str();
    let ifindex = ifindex(iface)?;
    crate::pins::prune_stale();
    let pins = Pins::for_iface(iface);
    let state = xdp_state::query(ifindex)?;
    if pins.exists() || pins.link().exists() {
        if let Some(state) = state
            && runs_from_pins(&pins, ifindex, state.program_id)
        {
            return Err(OffloadError::AlreadyAttached {
                iface: iface.to_string(),
                mode: state.mode.to_string(),
                program_id: state.program_id,
            });
        }
        // Pins left by a process that died, or by an interface that was re-created.
        pins.remove()?;
    }
    if let Some(state) = state {
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
    let mut kernel = KernelAttempt {
        iface,
        ifindex,
        driver: &driver,
        pins: &pins,
        default_action: options.default_action,
        loaded: None,
    };
    match choose_mode(&plan.steering_modes, &mut kernel) {
        Ok(choice) => {
            drop(kernel);
            let maps = match plan.layout {
                Layout::Split => HW_PREFILTER,
                _ => "",
            };
            if !options.prefilter.is_empty() {
                Steering::open(iface)?.set_prefilter(maps, &options.prefilter)?;
            }
            fallbacks.extend(choice.failed);
            Ok(Attachment {
                iface: iface.to_string(),
                driver,
                mode: choice.mode,
                program_id: choice.program_id,
                fallbacks,
                default_action: options.default_action,
                plan,
            })
        }
        Err(failures) => {
            drop(kernel);
            if pins.hw_prefilter().exists() {
                let _ = hw::detach_offloaded(ifindex);
            }
            pins.remove()?;
            let reasons = failures
                .iter()
                .map(|failure| format!("{}: {}", failure.mode, failure.reason))
                .collect::<Vec<_>>()
                .join("; ");
            Err(OffloadError::NoModeWorked {
                iface: iface.to_string(),
                reasons,
            })
        }
    }
}

/// Whether the program the kernel runs on `ifindex` is the one these pins hold: through the
/// pinned link when there is one (a process killed between pinning the link and pinning the
/// program, or during a replace, leaves the program pin missing or naming an older program,
/// yet the link is live and the attachment fastpath's), else the pinned program (hw mode
/// has no link).
fn runs_from_pins(pins: &Pins, ifindex: u32, running: u32) -> bool {
    if pins.link().exists() {
        return sys::obj_get(&pins.link())
            .and_then(|link| sys::xdp_link_ifindex(link.as_fd()))
            .is_ok_and(|linked| linked == Some(ifindex));
    }
    pinned_program_id(pins) == Some(running)
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

/// The kernel side of [`choose_mode`]: loads the program once, then tries each mode.
struct KernelAttempt<'a> {
    iface: &'a str,
    ifindex: u32,
    driver: &'a str,
    pins: &'a Pins,
    default_action: Action,
    loaded: Option<Ebpf>,
}

impl ModeAttempt for KernelAttempt<'_> {
    type Error = OffloadError;

    fn try_mode(&mut self, mode: XdpMode) -> Result<u32, OffloadError> {
        let attempt = match mode {
            XdpMode::Hw => return self.try_hw(),
            XdpMode::Drv => self.try_link(AyaMode::Driver),
            XdpMode::Skb => self.try_link(AyaMode::Skb),
        };
        attempt.map_err(|source| OffloadError::ModeRefused {
            mode,
            driver: self.driver.to_string(),
            source: Box::new(source),
        })
    }
}

impl KernelAttempt<'_> {
    fn try_hw(&mut self) -> Result<u32, OffloadError> {
        let offloaded = hw::attach_offloaded(STEER_OBJECT, PROGRAM, self.ifindex, self.driver)?;
        pin_fd(&offloaded.program, &self.pins.program())?;
        Ok(offloaded.id)
    }

    fn try_link(&mut self, mode: AyaMode) -> Result<u32, OffloadError> {
        if self.loaded.is_none() {
            self.loaded = Some(load_object(
                self.pins,
                STEER_OBJECT,
                Some(self.default_action),
            )?);
        }
        let ebpf = self.loaded.as_mut().expect("loaded above");
        let program = steer_program(ebpf)?;
        let link_id = program
            .attach_to_if_index(self.ifindex, mode)
            .map_err(OffloadError::program(ProgramAction::Attach, PROGRAM))?;
        let link = program
            .take_link(link_id)
            .map_err(OffloadError::program(ProgramAction::Attach, PROGRAM))?;
        let link = FdLink::try_from(link).map_err(|source| OffloadError::NotABpfLink {
            iface: self.iface.to_string(),
            source,
        })?;
        let path = self.pins.link();
        link.pin(&path)
            .map_err(|source| OffloadError::Pin { path, source })?;
        crate::kill_point::reached("attach:link-pinned");
        pin_program(program, self.pins.program())?;
        program
            .info()
            .map(|info| info.id())
            .map_err(OffloadError::program(ProgramAction::Info, PROGRAM))
    }
}

fn pin_program(program: &mut Xdp, path: std::path::PathBuf) -> Result<(), OffloadError> {
    program
        .pin(&path)
        .map_err(|source| OffloadError::Pin { path, source })
}

/// Loads a steering object with its maps pinned under `pins` (reused when they exist),
/// writing the default action first when given.
fn load_object(
    pins: &Pins,
    object: &[u8],
    default_action: Option<Action>,
) -> Result<Ebpf, OffloadError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(object)
        .map_err(|source| OffloadError::LoadObject {
            object: "steering",
            source: Box::new(source),
        })?;
    if let Some(action) = default_action {
        steering::write_default_action(&mut ebpf, action)?;
    }
    steer_program(&mut ebpf)?
        .load()
        .map_err(OffloadError::program(ProgramAction::Verify, PROGRAM))?;
    Ok(ebpf)
}

fn steer_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, OffloadError> {
    ebpf.program_mut(PROGRAM)
        .ok_or_else(|| OffloadError::MissingFromObject {
            object: "steering",
            part: "program",
            name: PROGRAM.into(),
        })?
        .try_into()
        .map_err(OffloadError::program(ProgramAction::Open, PROGRAM))
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

/// Replaces the running program with `object` (default: this build's) through a bpf_link
/// update: the kernel swaps the program pointer, so every packet sees either the old or the
/// new program. Maps, and with them rules and counters, are the pinned ones. Needs a link:
/// a program in hw mode is refused with [`OffloadError::NoLinkToUpdate`].
pub fn replace(iface: &str, object: Option<&[u8]>) -> Result<Replacement, OffloadError> {
    let pins = Pins::for_iface(iface);
    let ifindex = ifindex(iface)?;
    if !pins.exists() && !pins.link().exists() {
        return Err(not_attached(iface, &pins));
    }
    if !pins.link().exists() {
        return Err(OffloadError::NoLinkToUpdate {
            iface: iface.to_string(),
        });
    }
    // The kernel's word: the program pin may be missing or stale after a kill mid-replace.
    let old_program_id = xdp_state::query(ifindex)?
        .map(|state| state.program_id)
        .or_else(|| pinned_program_id(&pins))
        .unwrap_or(0);
    let mut ebpf = load_object(&pins, object.unwrap_or(STEER_OBJECT), None)?;
    let program = steer_program(&mut ebpf)?;
    let link = PinnedLink::from_pin(pins.link()).map_err(|source| OffloadError::OpenLink {
        path: pins.link(),
        source,
    })?;
    let link =
        XdpLink::try_from(FdLink::from(link)).map_err(|source| OffloadError::PinnedLinkNotXdp {
            iface: iface.to_string(),
            source,
        })?;
    program
        .attach_to_link(link)
        .map_err(OffloadError::program(ProgramAction::UpdateLink, PROGRAM))?;
    crate::kill_point::reached("replace:link-updated");
    let new_program_id = program
        .info()
        .map_err(OffloadError::program(ProgramAction::Info, PROGRAM))?
        .id();
    // Pinned beside the old pin, then renamed over it: the pin names one program or the
    // other at every moment, never none.
    let staged = pins.dir.join("prog_new");
    let _ = std::fs::remove_file(&staged);
    pin_program(program, staged.clone())?;
    std::fs::rename(&staged, pins.program())
        .map_err(|error| OffloadError::syscall("rename the new program pin into place", error))?;
    Ok(Replacement {
        iface: iface.to_string(),
        old_program_id,
        new_program_id,
    })
}

/// Detaches the program and removes every pin (rules and counters go with them).
pub fn detach(iface: &str) -> Result<(), OffloadError> {
    let ifindex = ifindex(iface)?;
    let pins = Pins::for_iface(iface);
    // A link pin without a program pin is an attach killed half way: still detachable.
    if !pins.exists() && !pins.link().exists() {
        return Err(not_attached(iface, &pins));
    }
    if pins.hw_prefilter().exists() {
        hw::detach_offloaded(ifindex)
            .map_err(|error| OffloadError::syscall("XDP detach of the prefilter (hw)", error))?;
    }
    if pins.link().exists() {
        let link = sys::obj_get(&pins.link())
            .map_err(|error| OffloadError::syscall("BPF_OBJ_GET of the pinned link", error))?;
        sys::link_detach(link.as_fd())
            .map_err(|error| OffloadError::syscall("BPF_LINK_DETACH", error))?;
    } else if let Some(XdpState {
        mode: XdpMode::Hw, ..
    }) = xdp_state::query(ifindex)?
    {
        hw::detach_offloaded(ifindex)
            .map_err(|error| OffloadError::syscall("XDP detach (hw)", error))?;
    }
    pins.remove()?;
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
    /// The steering program's mode as the kernel reports it, None when nothing is attached.
    pub mode: Option<XdpMode>,
    /// The kernel's id of the steering program, None when nothing is attached.
    pub program_id: Option<u32>,
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
    /// The name it was loaded with ("steer", "prefilter", ...; the kernel keeps at most 15
    /// characters), "?" when the kernel no longer lists it.
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
    let steer = placements
        .iter()
        .find(|p| p.mode != XdpMode::Hw || p.program == PROGRAM);
    let prefilter_maps = if Pins::for_iface(iface).hw_prefilter().exists() {
        HW_PREFILTER
    } else {
        ""
    };
    Ok(Status {
        bpffs: crate::bpffs::Bpffs::get().describe(),
        iface: iface.to_string(),
        mode: steer.map(|p| p.mode),
        program_id: steer.map(|p| p.program_id),
        default_action: steering.default_action()?,
        counters: steering.counters()?,
        prefilter: steering
            .prefilter(prefilter_maps)?
            .into_iter()
            .map(|(source, drops)| PrefilterEntry { source, drops })
            .collect(),
        rules: steering.rule_stats()?,
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

fn pinned_program_id(pins: &Pins) -> Option<u32> {
    ProgramInfo::from_pin(pins.program())
        .ok()
        .map(|info| info.id())
}
