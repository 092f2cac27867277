//! What the appliance can fail with. Each variant says what failed and keeps the cause as
//! its `source`, so `{:#}` (anyhow) prints the whole chain; [`chain`] writes it for the
//! control socket's responses and the event log, which have no anyhow.

use std::{io, path::PathBuf};

use afxdp::XskError;
use nic::ntuple::NtupleError;
use offload::OffloadError;
use pipeline::WorkerError;

use crate::lb::{config::ConfigError, control::ControlError, neighbours::LinkError};

/// Why the appliance could not start, reload, or go on running.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields: the message names each one
pub enum LbError {
    /// The config file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another live appliance holds the interface.
    #[error("an appliance (pid {pid}) already runs on {iface}; stop it first")]
    AlreadyRunning { pid: i32, iface: String },
    /// The pid file could not be written.
    #[error("{action} {}", path.display())]
    PidFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The configured interface does not exist here.
    #[error("interface {iface}")]
    UnknownInterface {
        iface: String,
        #[source]
        source: nic::NicError,
    },
    /// The interface's MAC address, MTU or addresses could not be read.
    #[error("interface {iface}")]
    ReadInterface {
        iface: String,
        #[source]
        source: LinkError,
    },
    /// No XDP attachment could be planned for the interface.
    #[error("plan the XDP attachment on {iface}")]
    PlanXdp {
        iface: String,
        #[source]
        source: OffloadError,
    },
    /// A dead run's steering program could not be removed.
    #[error("remove the steering program a previous run left on {iface}")]
    RemoveLeftoverProgram {
        iface: String,
        #[source]
        source: OffloadError,
    },
    /// The steering program did not attach.
    #[error("attach the steering program to {iface}")]
    Attach {
        iface: String,
        #[source]
        source: OffloadError,
    },
    /// The attached program's maps could not be opened.
    #[error("open the steering maps of {iface}")]
    OpenSteering {
        iface: String,
        #[source]
        source: OffloadError,
    },
    /// A queue's UMEM could not be created.
    #[error("create the UMEM for {iface} queue {queue}")]
    Umem {
        iface: String,
        queue: u32,
        #[source]
        source: XskError,
    },
    /// A queue's AF_XDP socket did not bind.
    #[error("bind an AF_XDP socket to {iface} queue {queue}")]
    Bind {
        iface: String,
        queue: u32,
        #[source]
        source: XskError,
    },
    /// A socket could not be put in the steering program's XSKMAP.
    #[error("register the socket of {iface} queue {queue} with the steering program")]
    RegisterSocket {
        iface: String,
        queue: u32,
        #[source]
        source: OffloadError,
    },
    /// A queue's worker did not start.
    #[error("start the worker for {iface} queue {queue}")]
    StartWorker {
        iface: String,
        queue: u32,
        #[source]
        source: WorkerError,
    },
    /// A worker did not take new tables.
    #[error("hand the new tables to the workers")]
    Swap(#[source] WorkerError),
    /// A steering rule no longer wanted could not be deleted.
    #[error("delete steering rule {id}")]
    DeleteRule {
        id: u32,
        #[source]
        source: OffloadError,
    },
    /// The steering rules the VIPs need could not be added.
    #[error("steering rules")]
    AddRules(#[source] OffloadError),
    /// A reload's rules would not fit the steering program; nothing changed.
    #[error("the steering program cannot take the rules of the new config; nothing was applied")]
    RulesDoNotFit(#[source] OffloadError),
    /// The prefilter could not be updated.
    #[error("update the prefilter")]
    Prefilter(#[source] OffloadError),
    /// `ntuple = "on"` and the NIC could not take the rules.
    #[error("ntuple steering")]
    Ntuple(#[source] NtupleError),
    /// The health checks' thread or its runtime could not start.
    #[error("start the health checks")]
    HealthChecks(#[source] io::Error),
    /// A reload changed a setting that only a restart applies.
    #[error("reload: {setting} changed; that needs a restart (nothing was applied)")]
    RestartNeeded { setting: &'static str },
    /// The control socket failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The interface went away while the appliance ran.
    #[error(
        "interface {iface} (ifindex {ifindex}) is gone: deleted, or moved out of this network namespace; the appliance stops (start it again once the interface is back)"
    )]
    InterfaceGone { iface: String, ifindex: u32 },
    /// A worker ended on its own while the appliance ran.
    #[error(
        "the worker for {iface} queue {queue} stopped: it ended without an error; the appliance stops rather than serve part of the traffic"
    )]
    WorkerEnded { iface: String, queue: u32 },
    /// A worker failed while the appliance ran.
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

#[cfg(test)]
mod tests {
    use super::*;
    use offload::error_chain as chain;

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
