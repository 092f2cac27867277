//! Pinned-core pipelines: a worker per (interface, queue) runs AF_XDP receive, a chain of
//! network functions, then transmit or drop, and recycles frames through the completion
//! and fill rings (run-to-completion). Chains are swapped at batch boundaries without
//! stopping the worker; stats are published while it runs.
//!
//! ```text
//! RX ring -> [Packet; batch] -> NF 1 -> NF 2 -> ... -> verdicts -> TX ring | pool (drop)
//!   ^                                                                 |
//!   +------------- fill ring <- pool <- completion ring <-------------+
//! ```

mod chain;
mod nf;
mod stats;
mod worker;

pub use chain::Chain;
pub use nf::{NetworkFunction, Packet, Verdict};
pub use stats::{NfStats, WorkerStats};
pub use worker::{PollMode, Worker, WorkerConfig, WorkerError};
