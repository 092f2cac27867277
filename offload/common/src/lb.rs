//! The kernel ABI of a topology's `lb` instances: a load balancer in XDP between two ports,
//! translating the address of each virtual service (VIP) to one of its backends.
//!
//! - A VIP ([`VipKey`] -> [`Vip`]) lives in one of two banks; [`maps::STATE`] names the
//!   running one and is switched with one map update after the idle bank is written, so a
//!   packet sees the old services or the new ones, never half of each.
//! - Each VIP of a bank owns [`TABLE_SLOTS`] slots of [`maps::TABLES`] (its Maglev table,
//!   built in user space) and [`MAX_BACKENDS`] entries of [`maps::BACKENDS`].
//! - A connection keeps the backend its first packet was given ([`maps::FLOWS`], keyed by
//!   the client's tuple) across changes of the backends, and its replies find the VIP they
//!   must seem to come from ([`maps::REPLIES`], keyed by the backend's tuple).

use core::mem::size_of;

/// VIPs per bank.
pub const MAX_VIPS: u32 = 16;
/// Backends per VIP.
pub const MAX_BACKENDS: u32 = 64;
/// Slots of one VIP's Maglev table: a prime (every permutation visits every slot) more
/// than 100 times [`MAX_BACKENDS`] (Maglev's paper keeps each backend's share within 1 %
/// of its weight at that ratio).
pub const TABLE_SLOTS: u32 = 16_381;
/// Banks: the running one and the one being written.
pub const BANKS: u32 = 2;
/// Connections each direction's table holds (LRU: the least recently used goes first).
pub const FLOW_ENTRIES: u32 = 65_536;

/// Map names, bound to the instance's pins by the loader.
pub mod maps {
    /// `ARRAY` of one `u32`: the running bank.
    pub const STATE: &str = "LB_STATE";
    /// `HASH` [`super::VipKey`] -> [`super::Vip`], both banks.
    pub const VIPS: &str = "LB_VIPS";
    /// `ARRAY` of `u32` backend indexes: [`super::table_index`].
    pub const TABLES: &str = "LB_TABLES";
    /// `ARRAY` of [`super::Backend`]: [`super::backend_index`].
    pub const BACKENDS: &str = "LB_BACKENDS";
    /// `LRU_HASH` [`super::FlowKey`] (client -> VIP) -> [`super::Target`] (the backend).
    pub const FLOWS: &str = "LB_FLOWS";
    /// `LRU_HASH` [`super::FlowKey`] (backend -> client) -> [`super::Target`] (the VIP).
    pub const REPLIES: &str = "LB_REPLIES";
    /// `ARRAY` of `u32` by port: the instance's other port.
    pub const OTHER_PORT: &str = "LB_OTHER_PORT";
    /// `PERCPU_ARRAY` of [`super::counter::COUNT`] `u64`.
    pub const COUNTERS: &str = "LB_COUNTERS";
}

/// Slots of [`maps::COUNTERS`], per CPU (summed by user space).
pub mod counter {
    /// Packets to a VIP given their connection's backend.
    pub const TO_BACKEND: u32 = 0;
    /// Connections given a backend by the Maglev table (their first packet seen).
    pub const NEW_FLOWS: u32 = 1;
    /// Replies from a backend given their VIP's address back.
    pub const REPLIES: u32 = 2;
    /// Packets that are no VIP's and no reply: passed to the other port unchanged.
    pub const PASSED: u32 = 3;
    /// Packets to a VIP whose backends all have weight 0: dropped.
    pub const NO_BACKEND: u32 = 4;
    /// Fragments of a datagram to a VIP: dropped (only the first one carries ports).
    pub const FRAGMENTS: u32 = 5;
    /// Malformed IP packets: dropped.
    pub const MALFORMED: u32 = 6;
    /// Translated packets whose L4 checksum the sender left partial (TX checksum offload):
    /// kept partial, with the new addresses' pseudo-header sum.
    pub const PARTIAL_CHECKSUMS: u32 = 7;
    /// ICMP errors about a connection, their quoted packet translated.
    pub const ICMP_ERRORS: u32 = 8;
    /// Slots.
    pub const COUNT: u32 = 9;
    /// Their names, by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "to_backend",
        "new_flows",
        "replies",
        "passed",
        "no_backend",
        "fragments",
        "malformed",
        "partial_checksums",
        "icmp_errors",
    ];
}

/// Address families of [`VipKey::family`] and [`Backend::family`].
pub mod family {
    /// IPv4: the first 4 bytes of an address.
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 6;
}

/// A VIP of one bank: address (IPv4 in the first 4 bytes, the rest zero, as the packet
/// context holds it), port and protocol in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// The address.
    pub addr: [u8; 16],
    /// The port.
    pub port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The bank it belongs to.
    pub bank: u8,
}

/// A VIP's place in its bank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    /// Its index in the bank (0 to [`MAX_VIPS`] - 1): where its table and backends are.
    pub index: u32,
    /// Its backends.
    pub backends: u32,
}

/// A backend: the address and port a VIP's packet is sent to, which its connection's
/// packets are then translated to.
pub type Backend = Target;

/// One direction of a connection: addresses as [`VipKey::addr`], ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The sender's address.
    pub src: [u8; 16],
    /// The receiver's address.
    pub dst: [u8; 16],
    /// The sender's port.
    pub src_port: u16,
    /// The receiver's port.
    pub dst_port: u16,
    /// 6 or 17.
    pub protocol: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

/// Where a direction's packets are translated to: the backend (for a client's packets) or
/// the VIP (as the source of a backend's replies).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The address, laid out as [`VipKey::addr`].
    pub addr: [u8; 16],
    /// The port, host byte order.
    pub port: u16,
    /// [`family`].
    pub family: u8,
    /// Zero.
    pub _pad: u8,
}

/// The first slot of the Maglev table of VIP `index` of `bank` in [`maps::TABLES`].
pub const fn table_index(bank: u32, index: u32) -> u32 {
    (bank * MAX_VIPS + index) * TABLE_SLOTS
}

/// The first entry of the backends of VIP `index` of `bank` in [`maps::BACKENDS`].
pub const fn backend_index(bank: u32, index: u32) -> u32 {
    (bank * MAX_VIPS + index) * MAX_BACKENDS
}

/// The connection's slot in a Maglev table: a hash of the client's tuple.
pub fn flow_slot(key: &FlowKey) -> u32 {
    let mut hash: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |word: u64| {
        hash = (hash ^ word).wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
    };
    for half in [&key.src, &key.dst] {
        mix(u64::from_ne_bytes([
            half[0], half[1], half[2], half[3], half[4], half[5], half[6], half[7],
        ]));
        mix(u64::from_ne_bytes([
            half[8], half[9], half[10], half[11], half[12], half[13], half[14], half[15],
        ]));
    }
    mix(u64::from(key.src_port) << 24 | u64::from(key.dst_port) << 8 | u64::from(key.protocol));
    (hash % u64::from(TABLE_SLOTS)) as u32
}

const _: () = assert!(size_of::<VipKey>() == 20);
const _: () = assert!(size_of::<Vip>() == 8);
const _: () = assert!(size_of::<Backend>() == 20);
const _: () = assert!(size_of::<FlowKey>() == 40);
const _: () = assert!(size_of::<Target>() == 20);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, no padding the compiler adds (the sizes are asserted
    // above) and valid for any bit pattern.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::Vip {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Target {}
}
