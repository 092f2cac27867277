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
    /// A TCP header of 20 bytes (no options): sequence number 1, window 64240.
    Tcp {
        /// Source port, host byte order.
        src_port: u16,
        /// Destination port, host byte order.
        dst_port: u16,
        /// The flags byte, bits from [`crate::parse::tcp_flags`].
        flags: u8,
    },
    /// A UDP header of 8 bytes, its length field covering the payload.
    Udp {
        /// Source port, host byte order.
        src_port: u16,
        /// Destination port, host byte order.
        dst_port: u16,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6: type and code, then four zero bytes.
    Icmp {
        /// The ICMP type.
        kind: u8,
        /// The ICMP code.
        code: u8,
    },
    /// Any other protocol number, no header: the payload follows the IP header.
    Other(u8),
}

/// How the TCP/UDP checksum field is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumFill {
    /// The full Internet checksum over pseudo-header (none for ICMPv4), header and payload,
    /// as a receiver expects it (a UDP sum of zero is sent as `0xffff`, RFC 768).
    Complete,
    /// The folded pseudo-header sum only: what Linux leaves for the NIC (CHECKSUM_PARTIAL).
    Partial,
    /// Zero (UDP over IPv4: no checksum).
    Zero,
}

/// A frame described field by field; [`FrameBuilder::build`] turns it into bytes and
/// [`FrameBuilder::fragments`] into IP fragments. Start from [`FrameBuilder::udp`] or
/// [`FrameBuilder::tcp`] and change what the test needs; the family of `src` decides IPv4 or
/// IPv6, and `dst` must be of the same family.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    /// Destination MAC address (locally administered `02:00:00:00:00:02` by default).
    pub dst_mac: [u8; 6],
    /// Source MAC address (locally administered `02:00:00:00:00:01` by default).
    pub src_mac: [u8; 6],
    /// (TPID, TCI) per tag, outermost first.
    pub vlans: Vec<(u16, u16)>,
    /// Source IP address; its family decides the IP version of the frame.
    pub src: IpAddr,
    /// Destination IP address, of the same family as `src`.
    pub dst: IpAddr,
    /// The L4 header to write after the IP header (and any IPv6 extension headers).
    pub l4: L4,
    /// Bytes after the L4 header.
    pub payload: Vec<u8>,
    /// How the TCP/UDP/ICMP checksum field is filled; the IPv4 header checksum is always
    /// complete.
    pub checksum: ChecksumFill,
    /// IPv6 extension headers (next-header numbers) put before the L4 header: options and
    /// routing headers 16 bytes each (hdr_ext_len 1, so a parser must read the length), a
    /// fragment header 8 bytes with [`FrameBuilder::fragment_offset`].
    pub ipv6_extensions: Vec<u8>,
    /// Bytes of IPv4 options (NOPs), rounded up to a multiple of 4.
    pub ipv4_options: usize,
    /// The IPv4 identification field (host byte order); [`FrameBuilder::fragments`] overrides it
    /// with its `id`.
    pub ipv4_id: u16,
    /// Sets the IPv4 DF bit in [`FrameBuilder::build`] (ignored for IPv6 and by
    /// [`FrameBuilder::fragments`]).
    pub dont_fragment: bool,
    /// The fragment offset in 8-byte units, written into the IPv4 header or the IPv6
    /// fragment header (0: a first or atomic fragment). The L4 header is written anyway:
    /// this makes odd frames for parsers; [`FrameBuilder::fragments`] makes real ones.
    pub fragment_offset: u16,
    /// The TCP sequence number (1 unless set).
    pub tcp_sequence: u32,
    /// The TCP receive window (64240, Linux's usual first window, unless set).
    pub tcp_window: u16,
    /// The TCP acknowledgment number (0 unless set; meaningful with the ACK flag).
    pub tcp_ack: u32,
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
            ipv4_options: 0,
            ipv4_id: 1,
            dont_fragment: false,
            fragment_offset: 0,
            tcp_sequence: 1,
            tcp_window: 64240,
            tcp_ack: 0,
        }
    }

    /// A TCP frame like [`FrameBuilder::udp`], ports 1024 -> 80, with `flags` (bits from
    /// [`crate::parse::tcp_flags`]).
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

    /// Sets the source and destination port (host byte order) of a TCP or UDP header; a no-op for
    /// other L4 headers.
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

    /// Sets the bytes after the L4 header.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> FrameBuilder {
        self.payload = payload.into();
        self
    }

    /// Adds a VLAN tag inside those already present: `tpid` is the tag's EtherType
    /// ([`crate::parse::ethertype::VLAN`] or [`crate::parse::ethertype::QINQ`]), `tci` its tag
    /// control information (priority, DEI, VLAN id), both host byte order.
    pub fn vlan(mut self, tpid: u16, tci: u16) -> FrameBuilder {
        self.vlans.push((tpid, tci));
        self
    }

    /// Sets how the L4 checksum field is filled.
    pub fn checksum(mut self, fill: ChecksumFill) -> FrameBuilder {
        self.checksum = fill;
        self
    }

    /// Sets the IPv6 extension headers (next-header numbers from [`crate::parse::proto`]), in
    /// order; the field of the same name says what each looks like.
    pub fn ipv6_extensions(mut self, kinds: &[u8]) -> FrameBuilder {
        self.ipv6_extensions = kinds.to_vec();
        self
    }

    /// Sets the bytes of IPv4 options (NOPs), rounded up to a multiple of 4 when built.
    pub fn ipv4_options(mut self, bytes: usize) -> FrameBuilder {
        self.ipv4_options = bytes;
        self
    }

    /// Sets the fragment offset, in 8-byte units, written without cutting the datagram (see
    /// the field of the same name).
    pub fn fragment_offset(mut self, offset: u16) -> FrameBuilder {
        self.fragment_offset = offset;
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
                tcp[8..12].copy_from_slice(&self.tcp_ack.to_be_bytes());
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

    /// The whole frame: Ethernet header, VLAN tags, IP header (TTL or hop limit 64), IPv6
    /// extension headers, L4 header and payload, with no Ethernet padding and no FCS.
    pub fn build(&self) -> Vec<u8> {
        let (protocol, segment) = self.segment();
        let mut frame = self.link_header();
        if self.v4() {
            let flags = if self.dont_fragment { 0x4000 } else { 0 };
            let field = flags | (self.fragment_offset & 0x1fff);
            frame.extend_from_slice(&self.ipv4_header(protocol, segment.len(), field));
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
        let header = if self.v4() {
            self.ipv4_header_len()
        } else {
            IPV6_HLEN + 8
        };
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
                    frame.append(&mut ip);
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

    fn ipv4_header_len(&self) -> usize {
        IPV4_HLEN + self.ipv4_options.div_ceil(4) * 4
    }

    fn ipv4_header(&self, protocol: u8, l4_len: usize, flags_and_offset: u16) -> Vec<u8> {
        const NOP: u8 = 1;
        let header_len = self.ipv4_header_len();
        let mut ip = vec![NOP; header_len];
        ip[..IPV4_HLEN].fill(0);
        ip[0] = 0x40 | (header_len / 4) as u8;
        ip[2..4].copy_from_slice(&((header_len + l4_len) as u16).to_be_bytes());
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
        for (index, kind) in kinds.iter().enumerate() {
            let next = kinds.get(index + 1).copied().unwrap_or(protocol);
            if *kind == proto::FRAGMENT {
                let field = self.fragment_offset << 3;
                bytes.extend_from_slice(&[next, 0]);
                bytes.extend_from_slice(&field.to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, 1]);
            } else {
                // 16 bytes (hdr_ext_len 1): a PadN option fills the 14 after the first two.
                bytes.extend_from_slice(&[next, 1, 1, 12]);
                bytes.extend_from_slice(&[0; 12]);
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
