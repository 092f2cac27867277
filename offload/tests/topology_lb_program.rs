//! The `lb` instance program through `BPF_PROG_TEST_RUN` (`support/topology.rs`): a VIP's
//! packets translated to the backend and the replies back, with complete checksums kept
//! valid and partial ones (what a sender with TX checksum offload leaves) kept partial
//! for the new addresses; everything that is no VIP's passes unchanged; fragments, VIPs
//! without backends and malformed packets are counted and dropped. Needs root.

mod support;

use std::net::IpAddr;

use aya::maps::{Array, HashMap};
use offload::modules::builtin::LB_TOPOLOGY_OBJECT;
use offload_common::lb::{self, Backend, Vip, VipKey, counter, maps};
use support::{
    require_root,
    topology::{Topology, addr16},
};
use wire::{
    FrameBuilder,
    build::ChecksumFill,
    checksum::{Completion, checksum, complete_partial, l4_checksum_ok, pseudo_header},
};

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;
const CLIENTS: u32 = 201;
const SERVERS: u32 = 202;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ACK: u8 = 0x10;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A VIP of a test: address, port, protocol, and its one backend (address, port) or none.
type TestVip<'a> = (&'a str, u16, u8, Option<(&'a str, u16)>);

/// An lb instance between two interfaces, with `vips` in bank 0: every slot of a VIP's
/// table holds its backend 0.
fn lb_topology(vips: &[TestVip<'_>]) -> (Topology, u32) {
    let mut topology = Topology::new();
    let instance = topology.add(LB_TOPOLOGY_OBJECT, "lb");
    topology.connect_interface(instance, 0, CLIENTS);
    topology.connect_interface(instance, 1, SERVERS);
    let mut other: Array<_, u32> =
        Array::try_from(topology.instance_map_mut(instance, maps::OTHER_PORT)).unwrap();
    other.set(0, 1, 0).unwrap();
    other.set(1, 0, 0).unwrap();
    for (index, (address, port, protocol, backend)) in vips.iter().enumerate() {
        let index = index as u32;
        if let Some((backend, backend_port)) = backend {
            let mut backends: Array<_, Backend> =
                Array::try_from(topology.instance_map_mut(instance, maps::BACKENDS)).unwrap();
            let backend_ip = ip(backend);
            let entry = Backend {
                addr: addr16(backend).1,
                port: *backend_port,
                family: if backend_ip.is_ipv4() { 4 } else { 6 },
                _pad: 0,
            };
            backends.set(lb::backend_index(0, index), entry, 0).unwrap();
        }
        let mut vip_map: HashMap<_, VipKey, Vip> =
            HashMap::try_from(topology.instance_map_mut(instance, maps::VIPS)).unwrap();
        let key = VipKey {
            addr: addr16(address).1,
            port: *port,
            protocol: *protocol,
            bank: 0,
        };
        let vip = Vip {
            index,
            backends: u32::from(backend.is_some()),
        };
        vip_map.insert(key, vip, 0).unwrap();
    }
    (topology, instance)
}

fn frame(protocol: u8, src: (&str, u16), dst: (&str, u16), fill: ChecksumFill) -> FrameBuilder {
    let builder = if protocol == TCP {
        FrameBuilder::tcp(ip(src.0), ip(dst.0), ACK)
    } else {
        FrameBuilder::udp(ip(src.0), ip(dst.0))
    };
    builder
        .ports(src.1, dst.1)
        .payload(b"hello, backend: an odd-length payload".to_vec())
        .checksum(fill)
}

/// The frame's (source, destination) addresses and ports.
fn endpoints(frame: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    let headers = wire::parse(frame).unwrap().expect("an IP frame");
    let (src, dst) = headers.addresses(frame);
    let address = |bytes: &[u8]| -> IpAddr {
        if bytes.len() == 4 {
            IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap())
        }
    };
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    (
        (address(src), port(headers.l4)),
        (address(dst), port(headers.l4 + 2)),
    )
}

/// Whether the IPv4 header checksum holds (true for IPv6, which has none).
fn ip_header_ok(frame: &[u8]) -> bool {
    let headers = wire::parse(frame).unwrap().expect("an IP frame");
    headers.version != 4 || checksum(&frame[headers.l3..headers.l4]) == 0
}

/// The frame's L4 checksum field.
fn l4_field(frame: &[u8]) -> u16 {
    let headers = wire::parse(frame).unwrap().expect("an IP frame");
    let at = headers.l4 + if headers.protocol == TCP { 16 } else { 6 };
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn lb_count(topology: &Topology, instance: u32, slot: u32) -> u64 {
    topology.instance_counter(instance, maps::COUNTERS, slot)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_vips_packets_go_to_the_backend_and_replies_come_back_with_valid_checksums() {
    require_root("a_vips_packets_go_to_the_backend_and_replies_come_back_with_valid_checksums");
    let (mut topology, lb) = lb_topology(&[
        ("10.9.0.10", 80, TCP, Some(("10.2.0.11", 8000))),
        ("fd09::10", 53, UDP, Some(("fd02::11", 5353))),
    ]);
    for (protocol, client, vip, backend) in [
        (
            TCP,
            ("10.1.0.11", 40000),
            ("10.9.0.10", 80),
            ("10.2.0.11", 8000),
        ),
        (
            UDP,
            ("fd01::11", 40001),
            ("fd09::10", 53),
            ("fd02::11", 5353),
        ),
    ] {
        // A client's packet with a complete checksum: to the backend, checksums valid.
        let request = frame(protocol, client, vip, ChecksumFill::Complete).build();
        let run = topology.run(lb, 0, CLIENTS, &request);
        assert_eq!(run.verdict, XDP_REDIRECT, "{vip:?}");
        let ((src, sport), (dst, dport)) = endpoints(&run.packet);
        assert_eq!((src, sport), (ip(client.0), client.1));
        assert_eq!((dst, dport), (ip(backend.0), backend.1));
        let headers = wire::parse(&run.packet).unwrap().unwrap();
        assert!(ip_header_ok(&run.packet), "IPv4 header checksum");
        assert!(l4_checksum_ok(&run.packet, &headers), "{vip:?} L4 checksum");
        assert!(topology.port(lb, 1).tx_packets > 0, "out the other port");

        // The backend's reply: from the VIP again.
        let reply = frame(protocol, backend, client, ChecksumFill::Complete).build();
        let run = topology.run(lb, 1, SERVERS, &reply);
        assert_eq!(run.verdict, XDP_REDIRECT);
        let ((src, sport), (dst, dport)) = endpoints(&run.packet);
        assert_eq!((src, sport), (ip(vip.0), vip.1));
        assert_eq!((dst, dport), (ip(client.0), client.1));
        let headers = wire::parse(&run.packet).unwrap().unwrap();
        assert!(ip_header_ok(&run.packet));
        assert!(
            l4_checksum_ok(&run.packet, &headers),
            "{vip:?} reply checksum"
        );

        // The same packets with partial checksums: still partial, for the new addresses,
        // so the device that completes them gets them right.
        for (packet, in_port, ifindex) in [
            (
                frame(protocol, client, vip, ChecksumFill::Partial),
                0,
                CLIENTS,
            ),
            (
                frame(protocol, backend, client, ChecksumFill::Partial),
                1,
                SERVERS,
            ),
        ] {
            let run = topology.run(lb, in_port, ifindex, &packet.build());
            assert_eq!(run.verdict, XDP_REDIRECT);
            let headers = wire::parse(&run.packet).unwrap().unwrap();
            let (src, dst) = headers.addresses(&run.packet);
            let l4_len = headers.l3_end - headers.l4;
            assert_eq!(
                l4_field(&run.packet),
                pseudo_header(src, dst, protocol, l4_len).fold(),
                "{vip:?}: the new pseudo-header's sum"
            );
            let mut completed = run.packet.clone();
            assert_eq!(
                complete_partial(&mut completed, &headers),
                Completion::Completed
            );
            assert!(
                l4_checksum_ok(&completed, &headers),
                "completed by the device"
            );
            assert!(ip_header_ok(&run.packet));
        }
    }
    assert_eq!(lb_count(&topology, lb, counter::NEW_FLOWS), 2);
    assert_eq!(lb_count(&topology, lb, counter::TO_BACKEND), 4);
    assert_eq!(lb_count(&topology, lb, counter::REPLIES), 4);
    assert_eq!(lb_count(&topology, lb, counter::PARTIAL_CHECKSUMS), 4);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_connection_keeps_its_backend_and_a_new_syn_takes_the_running_one() {
    require_root("a_connection_keeps_its_backend_and_a_new_syn_takes_the_running_one");
    let (mut topology, lb) = lb_topology(&[("10.9.0.10", 80, TCP, Some(("10.2.0.11", 8000)))]);
    let client = ("10.1.0.11", 40000);
    let vip = ("10.9.0.10", 80);
    let packet = |flags: u8| {
        FrameBuilder::tcp(ip(client.0), ip(vip.0), flags)
            .ports(client.1, vip.1)
            .build()
    };
    const SYN: u8 = 0x02;
    let to = |topology: &mut Topology, frame: &[u8]| {
        let run = topology.run(lb, 0, CLIENTS, frame);
        assert_eq!(run.verdict, XDP_REDIRECT);
        endpoints(&run.packet).1
    };
    assert_eq!(to(&mut topology, &packet(SYN)), (ip("10.2.0.11"), 8000));
    // The VIP's backend changes (what an apply writes): the connection keeps its own.
    let mut backends: Array<_, Backend> =
        Array::try_from(topology.instance_map_mut(lb, maps::BACKENDS)).unwrap();
    let moved = Backend {
        addr: addr16("10.2.0.12").1,
        port: 8000,
        family: 4,
        _pad: 0,
    };
    backends.set(lb::backend_index(0, 0), moved, 0).unwrap();
    assert_eq!(to(&mut topology, &packet(ACK)), (ip("10.2.0.11"), 8000));
    // A new connection on the same tuple (a SYN) takes the running table's backend, and its
    // later packets follow it.
    assert_eq!(to(&mut topology, &packet(SYN)), (ip("10.2.0.12"), 8000));
    assert_eq!(to(&mut topology, &packet(ACK)), (ip("10.2.0.12"), 8000));
    assert_eq!(lb_count(&topology, lb, counter::NEW_FLOWS), 2);
    // Its replies come from the VIP.
    let reply = FrameBuilder::tcp(ip("10.2.0.12"), ip(client.0), ACK)
        .ports(8000, client.1)
        .build();
    let run = topology.run(lb, 1, SERVERS, &reply);
    assert_eq!(endpoints(&run.packet).0, (ip(vip.0), vip.1));
}

/// An ICMP (or ICMPv6) error of `kind` from `src` to `dst` quoting the first 28 (48) bytes of
/// the IP packet of `quoted`, its checksum complete.
fn icmp_error(src: &str, dst: &str, kind: u8, quoted: &[u8]) -> Vec<u8> {
    let headers = wire::parse(quoted).unwrap().expect("an IP frame");
    let quote = &quoted[headers.l3..(headers.l4 + 8).min(quoted.len())];
    let mut frame = FrameBuilder::udp(ip(src), ip(dst)).payload(quote.to_vec());
    frame.l4 = wire::build::L4::Icmp { kind, code: 3 };
    frame.build()
}

/// Whether the ICMP or ICMPv6 checksum of `frame` holds.
fn icmp_checksum_ok(frame: &[u8]) -> bool {
    let headers = wire::parse(frame).unwrap().expect("an IP frame");
    let segment = &frame[headers.l4..headers.l3_end];
    if headers.version == 4 {
        checksum(segment) == 0
    } else {
        let (src, dst) = headers.addresses(frame);
        pseudo_header(src, dst, headers.protocol, segment.len())
            .add_bytes(segment)
            .finish()
            == 0
    }
}

/// The quoted packet's (source, destination) of an ICMP error.
fn quoted_endpoints(frame: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    let headers = wire::parse(frame).unwrap().expect("an IP frame");
    let quote = &frame[headers.l4 + 8..];
    let address = |at: usize| -> IpAddr {
        if headers.version == 4 {
            IpAddr::from(<[u8; 4]>::try_from(&quote[at..at + 4]).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(&quote[at..at + 16]).unwrap())
        }
    };
    let (src_at, dst_at, ports_at) = if headers.version == 4 {
        (12, 16, usize::from(quote[0] & 0x0f) * 4)
    } else {
        (8, 24, 40)
    };
    let port = |at: usize| u16::from_be_bytes([quote[at], quote[at + 1]]);
    (
        (address(src_at), port(ports_at)),
        (address(dst_at), port(ports_at + 2)),
    )
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn icmp_errors_about_a_connection_quote_the_vip_again() {
    require_root("icmp_errors_about_a_connection_quote_the_vip_again");
    let (mut topology, lb) = lb_topology(&[
        ("10.9.0.10", 53, UDP, Some(("10.2.0.11", 5353))),
        ("fd09::10", 80, TCP, Some(("fd02::11", 8000))),
    ]);
    for (protocol, client, vip, backend, kind) in [
        // Port unreachable (ICMP 3/3); packet too big (ICMPv6 2).
        (
            UDP,
            ("10.1.0.11", 40000),
            ("10.9.0.10", 53),
            ("10.2.0.11", 5353),
            3,
        ),
        (
            TCP,
            ("fd01::11", 40001),
            ("fd09::10", 80),
            ("fd02::11", 8000),
            2,
        ),
    ] {
        // The client's packet, as it left the instance towards the backend.
        let request = frame(protocol, client, vip, ChecksumFill::Complete).build();
        let to_backend = topology.run(lb, 0, CLIENTS, &request).packet;
        assert_eq!(endpoints(&to_backend).1, (ip(backend.0), backend.1));
        // The backend's error about it: from the VIP, about a packet to the VIP.
        let error = icmp_error(backend.0, client.0, kind, &to_backend);
        let run = topology.run(lb, 1, SERVERS, &error);
        assert_eq!(run.verdict, XDP_REDIRECT);
        let headers = wire::parse(&run.packet).unwrap().unwrap();
        let (src, dst) = headers.addresses(&run.packet);
        assert_eq!(
            (src.to_vec(), dst.to_vec()),
            (octets(vip.0), octets(client.0))
        );
        assert_eq!(
            quoted_endpoints(&run.packet),
            ((ip(client.0), client.1), (ip(vip.0), vip.1)),
            "{vip:?}"
        );
        assert!(icmp_checksum_ok(&run.packet), "{vip:?}: ICMP checksum");
        assert!(ip_header_ok(&run.packet));
        if protocol == UDP {
            let quote = &run.packet[headers.l4 + 8..headers.l4 + 28];
            assert_eq!(checksum(quote), 0, "the quoted IPv4 header's checksum");
        }
        // An error about the connection from the clients' side (about a reply from the
        // VIP): to the backend, about the backend's packet.
        let reply = frame(protocol, vip, client, ChecksumFill::Complete).build();
        let error = icmp_error(client.0, vip.0, kind, &reply);
        let run = topology.run(lb, 0, CLIENTS, &error);
        let headers = wire::parse(&run.packet).unwrap().unwrap();
        let (src, dst) = headers.addresses(&run.packet);
        assert_eq!(
            (src.to_vec(), dst.to_vec()),
            (octets(client.0), octets(backend.0))
        );
        assert_eq!(
            quoted_endpoints(&run.packet),
            ((ip(backend.0), backend.1), (ip(client.0), client.1))
        );
        assert!(icmp_checksum_ok(&run.packet) && ip_header_ok(&run.packet));
    }
    assert_eq!(lb_count(&topology, lb, counter::ICMP_ERRORS), 4);
    // An error about no connection passes unchanged.
    let stranger = frame(
        UDP,
        ("10.1.0.99", 1),
        ("10.2.0.11", 5353),
        ChecksumFill::Complete,
    )
    .build();
    let error = icmp_error("10.2.0.11", "10.1.0.99", 3, &stranger);
    let run = topology.run(lb, 1, SERVERS, &error);
    assert_eq!(run.packet, error);
}

fn octets(text: &str) -> Vec<u8> {
    wire::build::octets(ip(text))
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn what_is_no_vips_passes_and_bad_packets_are_counted_and_dropped() {
    require_root("what_is_no_vips_passes_and_bad_packets_are_counted_and_dropped");
    let (mut topology, lb) = lb_topology(&[
        ("10.9.0.10", 80, TCP, Some(("10.2.0.11", 8000))),
        ("10.9.0.10", 53, UDP, Some(("10.2.0.11", 53))),
        ("10.9.0.20", 80, TCP, None),
    ]);
    // Another port of the VIP's address, another address: unchanged, to the other port.
    for dst in [("10.9.0.10", 81), ("10.2.0.11", 8000)] {
        let packet = frame(TCP, ("10.1.0.11", 40000), dst, ChecksumFill::Complete).build();
        let run = topology.run(lb, 0, CLIENTS, &packet);
        assert_eq!(run.verdict, XDP_REDIRECT);
        assert_eq!(run.packet, packet, "{dst:?} passes unchanged");
    }
    assert_eq!(lb_count(&topology, lb, counter::PASSED), 2);

    // A UDP datagram without checksum (IPv4) keeps none.
    let packet = frame(
        UDP,
        ("10.1.0.11", 40000),
        ("10.9.0.10", 53),
        ChecksumFill::Zero,
    )
    .build();
    let run = topology.run(lb, 0, CLIENTS, &packet);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_eq!(l4_field(&run.packet), 0);
    assert!(ip_header_ok(&run.packet));
    assert_eq!(endpoints(&run.packet).1, (ip("10.2.0.11"), 53));

    // A VIP whose backends are all gone.
    let packet = frame(
        TCP,
        ("10.1.0.11", 40000),
        ("10.9.0.20", 80),
        ChecksumFill::Complete,
    )
    .build();
    assert_eq!(topology.run(lb, 0, CLIENTS, &packet).verdict, XDP_DROP);
    assert_eq!(lb_count(&topology, lb, counter::NO_BACKEND), 1);

    // The first fragment of a datagram to a VIP: its followers carry no ports.
    let fragments = frame(
        UDP,
        ("10.1.0.11", 40000),
        ("10.9.0.10", 53),
        ChecksumFill::Complete,
    )
    .payload(vec![7u8; 3000])
    .fragments(1500, 7);
    assert_eq!(
        topology.run(lb, 0, CLIENTS, &fragments[0]).verdict,
        XDP_DROP
    );
    assert_eq!(lb_count(&topology, lb, counter::FRAGMENTS), 1);

    // A truncated IPv4 header.
    let mut packet = frame(
        TCP,
        ("10.1.0.11", 40000),
        ("10.9.0.10", 80),
        ChecksumFill::Complete,
    )
    .build();
    packet.truncate(14 + 12);
    assert_eq!(topology.run(lb, 0, CLIENTS, &packet).verdict, XDP_DROP);
    assert_eq!(lb_count(&topology, lb, counter::MALFORMED), 1);
    assert_eq!(
        topology.port(lb, 0).drops,
        3,
        "drops counted on the ingress port"
    );
}
