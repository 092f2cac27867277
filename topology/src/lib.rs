//! Topologies: instances of modules (the bridge, the router, the firewall, the load
//! balancer, user modules) with named ports, each port joined to an interface or to
//! another instance's port, run inside the kernel by the topology's maps (the contract is
//! `offload_common::topology`).
//!
//! - [`TopologyFile`]: a topology file (TOML), read and checked, errors naming the line;
//! - [`plan`]: the file against what runs ([`record`]): instance ids and port numbers;
//! - [`apply`] and [`down`]: the running topology changed in one switch, or removed;
//! - [`show`] and [`draw`]: the running graph with its counters, as text, DOT or SVG.
//!
//! docs/topology.md describes the design and what is not done yet.
#![warn(missing_docs)]

mod apply;
pub mod draw;
mod error;
mod fdb;
pub mod file;
mod instance_maps;
mod journal;
pub mod lb;
pub mod pins;
pub mod plan;
mod program;
pub mod record;
mod routes;
mod settings;
pub mod show;
mod tc_link;

pub use apply::{Applied, Down, SwappedInstance, apply, down, ifindex, read, swap};
pub use error::TopologyError;
pub use fdb::{FdbRow, fdb_add, fdb_del, fdb_show};
pub use file::{Instance, Kind, Peer, Port, TopologyFile};
pub use instance_maps::firewall_site;
pub use routes::{RouteRow, route_add, route_del, route_show};
pub use show::{Shown, show};
