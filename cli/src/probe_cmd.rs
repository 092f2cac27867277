//! `fastpath probe [IFACE...]`: what each interface can do for this data path.

use std::path::PathBuf;

use anyhow::Context;
use hw_profiles::Profiles;
use probe::{ProbeReport, Trial, interfaces, probe};

use crate::output;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Interfaces to probe; default every interface but lo.
    pub ifaces: Vec<String>,
    /// Run the attach and bind trials beside an XDP program already attached (it is never
    /// replaced; the mode slot it holds is reported busy).
    #[arg(long)]
    pub force: bool,
    /// A directory of extra profiles (*.toml); they add to and override the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<PathBuf>,
}

pub fn run(args: &ProbeArgs, json: bool) -> anyhow::Result<()> {
    let profiles = match &args.profiles {
        Some(dir) => Profiles::with_dir(dir)?,
        None => Profiles::builtin(),
    };
    let ifaces = if args.ifaces.is_empty() {
        interfaces()
    } else {
        args.ifaces.clone()
    };
    let mut reports = Vec::new();
    for iface in &ifaces {
        reports
            .push(probe(iface, args.force, &profiles).with_context(|| format!("probe {iface}"))?);
    }
    if json {
        output::json(&reports);
    } else {
        for report in &reports {
            print_report(report);
        }
    }
    Ok(())
}

fn show<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".into(), ToString::to_string)
}

fn trial(trial: &Trial) -> String {
    match (&trial.ok, &trial.error) {
        (true, _) => "ok".into(),
        (false, Some(error)) => format!("failed: {error}"),
        (false, None) => "failed".into(),
    }
}

fn print_report(report: &ProbeReport) {
    println!("== {} ==", report.iface);
    let channels = report.queues.channels.as_ref().map(|c| {
        format!(
            "combined {}/{} rx {}/{} tx {}/{} (current/max)",
            c.combined, c.max_combined, c.rx, c.max_rx, c.tx, c.max_tx
        )
    });
    let ntuple = &report.ntuple;
    let ntuple_text = match (&ntuple.capacity, &ntuple.error) {
        (Some(capacity), _) => format!(
            "{}, {capacity} rule slots, {} in use",
            if ntuple.enabled { "on" } else { "off" },
            show(&ntuple.rules)
        ),
        (None, Some(error)) => format!("unavailable: {error}"),
        (None, None) => "unavailable".into(),
    };
    let list = |items: &[&str]| {
        if items.is_empty() {
            "-".into()
        } else {
            items.join(", ")
        }
    };
    let facts = [
        (
            "driver",
            format!("{} {}", report.driver, report.driver_version),
        ),
        ("firmware", report.firmware.clone()),
        ("bus", report.bus_info.clone()),
        (
            "mtu / max",
            format!("{} / {}", show(&report.mtu), show(&report.max_mtu)),
        ),
        (
            "speed",
            report
                .speed_mbps
                .map_or("-".into(), |s| format!("{s} Mb/s")),
        ),
        ("channels", channels.unwrap_or_else(|| "-".into())),
        ("rss table", show(&report.queues.rss_indirection)),
        ("ntuple", ntuple_text),
        ("xdp features", list(&report.xdp_features)),
        ("zc max segs", show(&report.zc_max_segs)),
        ("rx metadata", list(&report.rx_metadata)),
        ("xsk features", list(&report.xsk_features)),
        (
            "existing xdp",
            report.existing_program.as_ref().map_or("none".into(), |p| {
                format!("program {} in {} mode", p.id, p.mode)
            }),
        ),
        ("skb mode", trial(&report.modes.skb)),
        ("drv mode", trial(&report.modes.drv)),
        ("hw mode", trial(&report.modes.hw)),
        ("af_xdp copy", trial(&report.afxdp.copy)),
        ("af_xdp zero-copy", trial(&report.afxdp.zero_copy)),
        (
            "profile",
            report
                .profile
                .as_ref()
                .map_or("none matches the driver".into(), |p| {
                    format!("{} ({} differences)", p.name, p.differences.len())
                }),
        ),
    ];
    let rows: Vec<Vec<String>> = facts
        .into_iter()
        .map(|(key, value)| vec![key.to_string(), value])
        .collect();
    output::table(&["fact", "value"], &rows);
    if let Some(profile) = &report.profile
        && !profile.differences.is_empty()
    {
        println!("differences from profile {}:", profile.name);
        for difference in &profile.differences {
            println!("  - {difference}");
        }
    }
    let rows: Vec<Vec<String>> = report
        .recommendations
        .iter()
        .map(|r| vec![r.setting.clone(), r.value.clone(), r.reason.clone()])
        .collect();
    output::table(&["setting", "recommended", "why"], &rows);
    println!();
}
