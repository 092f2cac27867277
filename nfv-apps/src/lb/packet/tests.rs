use super::*;
use wire::Malformed;

/// A frame: Ethernet, IPv4 or IPv6, TCP (SYN) or UDP, valid checksums.
pub fn frame(
    v4: bool,
    proto: u8,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    assert_eq!(src.is_ipv4(), v4);
    let builder = if proto == PROTO_TCP {
        wire::FrameBuilder::tcp(src, dst, wire::parse::tcp_flags::SYN)
    } else {
        wire::FrameBuilder::udp(src, dst)
    };
    builder.ports(sport, dport).payload(payload).build()
}

/// Whether the TCP/UDP checksum of a frame is valid, computed from scratch.
fn l4_checksum_valid(packet: &[u8]) -> bool {
    let headers = wire::parse(packet).unwrap().unwrap();
    wire::checksum::l4_checksum_ok(packet, &headers)
}

#[test]
fn parses_ipv4_tcp_and_ipv6_udp() {
    let tcp = frame(true, PROTO_TCP, "10.0.0.1", "10.0.0.100", 40000, 80, b"");
    let parsed = parse(&tcp).unwrap();
    assert!(parsed.v4 && parsed.tcp_syn && !parsed.closing);
    assert_eq!((parsed.flow.src_port, parsed.flow.dst_port), (40000, 80));
    assert_eq!(parsed.flow.dst, address("10.0.0.100".parse().unwrap()));
    let udp = frame(false, PROTO_UDP, "fd00::1", "fd00::100", 5000, 53, b"hello");
    let parsed = parse(&udp).unwrap();
    assert!(!parsed.v4);
    assert_eq!(parsed.l4, ETH_LEN + IPV6_LEN);
}

#[test]
fn malformed_packets_give_reasons_not_panics() {
    let good = frame(true, PROTO_UDP, "10.0.0.1", "10.0.0.100", 1, 2, b"xy");
    for cut in 0..good.len() {
        assert!(
            parse(&good[..cut]).is_err(),
            "a frame cut at {cut} bytes parsed"
        );
    }
    let mut fragment = good.clone();
    fragment[ETH_LEN + 6] = 0x20; // a first fragment: more follow, ports present
    let parsed = parse(&fragment).unwrap();
    assert_eq!(parsed.fragment.map(|f| (f.offset, f.more)), Some((0, true)));
    assert_eq!(parsed.flow.dst_port, 2);
    let mut bad_udp = good.clone();
    bad_udp[ETH_LEN + 20 + 5] = 3;
    assert_eq!(
        parse(&bad_udp),
        Err(DropReason::Malformed(Malformed::UdpLength))
    );
    let mut bad_tcp = frame(true, PROTO_TCP, "10.0.0.1", "10.0.0.100", 1, 2, b"");
    bad_tcp[ETH_LEN + 20 + 12] = 2 << 4;
    assert_eq!(
        parse(&bad_tcp),
        Err(DropReason::Malformed(Malformed::TcpDataOffset))
    );
}

#[test]
fn endpoint_rewrites_keep_checksums_valid() {
    for (v4, src, dst, new) in [
        (true, "10.0.0.1", "10.0.0.100", "10.0.1.7"),
        (false, "fd00::1", "fd00::100", "fd00:1::7"),
    ] {
        for proto in [PROTO_TCP, PROTO_UDP] {
            let mut packet = frame(v4, proto, src, dst, 40000, 80, b"some payload");
            let parsed = parse(&packet).unwrap();
            let new = address(new.parse().unwrap());
            rewrite_endpoint(&mut packet, &parsed, false, &new, 8080);
            rewrite_endpoint(&mut packet, &parsed, true, &new, 12345);
            let again = parse(&packet).unwrap();
            assert_eq!((again.flow.dst, again.flow.dst_port), (new, 8080));
            assert_eq!((again.flow.src, again.flow.src_port), (new, 12345));
            assert!(l4_checksum_valid(&packet), "v4={v4} proto={proto}");
            if v4 {
                assert_eq!(checksum(&packet[ETH_LEN..ETH_LEN + IPV4_LEN]), 0);
            }
        }
    }
}

