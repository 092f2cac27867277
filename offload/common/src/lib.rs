//! `#[repr(C)]` types shared by the steering program (`offload-ebpf`) and user space.
//!
//! Layer 1 of the workspace (see docs/architecture.md): `no_std` with one dependency, `wire` without its `std` feature, so
//! the eBPF crate can use it; the `user` feature adds `aya::Pod` so user space (the loader
//! in `offload`, layer 2) can put these types in maps.
//!
//! What is here:
//! - map values and keys of the steering program: [`ExactKey`] -> [`RuleRef`] (exact-match
//!   hash), [`PrefixV4`]/[`PrefixV6`] -> [`RuleChain`] of [`ChainEntry`] (destination
//!   tries, and per-length hashes keyed by [`PrefixKeyV4`]/[`PrefixKeyV6`] with their
//!   [`PrefixLengths`]), [`FragmentKey`], [`Settings`], per-CPU [`Counter`]s indexed by [`counter`] or
//!   by rule id, and [`RuleDef`], the user-space record of a rule;
//! - the byte codes they hold: [`action`], [`proto`], [`fragment`], [`parse_result`],
//!   [`FAMILY_V4`]/[`FAMILY_V6`], and the map sizes (`MAX_*`);
//! - [`ParseReport`], what the kernel parser found, for the differential parse test;
//! - the traffic generator's [`GenConfig`], [`FlowSpace`] and [`Stamp`];
//! - the IO module ABI in [`module`]: the per-packet context, verdicts, module metadata and
//!   the names of the maps a chain shares with its modules.
//!
//! Layouts are part of the map ABI: a pinned map created by one build is reused by the next
//! (atomic replacement), so a change here must change the map names too. Sizes are asserted
//! at compile time; explicit `_pad` fields leave no padding for the compiler to add.
#![warn(missing_docs)]
#![no_std]
// Inline assembly on the BPF target: `module::tail_call_constant`. The eBPF objects build
// with RUSTC_BOOTSTRAP=1 already (build-std needs it).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

use core::mem::size_of;

pub mod bridge;
pub mod exact_table;
pub mod firewall;
mod generator;
pub mod lb;
pub mod module;
pub mod router;
pub mod topology;
pub mod vxlan_trace;
pub use generator::{
    FlowFields, FlowSpace, GEN_OFFSET_MASK, GenConfig, STAMP_LEN, Stamp, fold, ipv4_checksum,
};

/// A 16-byte address (network byte order; IPv4 in the first 4) as the BPF parse keeps it:
/// four 32-bit words, each read in native order, so a word compares and masks as the
/// address's 4 bytes do.
#[inline(always)]
pub fn address_words(bytes: &[u8; 16]) -> [u32; 4] {
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

/// [`address_words`] back to the 16 bytes of the maps and contexts that hold an address so.
#[inline(always)]
pub fn address_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (part, word) in bytes.chunks_exact_mut(4).zip(words) {
        part.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

/// What the steering program does with a packet: the `action` byte of a rule, of
/// [`Settings::default_action`] and of [`RuleRef`]. Any other value passes the packet.
pub mod action {
    /// Hand the packet to the kernel's network stack (`XDP_PASS`).
    pub const PASS: u8 = 0;
    /// Drop the packet (`XDP_DROP`).
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
    /// Packets passed to the kernel, including `XSK_FALLBACK` and `NON_IP` ones.
    pub const PASS: u32 = 0;
    /// Packets dropped, by a rule, the default action or the prefilter.
    pub const DROP: u32 = 1;
    /// Packets redirected to an AF_XDP socket.
    pub const XSK: u32 = 2;
    /// Packets sent back out of their interface (`XDP_TX`).
    pub const TX: u32 = 3;
    /// Packets the parser rejected (see `wire::parse` for the policy), and `tx` packets too short
    /// to swap MAC addresses; all are passed to the kernel.
    pub const MALFORMED: u32 = 4;
    /// An `xsk` verdict with no socket bound at the RX queue, passed to the kernel.
    pub const XSK_FALLBACK: u32 = 5;
    /// Frames that are not IPv4 or IPv6 (ARP, LLDP, a third VLAN tag...), always passed.
    pub const NON_IP: u32 = 6;
    /// Packets dropped because their source is in the prefilter (also counted under `DROP`).
    pub const PREFILTER: u32 = 7;
    /// Number of slots, the size of the `ACTION_STATS` array.
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

/// The `family` byte of an IPv4 packet, rule or key.
pub const FAMILY_V4: u8 = 4;
/// The `family` byte of an IPv6 packet, rule or key.
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers the rules name; 0 means any protocol.
pub mod proto {
    /// Any protocol (a rule that names none).
    pub const ANY: u8 = 0;
    pub use wire::parse::proto::{ICMP, ICMPV6, TCP, UDP};
}

/// Packets and bytes, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted: each packet's first buffer (`data..data_end`), without the FCS; a
    /// multi-buffer packet counts only its first buffer.
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
    /// IP protocol number ([`proto`]), ICMP given as `ICMPV6` for an IPv6 host.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

/// Key of the IPv4 exact-match hash (`EXACT_V4`): an [`ExactKey`] of an IPv4 host in 8
/// bytes. The kernel hashes the whole key on every lookup, so a quarter of the width of
/// the 20-byte key is a cheaper hash and compare on the IPv4 path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExactKeyV4 {
    /// Destination address in network byte order.
    pub addr: [u8; 4],
    /// Destination port, host byte order.
    pub dport: u16,
    /// IP protocol number ([`proto`]).
    pub proto: u8,
    /// Zero padding.
    pub _pad: u8,
}

impl ExactKeyV4 {
    /// The IPv4 key of `key`, or `None` when `key` is an IPv6 host's.
    pub fn of(key: &ExactKey) -> Option<ExactKeyV4> {
        (key.family == FAMILY_V4).then(|| ExactKeyV4 {
            addr: [key.addr[0], key.addr[1], key.addr[2], key.addr[3]],
            dport: key.dport,
            proto: key.proto,
            _pad: 0,
        })
    }

    /// The [`ExactKey`] this key stands for.
    pub fn widen(&self) -> ExactKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&self.addr);
        ExactKey {
            addr,
            dport: self.dport,
            proto: self.proto,
            family: FAMILY_V4,
        }
    }
}

