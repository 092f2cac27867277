//! `#[repr(C)]` types shared by the steering program (`offload-ebpf`) and user space.
//!
//! Layouts are part of the map ABI: a pinned map created by one build is reused by the next
//! (atomic replacement), so a change here must change the map names too.
#![no_std]

use core::mem::size_of;

/// What the steering program does with a packet.
mod generator;
pub use generator::{
    FlowFields, FlowSpace, GEN_OFFSET_MASK, GenConfig, STAMP_LEN, Stamp, fold, ipv4_checksum,
};

pub mod action {
    pub const PASS: u8 = 0;
    pub const DROP: u8 = 1;
    /// Redirect to the AF_XDP socket bound to the RX queue; pass when none is bound.
    pub const XSK: u8 = 2;
    /// Send back out of the interface it came in on, with the MAC addresses swapped.
    pub const TX: u8 = 3;
}

/// Slots of the per-CPU `ACTION_STATS` array.
///
/// Every packet lands in exactly one of `PASS`, `DROP`, `XSK`, `TX` or `MALFORMED`, so their sum
/// is the number of packets seen. `XSK_FALLBACK` and `NON_IP` are details: they count packets
/// that are also counted under `PASS`.
pub mod counter {
    pub const PASS: u32 = 0;
    pub const DROP: u32 = 1;
    pub const XSK: u32 = 2;
    pub const TX: u32 = 3;
    pub const MALFORMED: u32 = 4;
    /// An `xsk` verdict with no socket bound at the RX queue, passed to the kernel.
    pub const XSK_FALLBACK: u32 = 5;
    /// Frames that are not IPv4 or IPv6 (ARP, LLDP, a third VLAN tag...), always passed.
    pub const NON_IP: u32 = 6;
    /// Packets dropped because their source is in the prefilter (also counted under `DROP`).
    pub const PREFILTER: u32 = 7;
    pub const SLOTS: u32 = 8;
}

/// Number of slots in the per-rule counter array; rule ids are `1..MAX_RULES`.
pub const MAX_RULES: u32 = 16384;
/// Rules that can cover one destination prefix (its own and those of shorter prefixes).
pub const MAX_CHAIN: usize = 32;
/// Entries in each destination-prefix trie.
pub const MAX_PREFIXES: u32 = 16384;
/// Entries in the exact-match hash.
pub const MAX_EXACT: u32 = 65536;
/// XSKMAP size: the highest RX queue index a socket can be registered at, plus one.
pub const MAX_QUEUES: u32 = 256;
/// Entries in each prefilter hash (source addresses to drop).
pub const MAX_PREFILTER: u32 = 4096;

/// Entries in the LRU of fragmented datagrams whose later fragments follow the first's rule.
pub const MAX_FRAGMENTED_DATAGRAMS: u32 = 8192;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers the rules name; 0 means any protocol.
pub mod proto {
    pub const ANY: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Packets and bytes, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of the exact-match hash: one destination host, one port, one protocol, any source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExactKey {
    /// Destination address in network byte order; IPv4 uses the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
    /// Destination port, host byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
}

/// What a rule lookup yields: the rule to count and the action to take.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    pub rule_id: u32,
    pub action: u8,
    pub _pad: [u8; 3],
}

/// One candidate rule in a prefix chain, checked in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainEntry {
    pub rule_id: u32,
    pub action: u8,
    /// `proto::ANY` or the protocol number; `ICMP` rules are stored as `ICMPV6` on IPv6.
    pub proto: u8,
    /// 1 when the rule constrains the destination port; such a rule only matches packets that
    /// carry ports (TCP, UDP, first fragments).
    pub has_ports: u8,
    pub _pad: u8,
    /// Inclusive destination port range, host byte order.
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub _pad2: u32,
    /// Source prefix as 32-bit words in network byte order, already masked; a zero mask
    /// matches any source.
    pub src_addr: [u32; 4],
    pub src_mask: [u32; 4],
}

/// The value of a destination-prefix trie entry: every rule whose destination prefix covers
/// this prefix, in priority order (see `offload::rules` for the order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleChain {
    pub len: u32,
    pub _pad: u32,
    pub entries: [ChainEntry; MAX_CHAIN],
}

