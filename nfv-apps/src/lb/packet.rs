//! Bounds-checked parsing of the headers the load balancer reads, and the rewrites it
//! makes. Every read is checked against the packet length first (malformed packets are
//! a reason, never a panic); checksums are updated incrementally (RFC 1624).

use std::net::IpAddr;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// An address as 16 bytes: IPv4 as its IPv4-mapped IPv6 form, so one key type fits both.
pub type Address = [u8; 16];

pub fn address(ip: IpAddr) -> Address {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The transport flow of a packet: what the load balancer keys on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Address,
    pub dst: Address,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl FlowKey {
    /// A hash that is the same on every worker and every run: a flow that lands on another
    /// queue must still pick the same backend.
    pub fn hash(&self) -> u64 {
        let words = [
            u64::from_le_bytes(self.src[..8].try_into().unwrap()),
            u64::from_le_bytes(self.src[8..].try_into().unwrap()),
            u64::from_le_bytes(self.dst[..8].try_into().unwrap()),
            u64::from_le_bytes(self.dst[8..].try_into().unwrap()),
            u64::from(self.src_port) << 24 | u64::from(self.dst_port) << 8 | u64::from(self.proto),
        ];
        words
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15, |hash, word| mix(hash ^ word))
    }
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
    pub flow: FlowKey,
    pub v4: bool,
    pub l4: usize,
    /// TCP FIN or RST: the flow is closing.
    pub closing: bool,
    /// A TCP SYN without ACK: a new connection, even if its 5-tuple was seen before.
    pub tcp_syn: bool,
}

