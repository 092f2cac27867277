//! The topology's kernel side through `BPF_PROG_TEST_RUN`: the bridge and router instance
//! programs and the `topology` module, loaded with their maps in a transient folder and
//! linked by hand (`support/topology.rs`); nothing is attached, no packet is sent.
//! Needs root.

mod support;

use std::net::IpAddr;

use aya::maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key};
use offload::modules::builtin::BRIDGE_PROGRAM_OBJECT;
use offload_common::{
    bridge::{self, BridgeSettings, FdbEntry, FdbKey, TargetKey, VlanPort, fdb_flags},
    router::{self, Neighbour, NeighbourKey, Route, RouteStats, RouterPort},
    topology::{MAX_HOPS, counter},
};
use support::{
    require_root,
    topology::{LOOPBACK, ROUTER_A, ROUTER_B, Topology, add_router, addr16, route, v6_octets},
};
use wire::{
    FrameBuilder,
    build::L4,
    checksum::{checksum, l4_checksum_ok},
};

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

const HOST_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const HOST_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const HOST_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
const HOST_D: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0d];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// An Ethernet frame with the given MACs carrying a small UDP datagram.
fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str) -> Vec<u8> {
    let mut frame = FrameBuilder::udp(ip(src), ip(dst)).payload(vec![0x5a; 18]);
    frame.src_mac = src_mac;
    frame.dst_mac = dst_mac;
    frame.build()
}

fn icmp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    kind: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut frame = FrameBuilder::udp(ip(src), ip(dst)).payload(body.to_vec());
    frame.l4 = L4::Icmp { kind, code: 0 };
    frame.src_mac = src_mac;
    frame.dst_mac = dst_mac;
    frame.build()
}

/// An ARP request (RFC 826) from `sender` for `target`.
fn arp(
    op: u16,
    sender_mac: [u8; 6],
    sender: [u8; 4],
    target_mac: [u8; 6],
    target: [u8; 4],
) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(if op == 1 { &[0xff; 6] } else { &target_mac });
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op as u8]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender);
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&target);
    frame
}

/// A neighbour solicitation (RFC 4861 4.3) from `src` for `target`, with the source
/// link-layer option, to the target's solicited-node group.
fn solicitation(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let IpAddr::V6(target) = ip(target) else {
        panic!()
    };
    let t = target.octets();
    let group = format!("ff02::1:ff{:02x}:{:02x}{:02x}", t[13], t[14], t[15]);
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    let mut frame = FrameBuilder::udp(ip(src), ip(&group)).payload(body);
    frame.l4 = L4::Icmp { kind: 135, code: 0 };
    frame.src_mac = src_mac;
    frame.dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    frame.build()
}

/// A neighbour advertisement from `src` (the target) with its link-layer option.
fn advertisement(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str) -> Vec<u8> {
    let IpAddr::V6(target) = ip(src) else {
        panic!()
    };
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&src_mac);
    let mut frame = FrameBuilder::udp(ip(src), ip(dst)).payload(body);
    frame.l4 = L4::Icmp { kind: 136, code: 0 };
    frame.src_mac = src_mac;
    frame.dst_mac = dst_mac;
    let mut bytes = frame.build();
    // Solicited and override flags, in the word the builder left zero; checksum redone.
    bytes[14 + 40 + 4] = 0x60;
    fix_l4_checksum(&mut bytes);
    bytes
}

fn headers(frame: &[u8]) -> wire::Headers {
    wire::parse(frame).unwrap().expect("an IP frame")
}

/// Recomputes the ICMPv6/ICMP checksum of a frame the test edited.
fn fix_l4_checksum(frame: &mut [u8]) {
    let headers = headers(frame);
    let at = headers.l4 + 2;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let segment = &frame[headers.l4..headers.l3_end];
    let sum = if headers.version == 4 {
        checksum(segment)
    } else {
        let (src, dst) = headers.addresses(frame);
        wire::checksum::pseudo_header(src, dst, headers.protocol, segment.len())
            .add_bytes(segment)
            .finish()
    };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Sets an IPv4 frame's TTL (header checksum redone) or an IPv6 frame's hop limit.
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    if frame[12..14] == [0x08, 0x00] {
        frame[22] = ttl;
        frame[24..26].copy_from_slice(&[0, 0]);
        let sum = checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
    } else {
        frame[21] = ttl;
    }
    frame
}

fn ipv4_checksum_ok(frame: &[u8]) -> bool {
    let headers = headers(frame);
    checksum(&frame[headers.l3..headers.l4]) == 0
}

fn icmpv4_checksum_ok(frame: &[u8]) -> bool {
    let headers = headers(frame);
    checksum(&frame[headers.l4..headers.l3_end]) == 0
}

// ---------------------------------------------------------------------------------------
// The bridge

const BRIDGE_IFACES: [u32; 3] = [101, 102, 103];

fn bridge_topology() -> (Topology, u32) {
    let mut topology = Topology::new();
    let bridge = topology.add(BRIDGE_PROGRAM_OBJECT, "bridge");
    let mut flood: aya::maps::DevMapHash<_> =
        aya::maps::DevMapHash::try_from(topology.instance_map_mut(bridge, bridge::maps::FLOOD))
            .unwrap();
    for ifindex in BRIDGE_IFACES {
        flood.insert(ifindex, LOOPBACK, None, 0).unwrap();
    }
    for (port, ifindex) in BRIDGE_IFACES.into_iter().enumerate() {
        topology.connect_interface(bridge, port as u32, ifindex);
    }
    (topology, bridge)
}

fn bridge_count(topology: &Topology, bridge: u32, slot: u32) -> u64 {
    topology.instance_counter(bridge, bridge::maps::COUNTERS, slot)
}

