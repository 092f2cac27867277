//! Security groups and micro-segmentation: `fastpath policy apply|show|explain|remove`.
//!
//! A policy file ([`GroupPolicy`]) names groups of endpoints (the host side of containers'
//! veths, CIDRs, other groups) and what may open flows to them (`allow_in`) or, outside
//! every group, from them (`allow_out`), in the AWS security-group model: allow-only,
//! stateful (replies are always allowed), a member of several groups gets the union.
//! [`compile()`] makes one firewall policy per member interface (docs/policy.md says where
//! each rule runs and why); [`apply`] prepares every member's firewall
//! ([`crate::prepare`]), then switches them all back to back ([`crate::switch`]), and
//! removes the firewall of interfaces that left the policy.

mod compile;
mod explain;
mod file;
mod node;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use compile::{InterfacePolicy, Members, Node, Origin, compile};
pub use explain::{Explanation, explain};
pub use file::{Allow, Group, GroupPolicy, Member, Peer, protocol_name};
pub use node::{
    InterfaceApplied, InterfaceShown, PolicyApplied, PolicyShown, apply, explain_applied, remove,
    resolve, show,
};

use crate::FirewallError;

/// What can go wrong with a group policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be read.
    #[error("{file}: cannot read: {source}", file = file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy file is wrong at a line.
    #[error("{file}: line {line}: {message}", file = file.display())]
    Line {
        /// The file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An interface could not be readied for the switch: no interface switched.
    #[error("{iface}: {source} (no interface switched: every one runs the policy it ran)")]
    Prepare {
        /// The interface.
        iface: String,
        /// Why.
        source: Box<FirewallError>,
    },
    /// An interface's firewall refused a step.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// The namespace's interfaces, addresses or routes could not be read.
    #[error("reading the namespace's {what}: {source}")]
    Netlink {
        /// What was read.
        what: &'static str,
        /// Why it failed.
        source: nic::NicError,
    },
    /// The record of the applied policy could not be read or written.
    #[error("{action} {path}: {source}", path = path.display())]
    State {
        /// What was done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No policy is applied in this network namespace.
    #[error("no policy applied in this network namespace: `fastpath policy apply POLICY.toml`")]
    NotApplied,
    /// `explain` was given something it cannot place.
    #[error("explain: {0}")]
    Explain(String),
}