impl Default for RuleChain {
    fn default() -> Self {
        Self {
            len: 0,
            _pad: 0,
            entries: [ChainEntry::default(); MAX_CHAIN],
        }
    }
}

/// Trie key data for IPv4 and IPv6 destinations (network byte order).
pub type PrefixV4 = [u8; 4];
pub type PrefixV6 = [u8; 16];

/// Attachment settings, slot 0 of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Action for IP packets that match no rule.
    pub default_action: u8,
    /// 1 when the prefilter hashes hold entries; the program skips their lookup otherwise.
    pub prefilter: u8,
    pub _pad: [u8; 2],
    /// Entries in EXACT_RULES, PREFIX_V4 and PREFIX_V6: the program skips the lookup of an
    /// empty map (a hash or trie lookup costs more than the rest of the program).
    pub exact_rules: u32,
    pub prefixes_v4: u32,
    pub prefixes_v6: u32,
}

/// The user-space record of a rule, kept in the pinned `RULE_DEFS` hash so that any process
/// can list and rebuild the rule set. The program itself never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleDef {
    pub id: u32,
    pub action: u8,
    pub proto: u8,
    /// `FAMILY_V4`, `FAMILY_V6`, or 0 when neither prefix is given (the rule matches both).
    pub family: u8,
    pub has_ports: u8,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub dst_len: u8,
    /// `ABSENT_PREFIX` when the rule has no source prefix (`dst_len` likewise).
    pub src_len: u8,
    pub _pad: [u8; 2],
    pub dst: [u8; 16],
    pub src: [u8; 16],
}

pub const ABSENT_PREFIX: u8 = 0xff;

// The map ABI: sizes checked at compile time on both sides.
/// One fragmented datagram: only its first fragment has ports, so the rule the first
/// fragment matched is kept under this key for the later ones (RFC 791 3.2: source,
/// destination, protocol and identification name a datagram; RFC 8200 4.5 likewise).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address as four 32-bit words in network byte order (IPv4: word 0 only).
    pub src: [u32; 4],
    /// Destination address in network byte order (IPv4: the first 4 bytes only).
    pub dst: [u8; 16],
    /// The identification: 16 bits for IPv4, 32 for IPv6.
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Where a packet stands in its datagram.
pub mod fragment {
    pub const NONE: u8 = 0;
    /// Offset 0 with more to follow: carries the L4 header.
    pub const FIRST: u8 = 1;
    /// Offset above 0: no L4 header.
    pub const LATER: u8 = 2;
}

/// What the kernel's parser made of a packet, written by the `parse_probe` test program in
/// front of the packet, so user space can compare it with `wire::parse` (the differential
/// test of the one parsing policy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// `parse_result::*`.
    pub result: u8,
    pub family: u8,
    pub proto: u8,
    pub has_ports: u8,
    /// `fragment::*`.
    pub fragment: u8,
    pub _pad: [u8; 3],
    pub sport: u16,
    pub dport: u16,
    pub fragment_id: u32,
    pub src: [u32; 4],
    pub dst: [u8; 16],
}

pub mod parse_result {
    pub const NOT_IP: u8 = 0;
    pub const MALFORMED: u8 = 1;
    pub const IP: u8 = 2;
}

const _: () = assert!(size_of::<FragmentKey>() == 40);
const _: () = assert!(size_of::<ParseReport>() == 48);
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<ExactKey>() == 20);
const _: () = assert!(size_of::<RuleRef>() == 8);
const _: () = assert!(size_of::<ChainEntry>() == 48);
const _: () = assert!(size_of::<RuleChain>() == 8 + 48 * MAX_CHAIN);
const _: () = assert!(size_of::<Settings>() == 16);
const _: () = assert!(size_of::<RuleDef>() == 48);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is #[repr(C)], Copy, has no padding the compiler adds (explicit
    // `_pad` fields fill the gaps) and is valid for any bit pattern.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::FragmentKey {}
    unsafe impl aya::Pod for super::ExactKey {}
    unsafe impl aya::Pod for super::RuleRef {}
    unsafe impl aya::Pod for super::ChainEntry {}
    unsafe impl aya::Pod for super::RuleChain {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::RuleDef {}
    unsafe impl aya::Pod for super::GenConfig {}
}