fn tx(topology: &Topology, instance: u32) -> Vec<u64> {
    (0..3)
        .map(|port| topology.port(instance, port).tx_packets)
        .collect()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_bridge_learns_forwards_floods_and_drops_hairpins() {
    require_root("the_bridge_learns_forwards_floods_and_drops_hairpins");
    let (mut topology, bridge) = bridge_topology();
    let run = |topology: &mut Topology, port: u32, frame: &[u8]| {
        topology
            .run(bridge, port, BRIDGE_IFACES[port as usize], frame)
            .verdict
    };

    // A to B, unknown: flooded to every interface port but the ingress.
    let a_to_b = udp(HOST_A, HOST_B, "10.1.0.10", "10.1.0.11");
    assert_eq!(run(&mut topology, 0, &a_to_b), XDP_REDIRECT);
    assert_eq!(bridge_count(&topology, bridge, bridge::counter::FLOODED), 1);
    assert_eq!(tx(&topology, bridge), [0, 1, 1]);
    assert_eq!(bridge_count(&topology, bridge, bridge::counter::LEARNED), 1);

    // B answers A: A was learned on port 0, so it goes there alone.
    let b_to_a = udp(HOST_B, HOST_A, "10.1.0.11", "10.1.0.10");
    assert_eq!(run(&mut topology, 1, &b_to_a), XDP_REDIRECT);
    assert_eq!(tx(&topology, bridge), [1, 1, 1]);
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::FORWARDED),
        1
    );

    // C to B: B was learned on port 1.
    let c_to_b = udp(HOST_C, HOST_B, "10.1.0.12", "10.1.0.11");
    assert_eq!(run(&mut topology, 2, &c_to_b), XDP_REDIRECT);
    assert_eq!(tx(&topology, bridge), [1, 2, 1]);

    // D, on port 0 beside A, to A: a hairpin, dropped.
    let d_to_a = udp(HOST_D, HOST_A, "10.1.0.13", "10.1.0.10");
    assert_eq!(run(&mut topology, 0, &d_to_a), XDP_DROP);
    assert_eq!(bridge_count(&topology, bridge, bridge::counter::HAIRPIN), 1);
    assert_eq!(tx(&topology, bridge), [1, 2, 1]);

    // A broadcast from C floods to ports 0 and 1.
    let broadcast = udp(HOST_C, [0xff; 6], "10.1.0.12", "10.1.0.255");
    assert_eq!(run(&mut topology, 2, &broadcast), XDP_REDIRECT);
    assert_eq!(tx(&topology, bridge), [2, 3, 1]);
    assert_eq!(bridge_count(&topology, bridge, bridge::counter::FLOODED), 2);

    // A moves to port 2: B's next frame to A follows it.
    let a_from_2 = udp(HOST_A, HOST_B, "10.1.0.10", "10.1.0.11");
    assert_eq!(run(&mut topology, 2, &a_from_2), XDP_REDIRECT);
    let before = tx(&topology, bridge);
    assert_eq!(run(&mut topology, 1, &b_to_a), XDP_REDIRECT);
    let after = tx(&topology, bridge);
    assert_eq!(after[2], before[2] + 1, "to A on its new port: {after:?}");

    // The table holds what was learned, with VLAN 0 for untagged frames.
    let fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map(bridge, bridge::maps::FDB)).unwrap();
    let port_of = |mac| fdb.get(&FdbKey { vlan: 0, mac }, 0).unwrap().port;
    assert_eq!(
        [
            port_of(HOST_A),
            port_of(HOST_B),
            port_of(HOST_C),
            port_of(HOST_D)
        ],
        [2, 1, 2, 0]
    );
}

