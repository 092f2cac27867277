//! The bridge instance program of a topology (`kind = "bridge"`), tail-called through
//! `TOPO_PROGS` with the packet's place in `TOPO_CONTEXT` (see `topology.rs`).
//!
//! - Learns each frame's source as (VLAN, MAC) -> ingress port in an LRU table (static
//!   entries never move or age; dynamic ones older than the aging time are forgotten on
//!   use).
//! - Known unicast leaves on the port its destination was learned on; a frame whose
//!   destination was learned on its own ingress port is dropped (a hairpin).
//! - Broadcast, multicast and unknown unicast are flooded in the kernel, by one
//!   `bpf_redirect_map` with `BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS` over the bridge's
//!   interface ports (`BRIDGE_FLOOD`). A redirect ends the program, so a flood cannot also
//!   go on into an instance port in the same run: ARP requests and neighbour solicitations
//!   for an address of an instance behind one of the bridge's instance ports
//!   (`BRIDGE_TARGETS`, e.g. a router's) go to that port alone instead.
//!
//! - VLAN-aware (802.1Q) when a port has `vlans` (`BridgeSettings::vlan_aware`): an
//!   untagged frame belongs to its port's VLAN (`BRIDGE_PVID`: an access port's, VLAN 0
//!   on a port without `vlans`, refused on a trunk), a tagged one to its tag's, refused
//!   unless the port carries that VLAN tagged (`BRIDGE_MEMBERS`). Unicast leaves only by
//!   a port of its VLAN, its tag pushed or popped as that port wants (`vlan_tag`). A flood
//!   leaves tagged with its VLAN (VLAN 0: untagged) and the egress program of each
//!   `BRIDGE_FLOOD` entry (`bridge_egress.rs`) drops the copies for ports outside the
//!   VLAN and pops the tag on untagged ones, so one broadcast serves every VLAN.
//!
//! Per-port counters are the topology's (`emit`); the bridge's own are `BRIDGE_COUNTERS`.
#![no_std]
#![no_main]

mod object;
// Its bounds-checked reads only: the bridge looks at the Ethernet header and, for
// ARP and neighbour solicitations, at their targets.
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod topology;
mod vlan_tag;

