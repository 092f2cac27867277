//! The one parsing policy, checked: the kernel's parser (the steering program's, through the
//! `parse_probe` program and BPF_PROG_TEST_RUN) and user space's (`wire::parse`) read the
//! same corpus of valid and malformed frames and must agree on every one.

mod support;

use std::net::IpAddr;

use offload::{rules::Action, test_run::TestBench};
use offload_common::{FAMILY_V4, FAMILY_V6, ParseReport, fragment, parse_result};
use support::require_root;
use wire::{
    FrameBuilder,
    build::{ChecksumFill, L4},
    parse::{ETH_HLEN, ethertype, proto, tcp_flags},
};

/// What both parsers report, in one shape.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    NotIp,
    Malformed,
    Ip {
        family: u8,
        proto: u8,
        ports: Option<(u16, u16)>,
        fragment: u8,
        fragment_id: u32,
        src: [u8; 16],
        dst: [u8; 16],
    },
}

fn from_kernel(report: &ParseReport) -> Reading {
    match report.result {
        parse_result::NOT_IP => Reading::NotIp,
        parse_result::MALFORMED => Reading::Malformed,
        _ => {
            let mut src = [0u8; 16];
            for (bytes, word) in src.chunks_exact_mut(4).zip(report.src) {
                bytes.copy_from_slice(&word.to_ne_bytes());
            }
            Reading::Ip {
                family: report.family,
                proto: report.proto,
                ports: (report.has_ports != 0).then_some((report.sport, report.dport)),
                fragment: report.fragment,
                // The kernel reports an id only for fragments.
                fragment_id: if report.fragment == fragment::NONE {
                    0
                } else {
                    report.fragment_id
                },
                src,
                dst: report.dst,
            }
        }
    }
}

fn from_user_space(frame: &[u8]) -> Reading {
    match wire::parse(frame) {
        Err(_) => Reading::Malformed,
        Ok(None) => Reading::NotIp,
        Ok(Some(headers)) => {
            let (src, dst) = headers.addresses(frame);
            let mut src16 = [0u8; 16];
            let mut dst16 = [0u8; 16];
            src16[..src.len()].copy_from_slice(src);
            dst16[..dst.len()].copy_from_slice(dst);
            // An IPv6 atomic fragment (offset 0, no M) is a whole datagram to both.
            let kind = match headers.fragment {
                Some(f) if f.offset != 0 => fragment::LATER,
                Some(f) if f.more => fragment::FIRST,
                _ => fragment::NONE,
            };
            Reading::Ip {
                family: if headers.ipv4() { FAMILY_V4 } else { FAMILY_V6 },
                proto: headers.protocol,
                ports: headers.ports,
                fragment: kind,
                fragment_id: if kind == fragment::NONE {
                    0
                } else {
                    headers.fragment.map_or(0, |f| f.id)
                },
                src: src16,
                dst: dst16,
            }
        }
    }
}

/// Valid frames over the policy's whole range.
fn valid_frames() -> Vec<Vec<u8>> {
    let families: [(IpAddr, IpAddr); 2] = [
        ("10.0.0.1".parse().unwrap(), "10.9.8.7".parse().unwrap()),
        ("fd00::1".parse().unwrap(), "fd00:9::7".parse().unwrap()),
    ];
    let mut frames = Vec::new();
    for (src, dst) in families {
        let l4s = [
            L4::Tcp {
                src_port: 40000,
                dst_port: 443,
                flags: tcp_flags::SYN,
            },
            L4::Udp {
                src_port: 5353,
                dst_port: 53,
            },
            L4::Icmp { kind: 8, code: 0 },
            L4::Other(47),
        ];
        for l4 in l4s {
            for tags in 0..=3 {
                for fill in [ChecksumFill::Complete, ChecksumFill::Partial] {
                    let mut builder = FrameBuilder {
                        l4,
                        ..FrameBuilder::udp(src, dst)
                    }
                    .payload(vec![0x5a; 64])
                    .checksum(fill);
                    for tag in 0..tags {
                        let tpid = if tag == 0 {
                            ethertype::QINQ
                        } else {
                            ethertype::VLAN
                        };
                        builder = builder.vlan(tpid, 100 + tag);
                    }
                    frames.push(builder.build());
                }
            }
            let datagram = FrameBuilder {
                l4,
                ..FrameBuilder::udp(src, dst)
            }
            .payload(vec![1; 3000]);
            frames.extend(datagram.fragments(1500, 0xabcd));
            if src.is_ipv6() {
                for extensions in [
                    vec![proto::HOPOPTS],
                    vec![proto::HOPOPTS, proto::ROUTING, proto::DSTOPTS],
                    vec![proto::FRAGMENT],
                    vec![proto::DSTOPTS; 6],
                    vec![proto::DSTOPTS; 7],
                ] {
                    let mut builder = FrameBuilder {
                        l4,
                        ..FrameBuilder::udp(src, dst)
                    };
                    builder.ipv6_extensions = extensions;
                    frames.push(builder.build());
                }
            }
        }
        // Ethernet padding after a short packet.
        let mut padded = FrameBuilder::udp(src, dst).build();
        padded.resize(padded.len().max(60), 0);
        frames.push(padded);
    }
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    frames.push(arp);
    frames
}

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Malformed and odd frames: every valid frame truncated at each header boundary region, and
/// with header bytes overwritten at random (lengths, versions, offsets, next headers).
fn mutated_frames(valid: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::new();
    for frame in valid {
        // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header.
        for len in (ETH_HLEN..frame.len().min(120)).step_by(3) {
            frames.push(frame[..len].to_vec());
        }
        for _ in 0..40 {
            let mut mutated = frame.clone();
            for _ in 0..1 + random.below(3) {
                let at = random.below(mutated.len().min(110));
                mutated[at] = match random.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => mutated[at].wrapping_add(1 + random.below(8) as u8),
                    _ => random.next() as u8,
                };
            }
            frames.push(mutated);
        }
    }
    frames
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn kernel_and_user_space_parsers_agree_on_every_frame() {
    require_root("parse differential");
    let bench = TestBench::load("fixture-differential", Action::Pass).expect("load program");
    let valid = valid_frames();
    let corpus: Vec<Vec<u8>> = valid
        .iter()
        .cloned()
        .chain(mutated_frames(&valid))
        .collect();
    let mut disagreements = Vec::new();
    let mut kinds = [0usize; 3];
    for frame in &corpus {
        let kernel = from_kernel(&bench.parse_report(frame).expect("run parse_probe"));
        let user = from_user_space(frame);
        kinds[match user {
            Reading::NotIp => 0,
            Reading::Malformed => 1,
            Reading::Ip { .. } => 2,
        }] += 1;
        if kernel != user && disagreements.len() < 5 {
            disagreements.push(format!(
                "{frame:02x?}\n  kernel {kernel:?}\n  user   {user:?}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "the parsers disagree on:\n{}",
        disagreements.join("\n")
    );
    // The corpus must exercise all three outcomes in numbers.
    assert!(
        kinds.iter().all(|&n| n >= 20),
        "corpus outcomes (not ip, malformed, ip): {kinds:?}"
    );
    // Every valid frame parses as IP or non-IP, never malformed.
    assert!(
        valid
            .iter()
            .all(|f| from_user_space(f) != Reading::Malformed)
    );
}