/// `frame` with an 802.1Q tag of `vlan` after its MAC addresses.
fn tagged(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&bridge::ETH_P_8021Q.to_be_bytes());
    out.extend_from_slice(&vlan.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// Makes the bridge VLAN-aware: port 0 an access port of VLAN 10, port 1 a trunk of 10
/// and 20, port 2 an access port of VLAN 20 (what the loader writes for such `vlans`).
fn make_vlan_aware(topology: &mut Topology, bridge: u32) {
    let mut pvid: Array<_, u32> =
        Array::try_from(topology.instance_map_mut(bridge, bridge::maps::PVID)).unwrap();
    for (port, value) in [(0, 10), (1, bridge::NO_PVID), (2, 20)] {
        pvid.set(port, value, 0).unwrap();
    }
    let mut members: HashMap<_, VlanPort, u32> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::MEMBERS)).unwrap();
    for (port, vlan, tagging) in [
        (0, 10, bridge::tagging::UNTAGGED),
        (1, 10, bridge::tagging::TAGGED),
        (1, 20, bridge::tagging::TAGGED),
        (2, 20, bridge::tagging::UNTAGGED),
    ] {
        members.insert(VlanPort { port, vlan }, tagging, 0).unwrap();
    }
    let mut settings: Array<_, BridgeSettings> =
        Array::try_from(topology.instance_map_mut(bridge, bridge::maps::SETTINGS)).unwrap();
    settings
        .set(
            0,
            BridgeSettings {
                vlan_aware: 1,
                ..BridgeSettings::default()
            },
            0,
        )
        .unwrap();
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_vlan_aware_bridge_tags_untags_floods_in_the_vlan_and_refuses() {
    require_root("the_vlan_aware_bridge_tags_untags_floods_in_the_vlan_and_refuses");
    let (mut topology, bridge) = bridge_topology();
    make_vlan_aware(&mut topology, bridge);
    let a_to_b = udp(HOST_A, HOST_B, "10.1.0.10", "10.1.0.11");
    let b_to_a = udp(HOST_B, HOST_A, "10.1.0.11", "10.1.0.10");

    // B on the trunk, tagged 10, to A unknown: flooded as it is (tagged: the flood
    // entries' egress program pops it on access ports), counted out on port 0 only, the
    // other member of VLAN 10.
    let run = topology.run(bridge, 1, BRIDGE_IFACES[1], &tagged(&b_to_a, 10));
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_eq!(run.packet, tagged(&b_to_a, 10));
    assert_eq!(tx(&topology, bridge), [1, 0, 0]);

    // A, untagged on its access port, to B: B was learned on (10, trunk); the frame
    // leaves there with the tag pushed, every other byte (checksums included) as it was.
    let run = topology.run(bridge, 0, BRIDGE_IFACES[0], &a_to_b);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_eq!(run.packet, tagged(&a_to_b, 10));
    assert_eq!(tx(&topology, bridge), [1, 1, 0]);

    // B's answer, tagged on the trunk, leaves A's access port with the tag popped.
    let run = topology.run(bridge, 1, BRIDGE_IFACES[1], &tagged(&b_to_a, 10));
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_eq!(run.packet, b_to_a);
    assert_eq!(tx(&topology, bridge), [2, 1, 0]);

    // A broadcast from the access port of VLAN 20 is flooded tagged 20, counted out on
    // the trunk alone.
    let broadcast = udp(HOST_C, [0xff; 6], "10.2.0.12", "10.2.0.255");
    let run = topology.run(bridge, 2, BRIDGE_IFACES[2], &broadcast);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_eq!(run.packet, tagged(&broadcast, 20));
    assert_eq!(tx(&topology, bridge), [2, 2, 0]);

    // Learned by (VLAN, MAC): A on 10, C on 20, B on 10 only.
    let fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map(bridge, bridge::maps::FDB)).unwrap();
    let port_of = |vlan, mac| fdb.get(&FdbKey { vlan, mac }, 0).ok().map(|e| e.port);
    assert_eq!(port_of(10, HOST_A), Some(0));
    assert_eq!(port_of(10, HOST_B), Some(1));
    assert_eq!(port_of(20, HOST_C), Some(2));
    assert_eq!(port_of(0, HOST_A), None);
    assert_eq!(port_of(20, HOST_B), None);

    // Refused on the way in: untagged on the trunk, a VLAN the trunk does not carry, a
    // tag on an access port.
    for (port, frame) in [
        (1, b_to_a.clone()),
        (1, tagged(&b_to_a, 30)),
        (0, tagged(&a_to_b, 10)),
    ] {
        assert_eq!(
            topology
                .run(bridge, port, BRIDGE_IFACES[port as usize], &frame)
                .verdict,
            XDP_DROP
        );
    }
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::VLAN_REFUSED),
        3
    );
    assert_eq!(tx(&topology, bridge), [2, 2, 0], "nothing left");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_bridge_ages_dynamic_entries_and_keeps_static_ones() {
    require_root("the_bridge_ages_dynamic_entries_and_keeps_static_ones");
    let (mut topology, bridge) = bridge_topology();
    let mut fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::FDB)).unwrap();
    let static_entry = FdbEntry {
        port: 2,
        flags: fdb_flags::STATIC,
        last_seen_ns: 0,
    };
    fdb.insert(
        FdbKey {
            vlan: 0,
            mac: HOST_C,
        },
        static_entry,
        0,
    )
    .unwrap();
    let b_to_a = udp(HOST_B, HOST_A, "10.1.0.11", "10.1.0.10");
    let a_to_b = udp(HOST_A, HOST_B, "10.1.0.10", "10.1.0.11");
    topology.run(bridge, 0, BRIDGE_IFACES[0], &a_to_b);
    assert_eq!(
        topology.run(bridge, 1, BRIDGE_IFACES[1], &b_to_a).verdict,
        XDP_REDIRECT
    );
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::FORWARDED),
        1
    );

    // An aging time of 1 ns and A last seen at time 0: A's entry is stale, the frame to
    // A is flooded and the entry forgotten; the static entry for C still forwards. (The
    // bridge's clock is coarse, a tick long: a fresh entry would not be stale yet.)
    let mut settings: Array<_, BridgeSettings> =
        Array::try_from(topology.instance_map_mut(bridge, bridge::maps::SETTINGS)).unwrap();
    settings
        .set(
            0,
            BridgeSettings {
                aging_ns: 1,
                ..BridgeSettings::default()
            },
            0,
        )
        .unwrap();
    let mut fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::FDB)).unwrap();
    let a = FdbKey {
        vlan: 0,
        mac: HOST_A,
    };
    let mut entry = fdb.get(&a, 0).unwrap();
    entry.last_seen_ns = 0;
    fdb.insert(a, entry, 0).unwrap();
    let flooded = bridge_count(&topology, bridge, bridge::counter::FLOODED);
    assert_eq!(
        topology.run(bridge, 1, BRIDGE_IFACES[1], &b_to_a).verdict,
        XDP_REDIRECT
    );
    assert_eq!(bridge_count(&topology, bridge, bridge::counter::AGED), 1);
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::FLOODED),
        flooded + 1
    );
    let fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map(bridge, bridge::maps::FDB)).unwrap();
    assert!(
        fdb.get(
            &FdbKey {
                vlan: 0,
                mac: HOST_A
            },
            0
        )
        .is_err(),
        "A forgotten"
    );

    let to_c = udp(HOST_B, HOST_C, "10.1.0.11", "10.1.0.12");
    let before = tx(&topology, bridge);
    assert_eq!(
        topology.run(bridge, 1, BRIDGE_IFACES[1], &to_c).verdict,
        XDP_REDIRECT
    );
    assert_eq!(tx(&topology, bridge)[2], before[2] + 1);
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::FORWARDED),
        2
    );
    // A frame from C on another port does not move a static entry.
    let c_elsewhere = udp(HOST_C, HOST_B, "10.1.0.12", "10.1.0.11");
    topology.run(bridge, 0, BRIDGE_IFACES[0], &c_elsewhere);
    let fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map(bridge, bridge::maps::FDB)).unwrap();
    assert_eq!(
        fdb.get(
            &FdbKey {
                vlan: 0,
                mac: HOST_C
            },
            0
        )
        .unwrap(),
        static_entry
    );
}