/// What a rule lookup yields: the rule to count and the action to take.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    /// The rule's id, its slot in the per-CPU `RULE_STATS` array (`1..MAX_RULES`).
    pub rule_id: u32,
    /// An [`action`] value.
    pub action: u8,
    /// Zero; explicit so the layout has no compiler padding (needed for `aya::Pod`).
    pub _pad: [u8; 3],
}

/// One candidate rule in a prefix chain, checked in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainEntry {
    /// The rule's id, its slot in `RULE_STATS`.
    pub rule_id: u32,
    /// An [`action`] value.
    pub action: u8,
    /// `proto::ANY` or the protocol number; `ICMP` rules are stored as `ICMPV6` on IPv6.
    pub proto: u8,
    /// 1 when the rule constrains the destination port; such a rule only matches packets that
    /// carry ports (TCP, UDP, first fragments).
    pub has_ports: u8,
    /// Zero padding.
    pub _pad: u8,
    /// Inclusive destination port range, host byte order.
    pub dport_lo: u16,
    /// Upper end of the destination port range, host byte order, inclusive.
    pub dport_hi: u16,
    /// Zero padding.
    pub _pad2: u32,
    /// Source prefix as 32-bit words in network byte order, already masked; a zero mask
    /// matches any source.
    pub src_addr: [u32; 4],
    /// Source prefix mask as 32-bit words in network byte order; zero matches any source.
    pub src_mask: [u32; 4],
}

/// The value of a destination-prefix trie entry: every rule whose destination prefix covers
/// this prefix, in priority order (see `offload::rules` for the order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleChain {
    /// Entries of `entries` in use, at most [`MAX_CHAIN`].
    pub len: u32,
    /// Zero padding.
    pub _pad: u32,
    /// The candidate rules, highest priority first; the first that matches wins.
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

/// Trie key data for IPv4 destinations (network byte order).
pub type PrefixV4 = [u8; 4];
/// Trie key data for IPv6 destinations (network byte order).
pub type PrefixV6 = [u8; 16];

/// Distinct prefix lengths per family up to which the prefix rules are also written into
/// per-length hashes (`PREFIX_HASH_V4`/`PREFIX_HASH_V6`, tuple-space search): the program
/// probes at most this many hashes, longest length first. With more lengths it looks the
/// destination up in the trie.
pub const MAX_PREFIX_LENGTHS: usize = 8;

/// Key of `PREFIX_HASH_V4`: one destination prefix, its address masked to its length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKeyV4 {
    /// Prefix length in bits.
    pub len: u32,
    /// The prefix's address in network byte order, bits past `len` zero.
    pub addr: [u8; 4],
}

