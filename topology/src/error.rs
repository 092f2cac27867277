//! What can go wrong, each error naming its file and line, instance, map or pin.

use std::path::PathBuf;

use offload::modules::ModuleError;

/// The topologies' errors.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The topology file cannot be read.
    #[error("{file}: cannot read: {source}", file = file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The topology file is wrong at a line.
    #[error("{file}: line {line}: {message}", file = file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instance's program could not be read, loaded or put in its slot.
    #[error("instance {instance}: {step}: {reason}")]
    Instance {
        /// The instance.
        instance: String,
        /// The step that failed.
        step: &'static str,
        /// Why (the loader's error and its causes).
        reason: String,
    },
    /// A firewall instance's rules could not be read or written.
    #[error("instance {instance}: its rules")]
    Firewall {
        /// The instance.
        instance: String,
        /// The firewall's error (a rules file's names the line).
        source: Box<firewall::FirewallError>,
    },
    /// The module chain of an interface refused a step (load, unload).
    #[error("the topology module on {iface}: {source}")]
    Chain {
        /// The interface.
        iface: String,
        /// The chain's error.
        source: Box<ModuleError>,
    },
    /// A map could not be created, opened, read or written.
    #[error("{action} the map {map} ({path}): {reason}", path = path.display())]
    Map {
        /// What was done.
        action: &'static str,
        /// The map's name.
        map: String,
        /// Its pin.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A pin, directory or record could not be made, read or removed.
    #[error("{action} {path}: {source}", path = path.display())]
    Pin {
        /// What was done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// bpffs is not there and cannot be mounted.
    #[error("bpffs for the topology's pins: {source}")]
    Bpffs {
        /// Why.
        source: Box<offload::OffloadError>,
    },
    /// No topology of this name runs.
    #[error("no topology {name} runs: `fastpath topology apply FILE.toml` starts one")]
    NotRunning {
        /// Its name.
        name: String,
    },
    /// An interface of the file vanished, or its index could not be read.
    #[error("interface {iface}: {reason}")]
    Iface {
        /// The interface.
        iface: String,
        /// Why.
        reason: String,
    },
    /// A request names an instance the topology does not run, or one of another kind.
    #[error("{0}")]
    Request(String),
}

impl TopologyError {
    pub(crate) fn map<E: std::fmt::Display>(
        action: &'static str,
        map: &str,
        path: &std::path::Path,
    ) -> impl FnOnce(E) -> TopologyError {
        let path = path.to_path_buf();
        let map = map.to_string();
        move |source| TopologyError::Map {
            action,
            map,
            path,
            reason: source.to_string(),
        }
    }

    pub(crate) fn pin(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> TopologyError {
        let path = path.to_path_buf();
        move |source| TopologyError::Pin {
            action,
            path,
            source,
        }
    }
}