// ---------------------------------------------------------------------------------------
// The router

fn neighbour_mac(topology: &Topology, router: u32, port: u32, address: &str) -> Option<[u8; 6]> {
    let neighbours: HashMap<_, NeighbourKey, Neighbour> =
        HashMap::try_from(topology.instance_map(router, router::maps::NEIGHBOURS)).unwrap();
    let (family, addr) = addr16(address);
    neighbours
        .get(&NeighbourKey { port, family, addr }, 0)
        .ok()
        .map(|entry| entry.mac)
}

fn route_stats(topology: &Topology, router: u32, id: u32) -> RouteStats {
    let stats: PerCpuArray<_, RouteStats> =
        PerCpuArray::try_from(topology.instance_map(router, router::maps::ROUTE_STATS)).unwrap();
    stats
        .get(&id, 0)
        .unwrap()
        .iter()
        .fold(RouteStats::default(), |sum, one| RouteStats {
            packets: sum.packets + one.packets,
            bytes: sum.bytes + one.bytes,
        })
}

fn router_count(topology: &Topology, router: u32, slot: u32) -> u64 {
    topology.instance_counter(router, router::maps::COUNTERS, slot)
}

const ROUTER_IFACES: [u32; 2] = [201, 202];

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_router_answers_arp_and_neighbour_solicitations_and_learns_the_senders() {
    require_root("the_router_answers_arp_and_neighbour_solicitations_and_learns_the_senders");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));

    let request = arp(1, HOST_A, [10, 1, 0, 10], [0; 6], [10, 1, 0, 1]);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &request);
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(
        result.packet,
        arp(2, ROUTER_A, [10, 1, 0, 1], HOST_A, [10, 1, 0, 10])
    );
    assert_eq!(topology.port(router, 0).tx_packets, 1);
    assert_eq!(
        neighbour_mac(&topology, router, 0, "10.1.0.10"),
        Some(HOST_A)
    );
    assert_eq!(
        router_count(&topology, router, router::counter::ARP_REPLIES),
        1
    );

    // A request for someone else is learned from, not answered.
    let other = arp(1, HOST_B, [10, 1, 0, 11], [0; 6], [10, 1, 0, 99]);
    assert_eq!(
        topology.run(router, 0, ROUTER_IFACES[0], &other).verdict,
        XDP_DROP
    );
    assert_eq!(
        neighbour_mac(&topology, router, 0, "10.1.0.11"),
        Some(HOST_B)
    );

    let solicit = solicitation(HOST_A, "fd01::10", "fd01::1");
    let result = topology.run(router, 0, ROUTER_IFACES[0], &solicit);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let reply = &result.packet;
    let headers = headers(reply);
    assert_eq!(reply[..6], HOST_A);
    assert_eq!(reply[6..12], ROUTER_A);
    assert_eq!(
        headers.addresses(reply),
        (&v6_octets("fd01::1")[..], &v6_octets("fd01::10")[..])
    );
    assert_eq!(reply[21], 255, "hop limit of neighbour discovery");
    assert_eq!(headers.icmp, Some((136, 0)));
    assert_eq!(reply[58], 0xe0, "router, solicited, override");
    assert_eq!(reply[62..78], v6_octets("fd01::1"));
    assert_eq!(reply[78..80], [2, 1], "target link-layer address option");
    assert_eq!(reply[80..86], ROUTER_A);
    // Zero padding after the 86 bytes of the advertisement (see the router's
    // ND_PADDING: the receiver's IPv6 trim is what makes a generic-XDP frame parse).
    assert_eq!(reply.len(), 94);
    assert_eq!(headers.l3_end, 86);
    assert_eq!(reply[86..], [0; 8]);
    assert!(l4_checksum_ok(reply, &headers), "ICMPv6 checksum");
    assert_eq!(
        neighbour_mac(&topology, router, 0, "fd01::10"),
        Some(HOST_A)
    );
    assert_eq!(
        router_count(&topology, router, router::counter::NEIGHBOUR_ADVERTS),
        1
    );

    // An advertisement teaches the router its sender.
    let advert = advertisement(HOST_B, ROUTER_A, "fd01::11", "fd01::1");
    assert_eq!(
        topology.run(router, 0, ROUTER_IFACES[0], &advert).verdict,
        XDP_DROP
    );
    assert_eq!(
        neighbour_mac(&topology, router, 0, "fd01::11"),
        Some(HOST_B)
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_router_resolves_then_forwards_with_ttl_checksum_macs_and_route_counters() {
    require_root("the_router_resolves_then_forwards_with_ttl_checksum_macs_and_route_counters");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));

    // IPv4, next hop 10.2.0.20 unknown: the packet becomes an ARP request on port 1.
    let packet = udp(HOST_A, ROUTER_A, "10.1.0.10", "10.2.0.20");
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet);
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(
        result.packet,
        arp(1, ROUTER_B, [10, 2, 0, 1], [0; 6], [10, 2, 0, 20])
    );
    assert_eq!(topology.port(router, 1).tx_packets, 1);
    assert_eq!(
        router_count(&topology, router, router::counter::UNRESOLVED),
        1
    );

    // The reply teaches the router the MAC; the next packet is forwarded.
    let reply = arp(2, HOST_B, [10, 2, 0, 20], ROUTER_B, [10, 2, 0, 1]);
    assert_eq!(
        topology.run(router, 1, ROUTER_IFACES[1], &reply).verdict,
        XDP_DROP
    );
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let out = &result.packet;
    assert_eq!(out.len(), packet.len());
    assert_eq!(out[..6], HOST_B);
    assert_eq!(out[6..12], ROUTER_B);
    assert_eq!(out[22], 63, "TTL decremented");
    assert!(ipv4_checksum_ok(out), "IPv4 header checksum updated");
    assert_eq!(
        out[23..],
        packet[23..24]
            .iter()
            .chain(&out[24..26])
            .chain(&packet[26..])
            .copied()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(topology.port(router, 1).tx_packets, 2);
    assert_eq!(
        router_count(&topology, router, router::counter::FORWARDED),
        1
    );
    let stats = route_stats(&topology, router, 2);
    assert_eq!(stats.packets, 2, "both packets counted on 10.2.0.0/24");
    assert_eq!(stats.bytes, 2 * packet.len() as u64);

    // Via a gateway: the request is for the next hop, not the destination.
    let far = udp(HOST_A, ROUTER_A, "10.1.0.10", "10.3.7.7");
    let result = topology.run(router, 0, ROUTER_IFACES[0], &far);
    assert_eq!(
        result.packet,
        arp(1, ROUTER_B, [10, 2, 0, 1], [0; 6], [10, 2, 0, 254])
    );
    assert_eq!(route_stats(&topology, router, 3).packets, 1);

    // IPv6: a solicitation for fd02::20 to its solicited-node group first.
    let packet6 = udp(HOST_A, ROUTER_A, "fd01::10", "fd02::20");
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet6);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let ns = &result.packet;
    let ns_headers = headers(ns);
    assert_eq!(ns[..6], [0x33, 0x33, 0xff, 0, 0, 0x20]);
    assert_eq!(ns[6..12], ROUTER_B);
    assert_eq!(
        ns_headers.addresses(ns),
        (&v6_octets("fd02::1")[..], &v6_octets("ff02::1:ff00:20")[..])
    );
    assert_eq!(ns_headers.icmp, Some((135, 0)));
    assert_eq!(ns[62..78], v6_octets("fd02::20"));
    assert_eq!(
        ns[78..86],
        [
            1,
            1,
            ROUTER_B[0],
            ROUTER_B[1],
            ROUTER_B[2],
            ROUTER_B[3],
            ROUTER_B[4],
            ROUTER_B[5]
        ]
    );
    assert!(l4_checksum_ok(ns, &ns_headers), "ICMPv6 checksum");

    // From a packet longer than the solicitation (a ping of 56 bytes): cut to the
    // solicitation and 8 bytes of zero padding, none of the ping's bytes left.
    let ping6 = icmp(HOST_A, ROUTER_A, "fd01::10", "fd02::21", 128, &[7; 56]);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &ping6);
    let ns = &result.packet;
    assert_eq!(ns.len(), 94);
    let ns_headers = headers(ns);
    assert_eq!(ns_headers.l3_end, 86);
    assert_eq!(ns[86..], [0; 8]);
    assert_eq!(ns[62..78], v6_octets("fd02::21"));
    assert!(l4_checksum_ok(ns, &ns_headers), "ICMPv6 checksum");

    let advert = advertisement(HOST_B, ROUTER_B, "fd02::20", "fd02::1");
    topology.run(router, 1, ROUTER_IFACES[1], &advert);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet6);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let out = &result.packet;
    assert_eq!(out[..6], HOST_B);
    assert_eq!(out[6..12], ROUTER_B);
    assert_eq!(out[21], 63, "hop limit decremented");
    assert_eq!(out[22..], packet6[22..]);
    // Two to fd02::20 and the ping to fd02::21, all on fd02::/64.
    assert_eq!(route_stats(&topology, router, 5).packets, 3);

    // No route: dropped and counted.
    let nowhere = udp(HOST_A, ROUTER_A, "10.1.0.10", "192.0.2.1");
    assert_eq!(
        topology.run(router, 0, ROUTER_IFACES[0], &nowhere).verdict,
        XDP_DROP
    );
    assert_eq!(
        router_count(&topology, router, router::counter::NO_ROUTE),
        1
    );
    // A frame for another MAC is not the router's.
    let stray = udp(HOST_A, HOST_C, "10.1.0.10", "10.2.0.20");
    assert_eq!(
        topology.run(router, 0, ROUTER_IFACES[0], &stray).verdict,
        XDP_DROP
    );
    assert_eq!(
        router_count(&topology, router, router::counter::NOT_FOR_US),
        1
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_router_answers_echo_and_sends_time_exceeded() {
    require_root("the_router_answers_echo_and_sends_time_exceeded");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));

    let ping = icmp(
        HOST_A,
        ROUTER_A,
        "10.1.0.10",
        "10.1.0.1",
        8,
        &[1, 2, 3, 4, 5, 6, 7, 8],
    );
    let result = topology.run(router, 0, ROUTER_IFACES[0], &ping);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let pong = &result.packet;
    let pong_headers = headers(pong);
    assert_eq!(pong[..6], HOST_A);
    assert_eq!(pong[6..12], ROUTER_A);
    assert_eq!(
        pong_headers.addresses(pong),
        (&[10, 1, 0, 1][..], &[10, 1, 0, 10][..])
    );
    assert_eq!(pong_headers.icmp, Some((0, 0)));
    assert!(ipv4_checksum_ok(pong) && icmpv4_checksum_ok(pong));
    assert_eq!(
        pong[34 + 4..],
        ping[34 + 4..],
        "identifier, sequence and data kept"
    );

    let ping6 = icmp(HOST_A, ROUTER_A, "fd01::10", "fd02::1", 128, &[9; 12]);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &ping6);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let pong6 = &result.packet;
    let pong6_headers = headers(pong6);
    assert_eq!(
        pong6_headers.addresses(pong6),
        (&v6_octets("fd02::1")[..], &v6_octets("fd01::10")[..])
    );
    assert_eq!(pong6_headers.icmp, Some((129, 0)));
    assert!(l4_checksum_ok(pong6, &pong6_headers));
    assert_eq!(
        router_count(&topology, router, router::counter::ECHO_REPLIES),
        2
    );

    // Other traffic to the router is dropped and counted.
    let to_router = udp(HOST_A, ROUTER_A, "10.1.0.10", "10.1.0.1");
    assert_eq!(
        topology
            .run(router, 0, ROUTER_IFACES[0], &to_router)
            .verdict,
        XDP_DROP
    );
    assert_eq!(
        router_count(&topology, router, router::counter::LOCAL_DROPPED),
        1
    );

    // TTL 1: ICMP time exceeded back to the sender, quoting the IP header and 8 bytes.
    let dying = with_ttl(udp(HOST_A, ROUTER_A, "10.1.0.10", "10.2.0.20"), 1);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &dying);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let error = &result.packet;
    let error_headers = headers(error);
    assert_eq!(error.len(), 70);
    assert_eq!(error[..6], HOST_A);
    assert_eq!(error[6..12], ROUTER_A);
    assert_eq!(
        error_headers.addresses(error),
        (&[10, 1, 0, 1][..], &[10, 1, 0, 10][..])
    );
    assert_eq!(error_headers.icmp, Some((11, 0)));
    assert_eq!(error[42..70], dying[14..42], "the quote");
    assert!(ipv4_checksum_ok(error) && icmpv4_checksum_ok(error));
    assert_eq!(topology.port(router, 0).tx_packets, 3);

    let dying6 = with_ttl(udp(HOST_A, ROUTER_A, "fd01::10", "fd02::20"), 1);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &dying6);
    assert_eq!(result.verdict, XDP_REDIRECT);
    let error6 = &result.packet;
    let error6_headers = headers(error6);
    assert_eq!(error6.len(), 110);
    assert_eq!(
        error6_headers.addresses(error6),
        (&v6_octets("fd01::1")[..], &v6_octets("fd01::10")[..])
    );
    assert_eq!(error6_headers.icmp, Some((3, 0)));
    assert_eq!(error6[62..110], dying6[14..62], "the quote");
    assert!(l4_checksum_ok(error6, &error6_headers));
    assert_eq!(
        router_count(&topology, router, router::counter::TIME_EXCEEDED),
        2
    );
}

