//! The firewall's cost per packet against its rule count and its mask count: the real
//! chain (entry + the `firewall` module) attached to a lab veth, timed with
//! `BPF_PROG_TEST_RUN` on its entry; and how long each policy took to apply. A report,
//! not a test: it asserts nothing about speed.
//!
//! Run as root: `cargo run --release -p firewall --example firewall_bench [ROW...]`, a row
//! being `RULES:MASKS` or `RULES:MASKS:established` (no arguments: the table of
//! docs/firewall.md; e.g. `0:1 1000:4` runs those two rows).
//!
//! The frame is a 64-byte IPv4/UDP datagram no rule matches (the default, accept,
//! decides; the chain's end passes it), so every mask of the policy is probed. Its flow is
//! in the conntrack table after the first run (state new: the other side never answers;
//! the entry is found and refreshed). The peer of each run is the firewall with an empty
//! policy: the parse, the hop, the conntrack look-up and refresh, and no probe.
//!
//! An `established` row puts `ct_state = ["established", "related"]`, `accept` before the
//! policy's rules and runs one answer (the other way) before timing: the flow is
//! established, and the first rule accepts it right after conntrack, with no probe.
//!
//! A `tcp` row times a TCP segment instead (TCP tracking: Linux's state machine and
//! window checks): a repeated SYN on a new flow, or, `established`, the client's ACK after
//! a handshake run before timing.

use std::{fmt::Write as _, net::IpAddr, time::Instant};

use anyhow::{Context, Result, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use firewall::Policy;
use lab::Lab;

const REPEAT: u32 = 200_000;
const RUNS: usize = 5;
const XDP_PASS: u32 = 2;

/// A policy of `rules` rules over `masks` distinct masks (UDP, one destination port, a
/// source prefix whose length picks the mask), none matching 192.0.2.1; with
/// `established`, after a first rule accepting established and related packets.
fn policy(rules: usize, masks: usize, established: bool) -> String {
    let mut text = String::from("default = \"accept\"\n");
    if established {
        text.push_str(
            "[[rule]]\nname = \"replies\"\nct_state = [\"established\", \"related\"]\n\
             action = \"accept\"\n",
        );
    }
    for index in 0..rules {
        let mask = index % masks;
        let prefix = 32 - (mask % 24) as u32;
        let with_port = mask >= 24;
        // Networks inside 10.0.0.0/8 (some repeat at short prefixes: the first keeps them).
        let network = 0x0a00_0000u32 | (((index as u32) << (32 - prefix)) & 0x00ff_ffff);
        let address = std::net::Ipv4Addr::from(network);
        let _ = write!(
            text,
            "[[rule]]\nsrc = \"{address}/{prefix}\"\nproto = \"udp\"\n"
        );
        if with_port {
            let _ = writeln!(text, "dst_port = {}", 1000 + index % 100);
        }
        text.push_str("action = \"drop\"\n");
    }
    text
}

fn main() -> Result<()> {
    lab::require_root("firewall-bench");
    let lab = Lab::for_test("fb");
    let cases = cases_from_args()?;
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let rows = lab::netns::run_in(&namespace, move || run(&iface, &cases))
        .context("the dut's namespace")??;
    println!(
        "| rules | masks | flow | ns/packet (median of {RUNS} × {REPEAT}) | apply (ms) | rule add (µs) |"
    );
    println!("|------:|------:|---|------:|------:|------:|");
    for (case, masks, ns, apply_ms, add_us) in rows {
        let flow = match (case.established, case.tcp) {
            (true, false) => "established (rule 1 accepts)",
            (true, true) => "TCP established (rule 1 accepts)",
            (false, false) => "new",
            (false, true) => "TCP new (SYN again)",
        };
        let rules = case.rules + usize::from(case.established);
        println!("| {rules} | {masks} | {flow} | {ns:.1} | {apply_ms:.1} | {add_us} |");
    }
    Ok(())
}

/// One row of the report: what the policy was.
#[derive(Clone, Copy, Debug)]
struct Case {
    /// Filler rules (none matching the frame).
    rules: usize,
    /// Distinct masks they spread over.
    masks: usize,
    /// A first rule accepting established flows, and the frame's flow established.
    established: bool,
    /// The frame a TCP segment (else a UDP datagram).
    tcp: bool,
}

/// One row: the case, masks compiled, ns/packet, apply (ms), rule add (µs).
type Row = (Case, usize, f64, f64, u64);

/// The rows docs/firewall.md reports: (rules, masks, established).
const CASES: [(usize, usize, bool); 11] = [
    (0, 1, false),
    (1, 1, false),
    (1000, 1, false),
    (16_000, 1, false),
    (64_000, 1, false),
    (1000, 4, false),
    (1000, 16, false),
    (1000, 32, false),
    (1000, 48, false),
    (1000, 1, true),
    (1000, 48, true),
];

/// The rows named on the command line (`RULES:MASKS[:established]`), or all of [`CASES`].
fn cases_from_args() -> Result<Vec<Case>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let case = |(rules, masks, established)| Case {
        rules,
        masks,
        established,
        tcp: false,
    };
    if args.is_empty() {
        return Ok(CASES.into_iter().map(case).collect());
    }
    args.iter()
        .map(|arg| {
            let mut parts = arg.split(':');
            let usage =
                || format!("`{arg}`: expected RULES:MASKS[:established][:tcp], e.g. 1000:4");
            let rules = parts.next().with_context(usage)?.parse()?;
            let masks = parts.next().with_context(usage)?.parse::<usize>()?;
            let (mut established, mut tcp) = (false, false);
            for word in parts {
                match word {
                    "established" if !established && !tcp => established = true,
                    "tcp" if !tcp => tcp = true,
                    _ => anyhow::bail!(usage()),
                }
            }
            ensure!((1..=48).contains(&masks), "`{arg}`: masks must be 1 to 48");
            Ok(Case {
                tcp,
                ..case((rules, masks, established))
            })
        })
        .collect()
}

