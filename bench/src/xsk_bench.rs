//! The AF_XDP benchmark: rxdrop, txpush and l2fwd through `fastpath xsk` (afxdp) and the
//! xsk-rs peer, side by side with identical settings, plus the in-kernel bound measured by
//! the steering program's own counters (XDP_DROP for rxdrop, XDP_TX for l2fwd).
//!
//! `cargo xtask bench-xsk` builds both binaries and runs this. Traffic flows client -> dut
//! on the lab; the generator is `fastpath xsk txpush`, pinned to CPU 0; the subject is
//! pinned to CPU 1. A report, not a test: it asserts nothing about speed.
//!
//! For a quick or repeated look, the environment narrows it: `XSK_BENCH_APPS=rxdrop,l2fwd`,
//! `XSK_BENCH_SIZES=64`, `XSK_BENCH_RUNS=5` (alternating rounds, medians shown),
//! `XSK_BENCH_NO_BOUND=1`, `XSK_BENCH_BASELINE=path/to/older/fastpath` (a before/after in
//! the same rounds) and `XSK_BENCH_PERF=DIR` (a `perf stat` and a `perf record` of both
//! cores during each subject's run).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lab::Lab;
use offload::{AttachOptions, Steering, mode::ModePolicy, rules::Action};

const GENERATOR_CPU: &str = "0";
const SUBJECT_CPU: &str = "1";
const FRAME_SIZE: &str = "4096";
const BATCH: &str = "64";
const RING: &str = "2048";
/// What `perf stat` counts per core: time, scheduling, the syscalls AF_XDP wakes the kernel
/// with, and softirqs (where veth runs XDP and the copy into the UMEM).
const PERF_STAT_EVENTS: &str = "task-clock,context-switches,cpu-migrations,\
    syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_poll,\
    irq:softirq_entry";

struct Setup {
    fastpath: String,
    peer: String,
    seconds: f64,
    lab: Lab,
    /// `XSK_BENCH_PERF`: where to write a `perf stat` and a `perf record` of each subject's
    /// run (both cores, one after the other in the middle of the run).
    perf_dir: Option<PathBuf>,
}

/// What to run, from the environment; the defaults are the full report.
struct Plan {
    /// `XSK_BENCH_APPS`, comma-separated (rxdrop, txpush, l2fwd).
    apps: Vec<String>,
    /// `XSK_BENCH_SIZES`, comma-separated frame sizes.
    sizes: Vec<usize>,
    /// `XSK_BENCH_RUNS`: rounds per row, the subjects alternating within each; the row
    /// shows the medians.
    runs: usize,
    /// `XSK_BENCH_BASELINE`: another `fastpath` binary (an earlier build) run in the same
    /// rounds, for a before/after of a change with xsk-rs as the peer.
    baseline: Option<String>,
    /// `XSK_BENCH_NO_BOUND`: skip the in-kernel bound.
    bound: bool,
}

