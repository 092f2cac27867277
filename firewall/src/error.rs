//! What can go wrong, each error naming its file, line, interface, map or pin.

use std::path::PathBuf;

use offload::modules::ModuleError;

/// The firewall's errors.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The rules file cannot be read.
    #[error("{file}: cannot read: {source}", file = file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rules file is wrong at a line.
    #[error("{file}: line {line}: {message}", file = file.display())]
    Rules {
        /// The file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The module chain refused a step (load, list, unload).
    #[error("the firewall module on {iface}: {source}")]
    Module {
        /// The interface.
        iface: String,
        /// The chain's error.
        source: Box<ModuleError>,
    },
    /// A map could not be created, opened, read or written.
    #[error("{action} the map {map} ({path}): {source}", path = path.display())]
    Map {
        /// What was done.
        action: &'static str,
        /// The map's name.
        map: &'static str,
        /// Its pin.
        path: PathBuf,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A bpffs pin or directory could not be made or removed.
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
    #[error("bpffs for the firewall's pins: {source}")]
    Bpffs {
        /// Why.
        source: Box<offload::OffloadError>,
    },
    /// No firewall runs on the interface.
    #[error(
        "no firewall on {iface}: `fastpath firewall apply --iface {iface} RULES.toml` loads one"
    )]
    NotLoaded {
        /// The interface.
        iface: String,
    },
    /// `rule del` named no rule of the running policy.
    #[error("no rule `{rule}` in the running policy of {iface}: {reason}")]
    NoSuchRule {
        /// The interface.
        iface: String,
        /// The rule as given (a name or a number).
        rule: String,
        /// Why it is not there.
        reason: String,
    },
    /// The egress tracker could not be loaded or attached.
    #[error("the firewall's egress tracker on {iface}: {step}: {reason}")]
    Egress {
        /// The interface.
        iface: String,
        /// The step that failed.
        step: &'static str,
        /// Why.
        reason: String,
    },
}

impl FirewallError {
    pub(crate) fn map<E: std::error::Error + Send + Sync + 'static>(
        action: &'static str,
        map: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(E) -> FirewallError {
        let path = path.to_path_buf();
        move |source| FirewallError::Map {
            action,
            map,
            path,
            source: Box::new(source),
        }
    }

    pub(crate) fn pin(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> FirewallError {
        let path = path.to_path_buf();
        move |source| FirewallError::Pin {
            action,
            path,
            source,
        }
    }
}
