//! The headers the load balancer reads, parsed by the data path's one policy
//! ([`wire::parse`]: VLAN tags, IPv6 extension headers, fragments), and the rewrites it
//! makes. Checksums are updated incrementally (RFC 1624); a checksum a sender left partial
//! for offload is completed first ([`wire::checksum::complete_partial`]).

use std::net::IpAddr;

use pipeline::DropReason;

pub use wire::parse::{
    ETH_HLEN as ETH_LEN, Fragment, IPV4_HLEN as IPV4_LEN, IPV6_HLEN as IPV6_LEN,
    proto::{IPIP as PROTO_IPIP, IPV6 as PROTO_IPV6, TCP as PROTO_TCP, UDP as PROTO_UDP},
};
use wire::{
    Headers,
    checksum::{self, Completion, l4_checksum_offset},
    parse::tcp_flags,
};

pub use wire::checksum::checksum;

/// An address as 16 bytes: IPv4 as its IPv4-mapped IPv6 form, so one key type fits both.
pub type Address = [u8; 16];

/// `ip` as an [`Address`].
pub fn address(ip: IpAddr) -> Address {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The transport flow of a packet: what the load balancer keys on (wire's one extraction).
pub use wire::FlowKey;

/// A hash of `flow` that is the same on every worker and every run: a flow that lands on
/// another queue must still pick the same backend. It is on every packet's path (the
/// connection table's key), so the five words are folded pairwise by independent
/// multiplications and mixed once at the end: a chain of five dependent mixes cost about
/// four times as long (see docs/performance.md).
#[inline]
pub fn stable_hash(flow: &FlowKey) -> u64 {
    let src = (
        u64::from_le_bytes(flow.src[..8].try_into().unwrap()),
        u64::from_le_bytes(flow.src[8..].try_into().unwrap()),
    );
    let dst = (
        u64::from_le_bytes(flow.dst[..8].try_into().unwrap()),
        u64::from_le_bytes(flow.dst[8..].try_into().unwrap()),
    );
    let ports =
        u64::from(flow.src_port) << 24 | u64::from(flow.dst_port) << 8 | u64::from(flow.proto);
    mix(fold(src.0, src.1, 0) ^ fold(dst.0, dst.1, 1) ^ fold(ports, 0, 2))
}

/// A cheap hash of a VIP key (address, port, protocol), the same way as [`stable_hash`].
#[inline]
pub fn vip_hash(address: &Address, port: u16, proto: u8) -> u64 {
    let high = u64::from_le_bytes(address[..8].try_into().unwrap());
    let low = u64::from_le_bytes(address[8..].try_into().unwrap());
    mix(fold(high, low, 0) ^ fold(u64::from(port) << 8 | u64::from(proto), 0, 2))
}

/// Arbitrary odd constants (the fractional digits of pi), a pair per fold `lane`, so that
/// equal words in different places fold differently.
const FOLD_SEEDS: [u64; 6] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7345,
    0xa409_3822_299f_31d1,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6d,
];

/// Two words folded into one: their seeded 64x64-bit product, high half xor low half (the
/// folded multiply of wyhash). Independent folds run in parallel in the CPU. A fold loses
/// its second word only when the first equals its seed; as the first 8 bytes of an address
/// the seeds are outside 2000::/3, so no routable IPv6 source can do that.
#[inline]
fn fold(a: u64, b: u64, lane: usize) -> u64 {
    let product = u128::from(a ^ FOLD_SEEDS[2 * lane]) * u128::from(b ^ FOLD_SEEDS[2 * lane + 1]);
    (product >> 64) as u64 ^ product as u64
}

/// The murmur3 64-bit finaliser: a cheap, well-spread mix.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Where the headers are, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The flow; a non-first fragment carries no ports, so its ports are zero.
    pub flow: FlowKey,
    /// IPv4 (else IPv6).
    pub v4: bool,
    /// Offset of the IP header (after any VLAN tags).
    pub l3: usize,
    /// Offset of the L4 header (for a non-first fragment, of its payload).
    pub l4: usize,
    /// Offset of the end of the IP packet.
    pub l3_end: usize,
    /// The fragment header's fields, if the packet is a fragment.
    pub fragment: Option<Fragment>,
    /// TCP FIN or RST: the flow is closing.
    pub closing: bool,
    /// A TCP SYN without ACK: a new connection, even if its 5-tuple was seen before.
    pub tcp_syn: bool,
}

impl Parsed {
    /// A fragment after the first: no L4 header, its flow known only through the first.
    pub fn later_fragment(&self) -> bool {
        self.fragment.is_some_and(|fragment| fragment.offset != 0)
    }

    fn headers(&self) -> Headers {
        Headers {
            vlans: [0; 2],
            vlan_count: 0,
            l3: self.l3,
            version: if self.v4 { 4 } else { 6 },
            protocol: self.flow.proto,
            l4: self.l4,
            l3_end: self.l3_end,
            fragment: self.fragment,
            ports: None,
            tcp_flags: 0,
            icmp: None,
        }
    }
}

