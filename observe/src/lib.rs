//! Tracing and observability on top of the module chain and the applications (layer 4:
//! it reads the firewall's and the load balancer's status).
//!
//! - [`tunnels`]: the built-in `vxlan-trace` module: load it into an interface's chain,
//!   configure it, and read its per-pair statistics as tunnels with their inner pairs;
//! - [`metrics`]: one collection of every chain's per-module verdict counters and run
//!   time, each steering attachment's action and rule counters, each tracer's tunnel
//!   statistics, each firewall's rule and conntrack counters and each load balancer's
//!   VIP, backend and worker stats, rendered in the Prometheus text format or as JSON;
//! - [`graph`]: the tunnel graph (VTEPs, tunnels, rates, health) behind the web page;
//! - [`http`]: the read-only HTTP server behind `fastpath serve` (`/`, `/metrics`,
//!   `/api/...`).
//!
//! docs/tracing.md tells the whole design.
#![warn(missing_docs)]

pub mod graph;
pub mod http;
pub mod metrics;
pub mod tunnels;

/// What can go wrong reading or loading the tracer, or collecting metrics.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The module chain refused (no chain, unknown module, load failed...).
    #[error(transparent)]
    Module(#[from] offload::modules::ModuleError),
    /// A steering attachment could not be read.
    #[error(transparent)]
    Offload(#[from] offload::OffloadError),
    /// A map of the tracer could not be opened, read or written.
    #[error("{what} the map {map} of vxlan-trace ({pin}): {source}")]
    Map {
        /// "open", "read" or "write".
        what: &'static str,
        /// The map's name.
        map: &'static str,
        /// Its pin.
        pin: String,
        /// The map call's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The tracer is not in the chain.
    #[error("vxlan-trace is not loaded on {0} (`fastpath trace vxlan --iface IF` loads it)")]
    NotLoaded(String),
    /// A setting the module cannot take.
    #[error("{0}")]
    BadSetting(String),
    /// The server's socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
