use std::io;

use crate::rules::RuleError;

/// Everything the offload API can fail with. Syscall failures name the call and keep the
/// `io::Error`; the messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("interface {0:?} not found in this network namespace")]
    UnknownInterface(String),
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
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{call} failed: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {message}")]
    Bpf { what: String, message: String },
}

impl OffloadError {
    pub(crate) fn bpf(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        OffloadError::Bpf {
            what: what.into(),
            message: error.to_string(),
        }
    }

    pub(crate) fn syscall(call: &'static str, source: io::Error) -> Self {
        OffloadError::Syscall { call, source }
    }
}