/// Parses a frame for the load balancer: TCP or UDP over IPv4 or IPv6. Errors are drop
/// reasons. Inlined into the balancer: returned through memory, the parse was read back
/// with wider loads than it was written with, a store-forwarding stall on every packet.
#[inline(always)]
pub fn parse(packet: &[u8]) -> Result<Parsed, DropReason> {
    let headers = match wire::parse(packet) {
        Ok(Some(headers)) => headers,
        Ok(None) => return Err(DropReason::NotIp),
        Err(malformed) => return Err(DropReason::Malformed(malformed)),
    };
    if !matches!(headers.protocol, PROTO_TCP | PROTO_UDP) {
        return Err(DropReason::NotTcpOrUdp);
    }
    let flags = headers.tcp_flags;
    Ok(Parsed {
        flow: headers.flow_key(packet),
        v4: headers.ipv4(),
        l3: headers.l3,
        l4: headers.l4,
        l3_end: headers.l3_end,
        fragment: headers.fragment,
        closing: flags & (tcp_flags::FIN | tcp_flags::RST) != 0,
        tcp_syn: flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN,
    })
}

/// Completes a TCP/UDP checksum the sender left partial (TX checksum offload on a veth or
/// virtio host): the frame leaves through AF_XDP as a fresh buffer, which nothing after us
/// would finish. Returns whether it was partial.
#[inline]
pub fn complete_partial_checksum(packet: &mut [u8], parsed: &Parsed) -> bool {
    checksum::complete_partial(packet, &parsed.headers()) == Completion::Completed
}

/// Sets the frame's destination and source MAC addresses.
pub fn set_macs(packet: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    packet[..6].copy_from_slice(&dst);
    packet[6..12].copy_from_slice(&src);
}

fn field(packet: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([packet[at], packet[at + 1]])
}

/// Rewrites the source or destination address and port of a parsed packet, fixing the
/// IPv4 header checksum and the TCP/UDP checksum (whose pseudo-header holds the addresses).
/// A non-first fragment has no L4 header: only its address changes; the first fragment's
/// checksum covers the whole datagram, so updating it there keeps the datagram valid.
pub fn rewrite_endpoint(packet: &mut [u8], parsed: &Parsed, source: bool, ip: &Address, port: u16) {
    let l3 = parsed.l3;
    let (ip_at, len) = match (parsed.v4, source) {
        (true, true) => (l3 + 12, 4),
        (true, false) => (l3 + 16, 4),
        (false, true) => (l3 + 8, 16),
        (false, false) => (l3 + 24, 16),
    };
    let new_ip = if parsed.v4 { &ip[12..] } else { &ip[..] };
    let mut old_ip = [0u8; 16];
    old_ip[..len].copy_from_slice(&packet[ip_at..ip_at + len]);
    let old_ip = &old_ip[..len];
    if parsed.v4 {
        let at = l3 + 10;
        let fixed = checksum::update(field(packet, at), old_ip, new_ip);
        packet[at..at + 2].copy_from_slice(&fixed.to_be_bytes());
    }
    packet[ip_at..ip_at + len].copy_from_slice(new_ip);
    if parsed.later_fragment() {
        return;
    }
    let port_at = parsed.l4 + if source { 0 } else { 2 };
    let old_port = [packet[port_at], packet[port_at + 1]];
    let new_port = port.to_be_bytes();
    packet[port_at..port_at + 2].copy_from_slice(&new_port);
    let Some(offset) = l4_checksum_offset(parsed.flow.proto) else {
        return;
    };
    let at = parsed.l4 + offset;
    let l4_checksum = field(packet, at);
    // A zero UDP checksum over IPv4 means "none" (RFC 768): leave it so.
    if parsed.flow.proto == PROTO_UDP && parsed.v4 && l4_checksum == 0 {
        return;
    }
    let mut fixed = checksum::update(l4_checksum, old_ip, new_ip);
    fixed = checksum::update(fixed, &old_port, &new_port);
    if parsed.flow.proto == PROTO_UDP && fixed == 0 {
        fixed = 0xffff;
    }
    packet[at..at + 2].copy_from_slice(&fixed.to_be_bytes());
}

/// Writes the outer header of an IP-in-IP packet at `at` (after Ethernet): IPv4 in IPv4
/// (protocol 4, RFC 2003) or IPv6 in IPv6 (next header 41, RFC 2473). `inner_len` is the
/// inner IP packet's length; `entropy` varies the IPv6 flow label per flow, as Katran does,
/// so routers hashing on it spread flows.
pub fn write_outer_header(
    header: &mut [u8],
    v4: bool,
    src: &Address,
    dst: &Address,
    inner_len: usize,
    entropy: u32,
) {
    if v4 {
        let total = (inner_len + IPV4_LEN) as u16;
        header[..IPV4_LEN].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTO_IPIP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        header[2..4].copy_from_slice(&total.to_be_bytes());
        header[12..16].copy_from_slice(&src[12..]);
        header[16..20].copy_from_slice(&dst[12..]);
        let sum = checksum(&header[..IPV4_LEN]);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        let label = entropy & 0x000f_ffff;
        header[..4].copy_from_slice(&(0x6000_0000 | label).to_be_bytes());
        header[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
        header[6] = PROTO_IPV6;
        header[7] = 64;
        header[8..24].copy_from_slice(src);
        header[24..40].copy_from_slice(dst);
    }
}

#[cfg(test)]
mod tests;
