//! The steering program loaded for timing with `BPF_PROG_TEST_RUN`, with rules of one kind
//! and a probe packet that takes the lookup path under test: shared by `steer-bench` and
//! the criterion suite `steer_match`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use offload::{
    rules::{Action, IpNet, PortRange, Protocol, RuleSpec},
    test_run::TestBench,
};
use wire::build::{ChecksumFill, FrameBuilder};

use crate::error::BenchError;

/// The lookup paths: "exact" (hash), "prefix" (the longest destination prefix + its
/// chain), "miss" (default action); the same over IPv6 ("exact6", "prefix6", "miss6"); and
/// "prefix-trie", "miss-trie": the IPv4 prefix and miss paths with rules of 12 more prefix
/// lengths, which no probe matches, so the IPv4 prefixes are looked up in the LPM trie
/// instead of a hash per length (the peer of "prefix" and "miss" in the same run).
pub const PATHS: [&str; 8] = [
    "exact",
    "prefix",
    "miss",
    "exact6",
    "prefix6",
    "miss6",
    "prefix-trie",
    "miss-trie",
];

/// Loads the program with `count` rules of the kind `path` exercises, and returns it with
/// a probe packet that matches the last rule added (or none, for the miss paths), its
/// verdict checked once.
pub fn prepare(count: usize, path: &str) -> Result<(TestBench, Vec<u8>), BenchError> {
    let bench = TestBench::load(&format!("bench-{path}-{count}"), Action::Pass)?;
    let v6 = path.ends_with('6');
    let mut specs: Vec<RuleSpec> = (0..count).map(|index| rule(index, path, v6)).collect();
    if path.ends_with("-trie") {
        specs.extend(other_lengths());
    }
    bench.steering()?.add_rules(&specs)?;
    let miss = path.starts_with("miss");
    let target = match (miss, v6) {
        (true, false) => IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)),
        (true, true) => IpAddr::from(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 1)),
        (false, _) => address(count - 1, v6),
    };
    let packet = udp_packet(target, 53, v6);
    let expected = if miss { 2 } else { 1 }; // XDP_PASS by default, XDP_DROP by the rule
    let verdict = bench.run(&packet)?.verdict;
    if verdict != expected {
        return Err(BenchError::ProbeVerdict {
            path: path.to_string(),
            verdict,
            expected,
        });
    }
    Ok((bench, packet))
}

/// 10.a.b.1 (or 2001:db8:a:b::1) for rule `index`: a distinct host (exact) or /24 (/64)
/// per rule.
fn address(index: usize, v6: bool) -> IpAddr {
    let (high, low) = ((index >> 8) as u8, index as u8);
    if v6 {
        Ipv6Addr::new(0x2001, 0xdb8, high.into(), low.into(), 0, 0, 0, 1).into()
    } else {
        Ipv4Addr::new(10, high, low, 1).into()
    }
}

fn rule(index: usize, path: &str, v6: bool) -> RuleSpec {
    let mut spec = RuleSpec::new(Action::Drop);
    spec.proto = Some(Protocol::Udp);
    let host = address(index, v6);
    if path.starts_with("exact") {
        spec.dst = Some(IpNet::from(host));
        spec.dport = Some(PortRange { lo: 53, hi: 53 });
    } else {
        let len = if v6 { 64 } else { 24 };
        spec.dst = Some(IpNet::new(host, len).unwrap().trunc());
        spec.dport = Some(PortRange { lo: 1, hi: 1024 });
    }
    spec
}

/// IPv4 rules of 12 prefix lengths (/9 to /20 under 172.16.0.0) that cover no probe.
fn other_lengths() -> Vec<RuleSpec> {
    (9..=20)
        .map(|len| {
            let mut spec = RuleSpec::new(Action::Drop);
            let net = IpAddr::from(Ipv4Addr::new(172, 16, 0, 0));
            spec.dst = Some(IpNet::new(net, len).unwrap().trunc());
            spec
        })
        .collect()
}

/// Ethernet + IPv4 + UDP from 198.51.100.7:40000, 64 bytes on the wire (IPv6: from
/// 2001:db8:ffff::7, 84 bytes).
fn udp_packet(dst: IpAddr, dport: u16, v6: bool) -> Vec<u8> {
    let src = if v6 {
        IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7))
    } else {
        IpAddr::from(Ipv4Addr::new(198, 51, 100, 7))
    };
    FrameBuilder {
        ipv4_id: 0,
        ..FrameBuilder::udp(src, dst)
    }
    .ports(40000, dport)
    .payload([0u8; 18])
    .checksum(ChecksumFill::Zero)
    .build()
}
