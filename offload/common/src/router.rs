//! The router instance of a topology (`kind = "router"`): the maps the loader makes for
//! each router instance and fills, their keys and values. The program is
//! `offload/ebpf/src/router.rs`; how it forwards and resolves next hops is told in
//! docs/topology-datapath.md.
//!
//! Each instance has its own copy of these maps, pinned by the loader under
//! `/sys/fs/bpf/fastpath/topology/<topology>/instances/<instance>/<MAP>`.

use core::mem::size_of;

/// Routes each of [`maps::ROUTES_V4`] and [`maps::ROUTES_V6`] holds: a full Internet
/// table (about 1M IPv4 prefixes) and room to spare. The tries are `BPF_F_NO_PREALLOC`,
/// so an empty one costs nothing.
pub const MAX_ROUTES: u32 = (1 << 20) + 65_536;
/// Slots of [`maps::ROUTE_STATS`]: one per route id, shared by both families.
pub const ROUTE_IDS: u32 = MAX_ROUTES;
/// Entries of [`maps::NEIGHBOURS`] (an LRU).
pub const NEIGHBOUR_ENTRIES: u32 = 65_536;
/// Entries of [`maps::LOCAL`]: the router's own addresses.
pub const LOCAL_ENTRIES: u32 = 256;
/// Slots per CPU of [`maps::ROUTE_CACHE_V4`] and of [`maps::ROUTE_CACHE_V6`] (a power of
/// two): a destination's slot is [`route_cache_slot`] (IPv4) or [`route_cache_slot_v6`]
/// of it. 4,096 slots are 256 KiB per CPU for IPv4 (64-byte slots) and 320 KiB for IPv6
/// (80 bytes).
pub const ROUTE_CACHE_SLOTS: u32 = 4_096;

/// The slot of [`maps::ROUTE_CACHE_V4`] that may hold `destination` (network order): a
/// multiplicative (Fibonacci) hash's top bits, so destinations that differ only in their
/// low bits, consecutive hosts of a subnet, spread over all the slots.
#[inline(always)]
pub const fn route_cache_slot(destination: [u8; 4]) -> u32 {
    route_cache_hash(&destination)
}

/// The slot of [`maps::ROUTE_CACHE_V6`] that may hold `destination` (network order): the
/// hash of [`route_cache_slot`] folded over the address's four 32-bit words (each word
/// XORed in, then multiplied), so hosts of one subnet spread as IPv4's do and the same
/// interface identifier in different /64s lands in different slots. Four multiplies: cheap
/// next to the trie's walk it saves.
#[inline(always)]
pub const fn route_cache_slot_v6(destination: [u8; 16]) -> u32 {
    route_cache_hash(&destination)
}

/// Both families' slot hash over the address's 32-bit words (its length a multiple of 4).
#[inline(always)]
const fn route_cache_hash(address: &[u8]) -> u32 {
    const BITS: u32 = ROUTE_CACHE_SLOTS.trailing_zeros();
    let mut hash = 0u32;
    let mut at = 0;
    while at + 4 <= address.len() {
        let word = u32::from_be_bytes([
            address[at],
            address[at + 1],
            address[at + 2],
            address[at + 3],
        ]);
        hash = (hash ^ word).wrapping_mul(0x9e37_79b1);
        at += 4;
    }
    hash >> (32 - BITS)
}

