//! Times the steering program with BPF_PROG_TEST_RUN repeat, with 1, 100 and 10,000 rules,
//! against a bare XDP_PASS program timed in the same run. A report, not a test.
//!
//! `cargo xtask bench` (root). `--json` prints the rows as JSON; `--rules N` (repeatable)
//! times only those rule counts, e.g. `--rules 10000` for the goal's rows alone.

use std::time::Duration;

use anyhow::Result;
use bench::steer_fixture;
use offload::test_run::TestBench;
use serde::Serialize;

/// Runs per timing call, and calls per figure (the median is kept).
const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 7;

#[derive(Serialize)]
struct TimingRow {
    rules: usize,
    /// Which lookup matched: see `steer_fixture::PATHS`.
    path: &'static str,
    steer_ns: f64,
    bare_pass_ns: f64,
    ratio: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let as_json = args.iter().any(|arg| arg == "--json");
    let counts = rule_counts(&args)?;
    let mut rows = Vec::new();
    for count in counts {
        for path in steer_fixture::PATHS {
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
        "{:>6}  {:<11}  {:>9}  {:>9}  {:>5}",
        "rules", "path", "steer ns", "bare ns", "ratio"
    );
    for row in &rows {
        println!(
            "{:>6}  {:<11}  {:>9.1}  {:>9.1}  {:>5.2}",
            row.rules, row.path, row.steer_ns, row.bare_pass_ns, row.ratio
        );
    }
    Ok(())
}

/// The rule counts named by `--rules N` (repeatable), or 1, 100 and 10,000.
fn rule_counts(args: &[String]) -> Result<Vec<usize>> {
    let mut counts = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--rules" {
            let value = rest
                .next()
                .ok_or_else(|| anyhow::anyhow!("--rules needs a rule count"))?;
            let count: usize = value
                .parse()
                .map_err(|error| anyhow::anyhow!("--rules {value}: {error}"))?;
            anyhow::ensure!(count > 0, "--rules {value}: at least one rule");
            counts.push(count);
        }
    }
    if counts.is_empty() {
        counts = vec![1, 100, 10_000];
    }
    Ok(counts)
}

/// The steering program with `count` rules of the kind `path` exercises, timed against
/// the bare program on the same packet.
fn measure(count: usize, path: &'static str) -> Result<TimingRow> {
    let (bench, packet) = steer_fixture::prepare(count, path)?;
    let steer = median(&bench, "steer", &packet)?;
    let bare = median(&bench, "bare_pass", &packet)?;
    Ok(TimingRow {
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
