//! The parsing policy of the whole data path, for user space.
//!
//! - Ethernet, then up to two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`, any order). A
//!   third tag makes the frame non-IP: it is not classified.
//! - IPv4 with options: version 4, IHL at least 5, total length within the frame and not
//!   below the header. Ethernet padding after the IP packet is ignored.
//! - IPv6: version 6, payload length within the frame; up to six extension headers are
//!   skipped (hop-by-hop, routing, destination options, fragment). A seventh leaves the
//!   packet without an L4 header.
//! - Fragments (IPv4 offset/MF, IPv6 fragment header): only the first fragment (offset 0)
//!   carries the L4 header, so only it has ports. Every fragment reports its identification.
//! - Every header read must lie within the IP packet. TCP needs its 20 bytes and a data
//!   offset of at least 5; UDP its 8 bytes and, unfragmented, a length field between 8 and
//!   the segment; ICMP 8 bytes; ICMPv6 4.
//!
//! The steering program (`offload/ebpf/src/parse.rs`) implements the same policy.

use core::fmt;

/// Bytes in an Ethernet header: destination MAC, source MAC, EtherType.
pub const ETH_HLEN: usize = 14;
/// Bytes of the Ethernet frame check sequence: counted in a frame's size on the wire,
/// appended by the NIC, absent from the bytes software hands it.
pub const ETH_FCS_LEN: usize = 4;
/// Bytes in one 802.1Q/802.1ad tag: tag control information, then the inner EtherType.
pub const VLAN_HLEN: usize = 4;
/// VLAN tags the parser looks through; behind a third tag a frame counts as non-IP.
pub const MAX_VLAN_TAGS: usize = 2;
/// Bytes in an IPv4 header without options (IHL 5).
pub const IPV4_HLEN: usize = 20;
/// Bytes in the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// IPv6 extension headers skipped before giving up on finding the L4 header. The bound keeps
/// the steering program's loop finite for the verifier; user space uses the same number so
/// both sides agree.
pub const MAX_IPV6_EXTENSIONS: usize = 6;