/// Key of `PREFIX_HASH_V6`, laid out like [`PrefixKeyV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKeyV6 {
    /// Prefix length in bits.
    pub len: u32,
    /// The prefix's address in network byte order, bits past `len` zero.
    pub addr: [u8; 16],
}

/// Slots of the `PREFIX_LENGTHS` array: one [`PrefixLengths`] per family.
pub mod prefix_lengths {
    /// The IPv4 prefix rules' lengths.
    pub const V4: u32 = 0;
    /// The IPv6 prefix rules' lengths.
    pub const V6: u32 = 1;
    /// Slots in the array.
    pub const SLOTS: u32 = 2;
}

/// The distinct destination prefix lengths of one family's prefix rules, longest first,
/// when there are at most [`MAX_PREFIX_LENGTHS`] of them: the program then probes the
/// family's prefix hash once per length and takes the first hit, which is the trie's
/// longest match. `count` 0 means the program uses the trie (no prefix rules, too many
/// lengths, or hashes not yet filled after an upgrade).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLengths {
    /// Entries of `lengths` and `masks` in use.
    pub count: u32,
    /// Prefix lengths in bits, longest first.
    pub lengths: [u32; MAX_PREFIX_LENGTHS],
    /// Each length's netmask as four 32-bit words of network-order bytes (IPv4: word 0),
    /// so the program masks an address word by word.
    pub masks: [[u32; 4]; MAX_PREFIX_LENGTHS],
    /// The netmask of the longest prefix that covers every prefix of the family, laid out
    /// like `masks`: an address outside `cover` is in no prefix, so the program skips the
    /// probes (a miss far from every rule costs one compare).
    pub cover_mask: [u32; 4],
    /// That prefix's address, masked, laid out like `masks`.
    pub cover: [u32; 4],
}

/// Attachment settings, slot 0 of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Action for IP packets that match no rule.
    pub default_action: u8,
    /// 1 when the prefilter hashes hold entries; the program skips their lookup otherwise.
    pub prefilter: u8,
    /// Zero padding.
    pub _pad: [u8; 2],
    /// Entries in EXACT_V4 and EXACT_RULES together, then in PREFIX_V4 and PREFIX_V6: the
    /// program skips the lookup of an empty map (a hash or trie lookup costs more than the
    /// rest of the program).
    pub exact_rules: u32,
    /// Entries in `PREFIX_V4`; see `exact_rules`.
    pub prefixes_v4: u32,
    /// Entries in `PREFIX_V6`; see `exact_rules`.
    pub prefixes_v6: u32,
}

/// The user-space record of a rule, kept in the pinned `RULE_DEFS` hash so that any process
/// can list and rebuild the rule set. The program itself never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleDef {
    /// The rule id (also the key of the `RULE_DEFS` entry and the rule's `RULE_STATS` slot).
    pub id: u32,
    /// An [`action`] value.
    pub action: u8,
    /// User-space protocol code, not an IP protocol number: 0 any, 1 TCP, 2 UDP, 3 ICMP (ICMPv6
    /// on IPv6), as `offload::rules` writes and reads it.
    pub proto: u8,
    /// `FAMILY_V4`, `FAMILY_V6`, or 0 when neither prefix is given (the rule matches both).
    pub family: u8,
    /// 1 when the rule has a destination port range (`dport_lo..=dport_hi`).
    pub has_ports: u8,
    /// Lower end of the destination port range, host byte order, inclusive.
    pub dport_lo: u16,
    /// Upper end of the destination port range, host byte order, inclusive.
    pub dport_hi: u16,
    /// Destination prefix length in bits, or [`ABSENT_PREFIX`] when the rule has no destination.
    pub dst_len: u8,
    /// `ABSENT_PREFIX` when the rule has no source prefix (`dst_len` likewise).
    pub src_len: u8,
    /// Zero padding.
    pub _pad: [u8; 2],
    /// Destination prefix address in network byte order; IPv4 uses the first 4 bytes, the rest
    /// zero.
    pub dst: [u8; 16],
    /// Source prefix address, laid out like `dst`.
    pub src: [u8; 16],
}

/// [`RuleDef::dst_len`] / [`RuleDef::src_len`] value of a prefix the rule does not give. Not 0,
/// because `/0` is a valid prefix that matches every address.
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
    /// IP protocol number of the datagram.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Zero padding.
    pub _pad: [u8; 2],
}

