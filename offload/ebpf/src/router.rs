//! The router instance program of a topology (`kind = "router"`), tail-called through
//! `TOPO_PROGS` with the packet's place in `TOPO_CONTEXT` (see `topology.rs`). IPv4 and
//! IPv6, untagged Ethernet.
//!
//! - ARP requests and neighbour solicitations for the router's addresses are answered on
//!   the port they came in on; senders' MACs are learned from ARP requests and replies,
//!   solicitations and advertisements (`ROUTER_NEIGHBOURS`).
//! - Packets to the router's addresses: ICMP and ICMPv6 echo requests are answered, the
//!   rest dropped and counted.
//! - Forwarding: longest-prefix match in `ROUTER_ROUTES_V4`/`_V6`, counted per route; TTL
//!   or hop limit decremented (IPv4's header checksum updated incrementally, RFC 1624),
//!   MACs rewritten (source: the out port's, destination: the next hop's), emitted on the
//!   route's port. An expiring TTL or hop limit gets ICMP time exceeded back.
//! - A next hop without a MAC yet: the packet is rewritten in place into an ARP request
//!   (IPv6: a neighbour solicitation to the solicited-node multicast address) for the next
//!   hop and emitted on the out port; the packet itself is lost and counted
//!   (`unresolved`), as Linux drops when its small per-neighbour queue is full. TCP and
//!   ping retransmit, and by then the reply has taught the router the MAC.
//!
//! Checksums are `wire::checksum`'s, the one implementation user space uses too.
#![no_std]
#![no_main]

mod object;
// Its bounds-checked reads only: the router reads fixed offsets of untagged frames.
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod topology;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_xdp_adjust_head,
        bpf_xdp_adjust_tail,
    },
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use offload_common::{
    router::{
        AddrKey, LOCAL_ENTRIES, MAX_ROUTES, NEIGHBOUR_ENTRIES, Neighbour, NeighbourKey,
        ROUTE_CACHE_SLOTS, ROUTE_IDS, RememberedRoute, Route, RouteCacheV4, RouteCacheV6,
        RouteKeyV4, RouteKeyV6, RouteStats, RouterPort, counter, family, port_flags,
        route_cache_slot, route_cache_slot_v6, route_flags,
    },
    topology::MAX_INSTANCE_PORTS,
};
use parse::{Frame, read};
use wire::checksum::{checksum, pseudo_header, update};

#[map]
static ROUTER_PORTS: Array<RouterPort> = Array::with_max_entries(MAX_INSTANCE_PORTS, 0);
#[map]
static ROUTER_LOCAL: HashMap<AddrKey, u32> = HashMap::with_max_entries(LOCAL_ENTRIES, 0);
#[map]
static ROUTER_ROUTES_V4: LpmTrie<RouteKeyV4, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
static ROUTER_ROUTES_V6: LpmTrie<RouteKeyV6, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
static ROUTER_ROUTES_GEN: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static ROUTER_ROUTE_SLOTS_V4: PerCpuArray<RouteCacheV4> =
    PerCpuArray::with_max_entries(ROUTE_CACHE_SLOTS, 0);
#[map]
static ROUTER_ROUTE_SLOTS_V6: PerCpuArray<RouteCacheV6> =
    PerCpuArray::with_max_entries(ROUTE_CACHE_SLOTS, 0);
#[map]
static ROUTER_NEIGH_GEN: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static ROUTER_ROUTE_STATS: PerCpuArray<RouteStats> = PerCpuArray::with_max_entries(ROUTE_IDS, 0);
#[map]
static ROUTER_NEIGHBOURS: LruHashMap<NeighbourKey, Neighbour> =
    LruHashMap::with_max_entries(NEIGHBOUR_ENTRIES, 0);
#[map]
static ROUTER_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// RFC 4861 4.6.1: source and target link-layer address options.
const OPTION_SOURCE_MAC: u8 = 1;
const OPTION_TARGET_MAC: u8 = 2;
/// The TTL and hop limit of what the router itself sends (Linux's default, 64); 255 for
/// neighbour discovery, which receivers check (RFC 4861 7.1.2).
const OWN_TTL: u8 = 64;
const ND_HOP_LIMIT: u8 = 255;

/// What [`decide`] chose, when not a port below [`MAX_INSTANCE_PORTS`] to emit on.
const DROP: u32 = 0x1_0000;

#[xdp(frags)]
pub fn router(ctx: XdpContext) -> u32 {
    let Some(place) = topology::context() else {
        return xdp_action::XDP_DROP;
    };
    let decision = decide(ctx.ctx, place.in_port);
    if decision < MAX_INSTANCE_PORTS {
        return topology::emit(&ctx, place, decision);
    }
    xdp_action::XDP_DROP
}

/// The port the (possibly rewritten) packet leaves on, or [`DROP`] (counted). Inlined in
/// the program, each kind of packet handled in a function of its own: the BPF stack holds
/// 512 bytes for all frames of a call chain.
#[inline(always)]
fn decide(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::NOT_FOR_US);
    };
    let Ok(ethernet) = read::<[u8; ETH_HLEN]>(&ctx, 0) else {
        return dropped(counter::MALFORMED);
    };
    let destination = [
        ethernet[0],
        ethernet[1],
        ethernet[2],
        ethernet[3],
        ethernet[4],
        ethernet[5],
    ];
    let ethertype = [ethernet[12], ethernet[13]];
    if port.flags == 0 || (destination != port.mac && destination[0] & 1 == 0) {
        return dropped(counter::NOT_FOR_US);
    }
    match u16::from_be_bytes(ethertype) {
        ETH_P_ARP => arp(raw, in_port),
        ETH_P_IPV4 => ipv4(raw, in_port),
        ETH_P_IPV6 => ipv6(raw, in_port),
        _ => dropped(counter::UNSUPPORTED),
    }
}

