use std::net::IpAddr;

use super::*;
use crate::build::{FrameBuilder, L4};

fn v4() -> (IpAddr, IpAddr) {
    ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
}

fn v6() -> (IpAddr, IpAddr) {
    ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
}

fn parsed(frame: &[u8]) -> Headers {
    parse(frame).expect("valid").expect("ip")
}

#[test]
fn udp_and_tcp_over_both_families_give_ports_and_offsets() {
    for (src, dst) in [v4(), v6()] {
        let udp = parsed(
            &FrameBuilder::udp(src, dst)
                .ports(5000, 53)
                .payload([1; 10])
                .build(),
        );
        assert_eq!(udp.ports, Some((5000, 53)));
        assert_eq!(udp.protocol, proto::UDP);
        assert_eq!(udp.l3, ETH_HLEN);
        let l3_len = if src.is_ipv4() { IPV4_HLEN } else { IPV6_HLEN };
        assert_eq!(udp.l4, ETH_HLEN + l3_len);
        assert_eq!(udp.l3_end, udp.l4 + 18);
        let tcp = parsed(&FrameBuilder::tcp(src, dst, tcp_flags::SYN).build());
        assert_eq!(
            (tcp.ports, tcp.tcp_flags),
            (Some((1024, 80)), tcp_flags::SYN)
        );
    }
}

#[test]
fn two_vlan_tags_are_skipped_and_a_third_is_not_ip() {
    let (src, dst) = v4();
    let one = parsed(
        &FrameBuilder::udp(src, dst)
            .vlan(ethertype::VLAN, 100)
            .build(),
    );
    assert_eq!((one.l3, one.vlan_count, one.vlans[0]), (18, 1, 100));
    let two = FrameBuilder::udp(src, dst)
        .vlan(ethertype::QINQ, 7)
        .vlan(ethertype::VLAN, 100)
        .build();
    let two = parsed(&two);
    assert_eq!((two.l3, two.vlans), (22, [7, 100]));
    assert_eq!(two.ports, Some((1024, 80)));
    let three = FrameBuilder::udp(src, dst)
        .vlan(ethertype::QINQ, 1)
        .vlan(ethertype::VLAN, 2)
        .vlan(ethertype::VLAN, 3)
        .build();
    assert_eq!(parse(&three), Ok(None));
}

#[test]
fn ipv6_extension_headers_are_skipped_up_to_six() {
    let (src, dst) = v6();
    let mut builder = FrameBuilder::udp(src, dst).ports(7, 9);
    builder.ipv6_extensions = vec![
        proto::HOPOPTS,
        proto::ROUTING,
        proto::FRAGMENT,
        proto::DSTOPTS,
    ];
    let headers = parsed(&builder.build());
    assert_eq!(headers.ports, Some((7, 9)));
    assert_eq!(headers.l4, ETH_HLEN + IPV6_HLEN + 3 * 16 + 8);
    // An atomic fragment (offset 0, M 0) is a fragment with its L4 header.
    assert_eq!(
        headers.fragment.map(|f| (f.offset, f.more)),
        Some((0, false))
    );
    builder.ipv6_extensions = vec![proto::DSTOPTS; 7];
    let headers = parsed(&builder.build());
    assert_eq!((headers.protocol, headers.ports), (proto::DSTOPTS, None));
}

#[test]
fn only_the_first_fragment_has_ports_and_all_carry_the_id() {
    for (src, dst) in [v4(), v6()] {
        let datagram = FrameBuilder::udp(src, dst)
            .ports(4000, 53)
            .payload(vec![7; 3000]);
        let fragments = datagram.fragments(1500, 0x1234);
        assert_eq!(fragments.len(), 3);
        let parsed: Vec<Headers> = fragments.iter().map(|f| parsed(f)).collect();
        assert_eq!(parsed[0].ports, Some((4000, 53)));
        assert!(parsed[0].fragment.unwrap().more);
        for later in &parsed[1..] {
            assert_eq!(later.ports, None);
            assert_eq!(later.protocol, proto::UDP);
            assert!(later.fragment.unwrap().offset > 0);
        }
        assert!(parsed.iter().all(|h| h.fragment.unwrap().id == 0x1234));
        assert!(!parsed[2].fragment.unwrap().more);
    }
}

#[test]
fn malformed_frames_name_the_field_and_never_panic() {
    let (src, dst) = v4();
    let good = FrameBuilder::tcp(src, dst, tcp_flags::ACK)
        .payload([0; 4])
        .build();
    let cases: [(usize, u8, Malformed); 4] = [
        (14, 0x44, Malformed::Ipv4VersionOrHeaderLength),
        (16, 0xff, Malformed::Ipv4TotalLength),
        (46, 0x40, Malformed::TcpDataOffset),
        (14, 0x65, Malformed::Ipv4VersionOrHeaderLength),
    ];
    for (at, value, reason) in cases {
        let mut frame = good.clone();
        frame[at] = value;
        assert_eq!(parse(&frame), Err(reason), "byte {at} = {value:#x}");
    }
    for len in 0..good.len() {
        assert!(parse(&good[..len]).is_err(), "truncated to {len}");
    }
    let mut udp = FrameBuilder::udp(src, dst).payload([0; 4]).build();
    udp[38..40].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(parse(&udp), Err(Malformed::UdpLength));
}

#[test]
fn headers_beyond_the_ip_packet_are_malformed_and_padding_is_ignored() {
    let (src, dst) = v4();
    let mut padded = FrameBuilder::udp(src, dst).build();
    padded.resize(60, 0);
    assert_eq!(parsed(&padded).l3_end, 14 + 28);
    // Total length 24 leaves no room for the UDP header inside the packet.
    padded[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(parse(&padded), Err(Malformed::ShortUdpHeader));
}

#[test]
fn non_ip_frames_are_not_classified() {
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(parse(&arp), Ok(None));
    let icmp = FrameBuilder {
        l4: L4::Icmp { kind: 8, code: 0 },
        ..FrameBuilder::udp(v4().0, v4().1)
    };
    assert_eq!(parsed(&icmp.build()).icmp, Some((8, 0)));
}

#[test]
fn the_flow_key_maps_ipv4_and_leaves_later_fragments_without_ports() {
    let (src, dst) = v4();
    let frame = FrameBuilder::udp(src, dst).ports(4000, 53).build();
    let flow = parsed(&frame).flow_key(&frame);
    assert_eq!(&flow.src[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    assert_eq!(
        (flow.src_port, flow.dst_port, flow.proto),
        (4000, 53, proto::UDP)
    );
    let fragments = FrameBuilder::udp(src, dst)
        .ports(4000, 53)
        .payload(vec![0; 3000])
        .fragments(1500, 7);
    let later = parsed(&fragments[1]).flow_key(&fragments[1]);
    assert_eq!((later.src, later.dst), (flow.src, flow.dst));
    assert_eq!((later.src_port, later.dst_port), (0, 0));
}
