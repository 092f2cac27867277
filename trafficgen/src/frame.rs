//! The generator's frames: a [`Template`] (IPv4 or IPv6, UDP or TCP, with room for the
//! stamp) is built with `wire`'s [`FrameBuilder`] into a [`GenFrame`], which also says where
//! the generator writes per packet.
//!
//! Checksums: the generator refreshes the IPv4 header checksum and writes the L4 checksum
//! per packet from the part no packet changes ([`L4Checksum`]); IPv4 UDP sends zero ("no
//! checksum", RFC 768).

use std::net::IpAddr;

use offload_common::{FlowSpace, GenConfig};
use wire::{
    build::{ChecksumFill, FrameBuilder},
    parse::{ETH_HLEN, IPV4_HLEN, IPV6_HLEN, proto},
    stamp::STAMP_LEN,
};

use crate::error::{GenError, MAX_FRAME_SIZE};

pub use wire::parse::ETH_FCS_LEN as FCS_LEN;

/// The simple IMIX: (wire size, share) — 7 frames of 64 bytes, 4 of 594, 1 of 1518.
pub const IMIX: [(usize, u32); 3] = [(64, 7), (594, 4), (1518, 1)];

/// The L4 header of a generated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    /// UDP.
    Udp,
    /// TCP with SYN set.
    TcpSyn,
    /// TCP with ACK set (an established flow's segment).
    TcpAck,
}

/// What a generated frame looks like before the generator writes its flow and stamp.
#[derive(Clone, Debug)]
pub struct Template {
    /// The sender's MAC address.
    pub src_mac: [u8; 6],
    /// The destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source address (the generator's first flow).
    pub src: IpAddr,
    /// Destination address (the generator's first flow), of the source's family.
    pub dst: IpAddr,
    /// The L4 header.
    pub l4: L4Kind,
    /// Destination port (the generator's first flow).
    pub dst_port: u16,
    /// Source port (the generator's first flow).
    pub src_port: u16,
    /// Size on the wire, 64 to 1518 bytes, the FCS included (as RFC 2544 counts it).
    pub frame_size: usize,
}

/// A frame to send and where the generator writes in it.
#[derive(Clone, Debug)]
pub struct GenFrame {
    /// The frame without the FCS.
    pub bytes: Vec<u8>,
    /// Where the generator writes per packet.
    pub fields: FrameFields,
    /// Size on the wire, FCS included.
    pub wire_size: usize,
}

/// Offsets in a frame of what changes per packet: the flow's ports and addresses, the IPv4
/// header whose checksum covers them, and the stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFields {
    /// The L4 header: source port, then destination port.
    pub l4: u16,
    /// The last 4 bytes of the source address.
    pub src: u16,
    /// The last 4 bytes of the destination address.
    pub dst: u16,
    /// The IPv4 header; None for IPv6.
    pub ipv4_header: Option<u16>,
    /// The stamp ([`wire::stamp`]), right after the L4 header.
    pub stamp: u16,
    /// The L4 checksum to write per packet; None when the frame carries none (IPv4 UDP).
    pub l4_checksum: Option<L4Checksum>,
}

/// Where a frame's L4 checksum goes and the one's complement sum of the words no packet
/// changes: the pseudo-header without the addresses' last 32 bits and the length, and the
/// L4 header without the ports, the checksum and (UDP) the length; the payload is zeros but
/// for the stamp. The generator adds the rest per packet (see `GenConfig::l4_checksum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Checksum {
    /// The checksum field.
    pub offset: u16,
    /// The one's complement sum of the words no packet changes.
    pub base: u32,
    /// How often the L4 length counts: 2 for UDP (pseudo-header and header), 1 for TCP.
    pub length_weight: u16,
}