/// Learns the sender of an ARP packet and answers a request for one of the router's
/// addresses, rewritten in place (RFC 826).
#[inline(never)]
fn arp(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Ok(arp) = read::<[u8; 28]>(&ctx, ETH_HLEN) else {
        return dropped(counter::MALFORMED);
    };
    // Ethernet (1), IPv4 (0x0800), 6-byte and 4-byte addresses.
    if arp[..6] != [0, 1, 8, 0, 6, 4] {
        return dropped(counter::UNSUPPORTED);
    }
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let sender_mac = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
    let sender_ip = [arp[14], arp[15], arp[16], arp[17]];
    let target_ip = [arp[24], arp[25], arp[26], arp[27]];
    if (op == ARP_REQUEST || op == ARP_REPLY) && sender_ip != [0; 4] {
        learn(in_port, family::IPV4, &v4_addr(sender_ip), sender_mac);
    }
    if op != ARP_REQUEST || local(family::IPV4, &v4_addr(target_ip)).is_none() {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 28) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 42 bytes are inside the packet.
    unsafe {
        write(frame, 0, &sender_mac);
        write(frame, 6, &port.mac);
        write(frame, ETH_HLEN + 6, &ARP_REPLY.to_be_bytes());
        write(frame, ETH_HLEN + 8, &port.mac);
        write(frame, ETH_HLEN + 14, &target_ip);
        write(frame, ETH_HLEN + 18, &sender_mac);
        write(frame, ETH_HLEN + 24, &sender_ip);
    }
    count(counter::ARP_REPLIES);
    in_port
}

/// IPv4: the router's own, an expiring TTL, or forwarded.
#[inline(never)]
fn ipv4(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Ok(header) = read::<[u8; 20]>(&ctx, ETH_HLEN) else {
        return dropped(counter::MALFORMED);
    };
    if header[0] >> 4 != 4 || header[0] & 0x0f < 5 {
        return dropped(counter::MALFORMED);
    }
    let destination = [header[16], header[17], header[18], header[19]];
    let generations = generations();
    let slot = ROUTER_ROUTE_SLOTS_V4.get_ptr_mut(route_cache_slot(destination));
    // Only forwarded destinations are remembered, so a remembered one is neither the
    // router's nor multicast (user space bumps the generation after writing addresses).
    let forward = if let Some(hit) = recall(slot, &destination, generations) {
        if header[8] <= 1 {
            return time_exceeded_v4(raw, in_port);
        }
        hit
    } else {
        if local(family::IPV4, &v4_addr(destination)).is_some() {
            return ipv4_local(raw, in_port, header);
        }
        // Multicast, limited broadcast: not forwarded.
        if destination[0] >= 224 {
            return dropped(counter::LOCAL_DROPPED);
        }
        if header[8] <= 1 {
            return time_exceeded_v4(raw, in_port);
        }
        let Some(route) = ROUTER_ROUTES_V4.get(&Key::new(32, destination)).copied() else {
            return dropped(counter::NO_ROUTE);
        };
        Forward::unresolved(route)
    };
    let route = forward.route;
    count_route(route.id, ctx.total_len() as u64);
    let next_hop = if route.flags & route_flags::CONNECTED != 0 {
        destination
    } else {
        [
            route.next_hop[0],
            route.next_hop[1],
            route.next_hop[2],
            route.next_hop[3],
        ]
    };
    let Some(out) = ROUTER_PORTS.get(route.port).copied() else {
        return dropped(counter::NO_ROUTE);
    };
    let next_hop_mac = if forward.resolved {
        forward.next_hop_mac
    } else {
        let Some(known) = neighbour(route.port, family::IPV4, &v4_addr(next_hop)) else {
            remember(slot, destination, generations, forward);
            return arp_request(raw, route.port, &out, next_hop);
        };
        let resolved = Forward {
            next_hop_mac: known.mac,
            resolved: true,
            ..forward
        };
        remember(slot, destination, generations, resolved);
        known.mac
    };
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 20) else {
        return dropped(counter::MALFORMED);
    };
    let ttl = header[8];
    let old = [ttl, header[9]];
    let new = [ttl - 1, header[9]];
    let sum = update(u16::from_be_bytes([header[10], header[11]]), &old, &new);
    // SAFETY: frame_mut checked the 34 bytes are inside the packet.
    unsafe {
        write(frame, 0, &next_hop_mac);
        write(frame, 6, &out.mac);
        write(frame, ETH_HLEN + 8, &new);
        write(frame, ETH_HLEN + 10, &sum.to_be_bytes());
    }
    count(counter::FORWARDED);
    route.port
}

/// The routes' and the neighbours' generations, read before the look-ups they guard: a
/// route, address or neighbour changed after this read moves its generation, so what the
/// look-ups give is never remembered as newer than it is (a look-up that raced a change
/// is stale as soon as it is remembered).
#[derive(Clone, Copy)]
struct Generations {
    routes: u64,
    neighbours: u64,
}