impl Plan {
    fn from_env() -> Result<Plan> {
        let list = |name: &str, default: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| default.into())
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let sizes = list("XSK_BENCH_SIZES", "64,1500")
            .iter()
            .map(|size| {
                size.parse()
                    .with_context(|| format!("XSK_BENCH_SIZES: {size}"))
            })
            .collect::<Result<_>>()?;
        let runs = std::env::var("XSK_BENCH_RUNS")
            .ok()
            .map(|runs| runs.parse().context("XSK_BENCH_RUNS"))
            .transpose()?
            .unwrap_or(1usize)
            .max(1);
        Ok(Plan {
            apps: list("XSK_BENCH_APPS", "rxdrop,txpush,l2fwd"),
            sizes,
            runs,
            baseline: std::env::var("XSK_BENCH_BASELINE").ok(),
            bound: std::env::var_os("XSK_BENCH_NO_BOUND").is_none(),
        })
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, fastpath, peer, seconds] = args.as_slice() else {
        bail!("usage: xsk-bench FASTPATH_BINARY XSK_PEER_BINARY SECONDS");
    };
    let plan = Plan::from_env()?;
    Lab::teardown_on_signals();
    let _ = Lab::down("fpbx");
    let perf_dir = std::env::var_os("XSK_BENCH_PERF").map(PathBuf::from);
    if let Some(dir) = &perf_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("XSK_BENCH_PERF {dir:?}"))?;
    }
    let setup = Setup {
        fastpath: fastpath.clone(),
        peer: peer.clone(),
        seconds: seconds.parse().context("SECONDS")?,
        lab: Lab::up("fpbx")?,
        perf_dir,
    };
    let baseline_column = if plan.baseline.is_some() {
        " baseline Mpps | afxdp/baseline |"
    } else {
        ""
    };
    println!(
        "| app | frame | afxdp Mpps | xsk-rs Mpps | kernel bound Mpps | afxdp/xsk-rs | afxdp/kernel |{baseline_column}"
    );
    println!(
        "|---|---|---|---|---|---|---|{}",
        if plan.baseline.is_some() {
            "---|---|"
        } else {
            ""
        }
    );
    for app in &plan.apps {
        for &size in &plan.sizes {
            let mut afxdp = Vec::new();
            let mut xsk_rs = Vec::new();
            let mut baseline = Vec::new();
            for _ in 0..plan.runs {
                afxdp.push(setup.subject(app, size, Subject::Afxdp(&setup.fastpath))?);
                if let Some(binary) = &plan.baseline {
                    baseline.push(setup.subject(app, size, Subject::Afxdp(binary))?);
                }
                xsk_rs.push(setup.subject(app, size, Subject::XskRs)?);
            }
            if plan.runs > 1 {
                eprintln!(
                    "{app} {size}: afxdp {afxdp:.3?} xsk-rs {xsk_rs:.3?} baseline {baseline:.3?}"
                );
            }
            let (afxdp, xsk_rs) = (median(&mut afxdp), median(&mut xsk_rs));
            let kernel = match app.as_str() {
                "rxdrop" if plan.bound => Some(setup.kernel_bound(size, Action::Drop)?),
                "l2fwd" if plan.bound => Some(setup.kernel_bound(size, Action::Tx)?),
                _ => None,
            };
            let show = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.3}"));
            let baseline_cells = if baseline.is_empty() {
                String::new()
            } else {
                let baseline = median(&mut baseline);
                format!(" {baseline:.3} | {:.2} |", afxdp / baseline)
            };
            println!(
                "| {app} | {size} | {afxdp:.3} | {xsk_rs:.3} | {} | {:.2} | {} |{baseline_cells}",
                show(kernel),
                afxdp / xsk_rs,
                kernel.map_or("-".into(), |k| format!("{:.2}", afxdp / k)),
            );
        }
    }
    Ok(())
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

#[derive(Clone, Copy)]
enum Subject<'a> {
    /// `fastpath xsk`, from this binary.
    Afxdp(&'a str),
    XskRs,
}

impl Subject<'_> {
    fn name(&self) -> &'static str {
        match self {
            Subject::Afxdp(_) => "afxdp",
            Subject::XskRs => "xsk-rs",
        }
    }
}

impl Setup {
    fn dut_ns(&self) -> &str {
        &self.lab.dut.namespace
    }

    fn attach(&self, default_action: Action) -> Result<()> {
        let iface = self.lab.dut.iface.clone();
        Lab::run_in(self.dut_ns(), move || {
            offload::attach(&AttachOptions {
                iface,
                policy: ModePolicy::Auto,
                default_action,
                prefilter: Vec::new(),
            })
        })??;
        Ok(())
    }

    fn detach(&self) -> Result<()> {
        let iface = self.lab.dut.iface.clone();
        Lab::run_in(self.dut_ns(), move || offload::detach(&iface))??;
        Ok(())
    }

    /// The pinned XSKMAP of the steering program on `iface` in `namespace`, as the xsk-rs
    /// peer opens it: pins live in a folder per network namespace, found from inside it.
    fn xsks_pin(&self, namespace: &str, iface: &str) -> Result<String> {
        let iface = iface.to_string();
        Ok(Lab::run_in(namespace, move || {
            let bpffs = offload::bpffs::Bpffs::get();
            bpffs.show(&offload::Pins::for_iface(&iface).map("XSKS"))
        })?)
    }

    fn dut_counters(&self) -> Result<offload::ActionCounters> {
        let iface = self.lab.dut.iface.clone();
        Ok(Lab::run_in(self.dut_ns(), move || {
            Steering::open(&iface)?.counters()
        })??)
    }

    /// `fastpath xsk txpush` from the client towards the dut, for `seconds`.
    fn generator(&self, size: usize, seconds: f64) -> Result<Child> {
        let size = size.to_string();
        let seconds = seconds.to_string();
        let dut_mac = self.lab.dut.mac.clone();
        let mut args = vec!["-c", GENERATOR_CPU, self.fastpath.as_str()];
        args.extend([
            "--netns",
            &self.lab.client.namespace,
            "xsk",
            "txpush",
            "--iface",
            &self.lab.client.iface,
            "--copy",
            "--size",
            &size,
            "--duration",
            &seconds,
            "--dst-mac",
            &dut_mac,
            "--src-ip",
            "10.77.0.1",
            "--dst-ip",
            "10.77.0.2",
            "--quiet",
            "--json",
        ]);
        Ok(Command::new("taskset")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()?)
    }