#[test]
fn outer_ipv4_header_is_valid() {
    let mut header = [0u8; IPV4_LEN];
    let (src, dst) = (
        address("10.0.0.2".parse().unwrap()),
        address("10.0.1.11".parse().unwrap()),
    );
    write_outer_header(&mut header, true, &src, &dst, 60, 0);
    assert_eq!(checksum(&header), 0);
    assert_eq!(u16::from_be_bytes([header[2], header[3]]), 80);
    assert_eq!(
        (header[9], &header[16..20]),
        (PROTO_IPIP, &[10, 0, 1, 11][..])
    );
}

#[test]
fn flow_hash_is_stable() {
    let key = FlowKey {
        src: [1; 16],
        dst: [2; 16],
        src_port: 3,
        dst_port: 4,
        proto: 6,
    };
    assert_eq!(stable_hash(&key), stable_hash(&key));
    let other = FlowKey { src_port: 5, ..key };
    assert_ne!(stable_hash(&key), stable_hash(&other));
}

mod real_world {
    use super::*;
    use wire::{
        FrameBuilder, Headers,
        build::ChecksumFill,
        checksum::l4_checksum_ok,
        parse::{ethertype, tcp_flags},
    };

    fn families() -> [(IpAddr, IpAddr, IpAddr); 2] {
        [
            ("10.0.0.1", "10.0.0.100", "10.0.1.7"),
            ("fd00::1", "fd00::100", "fd00:1::7"),
        ]
        .map(|(a, b, c)| (a.parse().unwrap(), b.parse().unwrap(), c.parse().unwrap()))
    }

    fn valid(frame: &[u8]) -> bool {
        let headers: Headers = wire::parse(frame).unwrap().unwrap();
        let ip_ok = !headers.ipv4() || checksum(&frame[headers.l3..headers.l4]) == 0;
        ip_ok && (headers.fragment.is_some() || l4_checksum_ok(frame, &headers))
    }

    /// A sender with TX checksum offload leaves the checksum partial; completing it before
    /// the NAT rewrite gives a valid segment, VLAN tags or not.
    #[test]
    fn partial_checksums_are_completed_before_nat_rewrites() {
        for (src, dst, new) in families() {
            for tagged in [false, true] {
                let mut builder = FrameBuilder::tcp(src, dst, tcp_flags::SYN)
                    .payload(vec![7; 500])
                    .checksum(ChecksumFill::Partial);
                if tagged {
                    builder = builder.vlan(ethertype::VLAN, 42);
                }
                let mut frame = builder.build();
                assert!(!valid(&frame));
                let parsed = parse(&frame).unwrap();
                assert_eq!(parsed.l3, if tagged { 18 } else { 14 });
                assert!(complete_partial_checksum(&mut frame, &parsed));
                assert!(valid(&frame));
                let new = address(new);
                rewrite_endpoint(&mut frame, &parsed, false, &new, 8080);
                rewrite_endpoint(&mut frame, &parsed, true, &new, 12345);
                assert!(valid(&frame), "src={src} tagged={tagged}");
                let reparsed = parse(&frame).unwrap();
                assert!(!complete_partial_checksum(&mut frame, &reparsed));
            }
        }
    }

    /// Rewriting every fragment of a datagram keeps each IP header valid, and the
    /// reassembled datagram's checksum valid (it lives in the first fragment).
    #[test]
    fn fragment_rewrites_keep_the_datagram_valid() {
        for (src, dst, new) in families() {
            let datagram = FrameBuilder::udp(src, dst)
                .ports(4000, 53)
                .payload(vec![3; 3000]);
            let new_address = address(new);
            let mut payload = Vec::new();
            for mut frame in datagram.fragments(1500, 77) {
                let mut parsed = parse(&frame).unwrap();
                if parsed.later_fragment() {
                    parsed.flow.src_port = 4000; // as the fragment table fills it in
                }
                rewrite_endpoint(&mut frame, &parsed, false, &new_address, 8053);
                assert!(valid(&frame));
                payload.extend_from_slice(&frame[parsed.l4..parsed.l3_end]);
            }
            // Reassemble: the L4 segment with the new destination in the pseudo-header.
            let rebuilt = FrameBuilder::udp(src, new)
                .ports(4000, 8053)
                .payload(vec![3; 3000]);
            let expected = rebuilt.build();
            let l4 = parse(&expected).unwrap().l4;
            assert!(payload == expected[l4..], "src={src}: the datagrams differ");
        }
    }
}