#[inline(always)]
fn generations() -> Generations {
    // SAFETY: the maps' values, each read once.
    let read =
        |value: Option<*const u64>| value.map_or(0, |value| unsafe { value.read_volatile() });
    Generations {
        routes: read(ROUTER_ROUTES_GEN.get_ptr(0)),
        neighbours: read(ROUTER_NEIGH_GEN.get_ptr(0)),
    }
}

/// A per-CPU route cache slot of one family (`ROUTER_ROUTE_SLOTS_V4`/`_V6`): which
/// destination it holds, and what it remembers of it (the part both families share).
trait CacheSlot: Sized + 'static {
    type Destination: Copy + PartialEq;
    /// Whether the slot holds a look-up for `destination`.
    fn holds(&self, destination: &Self::Destination) -> bool;
    fn remembered(&self) -> &RememberedRoute;
    fn new(destination: Self::Destination, remembered: RememberedRoute) -> Self;
}

impl CacheSlot for RouteCacheV4 {
    type Destination = [u8; 4];
    #[inline(always)]
    fn holds(&self, destination: &[u8; 4]) -> bool {
        self.valid == 1 && self.destination == *destination
    }
    #[inline(always)]
    fn remembered(&self) -> &RememberedRoute {
        &self.remembered
    }
    #[inline(always)]
    fn new(destination: [u8; 4], remembered: RememberedRoute) -> Self {
        RouteCacheV4 {
            destination,
            valid: 1,
            remembered,
        }
    }
}

impl CacheSlot for RouteCacheV6 {
    type Destination = [u8; 16];
    #[inline(always)]
    fn holds(&self, destination: &[u8; 16]) -> bool {
        self.valid == 1 && self.destination == *destination
    }
    #[inline(always)]
    fn remembered(&self) -> &RememberedRoute {
        &self.remembered
    }
    #[inline(always)]
    fn new(destination: [u8; 16], remembered: RememberedRoute) -> Self {
        RouteCacheV6 {
            destination,
            valid: 1,
            _pad: 0,
            remembered,
        }
    }
}

/// A route and, when `resolved`, its next hop's MAC: what [`recall`] gives and
/// [`remember`] keeps. Plain fields rather than an `Option` of the MAC: LLVM may read a
/// `None`'s payload, a register it never wrote, which the verifier refuses.
#[derive(Clone, Copy)]
struct Forward {
    route: Route,
    next_hop_mac: [u8; 6],
    resolved: bool,
}

impl Forward {
    /// A route the trie gave: its next hop's MAC not looked up yet.
    #[inline(always)]
    fn unresolved(route: Route) -> Forward {
        Forward {
            route,
            next_hop_mac: [0; 6],
            resolved: false,
        }
    }
}

/// What `slot` (this CPU's slot for `destination`) remembers of it, when it holds
/// `destination` and no route or address of the router changed since (the same routes
/// generation): the route, and the next hop's MAC when it was resolved and no neighbour
/// was written since. The trie's walk grows with the table (about 20 levels for a
/// million prefixes); packets to a remembered destination skip it, and the address
/// table, and with the MAC the neighbour table.
#[inline(always)]
fn recall<S: CacheSlot>(
    slot: Option<*mut S>,
    destination: &S::Destination,
    generations: Generations,
) -> Option<Forward> {
    // SAFETY: this CPU's slot; XDP runs with migration disabled.
    let cached = unsafe { &*slot? };
    if !cached.holds(destination) {
        return None;
    }
    let remembered = cached.remembered();
    if remembered.generation != generations.routes {
        return None;
    }
    Some(Forward {
        route: remembered.route,
        next_hop_mac: remembered.next_hop_mac,
        resolved: remembered.resolved == 1
            && remembered.neighbours_generation == generations.neighbours,
    })
}

/// Remembers a forward in `slot` (this CPU's slot for `destination`), in place of
/// whatever the slot held. The generations are the ones read before the look-ups.
#[inline(always)]
fn remember<S: CacheSlot>(
    slot: Option<*mut S>,
    destination: S::Destination,
    generations: Generations,
    forward: Forward,
) {
    let Some(slot) = slot else {
        return;
    };
    let remembered = RememberedRoute {
        generation: generations.routes,
        route: forward.route,
        neighbours_generation: generations.neighbours,
        next_hop_mac: forward.next_hop_mac,
        resolved: u8::from(forward.resolved),
        _pad: 0,
    };
    // SAFETY: as in `recall`.
    unsafe { *slot = S::new(destination, remembered) };
}

