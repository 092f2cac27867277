//! The line-rate runner behind `fastpath bench`: runs of one app per NIC profile. For each
//! frame size and generator core count: a saturation trial, the RFC 2544 search (NDR or
//! PDR), latency, CPU and cycles at 10/50/90% of the throughput found, and the references
//! (the in-kernel bound and the xsk-rs peer) at the same offered load in the same run.
//! [`write_report`] writes results.json, report.md and SVG plots ([`crate::report`]).
//!
//! The generator is `trafficgen`'s; the AF_XDP apps under test run `pipeline::xsk_apps`,
//! the loops of `fastpath xsk`.

mod device;
mod lb_subject;
mod peer;
mod sink;
mod system;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use hw_profiles::{Profile, Profiles, line_rate_mpps, pick};
use lab::Lab;
use offload::{AttachOptions, mode::ModePolicy, rules::Action};
use trafficgen::{GenFrame, GenMode, Generator, L4Kind, Template};

use crate::{
    report::{self, Accounting, LoadPoint, Reference, Results, Row, Settings, Throughput},
    search::{Criterion, SearchConfig, search},
    stats,
};
use device::{Ends, LabDevice, Load, in_namespace};
use lb_subject::LbSubject;
use sink::{Sink, SinkApp, SocketTuning};

/// The app under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
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

impl App {
    /// The app's name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            App::Rxdrop => "rxdrop",
            App::L2fwd => "l2fwd",
            App::Lb => "lb",
            App::XdpDrop => "xdp-drop",
            App::XdpTx => "xdp-tx",
        }
    }

    /// Apps whose frames come back to the sender, where they are counted.
    fn forwards(self) -> bool {
        matches!(self, App::L2fwd | App::XdpTx | App::Lb)
    }

    /// The default action of the steering program the runner attaches on the device
    /// under test; None for the load balancer, which attaches its own.
    fn dut_action(self) -> Option<Action> {
        match self {
            App::XdpDrop => Some(Action::Drop),
            App::XdpTx => Some(Action::Tx),
            App::Rxdrop | App::L2fwd => Some(Action::Xsk),
            App::Lb => None,
        }
    }

    fn sink(self) -> Option<SinkApp> {
        match self {
            App::Rxdrop => Some(SinkApp::Rxdrop),
            App::L2fwd => Some(SinkApp::L2fwd),
            _ => None,
        }
    }

    /// The in-kernel app that bounds this one.
    fn kernel_bound(self) -> Option<App> {
        match self {
            App::Rxdrop => Some(App::XdpDrop),
            App::L2fwd | App::Lb => Some(App::XdpTx),
            App::XdpDrop | App::XdpTx => None,
        }
    }

    /// Apps the xsk-rs peer also implements.
    fn has_peer(self) -> bool {
        matches!(self, App::Rxdrop | App::L2fwd)
    }
}

/// How the RFC 2544 search judges a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchKind {
    /// No drop rate: no frame lost.
    Ndr,
    /// Partial drop rate: a small loss allowed.
    Pdr,
    /// No search: saturation and the load points only.
    None,
}

/// What to run, as the user asked for it; [`Plan::check`] finds every mistake in it.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// NIC profile (see `fastpath probe`); `veth` builds its own lab.
    pub profile: Option<String>,
    pub app: Option<App>,
    /// Frame sizes on the wire, 64 to 1518.
    pub sizes: Vec<usize>,
    /// Generator core counts to run with (CPUs 0..N send; the app's worker is on the last
    /// CPU).
    pub cores: Vec<usize>,
    /// Seconds of each measured trial.
    pub duration: f64,
    /// Seconds of traffic before each trial, not counted.
    pub warmup: f64,
    pub search: SearchKind,
    /// Stop the search when the bracket is narrower than this fraction of the top rate.
    pub resolution: f64,
    pub flows: u32,
    /// Bind the app's sockets in zero-copy mode (the profile must support it).
    pub zero_copy: bool,
    /// Real profiles: the interface to send from.
    pub tx_iface: Option<String>,
    /// Real profiles: the interface the app runs on.
    pub rx_iface: Option<String>,
    /// The xsk-rs peer binary (built by `cargo xtask bench-xsk`).
    pub peer: Option<PathBuf>,
    /// Name prefix of the veth lab.
    pub lab_prefix: String,
}

/// Where a run tells its user how it goes: the caller prints it (a progress bar...).
pub trait Progress {
    /// A line about the run as a whole (its settings, a generator's note).
    fn note(&self, line: &str);
    /// The last trial's figures, replaced by the next.
    fn trial(&self, status: &str);
    /// A finished row's headline.
    fn row_done(&self, line: &str);
}