/// A TCP segment between the bench's two addresses, from 192.0.2.1 (`client`) or back.
fn tcp_segment(client: bool, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([10, 255, 0, 2]));
    let (src, dst, ports) = if client {
        (a, b, (4000, 9))
    } else {
        (b, a, (9, 4000))
    };
    wire::build::FrameBuilder {
        tcp_sequence: seq,
        tcp_ack: ack,
        ..wire::build::FrameBuilder::tcp(src, dst, flags)
    }
    .ports(ports.0, ports.1)
    .build()
}

fn run(iface: &str, cases: &[Case]) -> Result<Vec<Row>> {
    use wire::parse::tcp_flags::{ACK, SYN};
    let syn = tcp_segment(true, SYN, 1000, 0);
    let handshake = [
        syn.clone(),
        tcp_segment(false, SYN | ACK, 5000, 1001),
        tcp_segment(true, ACK, 1001, 5001),
    ];
    let client_ack = tcp_segment(true, ACK, 1001, 5001);
    let udp_frame =
        wire::build::FrameBuilder::udp(IpAddr::from([192, 0, 2, 1]), IpAddr::from([10, 255, 0, 2]))
            .ports(4000, 9)
            .payload(vec![0u8; 18])
            .build();
    let answer =
        wire::build::FrameBuilder::udp(IpAddr::from([10, 255, 0, 2]), IpAddr::from([192, 0, 2, 1]))
            .ports(9, 4000)
            .payload(vec![0u8; 18])
            .build();
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        for &case in cases {
            let Case {
                rules,
                masks,
                established,
                tcp,
            } = case;
            let (frame, setup): (&Vec<u8>, Vec<&Vec<u8>>) = match (tcp, established) {
                (false, false) => (&udp_frame, Vec::new()),
                // The flow opened (the default accepts it), then answered.
                (false, true) => (&udp_frame, vec![&udp_frame, &answer]),
                (true, false) => (&syn, Vec::new()),
                (true, true) => (&client_ack, handshake.iter().collect()),
            };
            let path = std::env::temp_dir().join(format!("firewall-bench-{rules}-{masks}.toml"));
            std::fs::write(&path, policy(rules, masks, established))?;
            let policy = Policy::read(&path)?;
            let started = Instant::now();
            let applied = firewall::apply(iface, &policy, false)?;
            let apply_ms = started.elapsed().as_secs_f64() * 1e3;
            let _ = std::fs::remove_file(&path);
            // Each row's flow starts untracked (an earlier row may have established it).
            firewall::conntrack::flush()?;
            let entry = offload::bpffs::Bpffs::get()
                .fastpath_dir()
                .join(iface)
                .join("chain/entry");
            let program = Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface)
                .with_context(|| format!("open {}", entry.display()))?;
            for frame in setup {
                let verdict = offload::test_run::run_once(&program, frame)?.verdict;
                ensure!(
                    verdict == XDP_PASS,
                    "setting up the flow: returned {verdict}"
                );
            }
            let mut times = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let result = program.test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat: REPEAT,
                    ..TestRunOptions::new()
                })?;
                ensure!(
                    result.return_value == XDP_PASS,
                    "returned {}",
                    result.return_value
                );
                times.push(result.duration.as_nanos() as f64);
            }
            times.sort_by(f64::total_cmp);
            // One rule appended in place to the policy just measured (the rule's own time,
            // as `rule add` reports it: from the lock to the last map update).
            let one = std::env::temp_dir().join("firewall-bench-one.toml");
            std::fs::write(
                &one,
                "[[rule]]\nname = \"added\"\nproto = \"tcp\"\ndst_port = 9\naction = \"drop\"\n",
            )?;
            let added = firewall::add_rule(iface, &Policy::read(&one)?)?;
            let _ = std::fs::remove_file(&one);
            rows.push((case, applied.masks, times[RUNS / 2], apply_ms, added.micros));
        }
        Ok(())
    })();
    firewall::remove(iface)?;
    result.map(|()| rows)
}
