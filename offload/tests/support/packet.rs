//! Frames for the fixtures, built with `wire::build` (the one frame builder): short
//! constructors and the header boundaries to cut a frame at.

use wire::build::{FrameBuilder, L4};

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const TCP_SYN: u8 = 0x02;
const SRC_PORT: u16 = 40000;

/// A frame with 18 payload bytes between two addresses of one family.
pub fn frame(src: &str, dst: &str, l4: L4) -> FrameBuilder {
    FrameBuilder {
        l4,
        ..FrameBuilder::udp(src.parse().unwrap(), dst.parse().unwrap())
    }
    .payload(vec![0xab; 18])
}

pub fn tcp_to(dport: u16) -> L4 {
    L4::Tcp {
        src_port: SRC_PORT,
        dst_port: dport,
        flags: TCP_SYN,
    }
}

pub fn udp_to(dport: u16) -> L4 {
    L4::Udp {
        src_port: SRC_PORT,
        dst_port: dport,
    }
}

/// An echo request (ICMP or ICMPv6, by the addresses' family).
pub const ECHO: L4 = L4::Icmp { kind: 8, code: 0 };

pub fn tcp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    frame(src, dst, tcp_to(dport)).build()
}

pub fn udp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    frame(src, dst, udp_to(dport)).build()
}

/// Offsets where each header of `frame` starts (and just before), to cut it there.
/// Cuts inside the Ethernet header are left out: BPF_PROG_TEST_RUN refuses frames shorter
/// than ETH_HLEN (bpf_test_init in net/bpf/test_run.c), and drivers drop such runts anyway.
pub fn header_boundaries(frame: &FrameBuilder) -> Vec<usize> {
    let mut cuts = vec![];
    let mut offset = 14 + 4 * frame.vlans.len();
    for index in 0..frame.vlans.len() {
        cuts.push(14 + 4 * index);
        cuts.push(14 + 4 * index + 2);
    }
    cuts.push(offset);
    if frame.dst.is_ipv4() {
        offset += 20 + frame.ipv4_options.div_ceil(4) * 4;
        cuts.push(offset - 1);
    } else {
        offset += 40;
        cuts.push(offset - 1);
        for kind in &frame.ipv6_extensions {
            cuts.push(offset);
            offset += if *kind == 44 { 8 } else { 16 };
        }
    }
    cuts.push(offset);
    cuts.push(offset + 3);
    cuts
}
