//! Benchmarks of fastpath, as a library.
//!
//! - [`line_rate`]: the line-rate runner behind `fastpath bench` (generator, app under
//!   test, RFC 2544 search, references), with [`report`] writing its results.
//! - [`xsk`]: the AF_XDP measurement behind `fastpath xsk` (rxdrop, txpush, l2fwd).
//! - [`search`] and [`stats`]: the RFC 2544 throughput search and the loss and latency
//!   maths, which need no hardware.
//! - [`steer_fixture`]: the steering program with rules of one kind, shared by the
//!   `steer-bench` binary and the criterion suite `steer_match`.
//!
//! The binaries `steer-bench`, `xsk-bench`, `lb-bench` and `lb-soak` drive real runs.
#![warn(missing_docs)]

mod error;
pub mod line_rate;
pub mod report;
pub mod search;
mod socket;
pub mod stats;
pub mod steer_fixture;
pub mod xsk;

pub use error::BenchError;