/// Writes results.json, report.md and the SVG plots into `out`.
pub fn write_report(results: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create --out {}", out.display()))?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("report.md"), report::markdown(results))?;
    report::write_plots(results, out).map_err(|e| anyhow::anyhow!("plot {e}"))?;
    Ok(())
}

/// A results.json written by an earlier run, if its schema is this build's.
pub fn read_results(path: &Path) -> anyhow::Result<Results> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let results: Results =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    if results.schema != report::SCHEMA_VERSION {
        bail!(
            "{}: schema {} (this fastpath reads {})",
            path.display(),
            results.schema,
            report::SCHEMA_VERSION
        );
    }
    Ok(results)
}

/// The checked request: every error a user can make is found here, before any traffic.
pub struct Plan<'a> {
    args: &'a RunRequest,
    app: App,
    profile: Profile,
    tuning: SocketTuning,
}

impl<'a> Plan<'a> {
    /// Checks the request against the profile and the machine.
    pub fn check(args: &'a RunRequest) -> anyhow::Result<Plan<'a>> {
        let name = args
            .profile
            .as_deref()
            .context("--profile is required (e.g. --profile veth)")?;
        let profiles = Profiles::builtin();
        let profile = profiles
            .by_name(name)
            .with_context(|| {
                format!(
                    "--profile {name}: unknown profile (known: {})",
                    profiles.names().join(", ")
                )
            })?
            .clone();
        let app = args
            .app
            .context("--app is required: rxdrop, l2fwd, lb, xdp-drop or xdp-tx")?;
        if args.zero_copy && !profile.xdp.zero_copy {
            bail!(
                "--zero-copy: profile {} cannot run {} in zero-copy mode ({} has no zero-copy \
                 AF_XDP); drop --zero-copy to measure copy mode",
                profile.name,
                app.name(),
                profile.drivers.join("/")
            );
        }
        if args.zero_copy {
            bail!("--zero-copy: the runner binds copy-mode sockets only so far");
        }
        if args.sizes.is_empty() || args.cores.is_empty() {
            bail!("--sizes and --cores need at least one value");
        }
        for &size in &args.sizes {
            if !(64..=1518).contains(&size) {
                bail!("--sizes {size}: frame sizes go from 64 to 1518 bytes");
            }
        }
        let cpus = system::cpu_count();
        for &cores in &args.cores {
            if cores == 0 || cores > cpus {
                bail!("--cores {cores}: this machine has {cpus} CPUs");
            }
        }
        if !(args.duration > 0.0 && args.duration <= 600.0) {
            bail!(
                "--duration {}: expected more than 0 and at most 600 s",
                args.duration
            );
        }
        if !(0.0..=60.0).contains(&args.warmup) {
            bail!("--warmup {}: expected 0 to 60 s", args.warmup);
        }
        if !(args.resolution > 0.0 && args.resolution < 1.0) {
            bail!(
                "--resolution {}: expected a fraction between 0 and 1",
                args.resolution
            );
        }
        if args.flows == 0 || args.flows > 64_000 {
            bail!("--flows {}: expected 1 to 64000", args.flows);
        }
        if profile.name == "veth" {
            if args.tx_iface.is_some() || args.rx_iface.is_some() {
                bail!("--tx-iface/--rx-iface: the veth profile builds its own lab; leave them out");
            }
        } else {
            for (flag, iface) in [
                ("--tx-iface", &args.tx_iface),
                ("--rx-iface", &args.rx_iface),
            ] {
                let iface = iface.as_deref().with_context(|| {
                    format!(
                        "{flag} is required with profile {} (a real NIC pair)",
                        profile.name
                    )
                })?;
                offload::netdev::ifindex(iface)
                    .with_context(|| format!("{flag} {iface}: no such interface"))?;
            }
        }
        let tuning = SocketTuning {
            batch: pick(None, Some(&profile), |t| t.batch, 64).value,
            ring_size: pick(None, Some(&profile), |t| t.ring_size, 2048).value,
            frame_size: pick(None, Some(&profile), |t| t.frame_size, 4096).value,
        };
        Ok(Plan {
            args,
            app,
            profile,
            tuning,
        })
    }

    /// Runs every row, and leaves the interfaces (and the veth lab) as found.
    pub fn execute(&self, progress: &dyn Progress) -> anyhow::Result<Results> {
        let args = self.args;
        // The veth lab lives as long as the run; dropping it tears it down.
        let (lab, ends) = if self.profile.name == "veth" {
            Lab::teardown_on_signals();
            let _ = Lab::down(&args.lab_prefix);
            let lab = Lab::up(&args.lab_prefix)?;
            for end in [&lab.client, &lab.dut] {
                quiet_ipv6(&end.namespace, &end.iface)?;
            }
            let ends = Ends {
                tx_namespace: Some(lab.client.namespace.clone()),
                tx_iface: lab.client.iface.clone(),
                tx_address: Some(lab.client.ipv4),
                rx_namespace: Some(lab.dut.namespace.clone()),
                rx_iface: lab.dut.iface.clone(),
                rx_address: Some(lab.dut.ipv4),
            };
            (Some(lab), ends)
        } else {
            let iface = |i: &Option<String>| i.clone().expect("checked");
            let ipv4 = |iface: &str| {
                lab::netlink::addresses(iface)
                    .ok()?
                    .into_iter()
                    .find(IpAddr::is_ipv4)
            };
            let (tx_iface, rx_iface) = (iface(&args.tx_iface), iface(&args.rx_iface));
            let ends = Ends {
                tx_namespace: None,
                tx_address: ipv4(&tx_iface),
                tx_iface,
                rx_namespace: None,
                rx_address: ipv4(&rx_iface),
                rx_iface,
            };
            (None, ends)
        };
        progress.note(&format!(
            "bench: {} on profile {} ({} -> {}); tuning batch {}, ring {}, frame {} (profile {})",
            self.app.name(),
            self.profile.name,
            ends.tx_iface,
            ends.rx_iface,
            self.tuning.batch,
            self.tuning.ring_size,
            self.tuning.frame_size,
            self.profile.name
        ));
        let results = self.run_rows(&ends, progress);
        // Leave the interfaces as found, whatever happened.
        let _ = detach(&ends.rx_namespace, &ends.rx_iface);
        let _ = detach(&ends.tx_namespace, &ends.tx_iface);
        drop(lab);
        results
    }

    fn run_rows(&self, ends: &Ends, progress: &dyn Progress) -> anyhow::Result<Results> {
        let args = self.args;
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The generator's threads inherit the namespace of the thread that starts them.
        if let Some(namespace) = &ends.tx_namespace {
            lab::netns::enter(namespace)?;
        }
        let mut generator = Generator::for_mode(GenMode::LiveFrames)?;
        let ifindex = offload::netdev::ifindex(&ends.tx_iface)?;
        let mut rows = Vec::new();
        for &cores in &args.cores {
            for &size in &args.sizes {
                let load = Load {
                    ends,
                    ifindex,
                    frame: self.frame(ends, size)?,
                    flows: args.flows,
                    gen_cores: (0..cores).collect(),
                    warmup: Duration::from_secs_f64(args.warmup),
                    duration: Duration::from_secs_f64(args.duration),
                };
                let mut row = self.row(&load, &mut generator, progress)?;
                row.line_rate_mpps = self
                    .line_rate_gbps()
                    .map(|gbps| line_rate_mpps(gbps, size as u32));
                progress.row_done(&format!(
                    "{size} B, {cores} generator core(s): {:.3} Mpps",
                    row.headline_mpps()
                ));
                rows.push(row);
            }
        }
        Ok(Results {
            schema: report::SCHEMA_VERSION,
            machine: system::machine(),
            profile: self.profile.name.clone(),
            line_rate_gbps: self.line_rate_gbps(),
            git_revision: system::git_revision(),
            started_unix,
            settings: Settings {
                app: self.app.name().into(),
                sizes: args.sizes.clone(),
                cores: args.cores.clone(),
                duration_s: args.duration,
                warmup_s: args.warmup,
                search: format!("{:?}", args.search).to_lowercase(),
                resolution: args.resolution,
                flows: args.flows,
                tx_iface: ends.tx_iface.clone(),
                rx_iface: ends.rx_iface.clone(),
            },
            rows,
        })
    }

    fn line_rate_gbps(&self) -> Option<f64> {
        self.profile.speeds_gbps.first().copied()
    }

    /// A UDP frame of `size` bytes from the sender to the device under test.
    fn frame(&self, ends: &Ends, size: usize) -> anyhow::Result<GenFrame> {
        let (tx, rx) = (ends.tx_iface.clone(), ends.rx_iface.clone());
        let src_mac = in_namespace(&ends.tx_namespace, move || lab::netlink::mac(&tx))??;
        let dst_mac = in_namespace(&ends.rx_namespace, move || lab::netlink::mac(&rx))??;
        // Documentation addresses stand in where an interface has none.
        let src = ends
            .tx_address
            .unwrap_or(Ipv4Addr::new(192, 0, 2, 1).into());
        let dst = match self.app {
            App::Lb => lb_subject::VIP.parse()?,
            _ => ends
                .rx_address
                .unwrap_or(Ipv4Addr::new(192, 0, 2, 2).into()),
        };
        let template = Template {
            src_mac,
            dst_mac,
            src,
            dst,
            l4: L4Kind::Udp,
            dst_port: lb_subject::VIP_PORT,
            src_port: 1024,
            frame_size: size,
        };
        template
            .build()
            .with_context(|| format!("--sizes {}", template.frame_size))
    }

    /// Everything measured for one frame size and generator core count.
    fn row(
        &self,
        load: &Load,
        generator: &mut Generator,
        progress: &dyn Progress,
    ) -> anyhow::Result<Row> {
        let args = self.args;
        let (frame, cores) = (&load.frame, load.gen_cores.len());
        let label = format!("{} B, {cores} core(s)", frame.wire_size);
        let on_trial = |a: &Accounting| {
            progress.trial(&format!(
                "{} {label}: offered {:.3} Mpps, received {:.3} Mpps, loss {:.4}%",
                self.app.name(),
                a.offered as f64 / a.seconds / 1e6,
                a.received_mpps(),
                stats::loss_ratio(a.offered, a.received) * 100.0
            ));
        };
        let stage = Stage::start(self.app, load.ends, &self.tuning, true)?;
        let mut device = LabDevice::new(
            self.app,
            load,
            generator,
            stage.subject.as_ref(),
            &on_trial,
            progress,
        );
        let saturation = device.measure(None, false)?.accounting;
        let top_rate = saturation.offered as f64 / saturation.seconds;
        let criterion = match args.search {
            SearchKind::Ndr => Some(Criterion::Ndr),
            SearchKind::Pdr => Some(Criterion::PDR),
            SearchKind::None => None,
        };
        let throughput = match criterion {
            Some(criterion) => {
                let config = SearchConfig {
                    max_rate_pps: top_rate,
                    resolution: args.resolution,
                    confirmations: 2,
                };
                let found = search(&mut device, criterion, &config);
                if let Some(error) = device.error.take() {
                    return Err(error.context(format!("{label}: search trial")));
                }
                Some(Throughput {
                    criterion,
                    rate_pps: found.rate_pps,
                    trials: found.trials,
                })
            }
            None => None,
        };
        let base = throughput
            .as_ref()
            .map_or(saturation.received as f64 / saturation.seconds, |t| {
                t.rate_pps
            });
        let mut points = Vec::new();
        for fraction in [0.1, 0.5, 0.9] {
            if base <= 0.0 {
                break;
            }
            let measured = device.measure(Some(base * fraction), true)?;
            let samples = measured.latency_ns;
            points.push(LoadPoint {
                fraction,
                rate_pps: base * fraction,
                accounting: measured.accounting,
                latency: (!samples.is_empty()).then(|| stats::latency(samples.clone())),
                latency_cdf: stats::cdf(samples, 200),
                cpu_busy: measured.cpu_busy,
                cycles_per_packet: measured.cycles_per_packet,
            });
        }
        drop(device);
        stage.stop()?;
        let mut row = Row {
            app: self.app.name().into(),
            frame_size: frame.wire_size,
            cores,
            line_rate_mpps: None,
            saturation,
            throughput,
            points,
            references: Vec::new(),
            notes: Vec::new(),
        };
        self.references(load, generator, &on_trial, progress, &mut row)?;
        Ok(row)
    }

    /// The in-kernel bound and the xsk-rs peer at saturation, right after the app.
    fn references(
        &self,
        load: &Load,
        generator: &mut Generator,
        on_trial: &dyn Fn(&Accounting),
        progress: &dyn Progress,
        row: &mut Row,
    ) -> anyhow::Result<()> {
        let Some(bound) = self.app.kernel_bound() else {
            return Ok(());
        };
        let stage = Stage::start(bound, load.ends, &self.tuning, false)?;
        let mut device = LabDevice::new(bound, load, generator, None, on_trial, progress);
        let kernel = device.measure(None, false)?.accounting;
        drop(device);
        stage.stop()?;
        row.references.push(Reference {
            name: bound.name().into(),
            mpps: kernel.received_mpps(),
        });
        if !self.app.has_peer() {
            return Ok(());
        }
        match peer::binary(self.args.peer.as_deref()) {
            Some(binary) => {
                let mpps =
                    peer::measure(&binary, self.app, load, generator, &self.tuning, progress)?;
                row.references.push(Reference {
                    name: "xsk-rs".into(),
                    mpps,
                });
            }
            None => row.notes.push(format!(
                "{} B, {} core(s): no xsk-rs peer (build it with `cargo xtask bench-xsk` or \
                 give --peer)",
                load.frame.wire_size,
                load.gen_cores.len()
            )),
        }
        Ok(())
    }
}

/// Turns IPv6 off on a lab interface: its neighbour and router solicitations would
/// otherwise be counted as test frames by the drop programs.
fn quiet_ipv6(namespace: &str, iface: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    Lab::run_in(namespace, move || std::fs::write(&path, "1"))?
        .with_context(|| format!("disable IPv6 on {iface} in {namespace}"))
}

fn attach(namespace: &Option<String>, iface: &str, action: Action) -> anyhow::Result<()> {
    let iface = iface.to_string();
    in_namespace(namespace, move || {
        offload::attach(&AttachOptions {
            iface,
            policy: ModePolicy::Auto,
            default_action: action,
            prefilter: Vec::new(),
        })
        .map(|_| ())
    })??;
    Ok(())
}

fn detach(namespace: &Option<String>, iface: &str) -> anyhow::Result<()> {
    let iface = iface.to_string();
    in_namespace(namespace, move || offload::detach(&iface))??;
    Ok(())
}

/// What runs on the device under test, as the runner reads it between trials.
enum Subject {
    Sink(Sink),
    Lb(Box<LbSubject>),
}

impl Subject {
    /// (packets the app received, packets the kernel dropped at its sockets) so far.
    pub fn counters(&self) -> (u64, u64) {
        match self {
            Subject::Sink(sink) => sink.counters(),
            Subject::Lb(lb) => lb.counters(),
        }
    }

