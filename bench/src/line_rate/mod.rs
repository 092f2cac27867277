//! The line-rate runner behind `fastpath bench`: runs of one app per NIC profile. For each
//! frame size and generator core count: a saturation trial, the RFC 2544 search (NDR or
//! PDR), latency, CPU and cycles at 10/50/90% of the throughput found, and the references
//! (the in-kernel bound and the xsk-rs peer) at the same offered load in the same run.
//! [`write_report`] writes results.json, report.md and SVG plots ([`crate::report`]).
//!
//! The generator is `trafficgen`'s; the AF_XDP apps under test run `pipeline::xsk_apps`,
//! the loops of `fastpath xsk`.

mod app;
mod device;
mod ends;
mod lb_subject;
mod peer;
mod progress;
mod sink;
mod stage;
mod system;

pub use app::{BenchApp, SearchKind};
pub use progress::Progress;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use hw_profiles::{Profile, Profiles, SocketTuning, line_rate_mpps};
use lab::Lab;
use trafficgen::{GenFrame, GenMode, Generator, L4Kind, Template};

use crate::{
    error::BenchError,
    report::{self, Accounting, LoadPoint, Reference, Results, Row, RunSettings, Throughput},
    search::{Criterion, SearchConfig, search},
    stats,
};
use device::{LabDevice, Load};
use ends::{Ends, in_namespace};
use stage::{Stage, detach};

/// What to run, as the user asked for it; [`RunPlan::check`] finds every mistake in it.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// NIC profile (see `fastpath probe`); `veth` builds its own lab.
    pub profile: Option<String>,
    /// The app to measure.
    pub app: Option<BenchApp>,
    /// Frame sizes on the wire, 64 to 1518.
    pub sizes: Vec<usize>,
    /// Generator core counts to run with (CPUs 0..N send; the app's worker is on the last
    /// CPU).
    pub cores: Vec<usize>,
    /// Seconds of each measured trial.
    pub duration: f64,
    /// Seconds of traffic before each trial, not counted.
    pub warmup: f64,
    /// The RFC 2544 search, if any.
    pub search: SearchKind,
    /// Stop the search when the bracket is narrower than this fraction of the top rate.
    pub resolution: f64,
    /// Flows the generator cycles through (source ports counting up).
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

/// Writes results.json, report.md and the SVG plots into `out`.
pub fn write_report(results: &Results, out: &Path) -> Result<(), BenchError> {
    let file =
        |what: &'static str, path: PathBuf| move |source| BenchError::File { what, path, source };
    std::fs::create_dir_all(out).map_err(file("create --out", out.to_path_buf()))?;
    let json = serde_json::to_string_pretty(results).expect("results serialise to JSON");
    let path = out.join("results.json");
    std::fs::write(&path, json).map_err(file("write", path.clone()))?;
    let path = out.join("report.md");
    std::fs::write(&path, report::markdown(results)).map_err(file("write", path.clone()))?;
    report::write_plots(results, out).map_err(BenchError::Plot)
}

/// A results.json written by an earlier run, if its schema is this build's.
pub fn read_results(path: &Path) -> Result<Results, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::File {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let results: Results =
        serde_json::from_str(&text).map_err(|source| BenchError::ResultsJson {
            path: path.to_path_buf(),
            source,
        })?;
    if results.schema != report::SCHEMA_VERSION {
        return Err(BenchError::Schema {
            path: path.to_path_buf(),
            found: results.schema,
            expected: report::SCHEMA_VERSION,
        });
    }
    Ok(results)
}

/// The checked request: every error a user can make is found here, before any traffic.
pub struct RunPlan<'a> {
    args: &'a RunRequest,
    app: BenchApp,
    profile: Profile,
    tuning: SocketTuning,
}