impl Template {
    /// The frame, or why this template cannot be one (mixed families, a size out of range).
    pub fn build(&self) -> Result<GenFrame, GenError> {
        let l3_len = match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
            (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
            _ => return Err(GenError::MixedFamilies),
        };
        let udp = self.l4 == L4Kind::Udp;
        let l4_len = if udp { 8 } else { 20 };
        let l3 = ETH_HLEN;
        let l4 = l3 + l3_len;
        let headers = l4 + l4_len;
        let min = (headers + STAMP_LEN + FCS_LEN).max(64);
        if !(min..=MAX_FRAME_SIZE).contains(&self.frame_size) {
            return Err(GenError::FrameSize {
                size: self.frame_size,
                min,
            });
        }
        let payload = vec![0u8; self.frame_size - FCS_LEN - headers];
        let builder = match self.l4 {
            L4Kind::Udp => FrameBuilder::udp(self.src, self.dst),
            L4Kind::TcpSyn => FrameBuilder::tcp(self.src, self.dst, 0x02),
            L4Kind::TcpAck => FrameBuilder::tcp(self.src, self.dst, 0x10),
        };
        let bytes = FrameBuilder {
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
            ipv4_id: 0,
            tcp_sequence: 0,
            tcp_window: u16::MAX,
            ..builder
        }
        .ports(self.src_port, self.dst_port)
        .payload(payload)
        // The generator writes the L4 checksum per packet (or sends none: IPv4 UDP).
        .checksum(ChecksumFill::Zero)
        .build();
        let ipv4_header = self.src.is_ipv4().then_some(l3 as u16);
        let address_len = if self.src.is_ipv4() { 4 } else { 16 };
        // Both families end the header with the source address, then the destination.
        let dst_end = l4 as u16;
        let l4_checksum = (ipv4_header.is_none() || !udp).then(|| self.l4_checksum(&bytes, l4));
        Ok(GenFrame {
            bytes,
            fields: FrameFields {
                l4: l4 as u16,
                src: dst_end - address_len - 4,
                dst: dst_end - 4,
                ipv4_header,
                stamp: headers as u16,
                l4_checksum,
            },
            wire_size: self.frame_size,
        })
    }

    /// The L4 checksum's place and constant part in `frame`, whose L4 header is at `l4`.
    fn l4_checksum(&self, frame: &[u8], l4: usize) -> L4Checksum {
        let udp = self.l4 == L4Kind::Udp;
        let (offset, length_weight, header_len, protocol) = if udp {
            (l4 + 6, 2, 8, proto::UDP)
        } else {
            (l4 + 16, 1, 20, proto::TCP)
        };
        let varies = |at: usize| [l4, l4 + 2, offset].contains(&at) || (udp && at == l4 + 4);
        let header = (l4..l4 + header_len).step_by(2).filter(|&at| !varies(at));
        // IPv6 addresses keep their first 96 bits in every packet.
        let l3 = ETH_HLEN;
        let address_prefixes: Vec<usize> = match self.src {
            IpAddr::V6(_) => (l3 + 8..l3 + 20)
                .chain(l3 + 24..l3 + 36)
                .step_by(2)
                .collect(),
            IpAddr::V4(_) => Vec::new(),
        };
        let base = header
            .chain(address_prefixes)
            .map(|at| u32::from(u16::from_be_bytes([frame[at], frame[at + 1]])))
            .sum::<u32>()
            + u32::from(protocol);
        L4Checksum {
            offset: offset as u16,
            base,
            length_weight,
        }
    }
}

impl GenFrame {
    /// One flow: this frame's own addresses and ports, each range one value long. Widen the
    /// counts for more flows.
    pub fn flow_space(&self) -> FlowSpace {
        let read = |offset: u16, len: usize| {
            let at = usize::from(offset);
            self.bytes[at..at + len]
                .iter()
                .fold(0u32, |word, &byte| word << 8 | u32::from(byte))
        };
        FlowSpace {
            src_base: read(self.fields.src, 4),
            src_count: 1,
            dst_base: read(self.fields.dst, 4),
            dst_count: 1,
            sport_base: read(self.fields.l4, 2) as u16,
            sport_count: 1,
            dport_base: read(self.fields.l4 + 2, 2) as u16,
            dport_count: 1,
        }
    }
}

impl FrameFields {
    /// The program's settings for these offsets and flows.
    pub fn config(&self, flows: u32, space: FlowSpace) -> GenConfig {
        GenConfig {
            flows: flows.max(1),
            space,
            l4_offset: self.l4,
            stamp_offset: self.stamp,
            src_offset: self.src,
            dst_offset: self.dst,
            ipv4_offset: self.ipv4_header.unwrap_or(0),
            checksum_offset: self.l4_checksum.map_or(0, |c| c.offset),
            checksum_base: self.l4_checksum.map_or(0, |c| c.base),
            length_weight: self.l4_checksum.map_or(0, |c| c.length_weight),
            hop_limit_offset: 0,
            ethernet: [0; 14],
            hop_limit: [0; 2],
        }
    }
}

impl GenFrame {
    /// The program's settings for this frame's offsets and flows, with its Ethernet header
    /// and TTL (or hop limit) to write back per packet: downstream programs change them in
    /// place (a router does), and a live-frames run reuses its pages as they come back.
    pub fn config(&self, flows: u32, space: FlowSpace) -> GenConfig {
        let (ethernet, hop_limit_offset, hop_limit) = self.restored_header();
        GenConfig {
            hop_limit_offset,
            ethernet,
            hop_limit,
            ..self.fields.config(flows, space)
        }
    }