/// The names of a router instance's maps.
pub mod maps {
    /// `ARRAY` of [`crate::topology::MAX_INSTANCE_PORTS`] [`super::RouterPort`], by port.
    pub const PORTS: &str = "ROUTER_PORTS";
    /// `HASH` [`super::AddrKey`] -> port (`u32`): every address of the router (packets to
    /// them are the router's: ICMP echo answered, the rest dropped and counted).
    pub const LOCAL: &str = "ROUTER_LOCAL";
    /// `LPM_TRIE` (`BPF_F_NO_PREALLOC`) of [`super::MAX_ROUTES`]: [`super::RouteKeyV4`] ->
    /// [`super::Route`].
    pub const ROUTES_V4: &str = "ROUTER_ROUTES_V4";
    /// `LPM_TRIE` (`BPF_F_NO_PREALLOC`) of [`super::MAX_ROUTES`]: [`super::RouteKeyV6`] ->
    /// [`super::Route`].
    pub const ROUTES_V6: &str = "ROUTER_ROUTES_V6";
    /// `ARRAY` of one `u64`: the routes' generation, which user space bumps after every
    /// change to [`ROUTES_V4`] or [`ROUTES_V6`] and after adding addresses to [`LOCAL`];
    /// a [`ROUTE_CACHE_V4`] or [`ROUTE_CACHE_V6`] slot of another generation is stale.
    pub const ROUTES_GENERATION: &str = "ROUTER_ROUTES_GEN";
    /// `PERCPU_ARRAY` of [`super::ROUTE_CACHE_SLOTS`] [`super::RouteCacheV4`]: each CPU's
    /// forwarded IPv4 destinations and the routes the trie gave them, direct-mapped (a
    /// destination lives only in slot [`super::route_cache_slot`] of it; a newer one there
    /// takes its place), so packets to a working set of destinations skip the address
    /// table and the trie's walk. (It replaced `ROUTER_ROUTE_CACHE_V4`, a single slot: a
    /// new name, so a swap onto a router of that build makes a map of its own.)
    pub const ROUTE_CACHE_V4: &str = "ROUTER_ROUTE_SLOTS_V4";
    /// `PERCPU_ARRAY` of [`super::ROUTE_CACHE_SLOTS`] [`super::RouteCacheV6`]: the same as
    /// [`ROUTE_CACHE_V4`] for IPv6 destinations, each in slot
    /// [`super::route_cache_slot_v6`] of it.
    pub const ROUTE_CACHE_V6: &str = "ROUTER_ROUTE_SLOTS_V6";
    /// `ARRAY` of one `u64`: the neighbours' generation. Whoever writes to [`NEIGHBOURS`]
    /// stores a value no one stored before in it after the write (the program: the
    /// nanosecond clock shifted left by 8 with the CPU's number in the low byte; user space
    /// likewise); a remembered next-hop MAC ([`super::RememberedRoute`]) of another
    /// generation is stale.
    pub const NEIGHBOURS_GENERATION: &str = "ROUTER_NEIGH_GEN";
    /// `PERCPU_ARRAY` of [`super::ROUTE_IDS`] [`super::RouteStats`] at [`super::Route::id`].
    pub const ROUTE_STATS: &str = "ROUTER_ROUTE_STATS";
    /// `LRU_HASH` of [`super::NEIGHBOUR_ENTRIES`]: [`super::NeighbourKey`] ->
    /// [`super::Neighbour`], learned from ARP and neighbour discovery (or set by user space).
    pub const NEIGHBOURS: &str = "ROUTER_NEIGHBOURS";
    /// `PERCPU_ARRAY` of `u64` indexed by [`super::counter`].
    pub const COUNTERS: &str = "ROUTER_COUNTERS";
}

/// Slots of [`maps::COUNTERS`], per CPU (summed by user space).
pub mod counter {
    /// Packets forwarded to a resolved next hop.
    pub const FORWARDED: u32 = 0;
    /// Packets whose next hop had no MAC yet: turned into an ARP request or a neighbour
    /// solicitation for it (the packet itself is lost).
    pub const UNRESOLVED: u32 = 1;
    /// Dropped: no route to the destination.
    pub const NO_ROUTE: u32 = 2;
    /// TTL or hop limit expired: answered with ICMP time exceeded.
    pub const TIME_EXCEEDED: u32 = 3;
    /// ARP requests for the router's addresses answered.
    pub const ARP_REPLIES: u32 = 4;
    /// Neighbour solicitations for the router's addresses answered.
    pub const NEIGHBOUR_ADVERTS: u32 = 5;
    /// ICMP and ICMPv6 echo requests to the router answered.
    pub const ECHO_REPLIES: u32 = 6;
    /// Dropped: other packets to the router's addresses (it runs no services), and
    /// neighbour discovery and ARP it has no use for.
    pub const LOCAL_DROPPED: u32 = 7;
    /// Dropped: not addressed to the port's MAC (nor broadcast or multicast).
    pub const NOT_FOR_US: u32 = 8;
    /// Dropped: truncated or impossible headers, IPv4 with a bad version or length.
    pub const MALFORMED: u32 = 9;
    /// Dropped: neither IPv4, IPv6 nor ARP.
    pub const UNSUPPORTED: u32 = 10;
    /// Neighbours learned or updated from ARP and neighbour discovery.
    pub const NEIGHBOURS_LEARNED: u32 = 11;
    /// Number of slots.
    pub const COUNT: u32 = 12;
    /// Display names, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "forwarded",
        "unresolved",
        "no_route",
        "time_exceeded",
        "arp_replies",
        "neighbour_adverts",
        "echo_replies",
        "local_dropped",
        "not_for_us",
        "malformed",
        "unsupported",
        "neighbours_learned",
    ];
}

