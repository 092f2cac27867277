//! The cost per packet of a compiled security-group policy: `fastpath policy apply` on the
//! lab's dut (its client-side veth a member of `clients`, its backend-side veth of
//! `servers`), then `BPF_PROG_TEST_RUN` of the client-side interface's chain entry on two
//! 64-byte UDP frames from the client to a backend: one to a port `servers` allows (its
//! flow is tracked after the first run: the established path), one to a port it does not
//! (dropped every time, a new flow each time: the whole search). A report, not a test.
//!
//! Run as root: `cargo run -p firewall --example policy_bench` (the cost is the kernel's,
//! the build profile does not change it). The peer, in the same run, is the same interface's
//! firewall with an empty policy (parse, hop, conntrack look-up, no probe).

use std::{fmt::Write as _, net::IpAddr, path::Path, time::Instant};

use anyhow::{Context, Result, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use firewall::policy::{self, GroupPolicy};
use lab::Lab;

const REPEAT: u32 = 200_000;
const RUNS: usize = 5;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// `clients` and `servers` on the dut's veths, and `extra` more groups of CIDR members
/// (10.100.N.0/24) each letting `clients` in on a port of its own.
fn policy_text(client_side: &str, backend_side: &str, extra: usize) -> String {
    let mut text = format!(
        "[[group]]\nname = \"clients\"\nmembers = [\"{client_side}\"]\n\
         [[group]]\nname = \"servers\"\nmembers = [\"{backend_side}\"]\n\
         allow_in = [ {{ from = \"group:clients\", proto = \"udp\", port = 9 }},\n\
                      {{ from = \"group:clients\", proto = \"tcp\", port = \"8000-8080\" }},\n\
                      {{ from = \"0.0.0.0/0\", proto = \"icmp\" }} ]\n"
    );
    for index in 0..extra {
        let _ = write!(
            text,
            "[[group]]\nname = \"extra{index}\"\nmembers = [\"10.100.{}.{}/30\"]\n\
             allow_in = [ {{ from = \"group:clients\", proto = \"udp\", port = {} }} ]\n",
            index / 64,
            (index % 64) * 4,
            1000 + index
        );
    }
    text
}

fn main() -> Result<()> {
    lab::require_root("policy-bench");
    let lab = Lab::for_test("pb");
    let namespace = lab.dut.namespace.clone();
    let (client_side, backend_side) = (lab.dut.iface.clone(), lab.dut_lan.iface.clone());
    let (client, backend) = (lab.client.ipv4, lab.backends[0].ipv4);
    let rows = lab::netns::run_in(&namespace, move || {
        run(&client_side, &backend_side, client, backend)
    })
    .context("the dut's namespace")??;
    println!(
        "| policy | rules on the client's veth | masks | entries | apply (ms) | allowed, established (ns/packet) | forbidden, new (ns/packet) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// The median ns per packet of `frame` through the entry of `iface`'s chain, which must
/// return `expected`.
fn time(iface: &str, frame: &[u8], expected: u32) -> Result<f64> {
    let entry = offload::bpffs::Bpffs::get()
        .fastpath_dir()
        .join(iface)
        .join("chain/entry");
    let program = Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface)
        .with_context(|| format!("open {}", entry.display()))?;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })?;
        ensure!(
            result.return_value == expected,
            "returned {} instead of {expected}",
            result.return_value
        );
        times.push(result.duration.as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[RUNS / 2])
}

fn run(
    client_side: &str,
    backend_side: &str,
    client: IpAddr,
    backend: IpAddr,
) -> Result<Vec<String>> {
    let frame = |port: u16| {
        wire::build::FrameBuilder::udp(client, backend)
            .ports(4000, port)
            .payload(vec![0u8; 18])
            .build()
    };
    let (allowed, forbidden) = (frame(9), frame(10));
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        for extra in [0, 100, 1000] {
            let text = policy_text(client_side, backend_side, extra);
            let group_policy = GroupPolicy::parse(Path::new("bench.toml"), &text)?;
            let started = Instant::now();
            let applied = policy::apply(&group_policy, &text, false)?;
            let apply_ms = started.elapsed().as_secs_f64() * 1e3;
            let interface = applied
                .interfaces
                .iter()
                .find(|interface| interface.iface == client_side)
                .context("the client's veth in the policy")?;
            rows.push(format!(
                "| 2 members + {extra} CIDR groups | {} | {} | {} | {apply_ms:.0} | {:.1} | {:.1} |",
                interface.rules,
                interface.masks,
                interface.entries,
                time(client_side, &allowed, XDP_PASS)?,
                time(client_side, &forbidden, XDP_DROP)?,
            ));
        }
        policy::remove()?;
        // The peer: the same interface's firewall with an empty policy that accepts.
        let empty = std::env::temp_dir().join("policy-bench-empty.toml");
        std::fs::write(&empty, "default = \"accept\"\n")?;
        let started = Instant::now();
        firewall::apply(client_side, &firewall::Policy::read(&empty)?, false)?;
        let apply_ms = started.elapsed().as_secs_f64() * 1e3;
        let _ = std::fs::remove_file(&empty);
        rows.push(format!(
            "| peer: the firewall, empty policy | 0 | 0 | 0 | {apply_ms:.0} | {:.1} | {:.1} (passes) |",
            time(client_side, &allowed, XDP_PASS)?,
            time(client_side, &forbidden, XDP_PASS)?,
        ));
        Ok(())
    })();
    let _ = policy::remove();
    let _ = firewall::remove(client_side);
    result.map(|()| rows)
}