/// A packet to one of the router's IPv4 addresses: an echo request is answered in place,
/// anything else dropped.
#[inline(never)]
fn ipv4_local(raw: *mut xdp_md, in_port: u32, header: [u8; 20]) -> u32 {
    let ctx = xdp(raw);
    // Options would move the ICMP header; the router answers plain echo requests only.
    if header[0] != 0x45 || header[9] != IPPROTO_ICMP {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    let Ok(icmp) = read::<[u8; 4]>(&ctx, ETH_HLEN + 20) else {
        return dropped(counter::MALFORMED);
    };
    if icmp[0] != ICMP_ECHO_REQUEST {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Ok(sender_mac) = read::<[u8; 6]>(&ctx, 6) else {
        return dropped(counter::MALFORMED);
    };
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 24) else {
        return dropped(counter::MALFORMED);
    };
    let old_ttl = [header[8], header[9]];
    let new_ttl = [OWN_TTL, header[9]];
    let ip_sum = update(
        u16::from_be_bytes([header[10], header[11]]),
        &old_ttl,
        &new_ttl,
    );
    let old_type = [icmp[0], icmp[1]];
    let new_type = [ICMP_ECHO_REPLY, icmp[1]];
    let icmp_sum = update(u16::from_be_bytes([icmp[2], icmp[3]]), &old_type, &new_type);
    // Swapping the addresses leaves both checksums as they are.
    // SAFETY: frame_mut checked the 38 bytes are inside the packet.
    unsafe {
        write(frame, 0, &sender_mac);
        write(frame, 6, &port.mac);
        write(frame, ETH_HLEN + 8, &new_ttl);
        write(frame, ETH_HLEN + 10, &ip_sum.to_be_bytes());
        write(
            frame,
            ETH_HLEN + 12,
            &[header[16], header[17], header[18], header[19]],
        );
        write(
            frame,
            ETH_HLEN + 16,
            &[header[12], header[13], header[14], header[15]],
        );
        write(frame, ETH_HLEN + 20, &new_type);
        write(frame, ETH_HLEN + 22, &icmp_sum.to_be_bytes());
    }
    count(counter::ECHO_REPLIES);
    in_port
}

/// Bytes of the original datagram an ICMP error quotes: its IP header (20 bytes; options
/// are cut) and 8 bytes after it (RFC 792).
const QUOTE_V4: usize = 28;
/// Ethernet, IPv4 and ICMP headers, then the quote.
const TIME_EXCEEDED_V4_LEN: usize = ETH_HLEN + 20 + 8 + QUOTE_V4;

/// Turns the packet into an ICMP time exceeded (RFC 792) back to its sender, in place:
/// new headers are put in front of the packet's IP header, which with the 8 bytes after it
/// becomes the quote, and the rest is cut.
#[inline(never)]
fn time_exceeded_v4(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    if port.flags & port_flags::IPV4 == 0 {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 20) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 34 bytes are inside the packet.
    let (sender_mac, sender_ip): ([u8; 6], [u8; 4]) =
        unsafe { (read_at(frame, 6), read_at(frame, ETH_HLEN + 12)) };
    let grow = (TIME_EXCEEDED_V4_LEN - ETH_HLEN - QUOTE_V4) as i32;
    let Some(frame) = resize(&ctx, grow, TIME_EXCEEDED_V4_LEN) else {
        return dropped(counter::MALFORMED);
    };
    let total = ((20 + 8 + QUOTE_V4) as u16).to_be_bytes();
    // SAFETY: resize checked the 70 bytes are inside the packet.
    unsafe {
        write(frame, 0, &sender_mac);
        write(frame, 6, &port.mac);
        write(frame, 12, &ETH_P_IPV4.to_be_bytes());
        write(
            frame,
            ETH_HLEN,
            &[
                0x45,
                0,
                total[0],
                total[1],
                0,
                0,
                0,
                0,
                OWN_TTL,
                IPPROTO_ICMP,
                0,
                0,
            ],
        );
        write(frame, ETH_HLEN + 12, &port.ipv4);
        write(frame, ETH_HLEN + 16, &sender_ip);
        write(
            frame,
            ETH_HLEN + 20,
            &[ICMP_TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0],
        );
        let ip_sum = checksum(bytes(frame, ETH_HLEN, 20));
        write(frame, ETH_HLEN + 10, &ip_sum.to_be_bytes());
        let icmp_sum = checksum(bytes(frame, ETH_HLEN + 20, 8 + QUOTE_V4));
        write(frame, ETH_HLEN + 22, &icmp_sum.to_be_bytes());
    }
    count(counter::TIME_EXCEEDED);
    in_port
}

/// Rewrites the packet in place into a broadcast ARP request for `next_hop` from `out`
/// (RFC 826); the packet is lost, counted as `unresolved`.
#[inline(never)]
fn arp_request(raw: *mut xdp_md, out_port: u32, out: &RouterPort, next_hop: [u8; 4]) -> u32 {
    let ctx = xdp(raw);
    let Some(frame) = resize(&ctx, 0, ETH_HLEN + 28) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: resize checked the 42 bytes are inside the packet.
    unsafe {
        write(frame, 0, &[0xff; 6]);
        write(frame, 6, &out.mac);
        write(frame, 12, &ETH_P_ARP.to_be_bytes());
        write(frame, ETH_HLEN, &[0, 1, 8, 0, 6, 4, 0, ARP_REQUEST as u8]);
        write(frame, ETH_HLEN + 8, &out.mac);
        write(frame, ETH_HLEN + 14, &out.ipv4);
        write(frame, ETH_HLEN + 18, &[0; 6]);
        write(frame, ETH_HLEN + 24, &next_hop);
    }
    count(counter::UNRESOLVED);
    out_port
}

/// IPv6: neighbour discovery, the router's own, an expiring hop limit, or forwarded
/// (as IPv4's, remembering each CPU's forwards in `ROUTER_ROUTE_SLOTS_V6`).
#[inline(never)]
fn ipv6(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Ok(header) = read::<[u8; 8]>(&ctx, ETH_HLEN) else {
        return dropped(counter::MALFORMED);
    };
    let Ok(destination) = read::<[u8; 16]>(&ctx, ETH_HLEN + 24) else {
        return dropped(counter::MALFORMED);
    };
    if header[0] >> 4 != 6 {
        return dropped(counter::MALFORMED);
    }
    let next_header = header[6];
    if next_header == IPPROTO_ICMPV6 {
        if let Ok(kind) = read::<u8>(&ctx, ETH_HLEN + 40) {
            if kind == NEIGHBOUR_SOLICITATION {
                return solicitation(raw, in_port);
            }
            if kind == NEIGHBOUR_ADVERTISEMENT {
                advertisement(raw, in_port);
                return dropped(counter::LOCAL_DROPPED);
            }
        }
    }
    match forward_v6(raw, destination, header[7]) {
        TO_ROUTER => ipv6_local(raw, in_port, next_header),
        HOP_LIMIT_EXPIRED => time_exceeded_v6(raw, in_port),
        decision => decision,
    }
}

/// What [`forward_v6`] leaves to its caller, besides a port or [`DROP`]: the packet is
/// the router's own ([`ipv6_local`]) ...
const TO_ROUTER: u32 = 0x2_0000;
/// ... or its hop limit expires here ([`time_exceeded_v6`]). Answered by the caller so
/// that neither reply's frame stacks on this function's (the BPF stack holds 512 bytes
/// for a call chain; `solicitation`'s alone takes 384).
const HOP_LIMIT_EXPIRED: u32 = 0x3_0000;

/// Forwards an IPv6 packet to `destination` (not neighbour discovery), remembering the
/// forward in this CPU's `ROUTER_ROUTE_SLOTS_V6` slot for it as IPv4's are remembered:
/// the port it leaves on, [`DROP`], [`TO_ROUTER`] or [`HOP_LIMIT_EXPIRED`].
#[inline(never)]
fn forward_v6(raw: *mut xdp_md, destination: [u8; 16], hop_limit: u8) -> u32 {
    let ctx = xdp(raw);
    let generations = generations();
    let slot = ROUTER_ROUTE_SLOTS_V6.get_ptr_mut(route_cache_slot_v6(destination));
    // As IPv4's: a remembered destination is neither the router's, multicast nor
    // link-local.
    let forward = if let Some(hit) = recall(slot, &destination, generations) {
        if hop_limit <= 1 {
            return HOP_LIMIT_EXPIRED;
        }
        hit
    } else {
        if local(family::IPV6, &destination).is_some() {
            return TO_ROUTER;
        }
        // Multicast and link-local destinations are not forwarded (RFC 4291 2.5.6).
        if destination[0] == 0xff || (destination[0] == 0xfe && destination[1] & 0xc0 == 0x80) {
            return dropped(counter::LOCAL_DROPPED);
        }
        if hop_limit <= 1 {
            return HOP_LIMIT_EXPIRED;
        }
        let Some(route) = ROUTER_ROUTES_V6.get(&Key::new(128, destination)).copied() else {
            return dropped(counter::NO_ROUTE);
        };
        Forward::unresolved(route)
    };
    let route = forward.route;
    count_route(route.id, ctx.total_len() as u64);
    let next_hop = if route.flags & route_flags::CONNECTED != 0 {
        destination
    } else {
        route.next_hop
    };
    let Some(out) = ROUTER_PORTS.get(route.port).copied() else {
        return dropped(counter::NO_ROUTE);
    };
    let next_hop_mac = if forward.resolved {
        forward.next_hop_mac
    } else {
        let Some(known) = neighbour(route.port, family::IPV6, &next_hop) else {
            remember(slot, destination, generations, forward);
            return solicit(raw, route.port, &out, &next_hop);
        };
        let resolved = Forward {
            next_hop_mac: known.mac,
            resolved: true,
            ..forward
        };
        remember(slot, destination, generations, resolved);
        known.mac
    };
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 40) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 54 bytes are inside the packet.
    unsafe {
        write(frame, 0, &next_hop_mac);
        write(frame, 6, &out.mac);
        // IPv6 has no header checksum (RFC 8200 3).
        let hop_limit = frame.add(ETH_HLEN + 7);
        *hop_limit -= 1;
    }
    count(counter::FORWARDED);
    route.port
}