/// [`RouterPort::flags`].
pub mod port_flags {
    /// [`super::RouterPort::ipv4`] is set.
    pub const IPV4: u32 = 1;
    /// [`super::RouterPort::ipv6`] is set.
    pub const IPV6: u32 = 2;
}

/// A router port's configuration, slot `port` of [`maps::PORTS`]. The port's source
/// addresses (for ARP requests, solicitations and ICMP errors it sends); every address
/// of the router is also in [`maps::LOCAL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterPort {
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// The prefix length of [`Self::ipv4`].
    pub ipv4_prefix: u8,
    /// The prefix length of [`Self::ipv6`].
    pub ipv6_prefix: u8,
    /// [`port_flags`]; 0: the port is not configured (packets on it are dropped).
    pub flags: u32,
    /// The port's IPv4 address, network order.
    pub ipv4: [u8; 4],
    /// The port's IPv6 address, network order.
    pub ipv6: [u8; 16],
}

/// [`AddrKey::family`] and [`NeighbourKey::family`].
pub mod family {
    /// IPv4: the first 4 bytes of the address.
    pub const IPV4: u32 = 4;
    /// IPv6.
    pub const IPV6: u32 = 6;
}

/// Key of [`maps::LOCAL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// [`family`].
    pub family: u32,
    /// The address in network order; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
}

/// The data of an IPv4 route's key in [`maps::ROUTES_V4`] (the trie's key is the prefix
/// length, `u32`, then this).
pub type RouteKeyV4 = [u8; 4];
/// The data of an IPv6 route's key in [`maps::ROUTES_V6`].
pub type RouteKeyV6 = [u8; 16];

/// [`Route::flags`].
pub mod route_flags {
    /// The destination is on the port's link: the next hop is the packet's destination.
    pub const CONNECTED: u32 = 1;
}

/// A route, the value of [`maps::ROUTES_V4`] and [`maps::ROUTES_V6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The port packets leave on.
    pub port: u32,
    /// Its slot in [`maps::ROUTE_STATS`] (below [`ROUTE_IDS`]).
    pub id: u32,
    /// [`route_flags`].
    pub flags: u32,
    /// Zero.
    pub _pad: u32,
    /// The next hop, network order (IPv4 in the first 4 bytes); unused when
    /// [`route_flags::CONNECTED`].
    pub next_hop: [u8; 16],
}

/// What a route cache slot of either family remembers of one forward: the route and the
/// next hop's MAC, with the generations they were read under.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RememberedRoute {
    /// The [`maps::ROUTES_GENERATION`] read before the look-up.
    pub generation: u64,
    /// The route the trie gave.
    pub route: Route,
    /// The [`maps::NEIGHBOURS_GENERATION`] read before the next hop's look-up.
    pub neighbours_generation: u64,
    /// The next hop's MAC, when `resolved` is 1.
    pub next_hop_mac: [u8; 6],
    /// 1 when `next_hop_mac` holds the next hop's MAC (it had one in [`maps::NEIGHBOURS`]).
    pub resolved: u8,
    /// Zero.
    pub _pad: u8,
}

/// Value of [`maps::ROUTE_CACHE_V4`]: one IPv4 look-up of one CPU. (The same 64 bytes as
/// before the IPv6 slots, when the [`RememberedRoute`] fields were its own.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCacheV4 {
    /// The destination looked up, network order.
    pub destination: [u8; 4],
    /// 1 when the entry holds a look-up (a zeroed entry holds none).
    pub valid: u32,
    /// What the look-up gave.
    pub remembered: RememberedRoute,
}

