//! The packet layer every user-space part of fastpath shares: one parsing policy
//! ([`parse`](mod@parse)) and one implementation of the Internet checksum ([`checksum`]).
//!
//! The steering program in `offload/ebpf/src/parse.rs` implements the same policy for the
//! kernel; a differential test (`offload/tests/parse_differential.rs`) runs both over one
//! corpus and requires them to agree. [`build`] makes valid frames for tests, fixtures and
//! benchmarks. [`stamp`] is the generator's sequence and timestamp, written into generated
//! frames and read back by sinks.
//!
//! Without the default `std` feature the crate is `no_std` and leaves out [`build`] (which
//! allocates): the kernel-side programs share [`stamp`] through `offload-common` that way.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
pub mod build;
pub mod checksum;
pub mod parse;
pub mod stamp;

#[cfg(feature = "std")]
pub use build::FrameBuilder;
pub use parse::{Fragment, Headers, Malformed, parse};
