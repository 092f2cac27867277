//! The bridge instance of a topology (`kind = "bridge"`): the maps the loader makes for
//! each bridge instance and fills, their keys and values. The program is
//! `offload/ebpf/src/bridge.rs`; how it forwards is told in docs/topology-datapath.md.
//!
//! Each instance has its own copy of these maps, pinned by the loader under
//! `/sys/fs/bpf/fastpath/topology/<topology>/instances/<instance>/<MAP>`.

use core::mem::size_of;

/// Entries of [`maps::FDB`]: at least the 64k the issue asks, an LRU so a full table
/// forgets its least recently seen stations instead of refusing new ones.
pub const FDB_ENTRIES: u32 = 131_072;
/// Entries of [`maps::FLOOD`]: the bridge's interface ports.
pub const FLOOD_ENTRIES: u32 = crate::topology::MAX_INSTANCE_PORTS;
/// Entries of [`maps::TARGETS`].
pub const TARGET_ENTRIES: u32 = 1024;
/// Aging time when [`BridgeSettings::aging_ns`] is 0: 300 s, as Linux's bridge.
pub const DEFAULT_AGING_NS: u64 = 300 * 1_000_000_000;
/// The VLAN of untagged frames in [`FdbKey::vlan`]; in a VLAN-aware bridge, the VLAN of
/// the ports that have no `vlans` (they carry untagged frames as before).
pub const UNTAGGED: u16 = 0;
/// [`maps::PVID`] of a trunk: untagged frames are refused there.
pub const NO_PVID: u32 = u32::MAX;
/// Entries of [`maps::MEMBERS`] and of [`maps::EGRESS`]: every port in 256 VLANs.
pub const MEMBER_ENTRIES: u32 = crate::topology::MAX_INSTANCE_PORTS * 256;
/// The 802.1Q tag's EtherType (TPID).
pub const ETH_P_8021Q: u16 = 0x8100;

/// The names of a bridge instance's maps.
pub mod maps {
    /// `LRU_HASH` of [`super::FDB_ENTRIES`]: [`super::FdbKey`] -> [`super::FdbEntry`].
    pub const FDB: &str = "BRIDGE_FDB";
    /// `DEVMAP_HASH` ifindex -> ifindex of the bridge's interface ports: what a flood is
    /// broadcast to (`BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS`).
    pub const FLOOD: &str = "BRIDGE_FLOOD";
    /// `HASH` [`super::TargetKey`] -> port (`u32`): addresses of instances behind the
    /// bridge's instance ports (a router's), so ARP requests and neighbour solicitations
    /// for them go to that port instead of the flood.
    pub const TARGETS: &str = "BRIDGE_TARGETS";
    /// `ARRAY` of one [`super::BridgeSettings`].
    pub const SETTINGS: &str = "BRIDGE_SETTINGS";
    /// `PERCPU_ARRAY` of `u64` indexed by [`super::counter`].
    pub const COUNTERS: &str = "BRIDGE_COUNTERS";
    /// `ARRAY` of [`crate::topology::MAX_INSTANCE_PORTS`] `u32`, by port: the VLAN an
    /// untagged frame arriving on the port belongs to ([`super::UNTAGGED`] for a port
    /// without `vlans`), [`super::NO_PVID`] on a trunk. Read only when
    /// [`super::BridgeSettings::vlan_aware`] is set.
    pub const PVID: &str = "BRIDGE_PVID";
    /// `HASH` [`super::VlanPort`] (by port number) -> [`super::tagging`]: the VLANs each
    /// port carries and how frames of that VLAN leave it.
    pub const MEMBERS: &str = "BRIDGE_MEMBERS";
    /// `HASH` [`super::VlanPort`] (by ifindex) -> [`super::tagging`]: the same for the
    /// interface ports, read by the egress program (`bridge_egress`) of each entry of
    /// [`FLOOD`], which knows its interface, not its port.
    pub const EGRESS: &str = "BRIDGE_EGRESS";
}

/// How a frame of a VLAN leaves a port that carries it (values of [`maps::MEMBERS`]
/// and [`maps::EGRESS`]).
pub mod tagging {
    /// Without a tag (an access port, or a port without `vlans`).
    pub const UNTAGGED: u32 = 1;
    /// With its VLAN's tag (a trunk).
    pub const TAGGED: u32 = 2;
}