/// Reads Ethernet, IPv4/IPv6 and the TCP/UDP ports. Errors are drop reasons.
pub fn parse(packet: &[u8]) -> Result<Parsed, &'static str> {
    if packet.len() < ETH_LEN {
        return Err("malformed: short ethernet header");
    }
    let ethertype = u16::from_be_bytes([packet[12], packet[13]]);
    let (v4, proto, src, dst, l4, l3_end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = packet
                .get(ETH_LEN..ETH_LEN + IPV4_LEN)
                .ok_or("malformed: short ipv4 header")?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || header_len < IPV4_LEN {
                return Err("malformed: bad ipv4 version or header length");
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if total < header_len || ETH_LEN + total > packet.len() {
                return Err("malformed: ipv4 total length");
            }
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if fragment != 0 {
                return Err("ipv4 fragment");
            }
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (
                true,
                ip[9],
                src.to_ipv6_mapped().octets(),
                dst.to_ipv6_mapped().octets(),
                ETH_LEN + header_len,
                ETH_LEN + total,
            )
        }
        ETHERTYPE_IPV6 => {
            let ip = packet
                .get(ETH_LEN..ETH_LEN + IPV6_LEN)
                .ok_or("malformed: short ipv6 header")?;
            if ip[0] >> 4 != 6 {
                return Err("malformed: bad ipv6 version");
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ETH_LEN + IPV6_LEN + payload > packet.len() {
                return Err("malformed: ipv6 payload length");
            }
            let mut src = [0; 16];
            let mut dst = [0; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            (
                false,
                ip[6],
                src,
                dst,
                ETH_LEN + IPV6_LEN,
                ETH_LEN + IPV6_LEN + payload,
            )
        }
        _ => return Err("not ip"),
    };
    let segment = &packet[l4..l3_end];
    let (closing, tcp_syn) = match proto {
        PROTO_TCP => {
            if segment.len() < 20 || usize::from(segment[12] >> 4) * 4 < 20 {
                return Err("malformed: tcp header");
            }
            let flags = segment[13];
            (
                flags & (TCP_FIN | TCP_RST) != 0,
                flags & (TCP_SYN | TCP_ACK) == TCP_SYN,
            )
        }
        PROTO_UDP => {
            let length = segment
                .get(4..6)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            if !matches!(length, Some(n) if n >= 8 && n <= segment.len()) {
                return Err("malformed: udp length");
            }
            (false, false)
        }
        // IPv6 extension headers and other protocols have no VIP here.
        _ => return Err("not tcp or udp"),
    };
    Ok(Parsed {
        flow: FlowKey {
            src,
            dst,
            src_port: u16::from_be_bytes([segment[0], segment[1]]),
            dst_port: u16::from_be_bytes([segment[2], segment[3]]),
            proto,
        },
        v4,
        l4,
        closing,
        tcp_syn,
    })
}

pub fn set_macs(packet: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    packet[..6].copy_from_slice(&dst);
    packet[6..12].copy_from_slice(&src);
}

/// One's-complement checksum arithmetic (RFC 1071), kept folded to 16 bits.
fn add(sum: u32, word: u16) -> u32 {
    let sum = sum + u32::from(word);
    (sum & 0xffff) + (sum >> 16)
}

/// Updates a checksum for `old` bytes replaced by `new` (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
fn update_checksum(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = u32::from(!checksum);
    for (old, new) in old.chunks(2).zip(new.chunks(2)) {
        let word = |b: &[u8]| u16::from_be_bytes([b[0], *b.get(1).unwrap_or(&0)]);
        sum = add(sum, !word(old));
        sum = add(sum, word(new));
    }
    !(sum as u16)
}

fn checksum_at(packet: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([packet[at], packet[at + 1]])
}

/// Rewrites the source or destination address and port of a parsed packet, fixing the
/// IPv4 header checksum and the TCP/UDP checksum (whose pseudo-header holds the addresses).
pub fn rewrite_endpoint(packet: &mut [u8], parsed: &Parsed, source: bool, ip: &Address, port: u16) {
    let (ip_at, len) = match (parsed.v4, source) {
        (true, true) => (ETH_LEN + 12, 4),
        (true, false) => (ETH_LEN + 16, 4),
        (false, true) => (ETH_LEN + 8, 16),
        (false, false) => (ETH_LEN + 24, 16),
    };
    let new_ip = if parsed.v4 { &ip[12..] } else { &ip[..] };
    let old_ip: [u8; 16] = {
        let mut old = [0; 16];
        old[..len].copy_from_slice(&packet[ip_at..ip_at + len]);
        old
    };
    let port_at = parsed.l4 + if source { 0 } else { 2 };
    let old_port = [packet[port_at], packet[port_at + 1]];
    let new_port = port.to_be_bytes();
    if parsed.v4 {
        let csum_at = ETH_LEN + 10;
        let fixed = update_checksum(checksum_at(packet, csum_at), &old_ip[..4], new_ip);
        packet[csum_at..csum_at + 2].copy_from_slice(&fixed.to_be_bytes());
    }
    let l4_csum_at = parsed.l4
        + if parsed.flow.proto == PROTO_TCP {
            16
        } else {
            6
        };
    let l4_checksum = checksum_at(packet, l4_csum_at);
    // A zero UDP checksum over IPv4 means "none" (RFC 768): leave it so.
    if !(parsed.flow.proto == PROTO_UDP && parsed.v4 && l4_checksum == 0) {
        let mut fixed = update_checksum(l4_checksum, &old_ip[..len], new_ip);
        fixed = update_checksum(fixed, &old_port, &new_port);
        if parsed.flow.proto == PROTO_UDP && fixed == 0 {
            fixed = 0xffff;
        }
        packet[l4_csum_at..l4_csum_at + 2].copy_from_slice(&fixed.to_be_bytes());
    }
    packet[ip_at..ip_at + len].copy_from_slice(new_ip);
    packet[port_at..port_at + 2].copy_from_slice(&new_port);
}

/// The RFC 1071 checksum of a header.
pub fn checksum(bytes: &[u8]) -> u16 {
    let sum = bytes.chunks(2).fold(0u32, |sum, pair| {
        add(
            sum,
            u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]),
        )
    });
    !(sum as u16)
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
