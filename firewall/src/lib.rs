//! The stateful in-kernel firewall: a built-in IO module (`firewall`, in the interface's
//! module chain) with connection tracking shared by every interface of the node.
//!
//! - [`Policy`]: a rules file (TOML), read and checked, errors naming the line;
//! - [`compile`]: the policy as the module's tables (tuple-space search: one hash probe
//!   per distinct mask);
//! - [`apply`], [`status`], [`remove`]: the firewall of an interface; a new policy is
//!   written beside the running one and switched to in one map update;
//! - [`prepare_at`], [`status_at`]: the same for a topology's `firewall` instance (a
//!   [`Site`]), whose program the topology loads;
//! - [`add_rule`]: one rule appended to the running policy in place (a few map updates);
//! - [`del_rule`]: one rule removed from the running policy in place;
//! - [`conntrack`]: the node's table from user space (list, flush, fill and counters);
//! - [`log`]: the events of `log` rules and of a full conntrack table;
//! - [`policy`]: security groups compiled to the firewall of each member interface.
//!
//! docs/firewall.md describes the design and what is not done yet.
#![warn(missing_docs)]

mod add_rule;
mod compile;
pub mod conntrack;
mod del_rule;
mod error;
pub mod log;
pub mod policy;
mod rules;
mod tables;

pub use add_rule::{RuleAdded, add_rule};
pub use compile::{Tables, compile};
pub use del_rule::{RuleDeleted, del_rule};
pub use error::FirewallError;
pub use rules::{DEFAULT_LOG_RATE, Policy, Rule, TCP_FLAG_NAMES, TcpFlags};
pub use tables::{
    Applied, Prepared, RuleCounters, Site, Status, Switched, apply, prepare, prepare_at,
    release_node_tables, remove, status, status_at, switch,
};