/// EtherType values (host byte order; on the wire they are big-endian).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// An 802.1Q VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// An 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: u16 = 0x88a8;
}

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`), from the IANA registry.
pub mod proto {
    /// IPv6 hop-by-hop options extension header.
    pub const HOPOPTS: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IP (IP-in-IP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated in IP.
    pub const IPV6: u8 = 41;
    /// IPv6 routing extension header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment extension header.
    pub const FRAGMENT: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 destination options extension header.
    pub const DSTOPTS: u8 = 60;
}

/// Bits of the TCP flags byte (byte 13 of the TCP header), as in [`Headers::tcp_flags`].
pub mod tcp_flags {
    /// FIN: the sender has finished sending.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronise sequence numbers (connection open).
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
}

/// Why a frame is malformed: the header or field at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// The frame ends inside the 14-byte Ethernet header.
    ShortEthernetHeader,
    /// The frame ends inside a 4-byte VLAN tag.
    ShortVlanTag,
    /// The frame ends inside the IPv4 header (20 bytes, or IHL x 4 with options).
    ShortIpv4Header,
    /// The IPv4 version is not 4, or IHL is below 5.
    Ipv4VersionOrHeaderLength,
    /// The IPv4 total length is below the header length or beyond the frame.
    Ipv4TotalLength,
    /// The frame ends inside the 40-byte IPv6 header.
    ShortIpv6Header,
    /// The IPv6 version is not 6.
    Ipv6Version,
    /// The IPv6 payload length reaches beyond the frame.
    Ipv6PayloadLength,
    /// The packet ends inside the first 2 bytes (next header, length) of an IPv6 options or routing header.
    Ipv6ExtensionHeader,
    /// The IPv6 fragment header (8 bytes) ends beyond the packet.
    Ipv6FragmentHeader,
    /// The packet ends inside the first 20 bytes of the TCP header.
    ShortTcpHeader,
    /// The TCP data offset is below 5 (20 bytes).
    TcpDataOffset,
    /// The packet ends inside the 8-byte UDP header.
    ShortUdpHeader,
    /// The UDP length is below 8 or beyond the segment (checked unless more fragments follow).
    UdpLength,
    /// The packet ends inside the 8-byte ICMP header.
    ShortIcmpHeader,
    /// The packet ends inside the 4-byte ICMPv6 header.
    ShortIcmpv6Header,
}

impl Malformed {
    /// Every reason, in declaration order (so `reason as usize` indexes it).
    pub const ALL: [Malformed; 16] = [
        Malformed::ShortEthernetHeader,
        Malformed::ShortVlanTag,
        Malformed::ShortIpv4Header,
        Malformed::Ipv4VersionOrHeaderLength,
        Malformed::Ipv4TotalLength,
        Malformed::ShortIpv6Header,
        Malformed::Ipv6Version,
        Malformed::Ipv6PayloadLength,
        Malformed::Ipv6ExtensionHeader,
        Malformed::Ipv6FragmentHeader,
        Malformed::ShortTcpHeader,
        Malformed::TcpDataOffset,
        Malformed::ShortUdpHeader,
        Malformed::UdpLength,
        Malformed::ShortIcmpHeader,
        Malformed::ShortIcmpv6Header,
    ];

    /// The reason as counters and logs name it, e.g. `malformed: short tcp header`.
    pub const fn name(self) -> &'static str {
        match self {
            Malformed::ShortEthernetHeader => "malformed: short ethernet header",
            Malformed::ShortVlanTag => "malformed: short vlan tag",
            Malformed::ShortIpv4Header => "malformed: short ipv4 header",
            Malformed::Ipv4VersionOrHeaderLength => "malformed: ipv4 version or header length",
            Malformed::Ipv4TotalLength => "malformed: ipv4 total length",
            Malformed::ShortIpv6Header => "malformed: short ipv6 header",
            Malformed::Ipv6Version => "malformed: ipv6 version",
            Malformed::Ipv6PayloadLength => "malformed: ipv6 payload length",
            Malformed::Ipv6ExtensionHeader => "malformed: ipv6 extension header",
            Malformed::Ipv6FragmentHeader => "malformed: ipv6 fragment header",
            Malformed::ShortTcpHeader => "malformed: short tcp header",
            Malformed::TcpDataOffset => "malformed: tcp data offset",
            Malformed::ShortUdpHeader => "malformed: short udp header",
            Malformed::UdpLength => "malformed: udp length",
            Malformed::ShortIcmpHeader => "malformed: short icmp header",
            Malformed::ShortIcmpv6Header => "malformed: short icmpv6 header",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fragment of an IP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The identification: 16 bits for IPv4, 32 for IPv6.
    pub id: u32,
    /// The fragment offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

/// The transport flow of a packet: what load balancing, connection tracking and the
/// pipeline's stage choice key on. Addresses are 16 bytes, IPv4 mapped into IPv6
/// (`::ffff:a.b.c.d`), so both families share one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address, network byte order.
    pub src: [u8; 16],
    /// Destination address, network byte order.
    pub dst: [u8; 16],
    /// Source port, host byte order; 0 where the packet carries none (not TCP or UDP, or a
    /// fragment after the first).
    pub src_port: u16,
    /// Destination port, likewise.
    pub dst_port: u16,
    /// IP protocol number (after any IPv6 extension headers).
    pub proto: u8,
}

/// Where the headers of an IP frame are, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// The tag control information of each VLAN tag, outermost first.
    pub vlans: [u16; MAX_VLAN_TAGS],
    /// How many entries of `vlans` are tags of this frame (0 to [`MAX_VLAN_TAGS`]); the rest
    /// are zero.
    pub vlan_count: u8,
    /// Offset of the IP header.
    pub l3: usize,
    /// 4 or 6.
    pub version: u8,
    /// The L4 protocol: for IPv6, the next header after the extension headers skipped.
    pub protocol: u8,
    /// Offset of the L4 header (for a non-first fragment, of its payload).
    pub l4: usize,
    /// End of the IP packet; bytes after it are Ethernet padding.
    pub l3_end: usize,
    /// Set when the packet is a fragment (IPv4 offset or MF set, or an IPv6 fragment header).
    pub fragment: Option<Fragment>,
    /// Source and destination port (host byte order): TCP and UDP, unfragmented or first
    /// fragment.
    pub ports: Option<(u16, u16)>,
    /// TCP flags, zero for other protocols.
    pub tcp_flags: u8,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
}

impl Headers {
    /// The packet's flow, read from `frame` (the frame these headers were parsed from).
    #[inline]
    pub fn flow_key(&self, frame: &[u8]) -> FlowKey {
        let (src, dst) = self.addresses(frame);
        let (src_port, dst_port) = self.ports.unwrap_or((0, 0));
        FlowKey {
            src: Headers::mapped(src),
            dst: Headers::mapped(dst),
            src_port,
            dst_port,
            proto: self.protocol,
        }
    }

    /// Whether the IP header is IPv4 (`version == 4`); otherwise it is IPv6.
    #[inline]
    pub fn ipv4(&self) -> bool {
        self.version == 4
    }

    /// The source and destination addresses, 4 or 16 bytes each, as they are in `frame`.
    #[inline]
    pub fn addresses<'a>(&self, frame: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        if self.ipv4() {
            (
                &frame[self.l3 + 12..self.l3 + 16],
                &frame[self.l3 + 16..self.l3 + 20],
            )
        } else {
            (
                &frame[self.l3 + 8..self.l3 + 24],
                &frame[self.l3 + 24..self.l3 + 40],
            )
        }
    }

    /// An address as 16 bytes; IPv4 in its IPv4-mapped IPv6 form.
    #[inline]
    pub fn mapped(address: &[u8]) -> [u8; 16] {
        match <[u8; 4]>::try_from(address) {
            // Built as one integer, so it is stored whole: byte-wise stores followed by the
            // hot paths' 8-byte loads of the key defeated store forwarding (a stall per
            // packet in the load balancer; docs/performance.md).
            Ok(v4) => (0xffff_u128 << 32 | u128::from(u32::from_be_bytes(v4))).to_be_bytes(),
            Err(_) => {
                let mut mapped = [0u8; 16];
                mapped.copy_from_slice(address);
                mapped
            }
        }
    }

    /// A first fragment or an unfragmented packet: the one holding the L4 header.
    #[inline]
    pub fn has_l4_header(&self) -> bool {
        self.fragment.is_none_or(|fragment| fragment.offset == 0)
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// The `len` bytes at `at`, if they lie before `end`.
#[inline]
fn header(
    frame: &[u8],
    at: usize,
    len: usize,
    end: usize,
    what: Malformed,
) -> Result<&[u8], Malformed> {
    if at + len > end {
        return Err(what);
    }
    Ok(&frame[at..at + len])
}

/// Parses a frame. `Ok(None)`: not IP (ARP, LLDP, a third VLAN tag), not classified.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Option<Headers>, Malformed> {
    let ethernet = header(
        frame,
        0,
        ETH_HLEN,
        frame.len(),
        Malformed::ShortEthernetHeader,
    )?;
    let mut ethertype = be16(ethernet, 12);
    let mut l3 = ETH_HLEN;
    let mut vlans = [0u16; MAX_VLAN_TAGS];
    let mut vlan_count = 0;
    while vlan_count < MAX_VLAN_TAGS && matches!(ethertype, ethertype::VLAN | ethertype::QINQ) {
        let tag = header(frame, l3, VLAN_HLEN, frame.len(), Malformed::ShortVlanTag)?;
        vlans[vlan_count] = be16(tag, 0);
        ethertype = be16(tag, 2);
        vlan_count += 1;
        l3 += VLAN_HLEN;
    }
    let mut headers = Headers {
        vlans,
        vlan_count: vlan_count as u8,
        l3,
        version: 0,
        protocol: 0,
        l4: 0,
        l3_end: 0,
        fragment: None,
        ports: None,
        tcp_flags: 0,
        icmp: None,
    };
    match ethertype {
        ethertype::IPV4 => parse_ipv4(frame, &mut headers)?,
        ethertype::IPV6 => parse_ipv6(frame, &mut headers)?,
        _ => return Ok(None),
    }
    if headers.has_l4_header() {
        parse_l4(frame, &mut headers)?;
    }
    Ok(Some(headers))
}

// `#[inline]` on the steps of `parse`: they inline into callers in other crates (the load
// balancer's hit path) only when marked; a call per step cost it about 7% of its time.
#[inline]
fn parse_ipv4(frame: &[u8], headers: &mut Headers) -> Result<(), Malformed> {
    let l3 = headers.l3;
    let ip = header(
        frame,
        l3,
        IPV4_HLEN,
        frame.len(),
        Malformed::ShortIpv4Header,
    )?;
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header_len < IPV4_HLEN {
        return Err(Malformed::Ipv4VersionOrHeaderLength);
    }
    let total = usize::from(be16(ip, 2));
    if total < header_len || l3 + total > frame.len() {
        return Err(Malformed::Ipv4TotalLength);
    }
    let fragment = be16(ip, 6);
    headers.version = 4;
    headers.protocol = ip[9];
    headers.l4 = l3 + header_len;
    headers.l3_end = l3 + total;
    if fragment & 0x3fff != 0 {
        headers.fragment = Some(Fragment {
            id: u32::from(be16(ip, 4)),
            offset: fragment & 0x1fff,
            more: fragment & 0x2000 != 0,
        });
    }
    Ok(())
}