/// Slots of [`maps::COUNTERS`], per CPU (summed by user space).
pub mod counter {
    /// Frames forwarded to the one port their destination was learned on.
    pub const FORWARDED: u32 = 0;
    /// Broadcast, multicast and unknown unicast frames flooded to the interface ports.
    pub const FLOODED: u32 = 1;
    /// ARP requests and neighbour solicitations sent to the instance port behind which
    /// their target lives ([`super::maps::TARGETS`]) instead of being flooded.
    pub const TO_TARGET: u32 = 2;
    /// Dropped: the destination was learned on the port the frame came in on.
    pub const HAIRPIN: u32 = 3;
    /// Stations learned or moved to another port.
    pub const LEARNED: u32 = 4;
    /// Dynamic entries found older than the aging time (removed, the frame flooded).
    pub const AGED: u32 = 5;
    /// Dropped: shorter than an Ethernet header (or its VLAN tag).
    pub const MALFORMED: u32 = 6;
    /// Dropped by a VLAN-aware bridge on the way in: a tagged frame on a port that does
    /// not carry its VLAN tagged (an access port, a trunk without that VLAN, a port
    /// without `vlans`; a priority tag, VLAN 0, included), or an untagged frame on a
    /// trunk.
    pub const VLAN_REFUSED: u32 = 7;
    /// Dropped by a VLAN-aware bridge on the way out: the destination's entry is on a
    /// port that does not carry the frame's VLAN (a static entry added at run time), or
    /// the tag could not be pushed or popped.
    pub const VLAN_EGRESS: u32 = 8;
    /// Number of slots.
    pub const COUNT: u32 = 9;
    /// Display names, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "forwarded",
        "flooded",
        "to_target",
        "hairpin",
        "learned",
        "aged",
        "malformed",
        "vlan_refused",
        "vlan_egress",
    ];
}

/// [`FdbEntry::flags`].
pub mod fdb_flags {
    /// Added by user space: never ages, never moves by learning.
    pub const STATIC: u32 = 1;
}

/// Key of [`maps::FDB`]: a station on a VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdbKey {
    /// The 802.1Q VLAN id the frame carried, [`UNTAGGED`] without a tag.
    pub vlan: u16,
    /// The station's MAC address.
    pub mac: [u8; 6],
}

/// Value of [`maps::FDB`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// The bridge port the station was learned on.
    pub port: u32,
    /// [`fdb_flags`].
    pub flags: u32,
    /// When it was last seen sending: `CLOCK_MONOTONIC` nanoseconds (the kernel's
    /// `bpf_ktime_get_coarse_ns`, within a tick).
    pub last_seen_ns: u64,
}

/// [`TargetKey::family`].
pub mod family {
    /// IPv4: the first 4 bytes of the address.
    pub const IPV4: u32 = 4;
    /// IPv6.
    pub const IPV6: u32 = 6;
}

/// Key of [`maps::TARGETS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetKey {
    /// [`family`].
    pub family: u32,
    /// The address in network order; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
}

/// Key of [`maps::MEMBERS`] (`port` a port number) and [`maps::EGRESS`] (`port` an
/// ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanPort {
    /// The port number, or the interface's index.
    pub port: u32,
    /// The VLAN ([`UNTAGGED`] for the ports without `vlans`).
    pub vlan: u32,
}

/// Slot 0 of [`maps::SETTINGS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeSettings {
    /// How long a learned station stays without being seen; 0: [`DEFAULT_AGING_NS`].
    pub aging_ns: u64,
    /// Non-zero when a port of the bridge has `vlans`: frames are classified into VLANs
    /// by [`maps::PVID`] and [`maps::MEMBERS`]. Zero: the bridge forwards as a bridge
    /// without VLAN filtering (a tag is only part of the FDB key).
    pub vlan_aware: u32,
    /// Zero padding.
    pub _pad: u32,
}

const _: () = assert!(size_of::<FdbKey>() == 8);
const _: () = assert!(size_of::<FdbEntry>() == 16);
const _: () = assert!(size_of::<TargetKey>() == 20);
const _: () = assert!(size_of::<BridgeSettings>() == 16);
const _: () = assert!(size_of::<VlanPort>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, no padding the compiler adds (the sizes are asserted
    // above) and valid for any bit pattern.
    unsafe impl aya::Pod for super::FdbKey {}
    unsafe impl aya::Pod for super::FdbEntry {}
    unsafe impl aya::Pod for super::TargetKey {}
    unsafe impl aya::Pod for super::BridgeSettings {}
    unsafe impl aya::Pod for super::VlanPort {}
}
