//! The packet layer every user-space part of fastpath shares: one parsing policy
//! ([`parse`]) and one implementation of the Internet checksum ([`checksum`]).
//!
//! The steering program in `offload/ebpf/src/parse.rs` implements the same policy for the
//! kernel; a differential test (`offload/tests/parse_differential.rs`) runs both over one
//! corpus and requires them to agree. [`build`] makes valid frames for tests, fixtures and
//! benchmarks.
pub mod build;
pub mod checksum;
pub mod parse;

pub use build::FrameBuilder;
pub use parse::{Fragment, Headers, Malformed, parse};