// ---------------------------------------------------------------------------------------
// Instances together

/// Hosts on bridge port 0 ask for the router behind the bridge's instance port 3; the
/// request goes to the router alone, the router's answer comes back through the bridge
/// to the host, all in one run from the interface.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_arp_request_crosses_the_bridge_to_the_router_and_its_answer_comes_back() {
    require_root("an_arp_request_crosses_the_bridge_to_the_router_and_its_answer_comes_back");
    let mut topology = Topology::new();
    let bridge = topology.add(BRIDGE_PROGRAM_OBJECT, "bridge");
    let router = add_router(&mut topology, None);
    topology.connect_interface(bridge, 0, LOOPBACK);
    topology.connect_interface(bridge, 1, 102);
    topology.connect((bridge, 3), (router, 0));
    topology.feed(LOOPBACK, bridge, 0);
    let mut targets: HashMap<_, TargetKey, u32> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::TARGETS)).unwrap();
    let (family, addr) = addr16("10.1.0.1");
    targets.insert(TargetKey { family, addr }, 3, 0).unwrap();

    let request = arp(1, HOST_A, [10, 1, 0, 10], [0; 6], [10, 1, 0, 1]);
    let result = topology.enter(&request);
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(
        result.packet,
        arp(2, ROUTER_A, [10, 1, 0, 1], HOST_A, [10, 1, 0, 10])
    );
    assert_eq!(
        bridge_count(&topology, bridge, bridge::counter::TO_TARGET),
        1
    );
    // In on the bridge's port 0, across to the router and back, out on port 0 again.
    assert_eq!(topology.port(bridge, 0).rx_packets, 1);
    assert_eq!(topology.port(bridge, 3).tx_packets, 1);
    assert_eq!(topology.port(router, 0).rx_packets, 1);
    assert_eq!(topology.port(router, 0).tx_packets, 1);
    assert_eq!(topology.port(bridge, 3).rx_packets, 1);
    assert_eq!(topology.port(bridge, 0).tx_packets, 1);
    assert_eq!(topology.port(bridge, 1).tx_packets, 0);
    // The bridge learned the router's MAC on its instance port.
    let fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map(bridge, bridge::maps::FDB)).unwrap();
    assert_eq!(
        fdb.get(
            &FdbKey {
                vlan: 0,
                mac: ROUTER_A
            },
            0
        )
        .unwrap()
        .port,
        3
    );
}

