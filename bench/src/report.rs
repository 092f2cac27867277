//! The benchmark runner's output: `results.json` (the schema below), `report.md` (its
//! tables) and the SVG plots, plus `compare` for two result files.
//!
//! # results.json, schema version 1
//!
//! - `schema`: 1.
//! - `machine`: `hostname`, `cpus`, `cpu_model`, `memory_gib`, `kernel`.
//! - `profile`: the NIC profile's name; `line_rate_gbps`: its (first) speed, when it has one.
//! - `git_revision`: the fastpath commit the runner was built from, when known.
//! - `started_unix`: seconds since the epoch at the start of the run.
//! - `settings`: the command's settings (`app`, `sizes`, `cores`, `duration_s`,
//!   `warmup_s`, `search`, `resolution`, `flows`, `tx_iface`, `rx_iface`).
//! - `rows`: one per (frame size, generator cores), each with
//!   - `saturation`: the trial at the highest offered rate, with the accounting of every
//!     frame (`offered`, `refused_by_driver`, `reached_dut`, `other_verdicts`,
//!     `dropped_at_socket`, `dropped_on_return`, `received`, `unaccounted`);
//!   - `throughput`: the search's answer (`criterion`, `rate_pps`, `trials`), absent with
//!     `--search none`;
//!   - `points`: at 10%, 50% and 90% of that answer: latency percentiles (ns), CPU busy
//!     fraction per core and cycles per packet;
//!   - `references`: Mpps of the in-kernel bound and the xsk-rs peer, measured in the same
//!     run at the same offered load as `saturation`;
//!   - `line_rate_mpps`: the profile's line rate for this frame size.
//!
//! Every rate is in packets per second unless its name says Mpps.

use std::{fmt::Write as _, path::Path};

use hw_profiles::line_rate_mpps;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    search::{Criterion, TrialOutcome},
    stats::Latency,
};

/// The version of results.json's layout; `compare` reads only its own.
pub const SCHEMA_VERSION: u32 = 1;

/// One run: where, how, and a row per frame size and core count (results.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`] of the build that wrote it.
    pub schema: u32,
    /// The machine it ran on.
    pub machine: Machine,
    /// The NIC profile.
    pub profile: String,
    /// The profile's line rate, when it has one.
    pub line_rate_gbps: Option<f64>,
    /// The commit the binary was built from, when git knew it.
    pub git_revision: Option<String>,
    /// When the run started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// What was asked for.
    pub settings: RunSettings,
    /// A row per generator core count and frame size.
    pub rows: Vec<Row>,
}

/// The machine a run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Its host name.
    pub hostname: String,
    /// CPUs online.
    pub cpus: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// The kernel release.
    pub kernel: String,
}

/// The settings of a run, as asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The app measured.
    pub app: String,
    /// Frame sizes on the wire.
    pub sizes: Vec<usize>,
    /// Generator core counts.
    pub cores: Vec<usize>,
    /// Seconds of each measured trial.
    pub duration_s: f64,
    /// Seconds of traffic before each trial.
    pub warmup_s: f64,
    /// "ndr", "pdr" or "none".
    pub search: String,
    /// The search's resolution, a fraction of the top rate.
    pub resolution: f64,
    /// Flows the generator cycled through.
    pub flows: u32,
    /// The interface the generator sent from.
    pub tx_iface: String,
    /// The interface the app ran on.
    pub rx_iface: String,
}

/// Where every offered frame went in one trial. On a consistent run `unaccounted` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// The offered rate asked for (the rate reached at saturation).
    pub rate_pps: f64,
    /// How long the measured send took.
    pub seconds: f64,
    /// Frames the generator handed to the driver.
    pub offered: u64,
    /// Refused by the sending driver (on veth: the peer's ring was full).
    pub refused_by_driver: Option<u64>,
    /// Seen by the XDP program on the device under test.
    pub reached_dut: u64,
    /// Given a verdict other than the app's (pass, malformed...): lost to the app.
    pub other_verdicts: u64,
    /// Redirected to the socket but dropped there (RX ring full, fill ring empty).
    pub dropped_at_socket: u64,
    /// Forwarding apps: handled by the app but never back at the sender.
    pub dropped_on_return: u64,
    /// Handled by the app (forwarding apps: and back at the sender).
    pub received: u64,
    /// Offered minus everything above; not zero means a counter is missing a path.
    pub unaccounted: i64,
}

