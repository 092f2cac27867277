use std::{io, path::PathBuf};

use aya::{
    EbpfError,
    maps::MapError,
    pin::PinError,
    programs::{ProgramError, links::LinkError},
};

use crate::{mode::XdpMode, rules::RuleError};

/// Everything the offload API can fail with. Each variant says what failed and keeps the
/// cause as its `source`, so `{:#}` (anyhow) prints the whole chain; the messages say what
/// to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// No interface of that name in this network namespace: from [`attach`](crate::attach),
    /// [`replace`](crate::replace), [`detach`](crate::detach), [`status`](crate::status),
    /// [`plan_for`](crate::plan_for) and [`xdp_attached`](crate::xdp_attached). Check the
    /// name (`ip link`) and the namespace: `fastpath --netns NS` runs in another one. Holds
    /// the name as given.
    #[error("interface {0:?} not found in this network namespace")]
    UnknownInterface(String),
    /// The interface behind an index vanished between looking its name up and asking the
    /// kernel what is attached to it (deleted, or moved to another namespace). Run the
    /// command again; for an interface that is gone for good,
    /// [`forget_vanished`](crate::forget_vanished) removes what it left in bpffs.
    #[error("no interface with index {0} in this network namespace")]
    UnknownIfindex(u32),
    /// [`replace`](crate::replace), [`detach`](crate::detach), [`status`](crate::status) or
    /// [`Steering`](crate::Steering) found no fastpath pins for the interface: nothing was
    /// attached, it was detached, or this process pins in another bpffs (see
    /// [`crate::bpffs`]). Attach first. Holds the interface and its pin directory as a user
    /// would name it.
    #[error(
        "nothing attached to {0}: no fastpath pins under {1} (run `fastpath xdp attach --iface {0}` first)"
    )]
    NotAttached(String, String),
    /// The module chain refused or failed a step of running the steering program as its
    /// module `steer` (attach, replace, detach, status).
    #[error("the module chain on {iface}")]
    Chain {
        /// The interface.
        iface: String,
        /// What the chain said.
        #[source]
        source: Box<crate::modules::ModuleError>,
    },
    /// [`attach`](crate::attach) on an interface that already runs fastpath's program from
    /// its pins. Use [`replace`](crate::replace) to change the program (rules and counters
    /// stay), or [`detach`](crate::detach) first.
    #[error(
        "{iface} already has fastpath's program attached ({mode}, program id {program_id}); use `fastpath xdp replace` or `fastpath xdp detach` first"
    )]
    AlreadyAttached {
        /// The interface.
        iface: String,
        /// The mode the kernel reports the program in: "hw", "drv" or "skb".
        mode: String,
        /// The kernel's id of the running program.
        program_id: u32,
    },
    /// [`attach`](crate::attach) on an interface where the kernel runs an XDP program that
    /// fastpath's pins do not hold: another tool's, or fastpath's from a bpffs this process
    /// does not see. fastpath never replaces it; detach it with the tool that attached it
    /// (or `ip link set dev IFACE xdp off`), then attach again.
    #[error(
        "{iface} already has another XDP program attached (program id {program_id}, not fastpath's); detach it first"
    )]
    ForeignProgram {
        /// The interface.
        iface: String,
        /// The kernel's id of the program found there (`bpftool prog show id N`).
        program_id: u32,
    },
    /// [`attach`](crate::attach): every mode the plan allowed failed, and the pins made
    /// for the attempt were removed. Fix the cause the reasons name (privileges, a driver
    /// limit such as the MTU native XDP allows); when one mode was forced, `--mode auto`
    /// also tries the others.
    #[error("no XDP mode worked on {iface}: {reasons}")]
    NoModeWorked {
        /// The interface.
        iface: String,
        /// "mode: reason" for each mode tried, in order, joined with "; ".
        reasons: String,
    },
    /// One mode of the attach policy failed; the policy goes on with the next one. The
    /// caller sees it only as text: in [`Attachment::fallbacks`](crate::Attachment) when a
    /// later mode worked, in [`OffloadError::NoModeWorked`] when none did.
    #[error("{}", mode_refusal(*mode, driver))]
    ModeRefused {
        /// The mode that was tried.
        mode: XdpMode,
        /// The interface's driver as ethtool names it ("unknown" when it would not say).
        driver: String,
        /// Why the kernel refused the mode.
        #[source]
        source: Box<OffloadError>,
    },
    /// [`replace`](crate::replace) on an attachment with no bpf_link: a program in hw mode
    /// is attached through netlink, and only a link can swap its program atomically.
    /// Detach and attach instead (rules and counters go with the detach).
    #[error(
        "replace on {iface}: the program runs in hw mode, which has no bpf_link to update; detach and attach instead"
    )]
    NoLinkToUpdate {
        /// The interface.
        iface: String,
    },
    /// On replace: the pinned `link` is not an XDP link (something else was pinned there).
    /// Detach and attach again.
    #[error("the pinned link of {iface} is not an XDP link; detach and attach again")]
    PinnedLinkNotXdp {
        /// The interface.
        iface: String,
        /// aya's refusal to convert the link.
        #[source]
        source: LinkError,
    },
    /// On attach: aya fell back to the netlink attach because the kernel refused
    /// `BPF_LINK_CREATE` with EINVAL (XDP links need Linux 5.9 or later), and such an
    /// attachment cannot outlive this process. Use a newer kernel.
    #[error(
        "the kernel attached the program to {iface} through netlink, not a bpf_link, so it cannot be pinned"
    )]
    NotABpfLink {
        /// The interface.
        iface: String,
        /// aya's refusal to convert the link.
        #[source]
        source: LinkError,
    },
    /// Loading a program bound to the NIC, or attaching it in hw mode, failed (see
    /// [`crate::hw`]). The attach policy reports it as a hw [`OffloadError::ModeRefused`]
    /// and goes on with drv; a split plan merges the prefilter instead. Only drivers with a
    /// BPF offload device (nfp) accept it; elsewhere use drv or skb.
    #[error(transparent)]
    HardwareOffload(#[from] crate::hw::HwError),
    /// A rule or rule set was refused by [`Steering`](crate::Steering): invalid on its own,
    /// a duplicate, an unknown id, or beyond the maps' limits. Nothing was changed; the
    /// message names the field at fault.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// An interface query (rtnetlink, ethtool) failed for a reason other than the interface
    /// vanishing; nic's error is kept whole, errno included (EPERM: run as root).
    #[error(transparent)]
    Nic(#[from] nic::NicError),
    /// A system or libbpf call this crate makes itself failed: pinning (BPF_OBJ_PIN),
    /// BPF_LINK_DETACH, mounting or writing bpffs, the rule lock under `/run/fastpath`, and
    /// the like. EPERM or EACCES mean missing privileges (root, or CAP_BPF, CAP_NET_ADMIN
    /// and CAP_SYS_ADMIN for the mount); other errnos are the kernel's, for that call.
    #[error("{call} failed")]
    Syscall {
        /// The call or step, e.g. "BPF_OBJ_PIN", "flock rule lock".
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// aya could not load a compiled object: it does not parse, or the kernel refused to
    /// create or reuse one of its maps (the source says which and why). Usually missing
    /// privileges; an object from another build can also disagree with maps pinned earlier.
    #[error("load the {object} object")]
    LoadObject {
        /// Which object, e.g. "steering".
        object: &'static str,
        /// aya's error.
        #[source]
        source: Box<EbpfError>,
    },
    /// The object lacks a program or map this crate uses by name: it is not the steering
    /// object of this build (an object given to [`replace`](crate::replace), or a stale build
    /// output). Pass a steering object built from the same sources, or rebuild.
    #[error("the {object} object has no {part} `{name}`")]
    MissingFromObject {
        /// Which object, e.g. "steering".
        object: &'static str,
        /// "program" or "map".
        part: &'static str,
        /// The program's or map's name in the object.
        name: String,
    },
    /// An operation on a loaded program failed; `action` says which. A verifier rejection
    /// carries the verifier's log in its source: a kernel too old for the program, or an
    /// object changed by hand. Attach failures in a mode are reported through
    /// [`OffloadError::ModeRefused`].
    #[error("{action} program `{program}`")]
    Program {
        /// What was being done.
        action: ProgramAction,
        /// The program's name in the object.
        program: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// An operation on a map failed; `action` says which. [`MapAction::Layout`] means the
    /// map's type or key and value sizes are not the ones this build expects: it was pinned
    /// by another fastpath version (detach and attach again), or the object is from another
    /// build. [`MapAction::Open`] means its pin is missing or unreadable.
    #[error("{action} map {map}")]
    Map {
        /// What was being done.
        action: MapAction,
        /// The map's name (or "a rule map", or an entry such as `XSKS[3]`); its pin path
        /// when opening it failed.
        map: String,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
    /// Pinning the link or the program in bpffs failed: missing privileges, or a pin of that
    /// name is already there (a concurrent attach of the same interface).
    #[error("pin {}", path.display())]
    Pin {
        /// Where the pin was to be made.
        path: PathBuf,
        /// aya's error, with the errno.
        #[source]
        source: PinError,
    },
    /// [`replace`](crate::replace) could not open the pinned link: missing privileges, or
    /// the pin was removed meanwhile (a concurrent detach). Check with `fastpath xdp status`.
    #[error("open the pinned link {}", path.display())]
    OpenLink {
        /// The link pin.
        path: PathBuf,
        /// aya's error, with the errno.
        #[source]
        source: LinkError,
    },
    /// A rule record in the pinned maps holds a code this build does not know (an action,
    /// protocol or family), written by another fastpath version. Every rule change reads
    /// all records first, so use the version that wrote it, or detach and attach again
    /// (the rules are lost).
    #[error("map {map}: rule {rule} has a record this build cannot read")]
    UnreadableRule {
        /// The map holding the record ("RULE_DEFS").
        map: &'static str,
        /// The rule's id.
        rule: u32,
    },
    /// The SETTINGS map holds a default-action code this build does not know, written by
    /// another fastpath version: use that version, or detach and attach again.
    #[error("map SETTINGS: unknown default action code {0}")]
    UnknownDefaultAction(u8),
    /// The host's `/sys/fs/bpf`, reached through `/proc/<pid>/root`, is not a bpffs (checked
    /// after mounting one there when none was). [`crate::bpffs`] keeps it as the reason the
    /// host's bpffs is unreachable, so callers see [`OffloadError::BpffsUnreachable`]; mount
    /// one on the host (`mount -t bpf bpf /sys/fs/bpf`).
    #[error("{path} is not a bpffs")]
    NotBpffs {
        /// The path that was opened.
        path: String,
    },
    /// Pins meant to outlive this process were asked for in a private mount namespace
    /// (`ip netns exec` remounts /sys) from which the host's bpffs cannot be reached: they
    /// would vanish with the process. Run `fastpath --netns NS ...` instead, which enters
    /// only the network namespace.
    #[error("cannot pin under bpffs: {reason}")]
    BpffsUnreachable {
        /// Why the host's bpffs could not be used, and what to run instead.
        reason: String,
    },
    /// The thread that enters the host's mount namespace to mount bpffs panicked: a bug.
    /// Like [`OffloadError::NotBpffs`], it reaches callers as the reason of
    /// [`OffloadError::BpffsUnreachable`].
    #[error("the thread that mounts the host's bpffs panicked")]
    MountThreadPanicked,
    /// [`TestBench::parse_report`](crate::test_run::TestBench::parse_report): the
    /// `parse_probe` program did not answer XDP_PASS with a whole
    /// [`ParseReport`](offload_common::ParseReport). The object and `offload-common` disagree
    /// (a stale build output): rebuild.
    #[error("the parse_probe program answered verdict {verdict} with {bytes} bytes out")]
    ParseProbe {
        /// The XDP verdict returned (2 is XDP_PASS).
        verdict: u32,
        /// The length of the packet the program left, in bytes.
        bytes: usize,
    },
}

/// What was being done to a program when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramAction {
    /// Finding the program in the object as an XDP program.
    Open,
    /// BPF_PROG_LOAD: the verifier rejected it.
    Verify,
    /// Attaching it to the interface, or taking its link.
    Attach,
    /// The bpf_link update that swaps the running program in [`replace`](crate::replace).
    UpdateLink,
    /// Reading its info (the kernel's program id).
    Info,
    /// BPF_PROG_TEST_RUN.
    TestRun,
}

impl std::fmt::Display for ProgramAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProgramAction::Open => "open",
            ProgramAction::Verify => "the verifier rejected",
            ProgramAction::Attach => "attach",
            ProgramAction::UpdateLink => "bpf_link update of",
            ProgramAction::Info => "read the info of",
            ProgramAction::TestRun => "BPF_PROG_TEST_RUN of",
        })
    }
}