/// Two routers whose default routes point at each other: a packet bounces between them
/// until the hop limit of the topology stops it, dropped and counted as a loop.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_loop_of_instances_is_stopped_at_the_hop_limit() {
    require_root("a_loop_of_instances_is_stopped_at_the_hop_limit");
    let mut topology = Topology::new();
    let first = add_router(&mut topology, None);
    let second = add_router(&mut topology, None);
    topology.connect_interface(first, 0, LOOPBACK);
    topology.feed(LOOPBACK, first, 0);
    topology.connect((first, 1), (second, 0));
    topology.connect((second, 1), (first, 0));
    for (router, port, gateway, gateway_port) in
        [(first, 1, "10.2.0.2", 1), (second, 1, "10.1.0.2", 1)]
    {
        let mut v4: LpmTrie<_, [u8; 4], Route> =
            LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V4)).unwrap();
        v4.insert(&Key::new(0, [0; 4]), route(port, 9, Some(gateway)), 0)
            .unwrap();
        let mut neighbours: HashMap<_, NeighbourKey, Neighbour> =
            HashMap::try_from(topology.instance_map_mut(router, router::maps::NEIGHBOURS)).unwrap();
        let (family, addr) = addr16(gateway);
        let entry = Neighbour {
            mac: if router == first { ROUTER_A } else { ROUTER_B },
            _pad: [0; 2],
            updated_ns: 0,
        };
        neighbours
            .insert(
                NeighbourKey {
                    port: gateway_port,
                    family,
                    addr,
                },
                entry,
                0,
            )
            .unwrap();
    }
    // The second router's port 0 has the MAC the first sends to (ROUTER_A), and the
    // first's port 0 the one the second sends to: set them so each accepts the other.
    let mut ports: Array<_, RouterPort> =
        Array::try_from(topology.instance_map_mut(second, router::maps::PORTS)).unwrap();
    let mut config = ports.get(&0, 0).unwrap();
    config.mac = ROUTER_A;
    ports.set(0, config, 0).unwrap();
    let mut ports: Array<_, RouterPort> =
        Array::try_from(topology.instance_map_mut(first, router::maps::PORTS)).unwrap();
    let mut config = ports.get(&0, 0).unwrap();
    config.mac = ROUTER_B;
    ports.set(0, config, 0).unwrap();

    let packet = udp(HOST_A, ROUTER_B, "10.1.0.10", "198.51.100.1");
    let result = topology.enter(&packet);
    assert_eq!(result.verdict, XDP_DROP);
    assert_eq!(
        topology.counter(counter::LOOP),
        1,
        "{:?}",
        support::topology::counters(&topology)
    );
    // MAX_HOPS instances ran: the first router (MAX_HOPS + 1) / 2 times.
    let crossings = router_count(&topology, first, router::counter::FORWARDED)
        + router_count(&topology, second, router::counter::FORWARDED);
    assert_eq!(crossings, u64::from(MAX_HOPS));
    assert_eq!(topology.counter(counter::NO_PROGRAM), 0);
}