impl Accounting {
    /// The search's view of this trial.
    pub fn trial(&self) -> TrialOutcome {
        TrialOutcome {
            rate_pps: self.rate_pps,
            offered: self.offered,
            received: self.received,
        }
    }

    /// Received million packets per second.
    pub fn received_mpps(&self) -> f64 {
        self.received as f64 / self.seconds.max(f64::MIN_POSITIVE) / 1e6
    }
}

/// The RFC 2544 throughput found, and the trials that found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// NDR or PDR.
    pub criterion: Criterion,
    /// The highest rate that passed, in packets per second.
    pub rate_pps: f64,
    /// Every trial, in order.
    pub trials: Vec<TrialOutcome>,
}

/// A trial at a fraction of the throughput, with latency, CPU and cycles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadPoint {
    /// Fraction of the throughput found (0.1, 0.5, 0.9).
    pub fraction: f64,
    /// The offered rate, in packets per second.
    pub rate_pps: f64,
    /// Where the frames went.
    pub accounting: Accounting,
    /// Absent for apps whose sink does not read the timestamps (the XDP-only apps).
    pub latency: Option<Latency>,
    /// (latency ns, fraction of samples at or below it).
    pub latency_cdf: Vec<(u64, f64)>,
    /// Busy fraction of each CPU over the trial, indexed by CPU number.
    pub cpu_busy: Vec<f64>,
    /// Busy CPU time of all CPUs times their clock, per received packet.
    pub cycles_per_packet: Option<f64>,
}

/// A reference measured beside the app at the same offered load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// "xdp-drop", "xdp-tx" (the in-kernel bound) or "xsk-rs" (the peer).
    pub name: String,
    /// What it received, in million packets per second.
    pub mpps: f64,
}

/// Everything measured for one frame size and generator core count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The app measured.
    pub app: String,
    /// The frame size on the wire.
    pub frame_size: usize,
    /// Generator cores.
    pub cores: usize,
    /// The line rate at this frame size, when the profile has one.
    pub line_rate_mpps: Option<f64>,
    /// The trial with every core sending as fast as it can.
    pub saturation: Accounting,
    /// The search's result, unless no search was asked for.
    pub throughput: Option<Throughput>,
    /// The trials at 10, 50 and 90% of the throughput.
    pub points: Vec<LoadPoint>,
    /// The in-kernel bound and the xsk-rs peer.
    pub references: Vec<Reference>,
    /// Why a reference is missing, e.g. the peer was not built.
    pub notes: Vec<String>,
}

impl Row {
    /// The app's headline figure: the throughput found, else the saturation rate received.
    pub fn headline_mpps(&self) -> f64 {
        match &self.throughput {
            Some(throughput) => throughput.rate_pps / 1e6,
            None => self.saturation.received_mpps(),
        }
    }