/// What was being done to a map when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapAction {
    /// Opening it from its pin.
    Open,
    /// Viewing it as the map type, key and value this build expects: they differ.
    Layout,
    /// Reading or iterating entries.
    Read,
    /// Inserting or updating an entry.
    Write,
    /// Removing an entry.
    Delete,
}

impl std::fmt::Display for MapAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapAction::Open => "open",
            MapAction::Layout => "unexpected layout of",
            MapAction::Read => "read",
            MapAction::Write => "write",
            MapAction::Delete => "delete from",
        })
    }
}

fn mode_refusal(mode: XdpMode, driver: &str) -> String {
    match mode {
        XdpMode::Hw => format!("hardware offload refused by driver {driver}"),
        XdpMode::Drv => format!("native XDP unsupported by driver {driver}"),
        XdpMode::Skb => "generic XDP failed".to_string(),
    }
}

impl OffloadError {
    pub(crate) fn syscall(call: &'static str, source: io::Error) -> Self {
        OffloadError::Syscall { call, source }
    }

    pub(crate) fn program(
        action: ProgramAction,
        program: impl Into<String>,
    ) -> impl FnOnce(ProgramError) -> Self {
        move |source| OffloadError::Program {
            action,
            program: program.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn map(action: MapAction, map: impl Into<String>) -> impl FnOnce(MapError) -> Self {
        move |source| OffloadError::Map {
            action,
            map: map.into(),
            source: Box::new(source),
        }
    }
}