#[inline]
fn parse_ipv6(frame: &[u8], headers: &mut Headers) -> Result<(), Malformed> {
    let l3 = headers.l3;
    let ip = header(
        frame,
        l3,
        IPV6_HLEN,
        frame.len(),
        Malformed::ShortIpv6Header,
    )?;
    if ip[0] >> 4 != 6 {
        return Err(Malformed::Ipv6Version);
    }
    let end = l3 + IPV6_HLEN + usize::from(be16(ip, 4));
    if end > frame.len() {
        return Err(Malformed::Ipv6PayloadLength);
    }
    headers.version = 6;
    headers.l3_end = end;
    let mut next = ip[6];
    let mut offset = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                // RFC 8200 4.3-4.6: length in 8-octet units, not counting the first 8.
                let extension = header(frame, offset, 2, end, Malformed::Ipv6ExtensionHeader)?;
                next = extension[0];
                offset += (usize::from(extension[1]) + 1) * 8;
            }
            proto::FRAGMENT => {
                // RFC 8200 4.5: 8 bytes; offset in the top 13 bits, M in the lowest.
                let extension = header(frame, offset, 8, end, Malformed::Ipv6FragmentHeader)?;
                next = extension[0];
                offset += 8;
                let field = be16(extension, 2);
                headers.fragment = Some(Fragment {
                    id: u32::from_be_bytes([
                        extension[4],
                        extension[5],
                        extension[6],
                        extension[7],
                    ]),
                    offset: field >> 3,
                    more: field & 1 != 0,
                });
            }
            _ => break,
        }
        if headers
            .fragment
            .is_some_and(|fragment| fragment.offset != 0)
        {
            break;
        }
    }
    headers.protocol = next;
    headers.l4 = offset;
    Ok(())
}