    fn percent_of_line_rate(&self, mpps: f64) -> String {
        self.line_rate_mpps
            .map_or("-".into(), |line| format!("{:.1}%", 100.0 * mpps / line))
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// The tables of `report.md`.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let s = &results.settings;
    let m = &results.machine;
    let _ = writeln!(
        out,
        "# fastpath bench: {} on profile {}\n",
        s.app, results.profile
    );
    let _ = writeln!(
        out,
        "Machine: {} ({} CPUs, {}, {:.0} GiB), kernel {}. Revision {}. \
         Interfaces: {} -> {}. Search {}, resolution {:.1}%, trials of {} s after {} s of \
         warm-up, {} flow(s).\n",
        m.hostname,
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        results.git_revision.as_deref().unwrap_or("unknown"),
        s.tx_iface,
        s.rx_iface,
        s.search,
        s.resolution * 100.0,
        s.duration_s,
        s.warmup_s,
        s.flows
    );
    if let Some(gbps) = results.line_rate_gbps {
        let _ = writeln!(
            out,
            "Line rate: {gbps} Gbit/s, as the profile states (for veth it is nominal).\n"
        );
    }
    let _ = writeln!(out, "## Throughput\n");
    let _ = writeln!(
        out,
        "| frame B | gen cores | {} Mpps | % line | saturation Mpps | % line | reference Mpps | app/reference |",
        s.search
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for row in &results.rows {
        let found = row
            .throughput
            .as_ref()
            .map(|t| t.rate_pps / 1e6)
            .unwrap_or(f64::NAN);
        let saturation = row.saturation.received_mpps();
        let references = row
            .references
            .iter()
            .map(|r| format!("{} {:.3}", r.name, r.mpps))
            .collect::<Vec<_>>()
            .join(", ");
        let ratios = row
            .references
            .iter()
            .map(|r| format!("{} {}", r.name, ratio(saturation, r.mpps)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} |",
            row.frame_size,
            row.cores,
            if found.is_nan() {
                "-".into()
            } else {
                format!("{found:.3}")
            },
            if found.is_nan() {
                "-".into()
            } else {
                row.percent_of_line_rate(found)
            },
            saturation,
            row.percent_of_line_rate(saturation),
            if references.is_empty() {
                "-".into()
            } else {
                references
            },
            if ratios.is_empty() {
                "-".into()
            } else {
                ratios
            },
        );
    }
    let _ = writeln!(
        out,
        "\nSaturation: every core sends as fast as it can; the references ran at the same \
         offered load in the same run.\n"
    );
    let _ = writeln!(out, "## Where the frames went (saturation trial)\n");
    let _ = writeln!(
        out,
        "| frame B | gen cores | offered | refused by driver | reached dut | other verdicts | dropped at socket | received | unaccounted |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row in &results.rows {
        let a = &row.saturation;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.frame_size,
            row.cores,
            a.offered,
            a.refused_by_driver.map_or("-".into(), |r| r.to_string()),
            a.reached_dut,
            a.other_verdicts,
            a.dropped_at_socket,
            a.received,
            a.unaccounted
        );
    }
    if results
        .rows
        .iter()
        .any(|row| row.cores > 1 && row.saturation.unaccounted != 0)
    {
        let _ = writeln!(
            out,
            "\nWith several generator cores a few frames are unaccounted: veth adds to its \
             xdp_xmit counters outside the ring lock, so CPUs transmitting to one queue at once \
             lose increments of the sender's count. The receiving side's per-CPU counters \
             see every frame."
        );
    }
    let _ = writeln!(out, "\n## At 10%, 50% and 90% of the throughput found\n");
    let _ = writeln!(
        out,
        "| frame B | gen cores | load | offered Mpps | % line | loss | p50 us | p99 us | p99.9 us | max us | CPU busy | cycles/packet |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &results.rows {
        for point in &row.points {
            let latency = point.latency.as_ref();
            let show = |f: fn(&Latency) -> u64| latency.map_or("-".into(), |l| micros(f(l)));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0}% | {:.3} | {} | {:.4}% | {} | {} | {} | {} | {} | {} |",
                row.frame_size,
                row.cores,
                point.fraction * 100.0,
                point.rate_pps / 1e6,
                row.percent_of_line_rate(point.rate_pps / 1e6),
                crate::stats::loss_ratio(point.accounting.offered, point.accounting.received)
                    * 100.0,
                show(|l| l.p50_ns),
                show(|l| l.p99_ns),
                show(|l| l.p999_ns),
                show(|l| l.max_ns),
                point
                    .cpu_busy
                    .iter()
                    .enumerate()
                    .map(|(cpu, busy)| format!("cpu{cpu} {:.0}%", busy * 100.0))
                    .collect::<Vec<_>>()
                    .join(" "),
                point
                    .cycles_per_packet
                    .map_or("-".into(), |c| format!("{c:.0}")),
            );
        }
    }
    let notes: Vec<&String> = results.rows.iter().flat_map(|r| &r.notes).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(
        out,
        "\n![Mpps vs frame size](mpps_vs_size.svg)\n\n![Latency CDF](latency_cdf.svg)\n\n\
         ![Mpps vs cores](mpps_vs_cores.svg)"
    );
    out
}

/// The file names `write_plots` produces.
pub const PLOTS: [&str; 3] = ["mpps_vs_size.svg", "latency_cdf.svg", "mpps_vs_cores.svg"];

/// Writes the three SVG plots into `dir`.
pub fn write_plots(results: &Results, dir: &Path) -> Result<(), String> {
    plot_mpps_vs_size(results, &dir.join(PLOTS[0])).map_err(|e| format!("{}: {e}", PLOTS[0]))?;
    plot_latency_cdf(results, &dir.join(PLOTS[1])).map_err(|e| format!("{}: {e}", PLOTS[1]))?;
    plot_mpps_vs_cores(results, &dir.join(PLOTS[2])).map_err(|e| format!("{}: {e}", PLOTS[2]))
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

const COLORS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, BLACK];

