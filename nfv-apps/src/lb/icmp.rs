//! Path MTU discovery through the load balancer: a packet too big to encapsulate is turned,
//! in its own frame, into the ICMP error that tells its sender the MTU that fits, as a
//! router would (RFC 1191 "fragmentation needed" for IPv4 with DF set, RFC 8201 "packet too
//! big" for IPv6). Katran does the same. Without it, a sender that sets DF (every Linux TCP
//! connection) would see its full-size segments vanish: a black hole.

use pipeline::Packet;
use wire::checksum::{Sum, pseudo_header};

use wire::parse::proto::{ICMP as PROTO_ICMP, ICMPV6 as PROTO_ICMPV6};

use crate::lb::packet::{IPV4_LEN, IPV6_LEN, Parsed};

const ICMP_HEADER: usize = 8;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_FRAGMENTATION_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// An ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;

/// Whether the sender asked routers not to fragment: IPv4 DF, or any IPv6 packet.
pub fn dont_fragment(packet: &[u8], parsed: &Parsed) -> bool {
    !parsed.v4 || packet[parsed.l3 + 6] & 0x40 != 0
}

/// Rewrites `packet` into an ICMP error to its sender, from the address it was sent to,
/// announcing `mtu`, with the MAC addresses swapped (`own_mac` as the source). Returns false
/// when the frame has no headroom for the extra headers.
pub fn too_big_reply(packet: &mut Packet<'_>, parsed: &Parsed, mtu: u16, own_mac: [u8; 6]) -> bool {
    let l3 = parsed.l3;
    let (ip_len, quoted) = if parsed.v4 {
        // RFC 792: the original IP header and the first 8 bytes of its data.
        (IPV4_LEN, (parsed.l4 - l3 + 8).min(parsed.l3_end - l3))
    } else {
        // RFC 4443 2.4 (c): as much of the original as fits in the minimum MTU.
        let room = IPV6_MIN_MTU - IPV6_LEN - ICMP_HEADER;
        (IPV6_LEN, (parsed.l3_end - l3).min(room))
    };
    let added = ip_len + ICMP_HEADER;
    if !packet.insert(l3, added as u16) {
        return false;
    }
    packet.truncate(l3 + added + quoted);
    let data = packet.data_mut();
    let client_mac: [u8; 6] = data[6..12].try_into().unwrap();
    data[..6].copy_from_slice(&client_mac);
    data[6..12].copy_from_slice(&own_mac);
    let quote_at = l3 + added;
    // The reply goes back from the address the packet was sent to.
    let (src_at, dst_at, len) = if parsed.v4 {
        (quote_at + 16, quote_at + 12, 4)
    } else {
        (quote_at + 24, quote_at + 8, 16)
    };
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    src[..len].copy_from_slice(&data[src_at..src_at + len]);
    dst[..len].copy_from_slice(&data[dst_at..dst_at + len]);
    let (src, dst) = (&src[..len], &dst[..len]);
    let icmp_len = ICMP_HEADER + quoted;
    let ip = &mut data[l3..l3 + ip_len];
    ip.fill(0);
    if parsed.v4 {
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((IPV4_LEN + icmp_len) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = PROTO_ICMP;
        ip[12..16].copy_from_slice(src);
        ip[16..20].copy_from_slice(dst);
        let sum = wire::checksum::checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
        ip[6] = PROTO_ICMPV6;
        ip[7] = 64;
        ip[8..24].copy_from_slice(src);
        ip[24..40].copy_from_slice(dst);
    }
    let icmp_at = l3 + ip_len;
    let icmp = &mut data[icmp_at..icmp_at + icmp_len];
    icmp[..ICMP_HEADER].fill(0);
    let start = if parsed.v4 {
        icmp[0] = ICMP_DEST_UNREACHABLE;
        icmp[1] = ICMP_FRAGMENTATION_NEEDED;
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes()); // next-hop MTU (RFC 1191 4)
        Sum::default()
    } else {
        icmp[0] = ICMPV6_PACKET_TOO_BIG;
        icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
        pseudo_header(src, dst, PROTO_ICMPV6, icmp_len)
    };
    let sum = start.add_bytes(icmp).finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use afxdp::{Umem, UmemConfig};
    use wire::{FrameBuilder, parse::tcp_flags};

    use super::*;
    use crate::lb::packet::parse;

    const OWN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

    #[test]
    fn a_too_big_packet_becomes_the_icmp_error_its_sender_needs() {
        // Headroom in front of the packet, as a received frame has.
        let config = UmemConfig {
            headroom: 128,
            ..UmemConfig::default()
        };
        let (umem, mut pool) = Umem::new(config).unwrap();
        for (src, dst) in [("10.0.0.1", "10.0.0.100"), ("fd00::1", "fd00::100")] {
            let mut builder =
                FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), tcp_flags::ACK)
                    .payload(vec![0x42; 1400]);
            builder.dont_fragment = true;
            let original = builder.build();
            let mut frame = pool.take().unwrap();
            umem.write(&mut frame, &original).unwrap();
            let mut packet = Packet::new(&umem, &mut frame, 0);
            let parsed = parse(packet.data()).unwrap();
            assert!(dont_fragment(packet.data(), &parsed));
            assert!(too_big_reply(&mut packet, &parsed, 1480, OWN_MAC));
            let reply = packet.data().to_vec();
            let headers = wire::parse(&reply).unwrap().unwrap();
            let (reply_src, reply_dst) = headers.addresses(&reply);
            let (orig_src, orig_dst) = wire::parse(&original)
                .unwrap()
                .unwrap()
                .addresses(&original);
            assert_eq!((reply_src, reply_dst), (orig_dst, orig_src), "{src}");
            assert_eq!(&reply[..6], &original[6..12], "to the sender's MAC");
            assert_eq!(&reply[6..12], &OWN_MAC);
            let icmp = &reply[headers.l4..headers.l3_end];
            if headers.ipv4() {
                assert_eq!(headers.icmp, Some((3, 4)));
                assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1480);
                assert_eq!(wire::checksum::checksum(&reply[14..34]), 0);
                assert_eq!(Sum::default().add_bytes(icmp).fold(), 0xffff);
                assert_eq!(&icmp[8..], &original[14..14 + 28], "IP header and 8 bytes");
            } else {
                assert_eq!(headers.icmp, Some((2, 0)));
                assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1480);
                assert!(reply.len() - 14 <= IPV6_MIN_MTU);
                let sum = pseudo_header(reply_src, reply_dst, PROTO_ICMPV6, icmp.len());
                assert_eq!(sum.add_bytes(icmp).fold(), 0xffff);
                assert_eq!(&icmp[8..], &original[14..14 + icmp.len() - 8]);
            }
        }
    }
}
