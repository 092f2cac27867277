//! Times the steering program with BPF_PROG_TEST_RUN repeat, with 1, 100 and 10,000 rules,
//! against a bare XDP_PASS program timed in the same run. A report, not a test.
//!
//! `cargo xtask bench` (root). `--json` prints the rows as JSON.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context, Result};
use offload::{
    rules::{Action, IpNet, PortRange, Protocol, RuleSpec},
    test_run::TestBench,
};
use serde::Serialize;

/// Runs per timing call, and calls per figure (the median is kept).
const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 7;

#[derive(Serialize)]
struct Row {
    rules: usize,
    /// Which lookup matched: "exact" (hash), "prefix" (LPM trie + chain), "miss" (default).
    path: &'static str,
    steer_ns: f64,
    bare_pass_ns: f64,
    ratio: f64,
}

fn main() -> Result<()> {
    let as_json = std::env::args().any(|arg| arg == "--json");
    let mut rows = Vec::new();
    for count in [1usize, 100, 10_000] {
        for path in ["exact", "prefix", "miss"] {
            rows.push(measure(count, path)?);
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "steering program vs bare XDP_PASS, BPF_PROG_TEST_RUN repeat={REPEAT}, median of {ROUNDS}"
    );
    println!(
        "{:>6}  {:<6}  {:>9}  {:>9}  {:>5}",
        "rules", "path", "steer ns", "bare ns", "ratio"
    );
    for row in &rows {
        println!(
            "{:>6}  {:<6}  {:>9.1}  {:>9.1}  {:>5.2}",
            row.rules, row.path, row.steer_ns, row.bare_pass_ns, row.ratio
        );
    }
    Ok(())
}

/// `count` rules of the kind `path` exercises; the probe packet matches the last one added
/// (or none, for "miss").
fn measure(count: usize, path: &'static str) -> Result<Row> {
    let bench = TestBench::load(&format!("bench-{path}-{count}"), Action::Pass)?;
    let specs: Vec<RuleSpec> = (0..count).map(|index| rule(index, path)).collect();
    bench
        .steering()?
        .add_rules(&specs)
        .context("install rules")?;
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
    anyhow::ensure!(
        verdict == expected,
        "{path} probe got verdict {verdict}, expected {expected}"
    );

    let steer = median(&bench, "steer", &packet)?;
    let bare = median(&bench, "bare_pass", &packet)?;
    Ok(Row {
        rules: count,
        path,
        steer_ns: steer,
        bare_pass_ns: bare,
        ratio: steer / bare,
    })
}

fn median(bench: &TestBench, program: &str, packet: &[u8]) -> Result<f64> {
    let mut samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| bench.time(program, packet, REPEAT))
        .collect::<Result<_, _>>()?;
    samples.sort();
    Ok(samples[ROUNDS / 2].as_secs_f64() * 1e9)
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

/// Ethernet + IPv4 + UDP, 64 bytes on the wire without FCS padding concerns.
fn udp_packet(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 51, 100, 7]);
    ip[16..20].copy_from_slice(&dst.octets());
    let udp = &mut frame[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    frame
}
