//! Valid frames for tests, fixtures and benchmarks: Ethernet, VLAN tags, IPv4 or IPv6
//! (with extension headers), TCP, UDP or ICMP, with checksums complete, partial (as a
//! sender with TX checksum offload leaves them) or absent, and IP fragmentation.

use std::net::IpAddr;

use crate::{
    checksum::{self, Sum, pseudo_header},
    parse::{ETH_HLEN, IPV4_HLEN, IPV6_HLEN, ethertype, proto},
};

/// The L4 header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6: type and code, then four zero bytes.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// Any other protocol number, no header: the payload follows the IP header.
    Other(u8),
}

/// How the TCP/UDP checksum field is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumFill {
    Complete,
    /// The folded pseudo-header sum only: what Linux leaves for the NIC (CHECKSUM_PARTIAL).
    Partial,
    /// Zero (UDP over IPv4: no checksum).
    Zero,
}

#[derive(Clone, Debug)]
pub struct FrameBuilder {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// (TPID, TCI) per tag, outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: Vec<u8>,
    pub checksum: ChecksumFill,
    /// IPv6 extension headers (next-header numbers) put before the L4 header, 8 bytes
    /// each (a fragment header is written as an atomic fragment).
    pub ipv6_extensions: Vec<u8>,
    pub ipv4_id: u16,
    pub dont_fragment: bool,
    /// The TCP sequence number (1 unless set).
    pub tcp_sequence: u32,
    /// The TCP receive window (64240, Linux's usual first window, unless set).
    pub tcp_window: u16,
}

impl FrameBuilder {
    /// A UDP frame between two addresses of one family, ports 1024 -> 80, empty payload.
    pub fn udp(src: IpAddr, dst: IpAddr) -> FrameBuilder {
        FrameBuilder {
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            vlans: Vec::new(),
            src,
            dst,
            l4: L4::Udp {
                src_port: 1024,
                dst_port: 80,
            },
            payload: Vec::new(),
            checksum: ChecksumFill::Complete,
            ipv6_extensions: Vec::new(),
            ipv4_id: 1,
            dont_fragment: false,
            tcp_sequence: 1,
            tcp_window: 64240,
        }
    }

    pub fn tcp(src: IpAddr, dst: IpAddr, flags: u8) -> FrameBuilder {
        FrameBuilder {
            l4: L4::Tcp {
                src_port: 1024,
                dst_port: 80,
                flags,
            },
            ..FrameBuilder::udp(src, dst)
        }
    }

    pub fn ports(mut self, src_port: u16, dst_port: u16) -> FrameBuilder {
        match &mut self.l4 {
            L4::Tcp {
                src_port: s,
                dst_port: d,
                ..
            }
            | L4::Udp {
                src_port: s,
                dst_port: d,
            } => (*s, *d) = (src_port, dst_port),
            _ => {}
        }
        self
    }

    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> FrameBuilder {
        self.payload = payload.into();
        self
    }

    pub fn vlan(mut self, tpid: u16, tci: u16) -> FrameBuilder {
        self.vlans.push((tpid, tci));
        self
    }

    pub fn checksum(mut self, fill: ChecksumFill) -> FrameBuilder {
        self.checksum = fill;
        self
    }

    fn v4(&self) -> bool {
        self.src.is_ipv4()
    }

