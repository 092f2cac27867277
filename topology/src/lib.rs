//! Topologies: instances of modules (the bridge, the router, user modules) with named
//! ports, each port joined to an interface or to another instance's port, run inside the
//! kernel by the topology's maps (the contract is `offload_common::topology`).
//!
//! - [`TopologyFile`]: a topology file (TOML), read and checked, errors naming the line;
//!
//! docs/topology.md describes the design and what is not done yet.
#![warn(missing_docs)]

mod error;
pub mod file;
pub mod plan;
pub mod record;

pub use error::TopologyError;
pub use file::{Instance, Kind, Peer, Port, TopologyFile};