use aya_ebpf::{
    bindings::{BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS, xdp_action, xdp_md},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use offload_common::{
    bridge::{
        BridgeSettings, DEFAULT_AGING_NS, ETH_P_8021Q, FDB_ENTRIES, FLOOD_ENTRIES, FdbEntry,
        FdbKey, MEMBER_ENTRIES, NO_PVID, TARGET_ENTRIES, TargetKey, UNTAGGED, VlanPort, counter,
        family, fdb_flags, tagging,
    },
    topology::{MAX_INSTANCE_PORTS, link_kind},
};
use parse::read;
use topology::PortCount;

#[map]
static BRIDGE_FDB: LruHashMap<FdbKey, FdbEntry> = LruHashMap::with_max_entries(FDB_ENTRIES, 0);
#[map]
static BRIDGE_FLOOD: DevMapHash = DevMapHash::with_max_entries(FLOOD_ENTRIES, 0);
#[map]
static BRIDGE_TARGETS: HashMap<TargetKey, u32> = HashMap::with_max_entries(TARGET_ENTRIES, 0);
#[map]
static BRIDGE_SETTINGS: Array<BridgeSettings> = Array::with_max_entries(1, 0);
#[map]
static BRIDGE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
#[map]
static BRIDGE_PVID: Array<u32> = Array::with_max_entries(MAX_INSTANCE_PORTS, 0);
#[map]
static BRIDGE_MEMBERS: HashMap<VlanPort, u32> = HashMap::with_max_entries(MEMBER_ENTRIES, 0);
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const NEIGHBOUR_SOLICITATION: u8 = 135;
/// A station's last-seen time is rewritten at most this often: a write per frame would
/// bounce the entry's cache line between CPUs for no gain at a 300 s aging time.
const REFRESH_NS: u64 = 1_000_000_000;

/// What [`decide`] chose; a port number below [`MAX_INSTANCE_PORTS`] means "emit there".
const FLOOD: u32 = 0x1_0000;
const DROP: u32 = 0x1_0001;
/// [`decide`]'s answer carries the frame's VLAN from this bit on...
const VLAN_SHIFT: u64 = 32;
/// ... and whether it came in tagged in this bit.
const TAGGED_BIT: u64 = 1 << 48;

#[xdp(frags)]
pub fn bridge(ctx: XdpContext) -> u32 {
    let Some(place) = topology::context() else {
        return xdp_action::XDP_DROP;
    };
    let vlan_aware = BRIDGE_SETTINGS
        .get(0)
        .is_some_and(|settings| settings.vlan_aware != 0);
    let answer = decide(ctx.ctx, place.in_port, vlan_aware);
    let decision = answer as u32;
    if vlan_aware && decision <= FLOOD {
        let vlan = ((answer >> VLAN_SHIFT) & 0x0fff) as u16;
        let tagged = answer & TAGGED_BIT != 0;
        if !egress_tagging(ctx.ctx, decision, vlan, tagged) {
            count(counter::VLAN_EGRESS);
            return xdp_action::XDP_DROP;
        }
        if decision == FLOOD {
            return flood(&ctx, place.bank, place.instance, place.in_ifindex, vlan);
        }
    }
    if decision < MAX_INSTANCE_PORTS {
        return topology::emit(&ctx, place, decision);
    }
    if decision == FLOOD {
        return flood(
            &ctx,
            place.bank,
            place.instance,
            place.in_ifindex,
            NOT_AWARE,
        );
    }
    xdp_action::XDP_DROP
}

/// The VLAN [`flood`] is told when the bridge is not VLAN-aware: every interface port
/// gets the frame as it is.
const NOT_AWARE: u16 = u16::MAX;

/// Gives the frame the tagging it leaves with: on port `decision`, tagged as that port
/// carries `vlan`; on a flood ([`FLOOD`]), tagged unless its VLAN is 0 (the egress
/// program of each flood entry pops it where the port wants it untagged). False when the
/// port does not carry the VLAN or the frame cannot change.
#[inline(never)]
fn egress_tagging(raw: *mut xdp_md, decision: u32, vlan: u16, tagged: bool) -> bool {
    let want = if decision == FLOOD {
        vlan != UNTAGGED
    } else {
        match member(decision, vlan) {
            Some(tagging::TAGGED) => true,
            Some(_) => false,
            None => return false,
        }
    };
    let ctx = XdpContext::new(raw);
    match (tagged, want) {
        (false, true) => vlan_tag::push(&ctx, vlan),
        (true, false) => vlan_tag::pop(&ctx),
        _ => true,
    }
}

/// How frames of `vlan` leave `port`; `None` when the port does not carry it.
#[inline(always)]
fn member(port: u32, vlan: u16) -> Option<u32> {
    let key = VlanPort {
        port,
        vlan: u32::from(vlan),
    };
    // SAFETY: the value is copied at once.
    unsafe { BRIDGE_MEMBERS.get(&key) }.copied()
}

/// Learns the source and picks the way out: a port, [`FLOOD`] or [`DROP`] (counted), in
/// the low 32 bits; above them the frame's VLAN ([`VLAN_SHIFT`]) and whether it came in
/// tagged ([`TAGGED_BIT`]).
// A function of its own (a BPF-to-BPF call) so its keys stay out of the caller's stack.
#[inline(never)]
fn decide(raw: *mut xdp_md, in_port: u32, vlan_aware: bool) -> u64 {
    let ctx = XdpContext::new(raw);
    let mut frame = FrameVlan::default();
    let way = look_up(&ctx, in_port, vlan_aware, &mut frame);
    u64::from(way)
        | (u64::from(frame.vlan) << VLAN_SHIFT)
        | if frame.tagged { TAGGED_BIT } else { 0 }
}

/// The frame's VLAN in the bridge and whether it came in tagged.
#[derive(Default)]
struct FrameVlan {
    vlan: u16,
    tagged: bool,
}

/// [`decide`]'s work: classifies the frame into `frame`, learns, and returns the way out.
#[inline(always)]
fn look_up(ctx: &XdpContext, in_port: u32, vlan_aware: bool, frame: &mut FrameVlan) -> u32 {
    let Ok(macs) = read::<[u8; 14]>(ctx, 0) else {
        count(counter::MALFORMED);
        return DROP;
    };
    let mut ethertype = u16::from_be_bytes([macs[12], macs[13]]);
    let mut l3 = 14;
    let mut vlan = UNTAGGED;
    if ethertype == ETH_P_8021Q {
        let Ok(tag) = read::<[u8; 4]>(ctx, 14) else {
            count(counter::MALFORMED);
            return DROP;
        };
        vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 = 18;
        frame.tagged = true;
    }
    if vlan_aware {
        // Ingress filtering, as a Linux bridge with vlan_filtering: a tag is accepted
        // only on a port that carries its VLAN tagged; an untagged frame takes its
        // port's VLAN (none on a trunk).
        if frame.tagged {
            if member(in_port, vlan) != Some(tagging::TAGGED) {
                count(counter::VLAN_REFUSED);
                return DROP;
            }
        } else {
            let pvid = BRIDGE_PVID.get(in_port).copied().unwrap_or(NO_PVID);
            if pvid > 4094 {
                count(counter::VLAN_REFUSED);
                return DROP;
            }
            vlan = pvid as u16;
        }
    }
    frame.vlan = vlan;
    let destination = [macs[0], macs[1], macs[2], macs[3], macs[4], macs[5]];
    let source = [macs[6], macs[7], macs[8], macs[9], macs[10], macs[11]];
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    learn(vlan, source, in_port, now);
    if destination[0] & 1 != 0 {
        return neighbour_target(ctx, ethertype, l3, in_port)
            .filter(|port| !vlan_aware || member(*port, vlan).is_some())
            .unwrap_or(FLOOD);
    }
    let key = FdbKey {
        vlan,
        mac: destination,
    };
    // SAFETY: the value is copied at once.
    let Some(entry) = (unsafe { BRIDGE_FDB.get(&key) }).copied() else {
        return FLOOD;
    };
    if entry.flags & fdb_flags::STATIC == 0 && now.saturating_sub(entry.last_seen_ns) > aging_ns() {
        let _ = BRIDGE_FDB.remove(&key);
        count(counter::AGED);
        return FLOOD;
    }
    if entry.port == in_port {
        count(counter::HAIRPIN);
        return DROP;
    }
    count(counter::FORWARDED);
    entry.port
}

/// Records that `mac` on `vlan` sends from `port`.
#[inline(always)]
fn learn(vlan: u16, mac: [u8; 6], port: u32, now: u64) {
    // A multicast source is invalid (IEEE 802.3 4.2.3.1.1): never learned.
    if mac[0] & 1 != 0 {
        return;
    }
    let key = FdbKey { vlan, mac };
    match BRIDGE_FDB.get_ptr_mut(&key) {
        Some(entry) => {
            // SAFETY: a map value; a racing writer at worst writes the same station's
            // port or time.
            let entry = unsafe { &mut *entry };
            if entry.flags & fdb_flags::STATIC != 0 {
                return;
            }
            if entry.port != port {
                entry.port = port;
                entry.last_seen_ns = now;
                count(counter::LEARNED);
            } else if now.saturating_sub(entry.last_seen_ns) > REFRESH_NS {
                entry.last_seen_ns = now;
            }
        }
        None => {
            let entry = FdbEntry {
                port,
                flags: 0,
                last_seen_ns: now,
            };
            if BRIDGE_FDB.insert(&key, &entry, 0).is_ok() {
                count(counter::LEARNED);
            }
        }
    }
}

/// The instance port behind which the target of an ARP request or a neighbour
/// solicitation lives, when `BRIDGE_TARGETS` lists it (counted).
#[inline(always)]
fn neighbour_target(ctx: &XdpContext, ethertype: u16, l3: usize, in_port: u32) -> Option<u32> {
    let mut key = TargetKey::default();
    if ethertype == ETH_P_ARP {
        // The ARP header of an IPv4-over-Ethernet packet (RFC 826): op at 6, the target's
        // protocol address at 24.
        let op = read::<[u8; 2]>(ctx, l3 + 6).ok()?;
        if u16::from_be_bytes(op) != ARP_REQUEST {
            return None;
        }
        let target = read::<[u8; 4]>(ctx, l3 + 24).ok()?;
        key.family = family::IPV4;
        key.addr[..4].copy_from_slice(&target);
    } else if ethertype == ETH_P_IPV6 {
        // IPv6's next header at 6; an NS (RFC 4861 4.3) right after the fixed header:
        // type at 0, target at 8.
        let next = read::<u8>(ctx, l3 + 6).ok()?;
        let kind = read::<u8>(ctx, l3 + 40).ok()?;
        if next != IPPROTO_ICMPV6 || kind != NEIGHBOUR_SOLICITATION {
            return None;
        }
        key.family = family::IPV6;
        key.addr = read::<[u8; 16]>(ctx, l3 + 48).ok()?;
    } else {
        return None;
    }
    // SAFETY: the value is copied at once.
    let port = (unsafe { BRIDGE_TARGETS.get(&key) }).copied()?;
    if port == in_port {
        return None;
    }
    count(counter::TO_TARGET);
    Some(port)
}

/// Floods the frame to the bridge's interface ports but the one it came in on, counting
/// it out on each (on a VLAN-aware bridge, each that carries `vlan`: the others' egress
/// programs drop their copies).
#[inline(never)]
fn flood(ctx: &XdpContext, bank: u32, instance: u32, in_ifindex: u32, vlan: u16) -> u32 {
    count(counter::FLOODED);
    let bytes = topology::packet_bytes(ctx);
    for port in 0..MAX_INSTANCE_PORTS {
        let link = topology::link(bank, instance, port);
        if link.kind == link_kind::IFACE
            && link.ifindex != in_ifindex
            && (vlan == NOT_AWARE || member(port, vlan).is_some())
        {
            topology::count_port(instance, port, PortCount::Tx, bytes);
        }
    }
    // With BPF_F_BROADCAST the key is ignored and every entry gets a copy;
    // BPF_F_EXCLUDE_INGRESS leaves out the device the frame came in on
    // (net/core/filter.c __bpf_xdp_redirect_map, kernel/bpf/devmap.c dev_map_enqueue_multi).
    BRIDGE_FLOOD
        .redirect(0, u64::from(BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS))
        .unwrap_or(xdp_action::XDP_DROP)
}

fn aging_ns() -> u64 {
    match BRIDGE_SETTINGS.get(0) {
        Some(settings) if settings.aging_ns != 0 => settings.aging_ns,
        _ => DEFAULT_AGING_NS,
    }
}

fn count(slot: u32) {
    if let Some(counter) = BRIDGE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; XDP runs with migration disabled.
        unsafe { *counter += 1 };
    }
}