/// A packet to one of the router's IPv6 addresses: an echo request is answered in place,
/// anything else dropped.
#[inline(never)]
fn ipv6_local(raw: *mut xdp_md, in_port: u32, next_header: u8) -> u32 {
    let ctx = xdp(raw);
    if next_header != IPPROTO_ICMPV6 {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 44) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 58 bytes are inside the packet.
    unsafe {
        let icmp: [u8; 4] = read_at(frame, ETH_HLEN + 40);
        if icmp[0] != ICMPV6_ECHO_REQUEST {
            return dropped(counter::LOCAL_DROPPED);
        }
        let sender_mac: [u8; 6] = read_at(frame, 6);
        let source: [u8; 16] = read_at(frame, ETH_HLEN + 8);
        let destination: [u8; 16] = read_at(frame, ETH_HLEN + 24);
        // The pseudo-header's sum does not change when its addresses swap places.
        let old_type = [icmp[0], icmp[1]];
        let new_type = [ICMPV6_ECHO_REPLY, icmp[1]];
        let sum = update(u16::from_be_bytes([icmp[2], icmp[3]]), &old_type, &new_type);
        write(frame, 0, &sender_mac);
        write(frame, 6, &port.mac);
        write(frame, ETH_HLEN + 7, &[OWN_TTL]);
        write(frame, ETH_HLEN + 8, &destination);
        write(frame, ETH_HLEN + 24, &source);
        write(frame, ETH_HLEN + 40, &new_type);
        write(frame, ETH_HLEN + 42, &sum.to_be_bytes());
    }
    count(counter::ECHO_REPLIES);
    in_port
}

