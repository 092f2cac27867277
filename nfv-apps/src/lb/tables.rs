//! What every worker reads: the VIPs, their backends and Maglev tables, built by the control
//! plane and replaced whole (hot swap) on every change. Counters and neighbour MACs are
//! shared (per-worker counter slots, atomic MACs), so they survive rebuilds and the control
//! plane can fill MACs in live.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hash, Hasher},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde::Serialize;

use crate::lb::{
    config::{Forwarding, VipKey},
    conntrack::FlowHasher,
    maglev::{self, MaglevTable},
    packet::{Address, address, vip_hash},
};

/// Whether a backend takes flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows.
    Active,
    /// Keeps its established flows, takes no new ones.
    Draining,
    /// Takes nothing: its flows move (operator `disable`, or failed health checks).
    Disabled,
}

/// One worker's share of a backend's counters: its running totals, written by that worker
/// alone with a Relaxed store once per batch (see `tallies`), so the packet path has no
/// shared read-modify-write. A cache line of its own: workers never write the same line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CounterSlot {
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) connections: AtomicU64,
}

/// A backend's counters, kept across table rebuilds: one slot per worker (or stage) that
/// has counted for it; the totals are the slots' sums.
#[derive(Debug, Default)]
pub struct BackendCounters {
    pub(crate) slots: Mutex<Vec<Arc<CounterSlot>>>,
}

/// A backend's counts, summed over the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendTotals {
    /// Packets sent to it.
    pub packets: u64,
    /// Bytes sent to it.
    pub bytes: u64,
    /// New flows scheduled to it.
    pub connections: u64,
}

impl BackendCounters {
    /// The counts as the workers last published them (at the end of their last batch).
    pub fn totals(&self) -> BackendTotals {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots
            .iter()
            .fold(BackendTotals::default(), |sum, slot| BackendTotals {
                packets: sum.packets + slot.packets.load(Ordering::Relaxed),
                bytes: sum.bytes + slot.bytes.load(Ordering::Relaxed),
                connections: sum.connections + slot.connections.load(Ordering::Relaxed),
            })
    }

    /// A fresh slot (all zero) for one worker to write, counted in the totals from now on.
    pub(crate) fn new_slot(&self) -> Arc<CounterSlot> {
        let slot = Arc::new(CounterSlot::default());
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.push(slot.clone());
        slot
    }
}

/// A backend's next-hop MAC, filled in by the control plane (0 until resolved). A worker that
/// finds it missing raises `wanted`, and the resolver asks the kernel to resolve it.
#[derive(Debug, Default)]
pub struct NextHop {
    mac: AtomicU64,
    /// A worker needed the MAC: the resolver should ask the kernel again.
    pub wanted: AtomicBool,
}

impl NextHop {
    /// The MAC, once resolved.
    pub fn get(&self) -> Option<[u8; 6]> {
        let value = self.mac.load(Ordering::Relaxed);
        (value != 0).then(|| {
            let bytes = value.to_be_bytes();
            [bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
        })
    }

    /// Records the resolved MAC.
    pub fn set(&self, mac: [u8; 6]) {
        let mut bytes = [0u8; 8];
        bytes[2..].copy_from_slice(&mac);
        self.mac.store(u64::from_be_bytes(bytes), Ordering::Relaxed);
    }
}

/// A backend as the workers see it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Stable across rebuilds: the connection table refers to backends by it.
    pub id: u32,
    /// Its address.
    pub ip: IpAddr,
    /// Its address as the data path compares it.
    pub address: Address,
    /// The port its flows go to.
    pub port: u16,
    /// Its share of new flows.
    pub weight: u32,
    /// Whether it takes flows (operator state and health combined).
    pub state: BackendState,
    /// The MAC of the next hop towards it.
    pub next_hop: Arc<NextHop>,
    /// Its counters.
    pub counters: Arc<BackendCounters>,
}

/// A VIP as the workers see it.
#[derive(Clone, Debug)]
pub struct Vip {
    /// Address, port and protocol.
    pub key: VipKey,
    /// How its packets reach the backends.
    pub forwarding: Forwarding,
    /// NAT: the source address backends see.
    pub snat_address: Option<Address>,
    /// dsr-ipip: the outer header's source address.
    pub encap_source: Address,
    /// Its backends, in config order.
    pub backends: Vec<Backend>,
    /// New flows to backends (indexes into `backends`).
    pub maglev: MaglevTable,
}

