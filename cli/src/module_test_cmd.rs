//! `fastpath module test FILE.o... --pcap IN.pcap [--expect EXPECT.json]`: a capture run
//! through a candidate chain with BPF_PROG_TEST_RUN, nothing attached.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use offload::modules::{
    ModuleObject,
    trial::{self, Trial, expect::Expectations, expect::Mismatch},
};
use serde::Serialize;

use crate::output;

#[derive(Args)]
pub struct TestArgs {
    /// The module objects, in chain order.
    #[arg(required = true, value_name = "FILE.o")]
    files: Vec<PathBuf>,
    /// The packets: a classic pcap or pcapng capture of Ethernet frames.
    #[arg(long, value_name = "IN.pcap")]
    pcap: PathBuf,
    /// Expected verdicts (and optionally modules and output frames) per packet; the command
    /// fails naming each packet that differs. Format: docs/modules.md, "Testing a module".
    #[arg(long, value_name = "EXPECT.json")]
    expect: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    trial: &'a Trial,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<&'a PathBuf>,
    mismatches: &'a [Mismatch],
}

pub fn run(args: &TestArgs, as_json: bool) -> anyhow::Result<()> {
    // Every input is checked before anything is loaded.
    let expectations = args.expect.as_deref().map(Expectations::read).transpose()?;
    let objects = args
        .files
        .iter()
        .map(|file| ModuleObject::read(file))
        .collect::<Result<Vec<_>, _>>()?;
    let packets = trial::packets_from_pcap(&args.pcap)?;
    let trial = trial::trial(&objects, &packets)
        .with_context(|| format!("run {} through the chain", args.pcap.display()))?;
    let mismatches = expectations
        .as_ref()
        .map(|expectations| expectations.check(&trial))
        .unwrap_or_default();
    if as_json {
        output::json(&Report {
            trial: &trial,
            expect: args.expect.as_ref(),
            mismatches: &mismatches,
        });
    } else {
        print_trial(&trial);
    }
    if let Some(expectations) = &expectations {
        let file = expectations.file.display();
        if mismatches.is_empty() {
            if !as_json {
                println!(
                    "{file}: all {} packets named match",
                    expectations.packets.len()
                );
            }
        } else {
            for mismatch in &mismatches {
                eprintln!("{mismatch}");
            }
            let numbers: Vec<String> = mismatches.iter().map(|m| m.packet.to_string()).collect();
            let message = format!(
                "{} of the {} packets {file} names differ: packet {}",
                mismatches.len(),
                expectations.packets.len(),
                numbers.join(", ")
            );
            if as_json {
                // The report above is the JSON; a second document would break its readers.
                eprintln!("error: {message}");
                std::process::exit(1);
            }
            bail!(message);
        }
    }
    Ok(())
}

pub fn print_trial(trial: &Trial) {
    let modules: Vec<String> = trial
        .modules
        .iter()
        .map(|module| format!("{} {}", module.name, module.version))
        .collect();
    println!(
        "chain: {} (frags {})",
        if modules.is_empty() {
            "no module".to_string()
        } else {
            modules.join(" -> ")
        },
        trial.frags
    );
    let rows: Vec<Vec<String>> = trial
        .packets
        .iter()
        .map(|outcome| {
            vec![
                outcome.packet.to_string(),
                outcome.verdict.to_string(),
                outcome.module.clone().unwrap_or_else(|| "-".into()),
                outcome.action.clone(),
                outcome.length.to_string(),
                outcome.changes.summary(),
            ]
        })
        .collect();
    output::table(
        &["packet", "verdict", "module", "action", "bytes", "changes"],
        &rows,
    );
    // Per (verdict, module): how many packets.
    let mut totals: BTreeMap<(String, String), usize> = BTreeMap::new();
    for outcome in &trial.packets {
        let key = (
            outcome.verdict.to_string(),
            outcome.module.clone().unwrap_or_default(),
        );
        *totals.entry(key).or_default() += 1;
    }
    let changed = trial
        .packets
        .iter()
        .filter(|outcome| !outcome.changes.is_empty())
        .count();
    let parts: Vec<String> = totals
        .iter()
        .map(|((verdict, module), count)| {
            if module.is_empty() {
                format!("{count} {verdict}")
            } else {
                format!("{count} {verdict} ({module})")
            }
        })
        .collect();
    let count = trial.packets.len();
    println!(
        "{count} {}: {}; {changed} changed",
        if count == 1 { "packet" } else { "packets" },
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    );
}
