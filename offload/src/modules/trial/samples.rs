//! The built-in packets `chain apply --check` runs a candidate chain on: one of each kind
//! the entry's parse tells apart, so every path through a module's checks is taken once.

use std::net::IpAddr;

use wire::{
    build::{FrameBuilder, L4},
    parse::{ETH_HLEN, ethertype, tcp_flags},
};

use super::Packet;

/// IPv4 UDP, TCP and ICMP, IPv6 UDP, a VLAN-tagged frame, ARP, the first and a later IPv4
/// fragment, and a truncated IPv4 frame, each named.
pub fn sample_packets() -> Vec<Packet> {
    let v4 = |text: &str| -> IpAddr { text.parse().expect("an IPv4 address") };
    let v6 = |text: &str| -> IpAddr { text.parse().expect("an IPv6 address") };
    let (client, server) = (v4("192.0.2.1"), v4("198.51.100.1"));
    let udp = FrameBuilder::udp(client, server)
        .ports(40000, 53)
        .payload(vec![0x5a; 32]);
    let tcp = FrameBuilder::tcp(client, server, tcp_flags::SYN).ports(40000, 80);
    let icmp = FrameBuilder {
        l4: L4::Icmp { kind: 8, code: 0 },
        ..FrameBuilder::udp(client, server).payload(vec![0x11; 16])
    };
    let udp6 = FrameBuilder::udp(v6("2001:db8::1"), v6("2001:db8::2"))
        .ports(40000, 443)
        .payload(vec![0x66; 32]);
    let vlan = udp.clone().vlan(ethertype::VLAN, 100);
    let fragments = FrameBuilder::udp(client, server)
        .ports(40000, 4789)
        .payload(vec![0xf0; 1200])
        .fragments(576, 7);
    let mut truncated = udp.build();
    // The Ethernet header and half an IPv4 header: what the parse calls malformed.
    truncated.truncate(ETH_HLEN + 10);
    let named = |name: &str, data: Vec<u8>| Packet {
        name: name.to_string(),
        data,
    };
    vec![
        named("ipv4-udp", udp.build()),
        named("ipv4-tcp-syn", tcp.build()),
        named("ipv4-icmp-echo", icmp.build()),
        named("ipv6-udp", udp6.build()),
        named("vlan-ipv4-udp", vlan.build()),
        named("arp-request", arp_request()),
        named("ipv4-first-fragment", fragments[0].clone()),
        named("ipv4-later-fragment", fragments[1].clone()),
        named("truncated-ipv4", truncated),
    ]
}

/// An ARP request (RFC 826) for 198.51.100.1 from 192.0.2.1, broadcast: no builder makes
/// ARP, and it is only these bytes.
fn arp_request() -> Vec<u8> {
    let sender_mac = [0x02, 0, 0, 0, 0, 0x01];
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet (1), IPv4, 6-byte and 4-byte addresses, request (1).
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&[192, 0, 2, 1]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[198, 51, 100, 1]);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_cover_each_kind_the_parse_tells_apart() {
        let samples = sample_packets();
        let parsed: Vec<_> = samples
            .iter()
            .map(|packet| (packet.name.as_str(), wire::parse(&packet.data)))
            .collect();
        let ip = |name: &str| {
            parsed
                .iter()
                .find(|(known, _)| *known == name)
                .and_then(|(_, result)| (*result).ok().flatten())
                .unwrap_or_else(|| panic!("{name} parses as IP"))
        };
        assert_eq!(ip("ipv4-udp").ports, Some((40000, 53)));
        assert_eq!(ip("vlan-ipv4-udp").vlan_count, 1);
        let first = ip("ipv4-first-fragment");
        assert!(first.fragment.is_some_and(|f| f.offset == 0 && f.more) && first.ports.is_some());
        let later = ip("ipv4-later-fragment");
        assert!(later.fragment.is_some_and(|f| f.offset > 0) && later.ports.is_none());
        let arp = parsed
            .iter()
            .find(|(name, _)| *name == "arp-request")
            .unwrap();
        assert!(matches!(arp.1, Ok(None)), "ARP is not IP");
        let truncated = parsed
            .iter()
            .find(|(name, _)| *name == "truncated-ipv4")
            .unwrap();
        assert!(truncated.1.is_err(), "the truncated frame is malformed");
        // Every one runs under BPF_PROG_TEST_RUN, which needs an Ethernet header.
        assert!(samples.iter().all(|packet| packet.data.len() >= ETH_HLEN));
    }
}
