//! What the appliance can fail with. Each variant says what failed and keeps the cause as
//! its `source`, so `{:#}` (anyhow) prints the whole chain; [`chain`] writes it for the
//! control socket's responses and the event log, which have no anyhow.

use std::{error::Error, io, path::PathBuf};

use afxdp::XskError;
use offload::{OffloadError, probe::ntuple::NtupleError};
use pipeline::WorkerError;

use crate::lb::{config::ConfigError, control::ControlError, neighbours::LinkError};

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("an appliance (pid {pid}) already runs on {iface}; stop it first")]
    AlreadyRunning { pid: i32, iface: String },
    #[error("{action} {}", path.display())]
    PidFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interface {iface}")]
    UnknownInterface {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("interface {iface}")]
    ReadInterface {
        iface: String,
        #[source]
        source: LinkError,
    },
    #[error("plan the XDP attachment on {iface}")]
    PlanXdp {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("remove the steering program a previous run left on {iface}")]
    RemoveLeftoverProgram {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("attach the steering program to {iface}")]
    Attach {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("open the steering maps of {iface}")]
    OpenSteering {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("create the UMEM for {iface} queue {queue}")]
    Umem {
        iface: String,
        queue: u32,
        #[source]
        source: XskError,
    },
    #[error("bind an AF_XDP socket to {iface} queue {queue}")]
    Bind {
        iface: String,
        queue: u32,
        #[source]
        source: XskError,
    },
    #[error("register the socket of {iface} queue {queue} with the steering program")]
    RegisterSocket {
        iface: String,
        queue: u32,
        #[source]
        source: OffloadError,
    },
    #[error("start the worker for {iface} queue {queue}")]
    StartWorker {
        iface: String,
        queue: u32,
        #[source]
        source: WorkerError,
    },
    #[error("hand the new tables to the workers")]
    Swap(#[source] WorkerError),
    #[error("delete steering rule {id}")]
    DeleteRule {
        id: u32,
        #[source]
        source: OffloadError,
    },
    #[error("steering rules")]
    AddRules(#[source] OffloadError),
    #[error("the steering program cannot take the rules of the new config; nothing was applied")]
    RulesDoNotFit(#[source] OffloadError),
    #[error("update the prefilter")]
    Prefilter(#[source] OffloadError),
    #[error("ntuple steering")]
    Ntuple(#[source] NtupleError),
    #[error("reload: {setting} changed; that needs a restart (nothing was applied)")]
    RestartNeeded { setting: &'static str },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(
        "interface {iface} (ifindex {ifindex}) is gone: deleted, or moved out of this network namespace; the appliance stops (start it again once the interface is back)"
    )]
    InterfaceGone { iface: String, ifindex: u32 },
    #[error(
        "the worker for {iface} queue {queue} stopped: it ended without an error; the appliance stops rather than serve part of the traffic"
    )]
    WorkerEnded { iface: String, queue: u32 },
    #[error(
        "the worker for {iface} queue {queue} stopped; the appliance stops rather than serve part of the traffic"
    )]
    WorkerFailed {
        iface: String,
        queue: u32,
        #[source]
        source: WorkerError,
    },
}

/// `error` and its sources on one line, `: `-separated, as anyhow's `{:#}` prints them.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_what_failed_then_why() {
        let error = LbError::PidFile {
            action: "write",
            path: "/run/fastpath/lb-eth0.pid".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            chain(&error),
            "write /run/fastpath/lb-eth0.pid: permission denied"
        );
    }
}
