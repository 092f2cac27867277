//! Everything `fastpath lb status` shows, as the control socket sends it.

use std::net::IpAddr;

use offload::ActionCounters;
use pipeline::WorkerStats;
use serde::{Deserialize, Serialize};

use crate::lb::registry::VipStatus;

/// Everything `fastpath lb status` shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// The interface the appliance serves.
    pub interface: String,
    /// The XDP mode the steering program attached in (`drv`, `skb`, `hw`).
    pub xdp_mode: String,
    /// How the AF_XDP sockets bound: `zero-copy` or `copy`.
    pub socket_mode: String,
    /// Each VIP with its backends and their counters.
    pub vips: Vec<VipStatus>,
    /// One entry per worker, then one with their sum.
    pub workers: Vec<WorkerEntry>,
    /// The steering program's counters (null when they could not be read).
    pub steering: Option<ActionCounters>,
    /// NAT replies that arrived on another queue than their flow's first packet.
    pub cross_queue_replies: u64,
    /// Checksums completed for senders with TX checksum offload on.
    pub partial_checksums: u64,
    /// IP fragments received, each given its datagram's ports from the first fragment.
    pub fragments: u64,
    /// ICMP errors telling senders the MTU that fits an encapsulated packet.
    pub too_big_replies: u64,
    /// NAT mappings in use.
    pub nat_entries: usize,
    /// Source addresses the prefilter drops, with the drops from each.
    pub prefilter: Vec<(IpAddr, u64)>,
    /// What was chosen at start and on reloads, and where each value came from.
    pub log: Vec<String>,
    /// What happened since: health flips, refused or failed control clients (the newest).
    #[serde(default)]
    pub events: Vec<String>,
    /// Connections evicted from full connection tables (LRU), over all workers.
    #[serde(default)]
    pub conntrack_evictions: u64,
    /// Entries of each worker's connection table (`connections`).
    #[serde(default)]
    pub conntrack_capacity: usize,
}

/// An element of [`Status::workers`]: a worker's stats, or (last) `{"total": ...}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkerEntry {
    /// The sum over the workers. First, so that a worker's object is never read as one.
    Total {
        /// The summed stats.
        total: WorkerStats,
    },
    /// One worker's stats.
    Worker(WorkerStats),
}

impl Status {
    /// Each worker's stats, without the total.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerStats> {
        self.workers.iter().filter_map(|entry| match entry {
            WorkerEntry::Worker(stats) => Some(stats),
            WorkerEntry::Total { .. } => None,
        })
    }

    /// The entries for `workers`: each one, then their sum.
    pub fn worker_entries(workers: Vec<WorkerStats>) -> Vec<WorkerEntry> {
        let total = WorkerStats::total(&workers);
        let mut entries: Vec<WorkerEntry> = workers.into_iter().map(WorkerEntry::Worker).collect();
        entries.push(WorkerEntry::Total { total });
        entries
    }
}