/// A full table's worth of routes: a lookup still finds the longest prefix.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_million_routes_load_and_the_longest_prefix_still_wins() {
    require_root("a_million_routes_load_and_the_longest_prefix_still_wins");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));
    let mut neighbours: HashMap<_, NeighbourKey, Neighbour> =
        HashMap::try_from(topology.instance_map_mut(router, router::maps::NEIGHBOURS)).unwrap();
    let (family, addr) = addr16("10.2.0.254");
    let gateway = Neighbour {
        mac: HOST_B,
        _pad: [0; 2],
        updated_ns: 0,
    };
    neighbours
        .insert(
            NeighbourKey {
                port: 1,
                family,
                addr,
            },
            gateway,
            0,
        )
        .unwrap();
    let loaded = support::topology::load_routes(&mut topology, router, 1_000_000, 1, "10.2.0.254");
    assert_eq!(loaded, 1_000_000);
    // 20.0.0.0/24 + k is route id 100 + k; one inside the table, and a /25 under it wins.
    let k = 777_777u32;
    let inside = support::topology::route_prefix(k);
    let packet = udp(
        HOST_A,
        ROUTER_A,
        "10.1.0.10",
        &format!("{}.{}.{}.9", inside[0], inside[1], inside[2]),
    );
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet);
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(result.packet[..6], HOST_B);
    assert_eq!(route_stats(&topology, router, 100 + k).packets, 1);
    let mut v4: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V4)).unwrap();
    v4.insert(
        &Key::new(25, [inside[0], inside[1], inside[2], 0]),
        route(1, 5, Some("10.2.0.254")),
        0,
    )
    .unwrap();
    // As user space does after a change: the CPU's remembered look-up (the /24) is stale.
    support::topology::routes_changed(&mut topology, router);
    topology.run(router, 0, ROUTER_IFACES[0], &packet);
    assert_eq!(
        route_stats(&topology, router, 5).packets,
        1,
        "the /25 is longer"
    );
    assert_eq!(route_stats(&topology, router, 100 + k).packets, 1);
}

/// The per-CPU route cache holds many destinations, each in its own slot: destinations
/// taking turns (two that share a slot among them) each get their route, each is
/// remembered in its slot, and a route added later wins once the generation moves.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn remembered_destinations_keep_their_own_routes_until_the_routes_change() {
    require_root("remembered_destinations_keep_their_own_routes_until_the_routes_change");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));
    let mut neighbours: HashMap<_, NeighbourKey, Neighbour> =
        HashMap::try_from(topology.instance_map_mut(router, router::maps::NEIGHBOURS)).unwrap();
    let (family, addr) = addr16("10.2.0.254");
    let gateway = Neighbour {
        mac: HOST_B,
        _pad: [0; 2],
        updated_ns: 0,
    };
    let key = NeighbourKey {
        port: 1,
        family,
        addr,
    };
    neighbours.insert(key, gateway, 0).unwrap();
    // Inside 10.3.0.0/16 (route 3, via 10.2.0.254): `near` in 10.3.0.0/24, `far` outside
    // it in another slot, `rival` outside it in `near`'s slot.
    let near = [10, 3, 0, 9];
    let slot = router::route_cache_slot(near);
    let outside = || (256u32..65_536).map(|low| [10, 3, (low >> 8) as u8, low as u8]);
    let far = outside()
        .find(|address| router::route_cache_slot(*address) != slot)
        .unwrap();
    let rival = outside()
        .find(|address| router::route_cache_slot(*address) == slot)
        .unwrap();
    let dotted = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    let packet = |to: [u8; 4]| udp(HOST_A, ROUTER_A, "10.1.0.10", &dotted(to));
    for to in [near, far, near, far, rival, near] {
        let result = topology.run(router, 0, ROUTER_IFACES[0], &packet(to));
        assert_eq!(result.verdict, XDP_REDIRECT, "to {}", dotted(to));
        assert_eq!(result.packet[..6], HOST_B, "to {}", dotted(to));
    }
    assert_eq!(route_stats(&topology, router, 3).packets, 6);
    let holds = |topology: &Topology, address: [u8; 4], id: u32| {
        let cache: PerCpuArray<_, router::RouteCacheV4> =
            PerCpuArray::try_from(topology.instance_map(router, router::maps::ROUTE_CACHE_V4))
                .unwrap();
        cache
            .get(&router::route_cache_slot(address), 0)
            .unwrap()
            .iter()
            .any(|entry| {
                entry.valid == 1 && entry.destination == address && entry.remembered.route.id == id
            })
    };
    assert!(
        holds(&topology, near, 3),
        "the last packet's destination is remembered"
    );
    assert!(
        holds(&topology, far, 3),
        "a destination in another slot stays remembered"
    );

    let mut v4: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V4)).unwrap();
    v4.insert(
        &Key::new(24, [10, 3, 0, 0]),
        route(1, 7, Some("10.2.0.254")),
        0,
    )
    .unwrap();
    support::topology::routes_changed(&mut topology, router);
    for to in [near, far] {
        topology.run(router, 0, ROUTER_IFACES[0], &packet(to));
    }
    assert_eq!(
        route_stats(&topology, router, 7).packets,
        1,
        "the new /24 takes the remembered destination inside it"
    );
    assert_eq!(route_stats(&topology, router, 3).packets, 7);
    assert!(
        holds(&topology, far, 3),
        "remembered again, with the gateway's MAC"
    );

    // The gateway moves to another MAC, learned from its ARP reply: the remembered
    // destination behind it follows at once.
    let moved = [0x02, 0, 0, 0, 0, 0x0c];
    let reply = arp(2, moved, [10, 2, 0, 254], ROUTER_B, [10, 2, 0, 1]);
    topology.run(router, 1, ROUTER_IFACES[1], &reply);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet(far));
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(result.packet[..6], moved, "the gateway's new MAC");
}