impl<'a> RunPlan<'a> {
    /// Checks the request against the profile and the machine.
    pub fn check(args: &'a RunRequest) -> Result<RunPlan<'a>, BenchError> {
        let name = args.profile.as_deref().ok_or(BenchError::NoProfile)?;
        let profiles = Profiles::builtin();
        let profile = profiles
            .by_name(name)
            .ok_or_else(|| BenchError::UnknownProfile {
                name: name.to_string(),
                known: profiles.names().join(", "),
            })?
            .clone();
        let app = args.app.ok_or(BenchError::NoApp)?;
        if args.zero_copy && !profile.xdp.zero_copy {
            return Err(BenchError::NoZeroCopy {
                profile: profile.name.clone(),
                app: app.name(),
                drivers: profile.drivers.join("/"),
            });
        }
        if args.zero_copy {
            return Err(BenchError::CopyModeOnly);
        }
        if args.sizes.is_empty() || args.cores.is_empty() {
            return Err(BenchError::EmptyLists);
        }
        if let Some(&size) = args.sizes.iter().find(|s| !(64..=1518).contains(*s)) {
            return Err(BenchError::FrameSizeRange(size));
        }
        let cpus = system::cpu_count();
        if let Some(&cores) = args.cores.iter().find(|&&c| c == 0 || c > cpus) {
            return Err(BenchError::TooManyCores { cores, cpus });
        }
        if !(args.duration > 0.0 && args.duration <= 600.0) {
            return Err(BenchError::DurationRange(args.duration));
        }
        if !(0.0..=60.0).contains(&args.warmup) {
            return Err(BenchError::WarmupRange(args.warmup));
        }
        if !(args.resolution > 0.0 && args.resolution < 1.0) {
            return Err(BenchError::ResolutionRange(args.resolution));
        }
        if args.flows == 0 || args.flows > 64_000 {
            return Err(BenchError::FlowsRange(args.flows));
        }
        if profile.name == "veth" {
            if args.tx_iface.is_some() || args.rx_iface.is_some() {
                return Err(BenchError::VethTakesNoInterfaces);
            }
        } else {
            for (flag, iface) in [
                ("--tx-iface", &args.tx_iface),
                ("--rx-iface", &args.rx_iface),
            ] {
                let iface = iface.as_deref().ok_or_else(|| BenchError::NoInterface {
                    flag,
                    profile: profile.name.clone(),
                })?;
                nic::ifindex(iface).map_err(|source| BenchError::NoSuchInterface {
                    flag,
                    iface: iface.to_string(),
                    source,
                })?;
            }
        }
        let tuning = SocketTuning::pick(None, None, None, Some(&profile));
        Ok(RunPlan {
            args,
            app,
            profile,
            tuning,
        })
    }

    /// Runs every row, and leaves the interfaces (and the veth lab) as found.
    pub fn execute(&self, progress: &dyn Progress) -> Result<Results, BenchError> {
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
                nic::addresses(iface)
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
            self.tuning.batch.value,
            self.tuning.ring_size.value,
            self.tuning.frame_size.value,
            self.profile.name
        ));
        let results = self.run_rows(&ends, progress);
        // Leave the interfaces as found, whatever happened.
        let _ = detach(&ends.rx_namespace, &ends.rx_iface);
        let _ = detach(&ends.tx_namespace, &ends.tx_iface);
        drop(lab);
        results
    }

    fn run_rows(&self, ends: &Ends, progress: &dyn Progress) -> Result<Results, BenchError> {
        let args = self.args;
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The generator's threads inherit the namespace of the thread that starts them.
        if let Some(namespace) = &ends.tx_namespace {
            lab::netns::enter(namespace)?;
        }
        let mut generator = Generator::for_mode(GenMode::LiveFrames)?;
        let ifindex = nic::ifindex(&ends.tx_iface)?;
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
            settings: RunSettings {
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
    fn frame(&self, ends: &Ends, size: usize) -> Result<GenFrame, BenchError> {
        let (tx, rx) = (ends.tx_iface.clone(), ends.rx_iface.clone());
        let src_mac = in_namespace(&ends.tx_namespace, move || nic::mac(&tx))??;
        let dst_mac = in_namespace(&ends.rx_namespace, move || nic::mac(&rx))??;
        // Documentation addresses stand in where an interface has none.
        let src = ends
            .tx_address
            .unwrap_or(Ipv4Addr::new(192, 0, 2, 1).into());
        let dst = match self.app {
            BenchApp::Lb => lb_subject::VIP.into(),
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
            .map_err(|source| BenchError::Frame { size, source })
    }

    /// Everything measured for one frame size and generator core count.
    fn row(
        &self,
        load: &Load,
        generator: &mut Generator,
        progress: &dyn Progress,
    ) -> Result<Row, BenchError> {
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
                    return Err(BenchError::SearchTrial {
                        label,
                        source: Box::new(error),
                    });
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
    ) -> Result<(), BenchError> {
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
fn quiet_ipv6(namespace: &str, iface: &str) -> Result<(), BenchError> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    Lab::run_in(namespace, move || std::fs::write(&path, "1"))?.map_err(|source| {
        BenchError::QuietIpv6 {
            iface: iface.to_string(),
            namespace: namespace.to_string(),
            source,
        }
    })
}
