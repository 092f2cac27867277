//! Test and load frames: Ethernet, IPv4 (with a valid checksum) and UDP, padded to the
//! requested size with a counting pattern. `fastpath xsk txpush` sends these, and the lab
//! tests send and compare them. [`Template`] is the traffic generator's frame (IPv4 or
//! IPv6, UDP or TCP, with room for its stamp).

use std::net::{IpAddr, Ipv4Addr};

pub const FCS_LEN: usize = 4;
const HEADERS_LEN: usize = 14 + 20 + 8;

pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A frame of `wire_size` bytes on the wire (the FCS included, as xdpsock counts it); the
/// returned bytes are `wire_size - 4` long, since the NIC appends the FCS.
pub fn udp_frame(spec: &FrameSpec, wire_size: usize) -> Vec<u8> {
    let len = wire_size - FCS_LEN;
    let mut frame = vec![0u8; len];
    frame[0..6].copy_from_slice(&spec.dst_mac);
    frame[6..12].copy_from_slice(&spec.src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&spec.src_ip.octets());
    ip[16..20].copy_from_slice(&spec.dst_ip.octets());
    let checksum = wire::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let udp = &mut frame[34..42];
    udp[0..2].copy_from_slice(&spec.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0: "no checksum", allowed over IPv4 (RFC 768).
    for (i, byte) in frame[HEADERS_LEN..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    frame
}

/// Like `udp_frame`, with `tag` written at the start of the payload so tests can tell
/// frames apart (and find theirs among the lab's other traffic).
pub fn tagged_udp_frame(spec: &FrameSpec, wire_size: usize, tag: u32) -> Vec<u8> {
    let mut frame = udp_frame(spec, wire_size);
    frame[HEADERS_LEN..HEADERS_LEN + 4].copy_from_slice(&tag.to_be_bytes());
    frame
}

/// The tag of a frame made by `tagged_udp_frame` with UDP destination `port`, if it is one.
pub fn frame_tag(frame: &[u8], port: u16) -> Option<u32> {
    let is_ours = frame.len() >= HEADERS_LEN + 4
        && frame[12..14] == [0x08, 0x00]
        && frame[23] == 17
        && frame[36..38] == port.to_be_bytes();
    is_ours.then(|| u32::from_be_bytes(frame[HEADERS_LEN..HEADERS_LEN + 4].try_into().unwrap()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    Udp,
    /// TCP with SYN set.
    TcpSyn,
    /// TCP with ACK set (an established flow's segment).
    TcpAck,
}

/// The traffic generator's frame (`fastpath gen`): IPv4 or IPv6, UDP or TCP, with room
/// for the generator's 16-byte stamp after the L4 header.
///
/// Checksums: the generator refreshes the IPv4 header checksum; IPv4 UDP uses zero
/// (allowed); TCP and IPv6 keep the template's L4 checksum, which is wrong once the generator
/// rewrites ports or addresses. XDP and AF_XDP sinks do not check
/// it; a kernel socket would drop such packets.
#[derive(Clone, Debug)]
pub struct Template {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4Kind,
    pub dst_port: u16,
    /// Source port (the generator's first flow).
    pub src_port: u16,
    /// Frame size without the FCS_LEN, 64 to 1518 as on the wire (the 4 FCS_LEN bytes included in
    /// that count, as RFC 2544 counts them).
    pub frame_size: usize,
}

/// A built template: the bytes, and where the generator writes a flow's fields and the stamp.
#[derive(Clone, Debug)]
pub struct TemplateFrame {
    pub bytes: Vec<u8>,
    /// The L4 header (source port, then destination port).
    pub l4_offset: u16,
    /// The 16 bytes after the L4 header.
    pub stamp_offset: u16,
    /// The last 4 bytes of the source and destination addresses.
    pub src_offset: u16,
    pub dst_offset: u16,
    /// The IPv4 header, whose checksum covers the addresses; None for IPv6.
    pub ipv4_offset: Option<u16>,
    /// The L4 checksum, which the generator writes per packet; None for IPv4 UDP, which
    /// sends zero ("no checksum", RFC 768).
    pub l4_checksum: Option<L4ChecksumPart>,
}

/// The L4 checksum field and the one's complement sum of the words no packet changes: the
/// pseudo-header without the addresses' last 32 bits and the length, and the L4 header
/// without the ports, the checksum and (UDP) the length. The payload is zeros but for the
/// stamp. The generator adds the rest per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4ChecksumPart {
    pub offset: u16,
    pub constant_sum: u32,
    /// How often the L4 length counts: 2 for UDP (pseudo-header and header), 1 for TCP.
    pub length_weight: u16,
}

impl Template {
    pub fn build(&self) -> Result<TemplateFrame, String> {
        let (l3_len, ethertype) = match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (20, [0x08, 0x00]),
            (IpAddr::V6(_), IpAddr::V6(_)) => (40, [0x86, 0xdd]),
            _ => return Err("source and destination are of different IP families".into()),
        };
        let l4_len = if self.l4 == L4Kind::Udp { 8 } else { 20 };
        let headers = 14 + l3_len + l4_len;
        let min = (headers + 16 + FCS_LEN).max(64);
        if !(min..=1518).contains(&self.frame_size) {
            return Err(format!(
                "frame size {} out of range: {min} to 1518 bytes for this header stack",
                self.frame_size
            ));
        }
        let len = self.frame_size - FCS_LEN;
        let mut frame = vec![0u8; len];
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        frame[12..14].copy_from_slice(&ethertype);
        let l3 = 14;
        let l4 = l3 + l3_len;
        let proto = if self.l4 == L4Kind::Udp { 17 } else { 6 };
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ip = &mut frame[l3..l4];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                ip[8] = 64;
                ip[9] = proto;
                ip[12..16].copy_from_slice(&src.octets());
                ip[16..20].copy_from_slice(&dst.octets());
                let checksum = wire::checksum::checksum(ip);
                ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let ip = &mut frame[l3..l4];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
                ip[6] = proto;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&src.octets());
                ip[24..40].copy_from_slice(&dst.octets());
            }
            _ => unreachable!("families checked above"),
        }
        frame[l4..l4 + 2].copy_from_slice(&self.src_port.to_be_bytes());
        frame[l4 + 2..l4 + 4].copy_from_slice(&self.dst_port.to_be_bytes());
        match self.l4 {
            L4Kind::Udp => {
                frame[l4 + 4..l4 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
            }
            L4Kind::TcpSyn | L4Kind::TcpAck => {
                frame[l4 + 12] = 5 << 4;
                frame[l4 + 13] = if self.l4 == L4Kind::TcpSyn {
                    0x02
                } else {
                    0x10
                };
                frame[l4 + 14..l4 + 16].copy_from_slice(&65535u16.to_be_bytes());
            }
        }
        let (ipv4_offset, address_len) = match self.src {
            IpAddr::V4(_) => (Some(l3 as u16), 4),
            IpAddr::V6(_) => (None, 16),
        };
        // Both families end the header with the source address, then the destination.
        let dst_end = l4 as u16;
        let udp = self.l4 == L4Kind::Udp;
        let l4_checksum = (ipv4_offset.is_none() || !udp).then(|| {
            let (offset, length_weight) = if udp { (l4 + 6, 2) } else { (l4 + 16, 1) };
            let varies = |at: usize| [l4, l4 + 2, offset].contains(&at) || (udp && at == l4 + 4);
            let header = (l4..headers).step_by(2).filter(|&at| !varies(at));
            // IPv6 addresses keep their first 96 bits in every packet.
            let address_prefixes = match self.src {
                IpAddr::V6(_) => (l3 + 8..l3 + 20)
                    .chain(l3 + 24..l3 + 36)
                    .step_by(2)
                    .collect(),
                IpAddr::V4(_) => Vec::new(),
            };
            let constant_sum = header
                .chain(address_prefixes)
                .map(|at| u32::from(u16::from_be_bytes([frame[at], frame[at + 1]])))
                .sum::<u32>()
                + u32::from(proto);
            L4ChecksumPart {
                offset: offset as u16,
                constant_sum,
                length_weight,
            }
        });
        Ok(TemplateFrame {
            bytes: frame,
            l4_offset: l4 as u16,
            stamp_offset: headers as u16,
            src_offset: dst_end - address_len - 4,
            dst_offset: dst_end - 4,
            ipv4_offset,
            l4_checksum,
        })
    }
}