    /// The subject's rate in Mpps.
    fn subject(&self, app: &str, size: usize, subject: Subject) -> Result<f64> {
        let seconds = self.seconds.to_string();
        let size_text = size.to_string();
        // rxdrop and l2fwd receive on the dut, steered to the socket; txpush sends from the
        // client into a dut that drops in XDP, so the sink costs little.
        let (namespace, iface) = if app == "txpush" {
            self.attach(Action::Drop)?;
            (&self.lab.client.namespace, &self.lab.client.iface)
        } else {
            self.attach(Action::Xsk)?;
            (&self.lab.dut.namespace, &self.lab.dut.iface)
        };
        let generator = if app == "txpush" {
            None
        } else {
            let generator = self.generator(size, self.seconds + 1.5)?;
            std::thread::sleep(Duration::from_millis(500));
            Some(generator)
        };
        let mut command = Command::new("taskset");
        command.args(["-c", SUBJECT_CPU]);
        match subject {
            Subject::Afxdp(fastpath) => command.args([
                fastpath,
                "--netns",
                namespace,
                "xsk",
                app,
                "--iface",
                iface,
                "--copy",
                "--frame-size",
                FRAME_SIZE,
                "--batch",
                BATCH,
                "--ring-size",
                RING,
                "--size",
                &size_text,
                "--duration",
                &seconds,
                "--quiet",
                "--json",
            ]),
            Subject::XskRs => command.args([
                self.peer.as_str(),
                app,
                iface,
                namespace,
                &seconds,
                FRAME_SIZE,
                BATCH,
                RING,
                &size_text,
            ]),
        };
        if let Subject::XskRs = subject {
            command.arg(self.xsks_pin(namespace, iface)?);
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        if let Some(dir) = &self.perf_dir {
            let name = match subject {
                Subject::Afxdp(binary) if binary != self.fastpath => "baseline",
                _ => subject.name(),
            };
            self.profile(dir, &format!("{app}-{size}-{name}"))?;
        }
        let output = child.wait_with_output()?;
        if let Some(mut generator) = generator {
            generator.wait()?;
        }
        self.detach()?;
        if !output.status.success() {
            bail!(
                "{app} subject failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        if std::env::var_os("XSK_BENCH_VERBOSE").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "subject output {:?}",
                    String::from_utf8_lossy(&output.stdout)
                )
            })?;
        summary["mpps"]
            .as_f64()
            .context("no mpps in the subject's output")
    }

    /// Profiles both cores while a subject runs: `perf stat` (CPU time, context switches,
    /// the wakeup syscalls, softirqs) then `perf record -g` (the VM has no hardware
    /// counters, so it samples the CPU clock), each for a third of the run, after the
    /// first sixth. Writes `NAME.stat` and `NAME.data` into `dir`.
    fn profile(&self, dir: &Path, name: &str) -> Result<()> {
        let window = format!("{:.2}", self.seconds / 3.0);
        std::thread::sleep(Duration::from_secs_f64(self.seconds / 6.0));
        let cpus = format!("{GENERATOR_CPU},{SUBJECT_CPU}");
        let stat = dir.join(format!("{name}.stat"));
        let status = Command::new("perf")
            .args([
                "stat",
                "-a",
                "-A",
                "-C",
                &cpus,
                "-e",
                PERF_STAT_EVENTS,
                "-o",
            ])
            .arg(&stat)
            .args(["--", "sleep", &window])
            .status()
            .context("perf stat")?;
        if !status.success() {
            bail!("perf stat for {name} failed: {status}");
        }
        let data = dir.join(format!("{name}.data"));
        let status = Command::new("perf")
            .args(["record", "-q", "-a", "-g", "-C", &cpus, "-o"])
            .arg(&data)
            .args(["--", "sleep", &window])
            .stdout(Stdio::null())
            .status()
            .context("perf record")?;
        if !status.success() {
            bail!("perf record for {name} failed: {status}");
        }
        Ok(())
    }

    /// The in-kernel bound: the steering program alone, default action `action`, counted
    /// over a window in the middle of the generator's run.
    fn kernel_bound(&self, size: usize, action: Action) -> Result<f64> {
        self.attach(action)?;
        let mut generator = self.generator(size, self.seconds + 1.5)?;
        std::thread::sleep(Duration::from_millis(500));
        let pick = |c: &offload::ActionCounters| if action == Action::Drop { c.drop } else { c.tx };
        let before = pick(&self.dut_counters()?);
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(self.seconds));
        let after = pick(&self.dut_counters()?);
        let elapsed = start.elapsed().as_secs_f64();
        generator.wait()?;
        self.detach()?;
        Ok((after - before) as f64 / elapsed / 1e6)
    }
}