    /// The L4 header and payload, checksum filled in.
    fn segment(&self) -> (u8, Vec<u8>) {
        let (protocol, mut segment, checksum_at) = match self.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut tcp = vec![0u8; 20];
                tcp[..2].copy_from_slice(&src_port.to_be_bytes());
                tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
                tcp[4..8].copy_from_slice(&self.tcp_sequence.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = flags;
                tcp[14..16].copy_from_slice(&self.tcp_window.to_be_bytes());
                (proto::TCP, tcp, Some(16))
            }
            L4::Udp { src_port, dst_port } => {
                let mut udp = vec![0u8; 8];
                udp[..2].copy_from_slice(&src_port.to_be_bytes());
                udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
                udp[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                (proto::UDP, udp, Some(6))
            }
            L4::Icmp { kind, code } => {
                let protocol = if self.v4() {
                    proto::ICMP
                } else {
                    proto::ICMPV6
                };
                (protocol, vec![kind, code, 0, 0, 0, 0, 0, 0], Some(2))
            }
            L4::Other(protocol) => (protocol, Vec::new(), None),
        };
        segment.extend_from_slice(&self.payload);
        if let Some(at) = checksum_at {
            let (src, dst) = (octets(self.src), octets(self.dst));
            let pseudo = if protocol == proto::ICMP {
                Sum::default() // ICMPv4 has no pseudo-header
            } else {
                pseudo_header(&src, &dst, protocol, segment.len())
            };
            let value = match self.checksum {
                ChecksumFill::Complete => {
                    let sum = pseudo.add_bytes(&segment).finish();
                    if sum == 0 && protocol == proto::UDP {
                        0xffff
                    } else {
                        sum
                    }
                }
                ChecksumFill::Partial => pseudo.fold(),
                ChecksumFill::Zero => 0,
            };
            segment[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
        (protocol, segment)
    }

    /// The Ethernet header and VLAN tags, ending in `ethertype`.
    fn link_header(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(ETH_HLEN + 4 * self.vlans.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.vlans {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        let ethertype = if self.v4() {
            ethertype::IPV4
        } else {
            ethertype::IPV6
        };
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    pub fn build(&self) -> Vec<u8> {
        let (protocol, segment) = self.segment();
        let mut frame = self.link_header();
        if self.v4() {
            let flags = if self.dont_fragment { 0x4000 } else { 0 };
            frame.extend_from_slice(&self.ipv4_header(protocol, segment.len(), flags));
        } else {
            let (mut extensions, first) = self.ipv6_extension_bytes(protocol);
            frame.extend_from_slice(&self.ipv6_header(first, extensions.len() + segment.len()));
            frame.append(&mut extensions);
        }
        frame.extend_from_slice(&segment);
        frame
    }

    /// The datagram cut into fragments whose IP packets fit `mtu` (RFC 791 3.2, RFC 8200
    /// 4.5), checksums complete. IPv6 fragments carry a fragment header with `id`.
    pub fn fragments(&self, mtu: usize, id: u32) -> Vec<Vec<u8>> {
        let (protocol, segment) = FrameBuilder {
            checksum: ChecksumFill::Complete,
            ..self.clone()
        }
        .segment();
        let header = if self.v4() { IPV4_HLEN } else { IPV6_HLEN + 8 };
        let chunk = (mtu - header) / 8 * 8;
        let pieces: Vec<&[u8]> = segment.chunks(chunk).collect();
        pieces
            .iter()
            .enumerate()
            .map(|(index, piece)| {
                let offset = (index * chunk / 8) as u16;
                let more = index + 1 < pieces.len();
                let mut frame = self.link_header();
                if self.v4() {
                    let field = offset | if more { 0x2000 } else { 0 };
                    let mut ip = FrameBuilder {
                        ipv4_id: id as u16,
                        ..self.clone()
                    }
                    .ipv4_header(protocol, piece.len(), field);
                    ip[10..12].fill(0);
                    let sum = checksum::checksum(&ip);
                    ip[10..12].copy_from_slice(&sum.to_be_bytes());
                    frame.extend_from_slice(&ip);
                } else {
                    frame.extend_from_slice(&self.ipv6_header(proto::FRAGMENT, 8 + piece.len()));
                    frame.extend_from_slice(&[protocol, 0]);
                    let field = offset << 3 | u16::from(more);
                    frame.extend_from_slice(&field.to_be_bytes());
                    frame.extend_from_slice(&id.to_be_bytes());
                }
                frame.extend_from_slice(piece);
                frame
            })
            .collect()
    }

    fn ipv4_header(&self, protocol: u8, l4_len: usize, flags_and_offset: u16) -> [u8; 20] {
        let mut ip = [0u8; IPV4_HLEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((IPV4_HLEN + l4_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.ipv4_id.to_be_bytes());
        ip[6..8].copy_from_slice(&flags_and_offset.to_be_bytes());
        ip[8] = 64;
        ip[9] = protocol;
        ip[12..16].copy_from_slice(&octets(self.src)[..4]);
        ip[16..20].copy_from_slice(&octets(self.dst)[..4]);
        let sum = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip
    }

    fn ipv6_header(&self, next_header: u8, payload_len: usize) -> [u8; 40] {
        let mut ip = [0u8; IPV6_HLEN];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        ip[6] = next_header;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&octets(self.src));
        ip[24..40].copy_from_slice(&octets(self.dst));
        ip
    }

    /// The extension headers' bytes and the next-header value that leads to the first.
    fn ipv6_extension_bytes(&self, protocol: u8) -> (Vec<u8>, u8) {
        let mut bytes = Vec::new();
        let kinds = &self.ipv6_extensions;
        for (index, _) in kinds.iter().enumerate() {
            let next = kinds.get(index + 1).copied().unwrap_or(protocol);
            // Options headers: Pad6 fills the 6 bytes; a fragment header: offset 0, M 0.
            bytes.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            if kinds[index] == proto::FRAGMENT {
                let at = bytes.len() - 6;
                bytes[at..].fill(0);
            }
        }
        (bytes, kinds.first().copied().unwrap_or(protocol))
    }
}

/// An address's bytes: 4 for IPv4, 16 for IPv6.
pub fn octets(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}