    /// The sink reads the generator's stamps; the appliance is not instrumented for it.
    pub fn record_latency(&self, stamp_offset: usize) {
        if let Subject::Sink(sink) = self {
            sink.record_latency(stamp_offset);
        }
    }

    pub fn take_latency(&self) -> Vec<u64> {
        match self {
            Subject::Sink(sink) => sink.take_latency(),
            Subject::Lb(_) => Vec::new(),
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        match self {
            Subject::Sink(sink) => sink.stop(),
            Subject::Lb(lb) => {
                drop(lb);
                Ok(())
            }
        }
    }
}

/// The programs (and socket) one app needs, attached for a row and removed after it: the
/// steering program on the device under test with the app's default action, a drop
/// program on the sender to count what comes back, and the app itself.
struct Stage<'a> {
    ends: &'a Ends,
    subject: Option<Subject>,
}

impl<'a> Stage<'a> {
    fn start(
        app: App,
        ends: &'a Ends,
        tuning: &SocketTuning,
        with_subject: bool,
    ) -> anyhow::Result<Stage<'a>> {
        let mut stage = Stage {
            ends,
            subject: None,
        };
        if let Some(action) = app.dut_action() {
            attach(&ends.rx_namespace, &ends.rx_iface, action)?;
        }
        if app.forwards() {
            // Counts the frames that come back; on veth they reach the sender at all only
            // if it runs an XDP program.
            attach(&ends.tx_namespace, &ends.tx_iface, Action::Drop)?;
        }
        if !with_subject {
            return Ok(stage);
        }
        let cpu = system::cpu_count() - 1;
        let (namespace, iface) = (ends.rx_namespace.clone(), ends.rx_iface.clone());
        stage.subject = if let Some(kind) = app.sink() {
            Some(Subject::Sink(Sink::start(
                kind, namespace, iface, cpu, *tuning,
            )?))
        } else if app == App::Lb {
            let backend = ends.tx_address.with_context(|| {
                format!(
                    "--app lb: {} has no IPv4 address to stand as the backend",
                    ends.tx_iface
                )
            })?;
            Some(Subject::Lb(Box::new(LbSubject::start(
                namespace, &iface, backend, cpu, tuning,
            )?)))
        } else {
            None
        };
        Ok(stage)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        match self.subject.take() {
            Some(subject) => subject.stop(),
            None => Ok(()),
        }
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        self.subject.take();
        let _ = detach(&self.ends.rx_namespace, &self.ends.rx_iface);
        let _ = detach(&self.ends.tx_namespace, &self.ends.tx_iface);
    }
}
