//! `fastpath bench`: line-rate runs of one app per NIC profile (the runner is
//! `bench::line_rate`). For each frame size and generator core count: a saturation trial,
//! the RFC 2544 search (NDR or PDR), latency, CPU and cycles at 10/50/90% of the throughput
//! found, and the references (the in-kernel bound and the xsk-rs peer) at the same offered
//! load in the same run. Writes results.json, report.md and SVG plots (bench::report).

use std::{path::PathBuf, time::Duration};

use bench::{
    line_rate::{self, Progress, RunPlan, RunRequest},
    report,
};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchAppArg {
    /// AF_XDP: receive and drop.
    Rxdrop,
    /// AF_XDP: receive, swap MACs, send back.
    L2fwd,
    /// The L4 load balancer appliance.
    Lb,
    /// In-kernel bound: the steering program drops everything.
    XdpDrop,
    /// In-kernel bound: the steering program bounces everything (XDP_TX).
    XdpTx,
}

impl From<BenchAppArg> for line_rate::BenchApp {
    fn from(app: BenchAppArg) -> line_rate::BenchApp {
        match app {
            BenchAppArg::Rxdrop => line_rate::BenchApp::Rxdrop,
            BenchAppArg::L2fwd => line_rate::BenchApp::L2fwd,
            BenchAppArg::Lb => line_rate::BenchApp::Lb,
            BenchAppArg::XdpDrop => line_rate::BenchApp::XdpDrop,
            BenchAppArg::XdpTx => line_rate::BenchApp::XdpTx,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SearchArg {
    Ndr,
    Pdr,
    None,
}

impl From<SearchArg> for line_rate::SearchKind {
    fn from(kind: SearchArg) -> line_rate::SearchKind {
        match kind {
            SearchArg::Ndr => line_rate::SearchKind::Ndr,
            SearchArg::Pdr => line_rate::SearchKind::Pdr,
            SearchArg::None => line_rate::SearchKind::None,
        }
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// NIC profile (see `fastpath probe`); `veth` builds its own lab.
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long, value_enum)]
    pub app: Option<BenchAppArg>,
    /// Frame sizes on the wire, 64 to 1518.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 512, 1518])]
    pub sizes: Vec<usize>,
    /// Generator core counts to run with (CPUs 0..N send; the app's worker is on the last
    /// CPU).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub cores: Vec<usize>,
    /// Seconds of each measured trial.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Seconds of traffic before each trial, not counted.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    #[arg(long, value_enum, default_value = "ndr")]
    pub search: SearchArg,
    /// Stop the search when the bracket is narrower than this fraction of the top rate.
    #[arg(long, default_value_t = 0.02)]
    pub resolution: f64,
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Bind the app's sockets in zero-copy mode (the profile must support it).
    #[arg(long)]
    pub zero_copy: bool,
    /// Real profiles: the interface to send from, and the one the app runs on.
    #[arg(long)]
    pub tx_iface: Option<String>,
    #[arg(long)]
    pub rx_iface: Option<String>,
    /// The xsk-rs peer binary (built by `cargo xtask bench-xsk`).
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Directory for results.json, report.md and the plots.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Name prefix of the veth lab.
    #[arg(long, default_value = "fpbench", hide = true)]
    pub lab_prefix: String,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Print B's figures over A's, row by row.
    Compare { a: PathBuf, b: PathBuf },
}

pub fn run(args: &BenchArgs, as_json: bool) -> anyhow::Result<()> {
    if let Some(BenchCommand::Compare { a, b }) = &args.command {
        let (a, b) = (line_rate::read_results(a)?, line_rate::read_results(b)?);
        print!("{}", report::compare(&a, &b));
        return Ok(());
    }
    let request = RunRequest {
        profile: args.profile.clone(),
        app: args.app.map(Into::into),
        sizes: args.sizes.clone(),
        cores: args.cores.clone(),
        duration: args.duration,
        warmup: args.warmup,
        search: args.search.into(),
        resolution: args.resolution,
        flows: args.flows,
        zero_copy: args.zero_copy,
        tx_iface: args.tx_iface.clone(),
        rx_iface: args.rx_iface.clone(),
        peer: args.peer.clone(),
        lab_prefix: args.lab_prefix.clone(),
    };
    let plan = RunPlan::check(&request)?;
    let spinner = Spinner::new()?;
    let results = plan.execute(&spinner);
    spinner.bar.finish_and_clear();
    let results = results?;
    line_rate::write_report(&results, &args.out)?;
    if as_json {
        crate::output::json(&results);
    } else {
        print!("{}", report::markdown(&results));
        println!("\nwritten to {}", args.out.display());
    }
    Ok(())
}

/// The progress of a run on stderr: a spinner with the last trial's figures, and lines
/// above it. A hidden bar (stderr not a terminal) prints nothing, so lines go straight to
/// stderr then.
struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    fn new() -> anyhow::Result<Spinner> {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template(
            "{spinner} {elapsed:>4} {msg}",
        )?);
        bar.enable_steady_tick(Duration::from_millis(200));
        Ok(Spinner { bar })
    }

    fn line(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Progress for Spinner {
    fn note(&self, line: &str) {
        self.line(line);
    }

    fn trial(&self, status: &str) {
        self.bar.set_message(status.to_string());
    }

    fn row_done(&self, line: &str) {
        self.line(line);
    }
}