/// The IPv6 side of the test above: the same per-CPU slots, keyed by a hash of the 16-byte
/// destination. Destinations taking turns (two sharing a slot) each get their route and
/// are remembered in their own slots; a /64 added later takes the one inside it once the
/// generation moves; a gateway's new MAC, learned from its advertisement, is followed at
/// once.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn remembered_ipv6_destinations_keep_their_own_routes_until_the_routes_change() {
    require_root("remembered_ipv6_destinations_keep_their_own_routes_until_the_routes_change");
    let mut topology = Topology::new();
    let router = add_router(&mut topology, Some(ROUTER_IFACES));
    let mut neighbours: HashMap<_, NeighbourKey, Neighbour> =
        HashMap::try_from(topology.instance_map_mut(router, router::maps::NEIGHBOURS)).unwrap();
    let (family, addr) = addr16("fd02::fe");
    let gateway = Neighbour {
        mac: HOST_B,
        _pad: [0; 2],
        updated_ns: 0,
    };
    let key = NeighbourKey {
        port: 1,
        family,
        addr,
    };
    neighbours.insert(key, gateway, 0).unwrap();
    // Inside fd03::/48 (route 6, via fd02::fe): `near` in fd03:0:0:1::/64, `far` outside
    // it in another slot, `rival` outside it in `near`'s slot.
    let near = v6_octets("fd03:0:0:1::9");
    let slot = router::route_cache_slot_v6(near);
    let outside = || {
        (2u32..65_536).map(|subnet| {
            let mut address = near;
            address[6..8].copy_from_slice(&(subnet as u16).to_be_bytes());
            address
        })
    };
    let far = outside()
        .find(|address| router::route_cache_slot_v6(*address) != slot)
        .unwrap();
    let rival = outside()
        .find(|address| router::route_cache_slot_v6(*address) == slot)
        .unwrap();
    let text = |a: [u8; 16]| std::net::Ipv6Addr::from(a).to_string();
    let packet = |to: [u8; 16]| udp(HOST_A, ROUTER_A, "fd01::10", &text(to));
    for to in [near, far, near, far, rival, near] {
        let result = topology.run(router, 0, ROUTER_IFACES[0], &packet(to));
        assert_eq!(result.verdict, XDP_REDIRECT, "to {}", text(to));
        assert_eq!(result.packet[..6], HOST_B, "to {}", text(to));
        assert_eq!(result.packet[14 + 7], 63, "to {}: hop limit - 1", text(to));
    }
    assert_eq!(route_stats(&topology, router, 6).packets, 6);
    let holds = |topology: &Topology, address: [u8; 16], id: u32| {
        let cache: PerCpuArray<_, router::RouteCacheV6> =
            PerCpuArray::try_from(topology.instance_map(router, router::maps::ROUTE_CACHE_V6))
                .unwrap();
        cache
            .get(&router::route_cache_slot_v6(address), 0)
            .unwrap()
            .iter()
            .any(|entry| {
                entry.valid == 1 && entry.destination == address && entry.remembered.route.id == id
            })
    };
    assert!(
        holds(&topology, near, 6),
        "the last packet's destination is remembered"
    );
    assert!(
        holds(&topology, far, 6),
        "a destination in another slot stays remembered"
    );

    let mut v6: LpmTrie<_, [u8; 16], Route> =
        LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V6)).unwrap();
    v6.insert(
        &Key::new(64, v6_octets("fd03:0:0:1::")),
        route(1, 7, Some("fd02::fe")),
        0,
    )
    .unwrap();
    support::topology::routes_changed(&mut topology, router);
    for to in [near, far] {
        topology.run(router, 0, ROUTER_IFACES[0], &packet(to));
    }
    assert_eq!(
        route_stats(&topology, router, 7).packets,
        1,
        "the new /64 takes the remembered destination inside it"
    );
    assert_eq!(route_stats(&topology, router, 6).packets, 7);
    assert!(
        holds(&topology, far, 6),
        "remembered again, with the gateway's MAC"
    );

    // The gateway moves to another MAC, learned from its advertisement: the remembered
    // destination behind it follows at once.
    let moved = [0x02, 0, 0, 0, 0, 0x0c];
    let advert = advertisement(moved, ROUTER_B, "fd02::fe", "fd02::1");
    topology.run(router, 1, ROUTER_IFACES[1], &advert);
    let result = topology.run(router, 0, ROUTER_IFACES[0], &packet(far));
    assert_eq!(result.verdict, XDP_REDIRECT);
    assert_eq!(result.packet[..6], moved, "the gateway's new MAC");
}
