//! The steering program loaded for timing with `BPF_PROG_TEST_RUN`, with rules of one kind
//! and a probe packet that takes the lookup path under test: shared by `steer-bench` and
//! the criterion suite `steer_match`.

use std::net::Ipv4Addr;

use offload::{
    rules::{Action, IpNet, PortRange, Protocol, RuleSpec},
    test_run::TestBench,
};
use wire::build::{ChecksumFill, FrameBuilder};

use crate::error::BenchError;

/// The lookup paths: "exact" (hash), "prefix" (LPM trie + chain), "miss" (default action).
pub const PATHS: [&str; 3] = ["exact", "prefix", "miss"];

/// Loads the program with `count` rules of the kind `path` exercises, and returns it with
/// a probe packet that matches the last rule added (or none, for "miss"), its verdict
/// checked once.
pub fn prepare(count: usize, path: &str) -> Result<(TestBench, Vec<u8>), BenchError> {
    let bench = TestBench::load(&format!("bench-{path}-{count}"), Action::Pass)?;
    let specs: Vec<RuleSpec> = (0..count).map(|index| rule(index, path)).collect();
    bench.steering()?.add_rules(&specs)?;
    let target = match path {
        "miss" => Ipv4Addr::new(192, 0, 2, 1),
        _ => address(count - 1),
    };
    let packet = udp_packet(target, 53);
    let expected = match path {
        "miss" => 2, // XDP_PASS by default
        _ => 1,      // XDP_DROP by the rule
    };
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

/// 10.a.b.1 for rule `index`: a distinct host (exact) or /24 (prefix) per rule.
fn address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (index >> 8) as u8, index as u8, 1)
}

fn rule(index: usize, path: &str) -> RuleSpec {
    let mut spec = RuleSpec::new(Action::Drop);
    spec.proto = Some(Protocol::Udp);
    match path {
        "exact" => {
            spec.dst = Some(IpNet::from(std::net::IpAddr::from(address(index))));
            spec.dport = Some(PortRange { lo: 53, hi: 53 });
        }
        _ => {
            spec.dst = Some(IpNet::new(address(index).into(), 24).unwrap().trunc());
            spec.dport = Some(PortRange { lo: 1, hi: 1024 });
        }
    }
    spec
}

/// Ethernet + IPv4 + UDP from 198.51.100.7:40000, 64 bytes on the wire.
fn udp_packet(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    FrameBuilder {
        ipv4_id: 0,
        ..FrameBuilder::udp(Ipv4Addr::new(198, 51, 100, 7).into(), dst.into())
    }
    .ports(40000, dport)
    .payload([0u8; 18])
    .checksum(ChecksumFill::Zero)
    .build()
}
