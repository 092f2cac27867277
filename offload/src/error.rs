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
    #[error("interface {0:?} not found in this network namespace")]
    UnknownInterface(String),
    #[error("no interface with index {0} in this network namespace")]
    UnknownIfindex(u32),
    #[error(
        "nothing attached to {0}: no fastpath pins under {1} (run `fastpath xdp attach --iface {0}` first)"
    )]
    NotAttached(String, String),
    #[error(
        "{iface} already has fastpath's program attached ({mode}, program id {program_id}); use `fastpath xdp replace` or `fastpath xdp detach` first"
    )]
    AlreadyAttached {
        iface: String,
        mode: String,
        program_id: u32,
    },
    #[error(
        "{iface} already has another XDP program attached (program id {program_id}, not fastpath's); detach it first"
    )]
    ForeignProgram { iface: String, program_id: u32 },
    #[error("no XDP mode worked on {iface}: {reasons}")]
    NoModeWorked { iface: String, reasons: String },
    /// One mode of the attach policy failed; the policy goes on with the next one.
    #[error("{}", mode_refusal(*mode, driver))]
    ModeRefused {
        mode: XdpMode,
        driver: String,
        #[source]
        source: Box<OffloadError>,
    },
    #[error(
        "replace on {iface}: the program runs in hw mode, which has no bpf_link to update; detach and attach instead"
    )]
    NoLinkToUpdate { iface: String },
    #[error(
        "the kernel attached the program to {iface} through netlink, not a bpf_link, so it cannot be pinned"
    )]
    NotABpfLink {
        iface: String,
        #[source]
        source: LinkError,
    },
    #[error("{reason}")]
    HardwareOffload { reason: String },
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// An interface query (rtnetlink, ethtool) failed.
    #[error(transparent)]
    Nic(#[from] nic::NicError),
    #[error("{call} failed")]
    Syscall {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("load the {object} object")]
    LoadObject {
        object: &'static str,
        #[source]
        source: Box<EbpfError>,
    },
    #[error("the {object} object has no {part} `{name}`")]
    MissingFromObject {
        object: &'static str,
        part: &'static str,
        name: String,
    },
    #[error("{action} program `{program}`")]
    Program {
        action: ProgramAction,
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("{action} map {map}")]
    Map {
        action: MapAction,
        map: String,
        #[source]
        source: Box<MapError>,
    },
    #[error("pin {}", path.display())]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("open the pinned link {}", path.display())]
    OpenLink {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("map {map}: rule {rule} has a record this build cannot read")]
    UnreadableRule { map: &'static str, rule: u32 },
    #[error("map SETTINGS: unknown default action code {0}")]
    UnknownDefaultAction(u8),
    #[error("{path} is not a bpffs")]
    NotBpffs { path: String },
    #[error("cannot pin under bpffs: {reason}")]
    BpffsUnreachable { reason: String },
    #[error("the thread that mounts the host's bpffs panicked")]
    MountThreadPanicked,
    #[error("the parse_probe program answered verdict {verdict} with {bytes} bytes out")]
    ParseProbe { verdict: u32, bytes: usize },
}

/// What was being done to a program when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramAction {
    Open,
    Verify,
    Attach,
    UpdateLink,
    Info,
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
    Open,
    Layout,
    Read,
    Write,
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
