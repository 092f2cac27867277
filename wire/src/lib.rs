//! The packet layer every user-space part of fastpath shares: one parsing policy
//! ([`mod@parse`]) and one implementation of the Internet checksum ([`checksum`]).
//!
//! Layer 1 of the workspace (see ARCHITECTURE.md): it depends on nothing but `std`, and
//! `offload`, `pipeline`, the network functions, `lab` and the CLI read frames through it.
//!
//! Entry points:
//! - [`parse()`] checks a frame and returns its [`Headers`] (where L3 and L4 start, ports,
//!   fragment, VLAN tags), `Ok(None)` for a non-IP frame, or [`Malformed`] naming the
//!   header at fault;
//! - [`checksum::checksum`] and [`checksum::Sum`] compute and incrementally update Internet
//!   checksums (RFC 1071, RFC 1624);
//! - [`FrameBuilder`] ([`build`]) makes valid frames for tests, fixtures and benchmarks.
//!
//! The steering program in `offload/ebpf/src/parse.rs` implements the same policy for the
//! kernel; a differential test (`offload/tests/parse_differential.rs`) runs both over one
//! corpus and requires them to agree.
#![warn(missing_docs)]
pub mod build;
pub mod checksum;
pub mod parse;

pub use build::FrameBuilder;
pub use parse::{Fragment, Headers, Malformed, parse};
