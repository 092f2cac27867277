//! The packet layer every part of fastpath shares: one parsing policy ([`mod@parse`]), one
//! implementation of the Internet checksum ([`checksum`]), and the generator's stamp
//! ([`stamp`]).
//!
//! Layer 1 of the workspace (see docs/architecture.md): it depends on nothing, and
//! `offload`, `pipeline`, `trafficgen`, the network functions, `lab` and the CLI read frames
//! through it.
//!
//! Entry points:
//! - [`parse()`] checks a frame and returns its [`Headers`] (where L3 and L4 start, ports,
//!   fragment, VLAN tags), `Ok(None)` for a non-IP frame, or [`Malformed`] naming the
//!   header at fault;
//! - [`checksum::checksum`] and [`checksum::Sum`] compute and incrementally update Internet
//!   checksums (RFC 1071, RFC 1624);
//! - `FrameBuilder` (`build`, with the default `std` feature) makes valid frames for tests,
//!   fixtures, the lab and the generator;
//! - `pcap` (with `std`) reads classic pcap and pcapng captures of Ethernet frames, every
//!   length checked, and writes classic ones for tests;
//! - [`stamp::Stamp`] is the sequence number and timestamp the generator writes into its
//!   frames and sinks read back.
//!
//! The steering program in `offload/ebpf/src/parse.rs` implements the same policy for the
//! kernel; a differential test (`offload/tests/parse_differential.rs`) runs both over one
//! corpus and requires them to agree. Without the default `std` feature the crate is
//! `no_std` and leaves out `build` (which allocates): the kernel-side programs share
//! [`stamp`] through `offload-common` that way.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
pub mod build;
pub mod checksum;
pub mod parse;
#[cfg(feature = "std")]
pub mod pcap;
pub mod stamp;

#[cfg(feature = "std")]
pub use build::FrameBuilder;
pub use parse::{FlowKey, Fragment, Headers, Malformed, parse};