/// The smallest and largest `--size` txpush accepts.
pub const MIN_WIRE_SIZE: usize = 64;
pub const MAX_WIRE_SIZE: usize = 9018;

pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 12 {
        let (dst, rest) = frame.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 77, 0, 1),
            dst_ip: Ipv4Addr::new(10, 77, 0, 2),
            src_port: 9,
            dst_port: 9,
        }
    }

    #[test]
    fn frame_has_requested_size_and_valid_ipv4_checksum() {
        for size in [64, 1518] {
            let frame = udp_frame(&spec(), size);
            assert_eq!(frame.len(), size - FCS_LEN);
            assert_eq!(
                wire::checksum::checksum(&frame[14..34]),
                0,
                "checksum over a valid header is 0"
            );
            let udp_len = u16::from_be_bytes([frame[38], frame[39]]) as usize;
            assert_eq!(udp_len, frame.len() - 34);
        }
    }

    #[test]
    fn swap_macs_exchanges_source_and_destination() {
        let mut frame = udp_frame(&spec(), 64);
        swap_macs(&mut frame);
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 2]);
    }

    fn template(src: &str, dst: &str, l4: L4Kind, size: usize) -> Template {
        Template {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            l4,
            dst_port: 9,
            src_port: 1024,
            frame_size: size,
        }
    }

    #[test]
    fn templates_have_the_asked_size_valid_headers_and_room_for_the_stamp() {
        let built = template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 64)
            .build()
            .unwrap();
        let frame = &built.bytes;
        assert_eq!(frame.len(), 60, "64 bytes on the wire, FCS excluded");
        assert_eq!((built.l4_offset, built.stamp_offset), (34, 42));
        assert_eq!((built.src_offset, built.dst_offset), (26, 30));
        assert_eq!(built.ipv4_offset, Some(14));
        assert_eq!(frame[26..34], [10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(
            wire::checksum::checksum(&frame[14..34]),
            0,
            "IPv4 header checksum"
        );
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 46);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 26, "UDP length");

        let built = template("fd00::1", "fd00::2", L4Kind::TcpSyn, 1518)
            .build()
            .unwrap();
        let frame = &built.bytes;
        assert_eq!(frame.len(), 1514);
        assert_eq!((built.l4_offset, built.stamp_offset), (54, 74));
        assert_eq!((built.src_offset, built.dst_offset), (34, 50));
        assert_eq!(built.ipv4_offset, None);
        assert_eq!(frame[34..38], [0, 0, 0, 1], "the source's last word");
        assert_eq!(frame[50..54], [0, 0, 0, 2], "the destination's last word");
        assert_eq!(frame[20], 6, "next header TCP");
        assert_eq!(frame[54 + 13], 0x02, "SYN");
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 1514 - 54);
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let error = template("10.0.0.1", "fd00::2", L4Kind::Udp, 64)
            .build()
            .unwrap_err();
        assert!(error.contains("different IP families"), "{error}");
        let error = template("fd00::1", "fd00::2", L4Kind::TcpAck, 64)
            .build()
            .unwrap_err();
        assert!(error.contains("out of range: 94 to 1518"), "{error}");
        let error = template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 9000)
            .build()
            .unwrap_err();
        assert!(error.contains("frame size 9000"), "{error}");
    }
}