/// Value of [`maps::ROUTE_CACHE_V6`]: one IPv6 look-up of one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCacheV6 {
    /// The destination looked up, network order.
    pub destination: [u8; 16],
    /// 1 when the entry holds a look-up (a zeroed entry holds none).
    pub valid: u32,
    /// Zero.
    pub _pad: u32,
    /// What the look-up gave.
    pub remembered: RememberedRoute,
}

/// A route's counters, per CPU in [`maps::ROUTE_STATS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Packets forwarded by the route (resolved or not).
    pub packets: u64,
    /// Their bytes, as they arrived.
    pub bytes: u64,
}

/// Key of [`maps::NEIGHBOURS`]: an address on one of the router's ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighbourKey {
    /// The port it is reached through.
    pub port: u32,
    /// [`family`].
    pub family: u32,
    /// The address in network order; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
}

/// Value of [`maps::NEIGHBOURS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Neighbour {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Zero.
    pub _pad: [u8; 2],
    /// When it was last learned: `CLOCK_MONOTONIC` nanoseconds (coarse).
    pub updated_ns: u64,
}

const _: () = assert!(size_of::<RouterPort>() == 32);
const _: () = assert!(size_of::<AddrKey>() == 20);
const _: () = assert!(size_of::<Route>() == 32);
const _: () = assert!(size_of::<RouteStats>() == 16);
const _: () = assert!(size_of::<RememberedRoute>() == 56);
const _: () = assert!(size_of::<RouteCacheV4>() == 64);
const _: () = assert!(size_of::<RouteCacheV6>() == 80);
const _: () = assert!(size_of::<NeighbourKey>() == 24);
const _: () = assert!(size_of::<Neighbour>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, no padding the compiler adds (the sizes are asserted
    // above) and valid for any bit pattern.
    unsafe impl aya::Pod for super::RouterPort {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::Route {}
    unsafe impl aya::Pod for super::RouteStats {}
    unsafe impl aya::Pod for super::RememberedRoute {}
    unsafe impl aya::Pod for super::RouteCacheV4 {}
    unsafe impl aya::Pod for super::RouteCacheV6 {}
    unsafe impl aya::Pod for super::NeighbourKey {}
    unsafe impl aya::Pod for super::Neighbour {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::{collections::BTreeSet, vec::Vec};

    /// The IPv4 slot is the one the single-word hash gave before the IPv6 slots shared it:
    /// a router swapped onto this build finds its remembered destinations where they are.
    #[test]
    fn the_ipv4_slot_is_the_single_word_hash() {
        for address in [[10, 3, 0, 9], [192, 0, 2, 1], [255, 255, 255, 255], [0; 4]] {
            let single = u32::from_be_bytes(address).wrapping_mul(0x9e37_79b1)
                >> (32 - ROUTE_CACHE_SLOTS.trailing_zeros());
            assert_eq!(route_cache_slot(address), single, "{address:?}");
        }
    }

    /// Consecutive hosts of a /64, and one host part in consecutive /64s, spread over
    /// the slots rather than piling into a few.
    #[test]
    fn ipv6_destinations_spread_over_the_slots() {
        let base = [0xfd, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let hosts = (0u16..1024).map(|host| {
            let mut address = base;
            address[14..].copy_from_slice(&host.to_be_bytes());
            address
        });
        let subnets = (0u16..1024).map(|subnet| {
            let mut address = base;
            address[6..8].copy_from_slice(&subnet.to_be_bytes());
            address[15] = 9;
            address
        });
        for (what, addresses) in [
            ("hosts", hosts.collect::<Vec<_>>()),
            ("subnets", subnets.collect()),
        ] {
            let slots: BTreeSet<u32> = addresses
                .iter()
                .map(|address| route_cache_slot_v6(*address))
                .collect();
            assert!(slots.iter().all(|slot| *slot < ROUTE_CACHE_SLOTS));
            // 1,024 addresses into 4,096 slots: a uniform hash fills about 900.
            assert!(slots.len() > 768, "{what}: {} slots", slots.len());
        }
    }
}
