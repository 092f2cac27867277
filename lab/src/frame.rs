//! Test and load frames: Ethernet, IPv4 (with a valid checksum) and UDP, padded to the
//! requested size with a counting pattern, built with `wire`'s [`FrameBuilder`].
//! `fastpath xsk txpush` sends these, and the lab tests send and compare them. (The traffic
//! generator's frames are `trafficgen::Template`'s.)

use std::net::Ipv4Addr;

use wire::build::{ChecksumFill, FrameBuilder};

pub use wire::parse::ETH_FCS_LEN as FCS_LEN;
const HEADERS_LEN: usize = 14 + 20 + 8;

/// The addresses and ports of a lab UDP frame (IPv4).
pub struct FrameSpec {
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

/// A frame of `wire_size` bytes on the wire (the FCS included, as xdpsock counts it); the
/// returned bytes are `wire_size - 4` long, since the NIC appends the FCS.
pub fn udp_frame(spec: &FrameSpec, wire_size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..wire_size - FCS_LEN - HEADERS_LEN)
        .map(|i| i as u8)
        .collect();
    FrameBuilder {
        dst_mac: spec.dst_mac,
        src_mac: spec.src_mac,
        ipv4_id: 0,
        dont_fragment: true,
        ..FrameBuilder::udp(spec.src_ip.into(), spec.dst_ip.into())
    }
    .ports(spec.src_port, spec.dst_port)
    .payload(payload)
    // UDP checksum 0: "no checksum", allowed over IPv4 (RFC 768).
    .checksum(ChecksumFill::Zero)
    .build()
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
    // Read at the fixed offsets of `udp_frame`'s layout, not through `wire::parse`: the frame
    // may be the first buffer of a multi-buffer chain, whose IP length points past it.
    let is_ours = frame.len() >= HEADERS_LEN + 4
        && frame[12..14] == wire::parse::ethertype::IPV4.to_be_bytes()
        && frame[23] == wire::parse::proto::UDP
        && frame[36..38] == port.to_be_bytes();
    is_ours.then(|| u32::from_be_bytes(frame[HEADERS_LEN..HEADERS_LEN + 4].try_into().unwrap()))
}

/// The smallest `--size` txpush accepts: Ethernet's minimum frame.
pub const MIN_WIRE_SIZE: usize = 64;
/// The largest `--size` txpush accepts: a 9000-byte jumbo frame with its Ethernet header,
/// and FCS.
pub const MAX_WIRE_SIZE: usize = 9018;

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
            assert_eq!(frame[20..22], [0x40, 0], "don't fragment");
            assert_eq!(frame[40..44], [0, 0, 0, 1], "no checksum, then the pattern");
        }
    }
}