/// A line chart of named series of (x, y) points, with a log-free linear scale.
fn line_chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
) -> PlotResult {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points.map(|p| p.1).fold(1e-3, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn distinct(values: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut values: Vec<usize> = values.collect();
    values.sort_unstable();
    values.dedup();
    values
}

fn plot_mpps_vs_size(results: &Results, path: &Path) -> PlotResult {
    let mut series = Vec::new();
    for cores in distinct(results.rows.iter().map(|r| r.cores)) {
        let rows = results.rows.iter().filter(|r| r.cores == cores);
        series.push((
            format!("{} ({cores} gen core(s))", results.settings.app),
            rows.map(|r| (r.frame_size as f64, r.headline_mpps()))
                .collect(),
        ));
    }
    if let Some(gbps) = results.line_rate_gbps {
        let line = (64..=1518)
            .step_by(32)
            .map(|size| {
                (
                    size as f64,
                    line_rate_mpps(gbps, size as u32).min(series_max(&series) * 1.5),
                )
            })
            .collect();
        series.push((format!("line rate {gbps} Gbit/s (clipped)"), line));
    }
    line_chart(
        path,
        "Throughput vs frame size",
        ("frame size (bytes)", "Mpps"),
        &series,
    )
}

fn series_max(series: &[(String, Vec<(f64, f64)>)]) -> f64 {
    series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1e-3, f64::max)
}

fn plot_latency_cdf(results: &Results, path: &Path) -> PlotResult {
    // The smallest frame and fewest cores: the classic latency figure.
    let row = results
        .rows
        .iter()
        .filter(|r| r.points.iter().any(|p| !p.latency_cdf.is_empty()))
        .min_by_key(|r| (r.frame_size, r.cores));
    let series: Vec<(String, Vec<(f64, f64)>)> = row
        .map(|row| {
            row.points
                .iter()
                .map(|p| {
                    (
                        format!("{:.0}% load, {} B", p.fraction * 100.0, row.frame_size),
                        p.latency_cdf
                            .iter()
                            .map(|&(ns, q)| (ns as f64 / 1e3, q))
                            .collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let title = if series.is_empty() {
        "Latency CDF (this app's sink reads no timestamps)"
    } else {
        "Latency CDF"
    };
    line_chart(path, title, ("latency (us)", "fraction"), &series)
}

fn plot_mpps_vs_cores(results: &Results, path: &Path) -> PlotResult {
    let series = distinct(results.rows.iter().map(|r| r.frame_size))
        .into_iter()
        .map(|size| {
            (
                format!("{size} B"),
                results
                    .rows
                    .iter()
                    .filter(|r| r.frame_size == size)
                    .map(|r| (r.cores as f64, r.headline_mpps()))
                    .collect(),
            )
        })
        .collect::<Vec<_>>();
    line_chart(
        path,
        "Throughput vs generator cores",
        ("generator cores", "Mpps"),
        &series,
    )
}

/// `B / A` for each row both results have, matched by app, frame size and cores.
pub fn compare(a: &Results, b: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| app | frame B | gen cores | A Mpps | B Mpps | B/A | A saturation | B saturation | B/A |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row_a in &a.rows {
        let Some(row_b) = b.rows.iter().find(|r| {
            r.app == row_a.app && r.frame_size == row_a.frame_size && r.cores == row_a.cores
        }) else {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | - | - | {:.3} | - | - |",
                row_a.app,
                row_a.frame_size,
                row_a.cores,
                row_a.headline_mpps(),
                row_a.saturation.received_mpps()
            );
            continue;
        };
        let (ha, hb) = (row_a.headline_mpps(), row_b.headline_mpps());
        let (sa, sb) = (
            row_a.saturation.received_mpps(),
            row_b.saturation.received_mpps(),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ha:.3} | {hb:.3} | {} | {sa:.3} | {sb:.3} | {} |",
            row_a.app,
            row_a.frame_size,
            row_a.cores,
            ratio(hb, ha),
            ratio(sb, sa)
        );
    }
    out
}

#[cfg(test)]
mod tests;