/// Bytes of the original packet an ICMPv6 error quotes: its IPv6 header and 8 bytes after
/// it (RFC 4443 3.3 asks for as much as fits; the router keeps the reply fixed-size).
const QUOTE_V6: usize = 48;
/// Ethernet, IPv6 and ICMPv6 headers, then the quote.
const TIME_EXCEEDED_V6_LEN: usize = ETH_HLEN + 40 + 8 + QUOTE_V6;

/// Turns the packet into an ICMPv6 time exceeded (RFC 4443 3.3) back to its sender, in
/// place, as [`time_exceeded_v4`] does.
#[inline(never)]
fn time_exceeded_v6(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    if port.flags & port_flags::IPV6 == 0 {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 40) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 54 bytes are inside the packet.
    let (sender_mac, sender_ip): ([u8; 6], [u8; 16]) =
        unsafe { (read_at(frame, 6), read_at(frame, ETH_HLEN + 8)) };
    let grow = (TIME_EXCEEDED_V6_LEN - ETH_HLEN - QUOTE_V6) as i32;
    let Some(frame) = resize(&ctx, grow, TIME_EXCEEDED_V6_LEN) else {
        return dropped(counter::MALFORMED);
    };
    let payload = 8 + QUOTE_V6;
    // SAFETY: resize checked the 110 bytes are inside the packet.
    unsafe {
        write(frame, 0, &sender_mac);
        write(frame, 6, &port.mac);
        write(frame, 12, &ETH_P_IPV6.to_be_bytes());
        let length = (payload as u16).to_be_bytes();
        write(
            frame,
            ETH_HLEN,
            &[0x60, 0, 0, 0, length[0], length[1], IPPROTO_ICMPV6, OWN_TTL],
        );
        write(frame, ETH_HLEN + 8, &port.ipv6);
        write(frame, ETH_HLEN + 24, &sender_ip);
        write(
            frame,
            ETH_HLEN + 40,
            &[ICMPV6_TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0],
        );
        let sum = pseudo_header(&port.ipv6, &sender_ip, IPPROTO_ICMPV6, payload)
            .add_bytes(bytes(frame, ETH_HLEN + 40, payload))
            .finish();
        write(frame, ETH_HLEN + 42, &sum.to_be_bytes());
    }
    count(counter::TIME_EXCEEDED);
    in_port
}

/// An NS or NA with its link-layer address option: ICMPv6 (8) + target (16) + option (8).
const ND_LEN: usize = 32;

/// Zero bytes after an NS or NA the router writes, so its frame is always longer than
/// the IPv6 packet in it. Why: in generic (skb) mode, a frame whose length an XDP
/// program changed leaves the kernel with a socket buffer whose tail pointer lies the
/// MAC header's length (14 bytes) past its end, and `ndisc_recv_ns`/`ndisc_recv_na`
/// read options up to that tail: they parse 14 stale bytes and drop the message
/// (`IPV6_NDISC_BAD_OPTIONS`). When the frame is longer than the packet, the receiver's
/// IPv6 layer trims the buffer to the payload length, which sets the tail right. IPv6
/// ignores bytes after its payload length (RFC 8200 3), so this is Ethernet padding.
const ND_PADDING: usize = 8;

/// The frame of an NS or NA the router writes: headers, message and padding.
const ND_FRAME_LEN: usize = ETH_HLEN + 40 + ND_LEN + ND_PADDING;