impl Vip {
    /// Builds the Maglev table: active backends with their weights; draining and disabled
    /// ones get no slots (and keep their list position, so indexes stay valid).
    pub fn new(
        key: VipKey,
        forwarding: Forwarding,
        snat_address: Option<IpAddr>,
        encap_source: IpAddr,
        backends: Vec<Backend>,
        maglev_size: usize,
    ) -> Vip {
        let weighted = backends.iter().map(|backend| {
            let weight = if backend.state == BackendState::Active {
                backend.weight
            } else {
                0
            };
            (backend.ip, backend.port, weight)
        });
        let maglev = maglev::backend_table(weighted, maglev_size);
        Vip {
            key,
            forwarding,
            snat_address: snat_address.map(address),
            encap_source: address(encap_source),
            maglev,
            backends,
        }
    }
}

/// Counters of the whole load balancer, shared by its workers.
#[derive(Debug, Default)]
pub struct LbCounters {
    /// NAT replies that arrived on another queue than their flow's first packet (and still
    /// found their state).
    pub cross_queue_replies: AtomicU64,
    /// TCP/UDP checksums left partial by a sender with TX checksum offload, completed here.
    pub partial_checksums: AtomicU64,
    /// IP fragments received, each given its datagram's ports from the first fragment.
    pub fragments: AtomicU64,
    /// ICMP "fragmentation needed" / "packet too big" sent for packets too big to
    /// encapsulate.
    pub too_big_replies: AtomicU64,
    /// Flows evicted from a full connection table (the least recently used goes, and the
    /// new flow is served).
    pub conntrack_evictions: AtomicU64,
}

/// A VIP's key in the per-packet index.
#[derive(Clone, Copy, PartialEq, Eq)]
struct VipIndexKey {
    address: Address,
    port: u16,
    proto: u8,
}

impl Hash for VipIndexKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(vip_hash(&self.address, self.port, self.proto));
    }
}

/// Everything a worker reads per packet, built whole by the control plane.
pub struct Tables {
    /// Bumped on every rebuild: a connection entry from an older generation re-checks its
    /// backend by id.
    pub generation: u64,
    /// The VIPs, in config order.
    pub vips: Vec<Vip>,
    /// (VIP address, port, protocol) → VIP; looked up per packet, so hashed once by
    /// `vip_hash` (not a byte at a time by the tuple's `Hash`).
    index: HashMap<VipIndexKey, usize, BuildHasherDefault<FlowHasher>>,
    snat_addresses: Vec<Address>,
    /// The interface's MAC: the source of what the appliance sends.
    pub own_mac: [u8; 6],
    /// The largest frame the interface sends (MTU + Ethernet header).
    pub max_frame: usize,
    /// The appliance-wide counters.
    pub counters: Arc<LbCounters>,
}

impl Tables {
    /// Tables of `vips` for an interface with MAC `own_mac` and MTU `mtu`.
    pub fn new(
        generation: u64,
        vips: Vec<Vip>,
        own_mac: [u8; 6],
        mtu: u32,
        counters: Arc<LbCounters>,
    ) -> Tables {
        let index = vips
            .iter()
            .enumerate()
            .map(|(i, vip)| {
                let key = VipIndexKey {
                    address: address(vip.key.address),
                    port: vip.key.port,
                    proto: vip.key.protocol.number(),
                };
                (key, i)
            })
            .collect();
        let mut snat_addresses: Vec<Address> =
            vips.iter().filter_map(|vip| vip.snat_address).collect();
        snat_addresses.sort();
        snat_addresses.dedup();
        Tables {
            generation,
            vips,
            index,
            snat_addresses,
            own_mac,
            max_frame: mtu as usize + crate::lb::packet::ETH_LEN,
            counters,
        }
    }

    /// The index of the VIP at (`dst`, `port`, `proto`), if there is one.
    #[inline]
    pub fn vip(&self, dst: &Address, port: u16, proto: u8) -> Option<usize> {
        let key = VipIndexKey {
            address: *dst,
            port,
            proto,
        };
        self.index.get(&key).copied()
    }

    /// Whether `dst` is a NAT VIP's SNAT address (a backend's reply).
    #[inline]
    pub fn is_snat_address(&self, dst: &Address) -> bool {
        self.snat_addresses.contains(dst)
    }
}
