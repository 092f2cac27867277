//! The cost of a hop in the IO module chain: `BPF_PROG_TEST_RUN` of the chain's entry
//! with 1, 2, 4 and 8 pass-through modules (each continues; the last one's continue ends
//! the chain with a pass) next to a monolithic peer that does the same parse then passes,
//! all in one run; then `steer` as the chain's module against `steer` alone
//! (`chain_bench_steer.rs`), in the same run.
//!
//! `cargo xtask bench-chain` builds and runs this (as root). The chain is the real one:
//! `offload::modules::load` attaches it to the dut veth of a lab made for the run (torn
//! down after), and the modules are built from a small C source with clang against the
//! SDK. The peer is the same entry program loaded on its own, its state saying one module
//! runs while its program array is empty: it parses, its tail call finds no program, and
//! it passes, so it is the entry's parse without any hop. A report, not a test: it asserts
//! nothing about speed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use aya::{
    EbpfLoader,
    maps::Array,
    programs::{TestRun, TestRunOptions, Xdp},
};
use aya_obj::programs::XdpAttachType;
use lab::Lab;
use offload::modules::{self, CHAIN_OBJECT, Position};
use offload_common::module::{ChainState, maps};

#[path = "chain_bench_steer.rs"]
mod steer;
#[path = "chain_bench_trace.rs"]
mod trace;

/// A module that only continues: one hop.
const PASS_THROUGH: &str = r#"
#include "module.h"
FASTPATH_MODULE("hop", "1.0.0", 1);
SEC("xdp.frags")
int hop(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	return fp ? fp_continue(ctx, fp) : XDP_PASS;
}
"#;

const XDP_PASS: u32 = 2;
const CHAINS: [usize; 4] = [1, 2, 4, 8];

