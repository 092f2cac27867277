//! Pinned-core pipelines: a worker per (interface, queue) runs AF_XDP receive, a chain of
//! network functions, then transmit or drop, and recycles frames through the completion
//! and fill rings (run-to-completion). Chains are swapped at batch boundaries without
//! stopping the worker; stats are published while it runs. For heavy functions, the
//! pipelined mode runs the chain on stage cores fed by bounded queues (see `stage`).
//!
//! ```text
//! RX ring -> [Packet; batch] -> NF 1 -> NF 2 -> ... -> verdicts -> TX ring | pool (drop)
//!   ^                                                                 |
//!   +------------- fill ring <- pool <- completion ring <-------------+
//! ```
#![warn(missing_docs)]

//!
//! Modules depend one way: `drop_reason` and `error` at the bottom, then `nf`, `stats`,
//! `chain`, `flow`, `stage` and last `worker`.

mod chain;
mod drop_reason;
mod error;
mod flow;
mod nf;
mod stage;
mod stats;
mod worker;
pub mod xsk_apps;

pub use chain::Chain;
pub use drop_reason::{DropCounts, DropReason};
pub use error::WorkerError;
pub use flow::flow_hash;
pub use nf::{NetworkFunction, Packet, PacketList, Verdict};
pub use stage::StageConfig;
pub use stats::{NfStats, StageStats, WorkerStats};
pub use worker::{PollMode, Worker, WorkerConfig};