/// Where a packet stands in its datagram.
pub mod fragment {
    /// Not a fragment.
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
    /// [`FAMILY_V4`] or [`FAMILY_V6`] (only meaningful for `parse_result::IP`).
    pub family: u8,
    /// IP protocol number (for IPv6, after the extension headers).
    pub proto: u8,
    /// 1 when `sport` and `dport` were read (TCP or UDP, not a later fragment).
    pub has_ports: u8,
    /// `fragment::*`.
    pub fragment: u8,
    /// Zero padding.
    pub _pad: [u8; 3],
    /// Source port, host byte order.
    pub sport: u16,
    /// Destination port, host byte order.
    pub dport: u16,
    /// The datagram's identification when `fragment` is not `NONE`: 16 bits for IPv4, 32 for IPv6.
    pub fragment_id: u32,
    /// Source address as four 32-bit words in network byte order (IPv4: word 0 only).
    pub src: [u32; 4],
    /// Destination address in network byte order (IPv4: the first 4 bytes only).
    pub dst: [u8; 16],
}

/// Outcome of the kernel's parse, the [`ParseReport::result`] byte.
pub mod parse_result {
    /// Not an IP frame (ARP, LLDP, a third VLAN tag...): `wire::parse` returns `Ok(None)`.
    pub const NOT_IP: u8 = 0;
    /// The frame breaks the parsing policy: `wire::parse` returns `Err`.
    pub const MALFORMED: u8 = 1;
    /// An IP packet; the other fields of the report are set.
    pub const IP: u8 = 2;
}

const _: () = assert!(size_of::<FragmentKey>() == 40);
const _: () = assert!(size_of::<ParseReport>() == 48);
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<ExactKey>() == 20);
const _: () = assert!(size_of::<ExactKeyV4>() == 8);
const _: () = assert!(size_of::<RuleRef>() == 8);
const _: () = assert!(size_of::<ChainEntry>() == 48);
const _: () = assert!(size_of::<RuleChain>() == 8 + 48 * MAX_CHAIN);
const _: () = assert!(size_of::<Settings>() == 16);
const _: () = assert!(size_of::<RuleDef>() == 48);
const _: () = assert!(size_of::<PrefixKeyV4>() == 8);
const _: () = assert!(size_of::<PrefixKeyV6>() == 20);
const _: () = assert!(size_of::<PrefixLengths>() == 4 + 4 * 8 + 16 * 8 + 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is #[repr(C)], Copy, has no padding the compiler adds (explicit
    // `_pad` fields fill the gaps) and is valid for any bit pattern.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::FragmentKey {}
    unsafe impl aya::Pod for super::ExactKey {}
    unsafe impl aya::Pod for super::ExactKeyV4 {}
    unsafe impl aya::Pod for super::RuleRef {}
    unsafe impl aya::Pod for super::ChainEntry {}
    unsafe impl aya::Pod for super::RuleChain {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::RuleDef {}
    unsafe impl aya::Pod for super::PrefixKeyV4 {}
    unsafe impl aya::Pod for super::PrefixKeyV6 {}
    unsafe impl aya::Pod for super::PrefixLengths {}
    unsafe impl aya::Pod for super::GenConfig {}
    unsafe impl aya::Pod for super::module::ModuleContext {}
    unsafe impl aya::Pod for super::module::ChainState {}
    unsafe impl aya::Pod for super::module::ModuleRecord {}
    unsafe impl aya::Pod for super::module::ModuleRuntime {}
    unsafe impl aya::Pod for super::firewall::CtKey {}
    unsafe impl aya::Pod for super::firewall::CtEntry {}
    unsafe impl aya::Pod for super::firewall::CtSettings {}
    unsafe impl aya::Pod for super::firewall::RuleKey {}
    unsafe impl aya::Pod for super::firewall::RuleValue {}
    unsafe impl aya::Pod for super::firewall::PolicyState {}
    unsafe impl aya::Pod for super::firewall::LogRate {}
    unsafe impl aya::Pod for super::firewall::LogEvent {}
    unsafe impl aya::Pod for super::module::ModuleMeta {}
    unsafe impl aya::Pod for super::topology::PortRef {}
    unsafe impl aya::Pod for super::topology::IfaceKey {}
    unsafe impl aya::Pod for super::topology::Link {}
    unsafe impl aya::Pod for super::topology::TopologyState {}
    unsafe impl aya::Pod for super::topology::TopologyContext {}
    unsafe impl aya::Pod for super::topology::PortStats {}
}
