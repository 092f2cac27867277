//! A small frame builder for fixtures: Ethernet, VLAN tags, IPv4 with options, IPv6 with
//! extension headers, TCP/UDP/ICMP, with correct lengths.

use std::net::IpAddr;

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp,
    /// Protocol number, no header.
    Raw(u8),
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    /// IPv4 option bytes (padded to 4).
    pub ipv4_options: usize,
    /// IPv6 extension headers, in order: 0 hop-by-hop, 43 routing, 60 dest-opts, 44 fragment.
    pub ipv6_extensions: Vec<u8>,
    /// Fragment offset in 8-byte units (IPv4 header, or the IPv6 fragment header).
    pub fragment_offset: u16,
    pub payload: usize,
}

pub fn frame(src: &str, dst: &str, l4: L4) -> Frame {
    Frame {
        vlans: vec![],
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        l4,
        ipv4_options: 0,
        ipv6_extensions: vec![],
        fragment_offset: 0,
        payload: 18,
    }
}

pub fn tcp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    frame(
        src,
        dst,
        L4::Tcp {
            sport: 40000,
            dport,
        },
    )
    .build()
}

pub fn udp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    frame(
        src,
        dst,
        L4::Udp {
            sport: 40000,
            dport,
        },
    )
    .build()
}

impl Frame {
    pub fn vlan(mut self, tpid: u16) -> Self {
        self.vlans.push(tpid);
        self
    }
    pub fn options(mut self, bytes: usize) -> Self {
        self.ipv4_options = bytes;
        self
    }
    pub fn extensions(mut self, kinds: &[u8]) -> Self {
        self.ipv6_extensions = kinds.to_vec();
        self
    }
    pub fn fragment(mut self, offset: u16) -> Self {
        self.fragment_offset = offset;
        self
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let mut bytes = match self.l4 {
            L4::Tcp { sport, dport } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x02; // SYN
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload) as u16).to_be_bytes());
                h
            }
            L4::Icmp => vec![8, 0, 0, 0, 0, 1, 0, 1],
            L4::Raw(_) => vec![],
        };
        bytes.extend(std::iter::repeat_n(0xab, self.payload));
        let proto = match (self.l4, self.dst) {
            (L4::Tcp { .. }, _) => 6,
            (L4::Udp { .. }, _) => 17,
            (L4::Icmp, IpAddr::V4(_)) => 1,
            (L4::Icmp, IpAddr::V6(_)) => 58,
            (L4::Raw(proto), _) => proto,
        };
        (proto, bytes)
    }

    pub fn build(&self) -> Vec<u8> {
        let (proto, l4) = self.l4_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for (index, tpid) in self.vlans.iter().enumerate() {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(100 + index as u16).to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let options = self.ipv4_options.div_ceil(4) * 4;
                let header_len = 20 + options;
                let mut h = vec![0u8; header_len];
                h[0] = 0x40 | (header_len / 4) as u8;
                h[2..4].copy_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
                h[6..8].copy_from_slice(&(self.fragment_offset & 0x1fff).to_be_bytes());
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&src.octets());
                h[16..20].copy_from_slice(&dst.octets());
                for byte in &mut h[20..] {
                    *byte = 1; // NOP options
                }
                let checksum = wire::checksum::checksum(&h);
                h[10..12].copy_from_slice(&checksum.to_be_bytes());
                out.extend(h);
                out.extend(l4);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                out.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut extensions = Vec::new();
                for (index, kind) in self.ipv6_extensions.iter().enumerate() {
                    let next = self
                        .ipv6_extensions
                        .get(index + 1)
                        .copied()
                        .unwrap_or(proto);
                    if *kind == 44 {
                        let offset = (self.fragment_offset << 3).to_be_bytes();
                        extensions.extend_from_slice(&[next, 0, offset[0], offset[1], 0, 0, 0, 1]);
                    } else {
                        // 16 bytes: hdr_ext_len 1.
                        let mut ext = vec![0u8; 16];
                        ext[0] = next;
                        ext[1] = 1;
                        extensions.extend(ext);
                    }
                }
                let first = self.ipv6_extensions.first().copied().unwrap_or(proto);
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&((extensions.len() + l4.len()) as u16).to_be_bytes());
                h[6] = first;
                h[7] = 64;
                h[8..24].copy_from_slice(&src.octets());
                h[24..40].copy_from_slice(&dst.octets());
                out.extend(h);
                out.extend(extensions);
                out.extend(l4);
            }
            _ => panic!("mixed families"),
        }
        out
    }
}

/// Offsets where each header of `frame` starts (and just before), to cut it there.
/// Cuts inside the Ethernet header are left out: BPF_PROG_TEST_RUN refuses frames shorter
/// than ETH_HLEN (bpf_test_init in net/bpf/test_run.c), and drivers drop such runts anyway.
pub fn header_boundaries(frame: &Frame) -> Vec<usize> {
    let mut cuts = vec![];
    let mut offset = 14 + 4 * frame.vlans.len();
    for index in 0..frame.vlans.len() {
        cuts.push(14 + 4 * index);
        cuts.push(14 + 4 * index + 2);
    }
    cuts.push(offset);
    match frame.dst {
        IpAddr::V4(_) => {
            offset += 20 + frame.ipv4_options.div_ceil(4) * 4;
            cuts.push(offset - 1);
        }
        IpAddr::V6(_) => {
            offset += 40;
            cuts.push(offset - 1);
            for kind in &frame.ipv6_extensions {
                cuts.push(offset);
                offset += if *kind == 44 { 8 } else { 16 };
            }
        }
    }
    cuts.push(offset);
    cuts.push(offset + 3);
    cuts
}
