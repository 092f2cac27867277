//! The `vxlan-trace` module's maps: what the kernel side counts per tunnel pair and what
//! user space (`fastpath trace vxlan`, `fastpath serve`) reads back.
//!
//! - [`maps::PAIRS`]: per-CPU LRU hash, [`PAIRS_MAX_ENTRIES`] entries, [`PairKey`] ->
//!   [`PairStats`]. A key is normalised so that both directions of a pair share it:
//!   [`PairKey::a`] is the lower endpoint (outer address first, then inner address, then
//!   inner port) and direction 0 counts `a -> b`, direction 1 `b -> a`.
//! - [`maps::LAST`]: per-CPU array of one [`LastPair`]: the CPU's last pair and the counts
//!   not yet added to [`maps::PAIRS`] (moved there when the CPU sees another pair). A
//!   pair's counts are its entry's plus the pending counts of every CPU holding its key.
//! - [`maps::COUNTERS`]: per-CPU array of `u64` indexed by [`counter`].
//! - [`maps::SETTINGS`]: array of one [`TraceSettings`], written by user space; all zeros
//!   (a module loaded from a file and never configured) means [`TraceSettings::DEFAULT`].

use core::mem::size_of;

/// Entries of [`maps::PAIRS`]: when full, the least recently used pair is evicted.
pub const PAIRS_MAX_ENTRIES: u32 = 1 << 20;
/// VXLAN's IANA port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// Linux's old default VXLAN port (`dstport 0` of the kernel's `vxlan` device).
pub const VXLAN_LINUX_PORT: u16 = 8472;
/// Geneve's IANA port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// Bytes of a VXLAN header, and of a Geneve header before its options.
pub const TUNNEL_HLEN: usize = 8;
/// The VXLAN flags byte's I bit: the VNI is valid. A header without it is malformed.
pub const VXLAN_FLAG_VNI: u8 = 0x08;
/// Geneve's protocol type for an Ethernet payload (transparent Ethernet bridging).
pub const GENEVE_PROTO_ETHERNET: u16 = 0x6558;
/// Ports of each kind the settings hold.
pub const MAX_TUNNEL_PORTS: usize = 4;

/// The names of the module's own maps.
pub mod maps {
    /// The per-pair statistics.
    pub const PAIRS: &str = "TRACE_PAIRS";
    /// Each CPU's last pair and its pending counts, see [`super::LastPair`].
    pub const LAST: &str = "TRACE_LAST";
    /// The module's counters, see [`super::counter`].
    pub const COUNTERS: &str = "TRACE_COUNTERS";
    /// The settings, see [`super::TraceSettings`].
    pub const SETTINGS: &str = "TRACE_SETTINGS";
}

/// Slots of [`maps::COUNTERS`] (per CPU, summed by user space).
pub mod counter {
    /// Tunnel packets attributed to a pair.
    pub const TUNNEL: u32 = 0;
    /// Packets to a tunnel port whose tunnel or inner headers are malformed (bad VXLAN
    /// flags, a Geneve version other than 0, truncated inner headers): not attributed.
    pub const MALFORMED: u32 = 1;
    /// Packets that are not tunnel packets (not UDP to a tunnel port, outer fragments,
    /// Geneve carrying something else than Ethernet).
    pub const OTHER: u32 = 2;
    /// Pairs inserted in [`super::maps::PAIRS`]; minus the entries it holds, the pairs
    /// the LRU evicted.
    pub const INSERTED: u32 = 3;
    /// Number of slots.
    pub const COUNT: u32 = 4;
    /// Display names, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = ["tunnel", "malformed", "other", "inserted"];
}

/// How finely pairs are told apart, [`TraceSettings::granularity`].
pub mod granularity {
    /// Outer addresses, VNI, inner addresses and inner protocol (the default).
    pub const ADDRESSES: u8 = 0;
    /// As [`ADDRESSES`], plus the inner ports: the inner 5-tuple.
    pub const FIVE_TUPLE: u8 = 1;
    /// Outer addresses and VNI only: one entry per tunnel.
    pub const TUNNEL: u8 = 2;
}

