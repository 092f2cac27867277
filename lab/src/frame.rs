//! Test and load frames: Ethernet, IPv4 (with a valid checksum) and UDP, padded to the
//! requested size with a counting pattern. `fastpath xsk txpush` sends these, and the lab
//! tests send and compare them.

use std::net::Ipv4Addr;

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
    let checksum = ipv4_checksum(ip);
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

/// The smallest and largest `--size` txpush accepts.
pub const MIN_WIRE_SIZE: usize = 64;
pub const MAX_WIRE_SIZE: usize = 9018;

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

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
                ipv4_checksum(&frame[14..34]),
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
}