/// Learns the sender of a neighbour solicitation and answers one for an address of the
/// router with an advertisement, in place (RFC 4861 7.2.4).
#[inline(never)]
fn solicitation(raw: *mut xdp_md, in_port: u32) -> u32 {
    let ctx = xdp(raw);
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 64) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: frame_mut checked the 78 bytes are inside the packet.
    let (sender_mac, source, target): ([u8; 6], [u8; 16], [u8; 16]) = unsafe {
        (
            read_at(frame, 6),
            read_at(frame, ETH_HLEN + 8),
            read_at(frame, ETH_HLEN + 48),
        )
    };
    let unspecified = source == [0; 16];
    if !unspecified {
        // The source link-layer option, when it is the first one, else the frame's source.
        let mac = match read::<[u8; 8]>(&ctx, ETH_HLEN + 64) {
            Ok(option) if option[0] == OPTION_SOURCE_MAC && option[1] == 1 => [
                option[2], option[3], option[4], option[5], option[6], option[7],
            ],
            _ => sender_mac,
        };
        learn(in_port, family::IPV6, &source, mac);
    }
    if local(family::IPV6, &target).is_none() {
        return dropped(counter::LOCAL_DROPPED);
    }
    let Some(port) = ROUTER_PORTS.get(in_port).copied() else {
        return dropped(counter::LOCAL_DROPPED);
    };
    // A duplicate address detection probe (from ::) is answered to all nodes, without
    // the solicited flag (RFC 4861 7.2.4).
    let (destination, destination_mac, flags) = if unspecified {
        let mut all_nodes = [0u8; 16];
        all_nodes[0] = 0xff;
        all_nodes[1] = 0x02;
        all_nodes[15] = 1;
        (all_nodes, [0x33, 0x33, 0, 0, 0, 1], 0xa0)
    } else {
        // Router, solicited, override.
        (source, sender_mac, 0xe0)
    };
    let Some(frame) = resize(&ctx, 0, ND_FRAME_LEN) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: resize checked the 94 bytes are inside the packet.
    unsafe {
        write(frame, 0, &destination_mac);
        write(frame, 6, &port.mac);
        write(frame, 12, &ETH_P_IPV6.to_be_bytes());
        write(
            frame,
            ETH_HLEN,
            &[0x60, 0, 0, 0, 0, ND_LEN as u8, IPPROTO_ICMPV6, ND_HOP_LIMIT],
        );
        write(frame, ETH_HLEN + 8, &target);
        write(frame, ETH_HLEN + 24, &destination);
        write(
            frame,
            ETH_HLEN + 40,
            &[NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0],
        );
        write(frame, ETH_HLEN + 48, &target);
        write(frame, ETH_HLEN + 64, &[OPTION_TARGET_MAC, 1]);
        write(frame, ETH_HLEN + 66, &port.mac);
        write(frame, ETH_HLEN + 40 + ND_LEN, &[0u8; ND_PADDING]);
        let sum = pseudo_header(&target, &destination, IPPROTO_ICMPV6, ND_LEN)
            .add_bytes(bytes(frame, ETH_HLEN + 40, ND_LEN))
            .finish();
        write(frame, ETH_HLEN + 42, &sum.to_be_bytes());
    }
    count(counter::NEIGHBOUR_ADVERTS);
    in_port
}

/// Learns the target of a neighbour advertisement (its target link-layer option, else
/// the frame's source).
#[inline(never)]
fn advertisement(raw: *mut xdp_md, in_port: u32) {
    let ctx = xdp(raw);
    let Some(frame) = frame_mut(&ctx, ETH_HLEN + 64) else {
        return;
    };
    // SAFETY: frame_mut checked the 78 bytes are inside the packet.
    let (sender_mac, target): ([u8; 6], [u8; 16]) =
        unsafe { (read_at(frame, 6), read_at(frame, ETH_HLEN + 48)) };
    let mac = match read::<[u8; 8]>(&ctx, ETH_HLEN + 64) {
        Ok(option) if option[0] == OPTION_TARGET_MAC && option[1] == 1 => [
            option[2], option[3], option[4], option[5], option[6], option[7],
        ],
        _ => sender_mac,
    };
    learn(in_port, family::IPV6, &target, mac);
}