/// What kind of tunnel a pair runs in, [`PairKey::kind`].
pub mod kind {
    /// VXLAN.
    pub const VXLAN: u8 = 1;
    /// Geneve.
    pub const GENEVE: u8 = 2;
}

/// Slot 0 of [`maps::SETTINGS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// 1 once user space wrote these settings; 0 makes the module use [`Self::DEFAULT`].
    pub configured: u8,
    /// One of [`granularity`].
    pub granularity: u8,
    /// Zero padding.
    pub _pad: [u8; 2],
    /// UDP destination ports carrying VXLAN, host order; 0 for an unused slot.
    pub vxlan_ports: [u16; MAX_TUNNEL_PORTS],
    /// UDP destination ports carrying Geneve, host order; 0 for an unused slot.
    pub geneve_ports: [u16; MAX_TUNNEL_PORTS],
}

impl TraceSettings {
    /// VXLAN on 4789 and 8472, Geneve on 6081, pairs by addresses and protocol.
    pub const DEFAULT: TraceSettings = TraceSettings {
        configured: 1,
        granularity: granularity::ADDRESSES,
        _pad: [0; 2],
        vxlan_ports: [VXLAN_PORT, VXLAN_LINUX_PORT, 0, 0],
        geneve_ports: [GENEVE_PORT, 0, 0, 0],
    };
}

/// A pair of tunnel endpoints and the inner endpoints talking through them, normalised:
/// `a` is the lower side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairKey {
    /// Outer (VTEP) address of side a, network order; IPv4 in the first 4 bytes.
    pub outer_a: [u8; 16],
    /// Outer address of side b.
    pub outer_b: [u8; 16],
    /// Inner address of side a (zeros for an inner frame that is not IP).
    pub inner_a: [u8; 16],
    /// Inner address of side b.
    pub inner_b: [u8; 16],
    /// The VNI (24 bits), host order.
    pub vni: u32,
    /// Inner ports of sides a and b, host order (0 unless the granularity is the 5-tuple).
    pub inner_port_a: u16,
    /// Inner port of side b.
    pub inner_port_b: u16,
    /// The inner IP protocol (0 for an inner frame that is not IP).
    pub inner_protocol: u8,
    /// 4 or 6: the outer IP version.
    pub outer_version: u8,
    /// 4 or 6: the inner one; 0 when the inner frame is not IP.
    pub inner_version: u8,
    /// One of [`kind`].
    pub kind: u8,
}

/// Packets and bytes (whole outer frames) of a pair, per direction: index 0 is
/// `a -> b`, index 1 `b -> a`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Packets per direction.
    pub packets: [u64; 2],
    /// Bytes per direction.
    pub bytes: [u64; 2],
}

/// Slot 0 of [`maps::LAST`], per CPU: the pair this CPU counted last and what it counted
/// for it since it last moved counts into [`maps::PAIRS`]. Consecutive packets of one pair
/// (a flow's burst) then cost a key comparison instead of a hash table look-up. All zeros
/// (`key.kind` 0, no tunnel kind) until the CPU's first tunnel packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastPair {
    /// The pair.
    pub key: PairKey,
    /// Zero padding (aligns `pending`).
    pub _pad: u32,
    /// Counts of `key` not in [`maps::PAIRS`] yet.
    pub pending: PairStats,
}

const _: () = assert!(size_of::<TraceSettings>() == 20);
const _: () = assert!(size_of::<LastPair>() == 112);
const _: () = assert!(size_of::<PairKey>() == 76);
const _: () = assert!(size_of::<PairStats>() == 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, no padding the compiler adds (the sizes are asserted
    // above) and valid for any bit pattern.
    unsafe impl aya::Pod for super::TraceSettings {}
    unsafe impl aya::Pod for super::PairKey {}
    unsafe impl aya::Pod for super::PairStats {}
    unsafe impl aya::Pod for super::LastPair {}
}