    /// The frame's Ethernet header and the two bytes holding its TTL or hop limit, with
    /// their offset (0 for a frame of neither IPv4 nor IPv6): what the frames of one mix
    /// must share, since the program writes one of each.
    pub fn restored_header(&self) -> ([u8; ETH_HLEN], u16, [u8; 2]) {
        let mut ethernet = [0u8; ETH_HLEN];
        ethernet.copy_from_slice(&self.bytes[..ETH_HLEN]);
        // IPv4: TTL, protocol; IPv6: next header, hop limit.
        let offset = match u16::from_be_bytes([ethernet[12], ethernet[13]]) {
            0x0800 => ETH_HLEN + 8,
            0x86dd => ETH_HLEN + 6,
            _ => return (ethernet, 0, [0; 2]),
        };
        match self.bytes.get(offset..offset + 2) {
            Some(bytes) => (ethernet, offset as u16, [bytes[0], bytes[1]]),
            None => (ethernet, 0, [0; 2]),
        }
    }
}

/// A frame of `size` bytes with IPv4 UDP offsets (the L4 header at `l4`), for unit tests.
#[cfg(test)]
pub(crate) fn test_frame(size: usize, l4: u16) -> GenFrame {
    GenFrame {
        bytes: vec![0; size - FCS_LEN],
        fields: FrameFields {
            l4,
            src: 26,
            dst: 30,
            ipv4_header: Some(14),
            stamp: 42,
            l4_checksum: None,
        },
        wire_size: size,
    }
}

/// A template from `src` to `dst` (port 1024 to 9), for unit tests.
#[cfg(test)]
pub(crate) fn test_template(src: &str, dst: &str, l4: L4Kind, size: usize) -> Template {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::frame::test_template as template;

    #[test]
    fn templates_have_the_asked_size_valid_headers_and_room_for_the_stamp() {
        let built = template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 64)
            .build()
            .unwrap();
        let (frame, fields) = (&built.bytes, built.fields);
        assert_eq!(frame.len(), 60, "64 bytes on the wire, FCS excluded");
        assert_eq!((fields.l4, fields.stamp), (34, 42));
        assert_eq!((fields.src, fields.dst), (26, 30));
        assert_eq!(fields.ipv4_header, Some(14));
        assert_eq!(fields.l4_checksum, None, "IPv4 UDP sends no checksum");
        assert_eq!(frame[26..34], [10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(
            wire::checksum::checksum(&frame[14..34]),
            0,
            "IPv4 header checksum"
        );
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 46);
        assert_eq!(frame[18..22], [0, 0, 0, 0], "id 0, may fragment");
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 26, "UDP length");
        assert_eq!(frame[40..42], [0, 0], "UDP checksum: none");

        let built = template("fd00::1", "fd00::2", L4Kind::TcpSyn, 1518)
            .build()
            .unwrap();
        let (frame, fields) = (&built.bytes, built.fields);
        assert_eq!(frame.len(), 1514);
        assert_eq!((fields.l4, fields.stamp), (54, 74));
        assert_eq!((fields.src, fields.dst), (34, 50));
        assert_eq!(fields.ipv4_header, None);
        assert_eq!(frame[34..38], [0, 0, 0, 1], "the source's last word");
        assert_eq!(frame[50..54], [0, 0, 0, 2], "the destination's last word");
        assert_eq!(frame[20], 6, "next header TCP");
        assert_eq!(frame[58..62], [0, 0, 0, 0], "sequence 0");
        assert_eq!(frame[54 + 13], 0x02, "SYN");
        assert_eq!(frame[54 + 14..54 + 16], [0xff, 0xff], "window 65535");
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 1514 - 54);
        assert_eq!(fields.l4_checksum.map(|c| c.offset), Some(70));
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let error = |t: Template| t.build().unwrap_err().to_string();
        let text = error(template("10.0.0.1", "fd00::2", L4Kind::Udp, 64));
        assert!(text.contains("different IP families"), "{text}");
        let text = error(template("fd00::1", "fd00::2", L4Kind::TcpAck, 64));
        assert!(text.contains("out of range: 94 to 1518"), "{text}");
        let text = error(template("10.0.0.1", "10.0.0.2", L4Kind::Udp, 9000));
        assert!(text.contains("frame size 9000"), "{text}");
    }

    #[test]
    fn a_frames_own_fields_are_its_one_flow() {
        let mut frame = test_frame(64, 34);
        frame.bytes[26..38].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 4, 0, 0, 9]);
        let space = frame.flow_space();
        assert_eq!(space.size(), 1);
        let flow = space.flow(0);
        assert_eq!(
            (flow.src, flow.dst, flow.sport, flow.dport),
            (0x0a00_0001, 0x0a00_0002, 1024, 9)
        );
    }
}