fn main() -> Result<()> {
    let mut repeat = 1_000_000u32;
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value after the option");
        match arg.as_str() {
            "--repeat" => repeat = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            _ => bail!("usage: chain-bench [--repeat N] [--runs N]"),
        }
    }
    ensure!(
        runs > 0 && repeat > 0,
        "--repeat and --runs must be positive"
    );
    Lab::teardown_on_signals();
    let dir = std::env::temp_dir().join(format!("fastpath-chain-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let object = build_module(&dir);
    let prefix = format!("fpcb{:04}", std::process::id() % 10000);
    let _ = Lab::down(&prefix);
    let lab = Lab::up(&prefix).context("lab up")?;
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let measured = object.and_then(|object| {
        Lab::run_in(&namespace, move || measure(&iface, &object, repeat, runs))?
    });
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
    let (peer, chains, steer_rows, trace_rows) = measured?;
    report(peer, &chains, repeat, runs);
    steer::report(&steer_rows);
    trace::report(&trace_rows);
    Ok(())
}

/// Builds the pass-through module with clang against the SDK.
fn build_module(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("hop.c");
    let object = dir.join("hop.o");
    std::fs::write(&source, PASS_THROUGH)?;
    let output = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-I"])
        .arg(modules::scaffold::sdk_dir().join("c"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .output()
        .context("run clang (`cargo xtask setup` installs it)")?;
    ensure!(
        output.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(object)
}

/// What one run measured: the peer's time, each chain's (modules, time), steer's rows,
/// the tracer's rows.
type Measured = (
    Duration,
    Vec<(usize, Duration)>,
    Vec<steer::SteerRow>,
    Vec<trace::TraceRow>,
);

/// The peer's time, then each chain's (modules, time), per packet; then steer's rows.
fn measure(iface: &str, object: &Path, repeat: u32, runs: usize) -> Result<Measured> {
    let packet = udp_frame(9);
    let mut chains = Vec::new();
    let mut loaded = 0;
    let result = (|| -> Result<()> {
        for modules in CHAINS {
            while loaded < modules {
                let name = format!("hop{loaded}");
                modules::load(iface, object, Some(&name), &Position::Last)
                    .with_context(|| format!("load {name}"))?;
                loaded += 1;
            }
            let entry = offload::bpffs::Bpffs::get()
                .fastpath_dir()
                .join(iface)
                .join("chain/entry");
            let program = Xdp::from_pin(&entry, XdpAttachType::Interface)
                .with_context(|| format!("open {}", entry.display()))?;
            chains.push((
                modules,
                median_time(&program, &packet, XDP_PASS, repeat, runs)?,
            ));
        }
        Ok(())
    })();
    for index in (0..loaded).rev() {
        modules::unload(iface, &format!("hop{index}"))
            .with_context(|| format!("unload hop{index}"))?;
    }
    result?;
    let peer = peer_time(&packet, repeat, runs)?;
    let steer_rows = steer::measure(iface, repeat, runs, udp_frame, median_time)?;
    let trace_rows = trace::measure(iface, object, repeat, runs, median_time)?;
    Ok((peer, chains, steer_rows, trace_rows))
}

/// The entry loaded on its own with an empty program array: the parse, no hop.
fn peer_time(packet: &[u8], repeat: u32, runs: usize) -> Result<Duration> {
    // A transient pin folder: removed on drop, and pruned if this process is killed.
    let pins = offload::Transient::create()?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.pins().maps_dir())
        .load(CHAIN_OBJECT)?;
    let mut state: Array<_, ChainState> = ebpf
        .map_mut(maps::STATE)
        .context("FP_STATE in the chain object")?
        .try_into()?;
    let running = ChainState {
        modules: 1,
        frags: 1,
        ..ChainState::default()
    };
    state.set(0, running, 0)?;
    let program: &mut Xdp = ebpf
        .program_mut("chain_entry_frags")
        .context("chain_entry_frags in the chain object")?
        .try_into()?;
    program.load()?;
    median_time(program, packet, XDP_PASS, repeat, runs)
}

/// The median over `runs` of the mean time per packet of `repeat` runs in the kernel; the
/// program must return `expected`.
fn median_time(
    program: &Xdp,
    packet: &[u8],
    expected: u32,
    repeat: u32,
    runs: usize,
) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let result = program.test_run(TestRunOptions {
            data_in: Some(packet),
            repeat,
            ..TestRunOptions::new()
        })?;
        ensure!(
            result.return_value == expected,
            "the program returned {} for the UDP frame, not {expected}",
            result.return_value
        );
        times.push(result.duration);
    }
    times.sort();
    Ok(times[runs / 2])
}

/// A 64-byte Ethernet/IPv4/UDP frame, 10.77.0.1:4000 -> 10.77.0.2:`port`.
fn udp_frame(port: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 64];
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 77, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 77, 0, 2]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let udp = &mut frame[34..42];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&port.to_be_bytes());
    udp[4..6].copy_from_slice(&30u16.to_be_bytes());
    frame
}

fn report(peer: Duration, chains: &[(usize, Duration)], repeat: u32, runs: usize) {
    println!(
        "BPF_PROG_TEST_RUN, 64-byte IPv4/UDP frame, median of {runs} runs of {repeat} repeats"
    );
    println!("{:<28} {:>10} {:>10}", "program", "ns/packet", "ns/hop");
    let nanos = |time: Duration| time.as_nanos() as f64;
    println!(
        "{:<28} {:>10.1} {:>10}",
        "monolithic (parse, pass)",
        nanos(peer),
        "-"
    );
    for (modules, time) in chains {
        let hop = (nanos(*time) - nanos(peer)) / *modules as f64;
        println!(
            "{:<28} {:>10.1} {:>10.1}",
            format!("entry + {modules} module(s)"),
            nanos(*time),
            hop
        );
    }
    // The slope over the chains: the hop's cost without the one-off cost of the first
    // tail call and the chain's end, and less sensitive to one noisy median.
    let points: Vec<(f64, f64)> = chains
        .iter()
        .map(|(modules, time)| (*modules as f64, nanos(*time)))
        .collect();
    let count = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance > 0.0 {
        let slope = covariance / variance;
        println!(
            "least-squares fit over the chains: {:.1} ns + {slope:.1} ns per hop",
            mean_y - slope * mean_x
        );
    }
}