#[inline]
fn parse_l4(frame: &[u8], headers: &mut Headers) -> Result<(), Malformed> {
    let (l4, end) = (headers.l4, headers.l3_end);
    match headers.protocol {
        proto::TCP => {
            let tcp = header(frame, l4, 20, end, Malformed::ShortTcpHeader)?;
            // Data offset (header length in 32-bit words) in the top nibble of byte 12.
            if tcp[12] >> 4 < 5 {
                return Err(Malformed::TcpDataOffset);
            }
            headers.ports = Some((be16(tcp, 0), be16(tcp, 2)));
            headers.tcp_flags = tcp[13];
        }
        proto::UDP => {
            let udp = header(frame, l4, 8, end, Malformed::ShortUdpHeader)?;
            let length = usize::from(be16(udp, 4));
            // A first fragment's length covers the whole datagram, not this fragment.
            let whole = headers.fragment.is_none_or(|fragment| !fragment.more);
            if whole && !(8..=end - l4).contains(&length) {
                return Err(Malformed::UdpLength);
            }
            headers.ports = Some((be16(udp, 0), be16(udp, 2)));
        }
        proto::ICMP => {
            let icmp = header(frame, l4, 8, end, Malformed::ShortIcmpHeader)?;
            headers.icmp = Some((icmp[0], icmp[1]));
        }
        proto::ICMPV6 => {
            let icmp = header(frame, l4, 4, end, Malformed::ShortIcmpv6Header)?;
            headers.icmp = Some((icmp[0], icmp[1]));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