/// Rewrites the packet in place into a neighbour solicitation for `next_hop` from `out`,
/// to its solicited-node multicast address (RFC 4861 7.2.2, RFC 4291 2.7.1); the packet
/// is lost, counted as `unresolved`.
#[inline(never)]
fn solicit(raw: *mut xdp_md, out_port: u32, out: &RouterPort, next_hop: &[u8; 16]) -> u32 {
    let ctx = xdp(raw);
    let mut group = [0u8; 16];
    group[0] = 0xff;
    group[1] = 0x02;
    group[11] = 1;
    group[12] = 0xff;
    group[13] = next_hop[13];
    group[14] = next_hop[14];
    group[15] = next_hop[15];
    let Some(frame) = resize(&ctx, 0, ND_FRAME_LEN) else {
        return dropped(counter::MALFORMED);
    };
    // SAFETY: resize checked the 94 bytes are inside the packet.
    unsafe {
        write(
            frame,
            0,
            &[0x33, 0x33, 0xff, next_hop[13], next_hop[14], next_hop[15]],
        );
        write(frame, 6, &out.mac);
        write(frame, 12, &ETH_P_IPV6.to_be_bytes());
        write(
            frame,
            ETH_HLEN,
            &[0x60, 0, 0, 0, 0, ND_LEN as u8, IPPROTO_ICMPV6, ND_HOP_LIMIT],
        );
        write(frame, ETH_HLEN + 8, &out.ipv6);
        write(frame, ETH_HLEN + 24, &group);
        write(
            frame,
            ETH_HLEN + 40,
            &[NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
        );
        write(frame, ETH_HLEN + 48, next_hop);
        write(frame, ETH_HLEN + 64, &[OPTION_SOURCE_MAC, 1]);
        write(frame, ETH_HLEN + 66, &out.mac);
        write(frame, ETH_HLEN + 40 + ND_LEN, &[0u8; ND_PADDING]);
        let sum = pseudo_header(&out.ipv6, &group, IPPROTO_ICMPV6, ND_LEN)
            .add_bytes(bytes(frame, ETH_HLEN + 40, ND_LEN))
            .finish();
        write(frame, ETH_HLEN + 42, &sum.to_be_bytes());
    }
    count(counter::UNRESOLVED);
    out_port
}

/// The packet's context in a function of its own. `black_box` keeps LLVM from rewriting
/// the function to take the packet's data and end pointers instead (argument promotion),
/// which the verifier refuses (no arithmetic on `data_end`).
#[inline(always)]
fn xdp(raw: *mut xdp_md) -> XdpContext {
    XdpContext::new(core::hint::black_box(raw))
}

/// The port an address of the router is on, when it is one.
#[inline(always)]
fn local(family: u32, addr: &[u8; 16]) -> Option<u32> {
    let key = AddrKey {
        family,
        addr: *addr,
    };
    // SAFETY: the value is copied at once.
    unsafe { ROUTER_LOCAL.get(&key) }.copied()
}

/// The MAC of `addr` on `port`, when known.
#[inline(always)]
fn neighbour(port: u32, family: u32, addr: &[u8; 16]) -> Option<Neighbour> {
    let key = NeighbourKey {
        port,
        family,
        addr: *addr,
    };
    // SAFETY: the value is copied at once.
    unsafe { ROUTER_NEIGHBOURS.get(&key) }.copied()
}

/// Records `mac` for `addr` on `port` (a write only when it changed).
#[inline(always)]
fn learn(port: u32, family: u32, addr: &[u8; 16], mac: [u8; 6]) {
    if mac[0] & 1 != 0 {
        return;
    }
    if neighbour(port, family, addr).is_some_and(|known| known.mac == mac) {
        return;
    }
    let key = NeighbourKey {
        port,
        family,
        addr: *addr,
    };
    let entry = Neighbour {
        mac,
        _pad: [0; 2],
        // SAFETY: a helper without arguments.
        updated_ns: unsafe { bpf_ktime_get_coarse_ns() },
    };
    if ROUTER_NEIGHBOURS.insert(&key, &entry, 0).is_ok() {
        neighbours_changed();
        count(counter::NEIGHBOURS_LEARNED);
    }
}

/// Gives the neighbours a new generation after a write to `ROUTER_NEIGHBOURS`: a value no
/// writer stored before (the clock's nanoseconds shifted left by 8, this CPU's number in
/// the low byte), so no remembered next-hop MAC matches it. A store, not an increment:
/// two CPUs learning at once cannot lose one another's change, as a non-atomic `+= 1`
/// could (both storing N + 1); whichever store lands last differs from what every CPU
/// remembered before its own write.
#[inline(always)]
fn neighbours_changed() {
    let Some(generation) = ROUTER_NEIGH_GEN.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: helpers without arguments; the map's value, written once.
    unsafe {
        let unique = bpf_ktime_get_ns() << 8 | u64::from(bpf_get_smp_processor_id() & 0xff);
        core::ptr::write_volatile(generation, unique);
    }
}

/// An IPv4 address as the 16 bytes of the maps' keys.
#[inline(always)]
fn v4_addr(addr: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr);
    bytes
}

/// The start of the packet, when its first `len` bytes are in the linear part.
#[inline(always)]
fn frame_mut(ctx: &XdpContext, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + len > ctx.data_end() {
        return None;
    }
    Some(start as *mut u8)
}

/// Moves the packet's start by `grow` bytes to the front and makes it `len` bytes long;
/// the start of the result when all of it is in the linear part.
#[inline(always)]
fn resize(ctx: &XdpContext, grow: i32, len: usize) -> Option<*mut u8> {
    // SAFETY: the helpers only move this packet's bounds (the kernel checks them).
    unsafe {
        if grow != 0 && bpf_xdp_adjust_head(ctx.ctx, -grow) != 0 {
            return None;
        }
        let delta = len as i64 - ctx.total_len() as i64;
        if delta != 0 && bpf_xdp_adjust_tail(ctx.ctx, delta as i32) != 0 {
            return None;
        }
    }
    frame_mut(ctx, len)
}

/// Writes `bytes` at `offset` of the frame.
///
/// # Safety
/// `frame + offset + N` lies within the packet (checked by the caller).
#[inline(always)]
unsafe fn write<const N: usize>(frame: *mut u8, offset: usize, bytes: &[u8; N]) {
    // SAFETY: the caller's.
    unsafe { (frame.add(offset) as *mut [u8; N]).write_unaligned(*bytes) };
}

/// Reads `N` bytes at `offset` of the frame.
///
/// # Safety
/// As [`write`].
#[inline(always)]
unsafe fn read_at<const N: usize>(frame: *mut u8, offset: usize) -> [u8; N] {
    // SAFETY: the caller's.
    unsafe { (frame.add(offset) as *const [u8; N]).read_unaligned() }
}

/// The `len` bytes at `offset` of the frame, for a checksum.
///
/// # Safety
/// As [`write`].
#[inline(always)]
unsafe fn bytes<'a>(frame: *mut u8, offset: usize, len: usize) -> &'a [u8] {
    // SAFETY: the caller's.
    unsafe { core::slice::from_raw_parts(frame.add(offset), len) }
}

fn count_route(id: u32, bytes: u64) {
    if let Some(stats) = ROUTER_ROUTE_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU slot; XDP runs with migration disabled.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += bytes;
        }
    }
}

fn count(slot: u32) {
    if let Some(counter) = ROUTER_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; XDP runs with migration disabled.
        unsafe { *counter += 1 };
    }
}

/// Counts `slot` and returns [`DROP`].
#[inline(always)]
fn dropped(slot: u32) -> u32 {
    count(slot);
    DROP
}
