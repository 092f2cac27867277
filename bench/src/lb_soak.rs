//! The load balancer's soak: `--packets N` frames (10^8 by default) through `fastpath lb` on
//! the lab, with every frame accounted for, and the appliance's memory before and after.
//!
//! `cargo xtask soak [--packets N] [--rate PPS]` builds `fastpath` and runs this; `cargo
//! xtask test` runs a short one. The lab is the default one (`lab::Lab`): the client's veth
//! faces the load balancer's. The appliance runs as its own process (`fastpath lb
//! --config`) in the dut's namespace: one UDP VIP in 198.18.0.0/15 (RFC 2544's benchmark
//! range), forwarding dsr-l2 to one backend, the client itself, with a connection table
//! smaller than the flows so that it evicts all along. `fastpath gen` (live frames) sends
//! from the client over 50,000 flows; a drop rule on the client counts the frames the load
//! balancer sends back.
//!
//! Every frame sent ends in exactly one of: refused by the sending driver (`xdp_xmit_errors`),
//! passed to the kernel for want of a socket (`xsk_fallback`), dropped at the socket
//! (`XDP_STATISTICS`), dropped by the load balancer with a reason, or transmitted by it.
//! Any other frame is unaccounted, and the soak fails. The client's count of frames back is
//! reported beside it (veth can lose a frame on the way back; that is not the load balancer's
//! doing). Memory is the appliance's VmRSS at start, after a warm-up and at the end, and its
//! peak (VmHWM); the soak reports them and asserts nothing about them.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lab::Lab;
use serde::Serialize;

const PREFIX: &str = "fpsk";
const VIP: &str = "198.18.0.100";
const PORT: &str = "9";
const FLOWS: &str = "50000";
const CONNECTIONS: u32 = 16384;
const GENERATOR_CPU: &str = "0";
const WORKER_CPU: &str = "1";
/// The default pace: about what one worker of this project's 2-core VM forwards with the
/// generator on the other core (more is dropped at the socket, and counted, which tests
/// the accounting rather than the load balancer).
const DEFAULT_RATE: u64 = 250_000;

struct Options {
    fastpath: String,
    packets: u64,
    rate: Option<u64>,
    json: bool,
}

fn options() -> Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter().map(String::as_str);
    let fastpath = args
        .next()
        .context("usage: lb-soak FASTPATH [--packets N] [--rate PPS|max] [--json]")?
        .to_string();
    let mut options = Options {
        fastpath,
        packets: 100_000_000,
        rate: Some(DEFAULT_RATE),
        json: false,
    };
    let number = |name: &str, text: Option<&str>| -> Result<u64> {
        let text = text.with_context(|| format!("{name} needs a value"))?;
        text.replace('_', "")
            .parse::<f64>()
            .ok()
            .filter(|v| *v >= 1.0 && v.fract() == 0.0)
            .map(|v| v as u64)
            .with_context(|| format!("{name} {text}: expected a positive whole number"))
    };
    while let Some(arg) = args.next() {
        match arg {
            "--packets" => options.packets = number("--packets", args.next())?,
            "--rate" => {
                options.rate = match args.next() {
                    Some("max") => None,
                    text => Some(number("--rate", text)?),
                }
            }
            "--json" => options.json = true,
            other => {
                bail!("unknown argument {other:?}: expected --packets N, --rate PPS|max, --json")
            }
        }
    }
    Ok(options)
}

/// Every counter the accounting reads, at one moment.
#[derive(Clone, Debug, Default)]
struct Counters {
    /// Frames the steering program matched to the VIP's rule on the load balancer.
    vip_rule: u64,
    xsk_fallback: u64,
    socket_drops: u64,
    received: u64,
    transmitted: u64,
    drops: BTreeMap<String, u64>,
    /// Frames back at the client (its drop rule).
    returned: u64,
    conntrack_evictions: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    packets: u64,
    seconds: f64,
    mpps: f64,
    sent: u64,
    refused_by_driver: u64,
    reached_lb: u64,
    passed_to_kernel_no_socket: u64,
    dropped_at_socket: u64,
    received_by_lb: u64,
    dropped_by_lb: BTreeMap<String, u64>,
    transmitted_by_lb: u64,
    unaccounted: i64,
    back_at_client: u64,
    conntrack_evictions: u64,
    rss_kib_at_start: u64,
    rss_kib_after_warmup: u64,
    rss_kib_at_end: u64,
    peak_rss_kib: u64,
    stopped_cleanly: bool,
    leftovers: Vec<String>,
}

fn main() {
    if let Err(error) = run() {
        eprintln!("lb-soak: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let options = options()?;
    Lab::teardown_on_signals();
    let _ = Lab::down(PREFIX);
    let lab = Lab::up(PREFIX).context("build the lab")?;
    let soak = Soak {
        fastpath: options.fastpath.clone(),
        config: std::env::temp_dir().join(format!("{PREFIX}-soak.toml")),
        control: PathBuf::from(format!("/run/fastpath/{PREFIX}-soak.sock")),
        log: std::env::temp_dir().join(format!("{PREFIX}-soak.log")),
        lab,
    };
    let result = soak.run(&options);
    let _ = std::fs::remove_file(&soak.config);
    let report = result?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if report.unaccounted != 0 {
        bail!(
            "{} frames unaccounted for (see {})",
            report.unaccounted,
            soak.log.display()
        );
    }
    if !report.stopped_cleanly || !report.leftovers.is_empty() {
        bail!(
            "the appliance did not stop cleanly, or left {:?} (see {})",
            report.leftovers,
            soak.log.display()
        );
    }
    let _ = std::fs::remove_file(&soak.log);
    Ok(())
}

struct Soak {
    fastpath: String,
    config: PathBuf,
    control: PathBuf,
    log: PathBuf,
    lab: Lab,
}

impl Soak {
    fn run(&self, options: &Options) -> Result<Report> {
        let lab = &self.lab;
        // The client counts what comes back: a drop rule for frames to the VIP.
        self.fastpath_ok(
            &lab.client.namespace,
            &["xdp", "attach", "--iface", &lab.client.iface],
        )?;
        self.fastpath_ok(
            &lab.client.namespace,
            &[
                "xdp",
                "rule",
                "add",
                "--iface",
                &lab.client.iface,
                "--action",
                "drop",
                "--proto",
                "udp",
                "--dst",
                VIP,
                "--dport",
                PORT,
            ],
        )?;
        let mut appliance = self.start_appliance()?;
        let outcome = self.measure(options, appliance.id());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(appliance.id() as i32, libc::SIGTERM) };
        let stopped_cleanly = appliance.wait()?.success();
        // The client's counting program goes too (its pins would outlive the lab).
        let detached = self.fastpath_ok(
            &lab.client.namespace,
            &["xdp", "detach", "--iface", &lab.client.iface],
        );
        let mut report = outcome?;
        detached?;
        report.stopped_cleanly = stopped_cleanly;
        report.leftovers = self.leftovers();
        Ok(report)
    }

    fn start_appliance(&self) -> Result<Child> {
        let lab = &self.lab;
        let config = format!(
            "interface = \"{}\"\nqueues = [0]\ncores = [{WORKER_CPU}]\nzero_copy = \"off\"\n\
             connections = {CONNECTIONS}\ncontrol = \"{}\"\n\n[[vip]]\naddress = \"{VIP}\"\n\
             port = {PORT}\nprotocol = \"udp\"\nforwarding = \"dsr-l2\"\n\
             [[vip.backend]]\naddress = \"{}\"\n",
            lab.dut.iface,
            self.control.display(),
            lab.client.ipv4
        );
        std::fs::write(&self.config, config)?;
        let log = std::fs::File::create(&self.log)?;
        let mut child = Command::new(&self.fastpath)
            .args(["--netns", &lab.dut.namespace, "lb", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start fastpath lb")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.control).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "fastpath lb exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the appliance did not come up (see {})", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    fn measure(&self, options: &Options, pid: u32) -> Result<Report> {
        let rss_at_start = rss_kib(pid, "VmRSS")?;
        // Warm-up: tables fill (the connection table to its capacity), the next hop resolves.
        let warmup = (options.packets / 100).clamp(100_000, 1_000_000);
        self.generate(warmup, options.rate)?;
        let before = self.settled()?;
        let rss_after_warmup = rss_kib(pid, "VmRSS")?;
        eprintln!(
            "lb-soak: {} packets through the load balancer{}",
            options.packets,
            options
                .rate
                .map_or(String::new(), |r| format!(" at {r} pps"))
        );
        let started = Instant::now();
        let sent = self.generate(options.packets, options.rate)?;
        let seconds = started.elapsed().as_secs_f64();
        let after = self.settled()?;
        let delta = |pick: fn(&Counters) -> u64| pick(&after) - pick(&before);
        let mut dropped_by_lb = after.drops.clone();
        for (reason, count) in &before.drops {
            *dropped_by_lb.entry(reason.clone()).or_default() -= count;
        }
        dropped_by_lb.retain(|_, count| *count > 0);
        let refused = sent.1;
        let accounted = refused
            + delta(|c| c.xsk_fallback)
            + delta(|c| c.socket_drops)
            + dropped_by_lb.values().sum::<u64>()
            + delta(|c| c.transmitted);
        Ok(Report {
            packets: options.packets,
            seconds,
            mpps: sent.0 as f64 / seconds / 1e6,
            sent: sent.0,
            refused_by_driver: refused,
            reached_lb: delta(|c| c.vip_rule),
            passed_to_kernel_no_socket: delta(|c| c.xsk_fallback),
            dropped_at_socket: delta(|c| c.socket_drops),
            received_by_lb: delta(|c| c.received),
            dropped_by_lb,
            transmitted_by_lb: delta(|c| c.transmitted),
            unaccounted: sent.0 as i64 - accounted as i64,
            back_at_client: delta(|c| c.returned),
            conntrack_evictions: delta(|c| c.conntrack_evictions),
            rss_kib_at_start: rss_at_start,
            rss_kib_after_warmup: rss_after_warmup,
            rss_kib_at_end: rss_kib(pid, "VmRSS")?,
            peak_rss_kib: rss_kib(pid, "VmHWM")?,
            stopped_cleanly: false,
            leftovers: Vec::new(),
        })
    }

    /// `fastpath gen` from the client: `count` frames to the VIP over the flows; returns
    /// (frames sent, frames the driver refused).
    fn generate(&self, count: u64, rate: Option<u64>) -> Result<(u64, u64)> {
        let lab = &self.lab;
        let dut_mac = lab::format_mac(lab.dut.read_mac()?);
        let count = count.to_string();
        let rate = rate.map(|r| r.to_string());
        let mut args = vec![
            "gen",
            "--iface",
            &lab.client.iface,
            "--dst",
            VIP,
            "--dst-mac",
            &dut_mac,
            "--dport",
            PORT,
            "--flows",
            FLOWS,
            "--count",
            &count,
            "--duration",
            "3600",
            "--cores",
            GENERATOR_CPU,
        ];
        if let Some(rate) = &rate {
            args.extend(["--rate", rate]);
        }
        let report = self.fastpath_json(&lab.client.namespace, &args)?;
        let sent = report["sent"].as_u64().context("no `sent` from gen")?;
        let refused = report["transmit_errors"]
            .as_u64()
            .context("no `transmit_errors` from gen (the driver has no XDP xmit counters)")?;
        Ok((sent, refused))
    }

    /// The counters once the last frames are through: two readings 100 ms apart agree.
    fn settled(&self) -> Result<Counters> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = self.counters()?;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.counters()?;
            let quiet = now.vip_rule == last.vip_rule
                && now.received == last.received
                && now.transmitted == last.transmitted
                && now.returned == last.returned;
            if quiet || Instant::now() > deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    fn counters(&self) -> Result<Counters> {
        let lab = &self.lab;
        let status = self.status()?;
        let total = status["workers"]
            .as_array()
            .and_then(|workers| workers.iter().find_map(|w| w.get("total")))
            .context("no worker total in lb status")?;
        let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
        let drops = total["drops"]
            .as_object()
            .map(|drops| {
                drops
                    .iter()
                    .map(|(reason, count)| (reason.clone(), number(count)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Counters {
            vip_rule: rule_packets(&self.fastpath_json(
                &lab.dut.namespace,
                &["xdp", "status", "--iface", &lab.dut.iface],
            )?)?,
            xsk_fallback: number(&status["steering"]["xsk_fallback"]),
            socket_drops: number(&total["socket_drops"]),
            received: number(&total["rx_packets"]),
            transmitted: number(&total["tx_packets"]),
            drops,
            returned: rule_packets(&self.fastpath_json(
                &lab.client.namespace,
                &["xdp", "status", "--iface", &lab.client.iface],
            )?)?,
            conntrack_evictions: number(&status["conntrack_evictions"]),
        })
    }

    fn status(&self) -> Result<serde_json::Value> {
        let control = self.control.to_string_lossy().into_owned();
        let reply = self.fastpath_json(
            &self.lab.dut.namespace,
            &["lb", "status", "--control", &control],
        )?;
        Ok(reply["status"].clone())
    }

    fn fastpath_json(&self, namespace: &str, args: &[&str]) -> Result<serde_json::Value> {
        let output = Command::new(&self.fastpath)
            .args(["--netns", namespace, "--json"])
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!(
                "fastpath {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    fn fastpath_ok(&self, namespace: &str, args: &[&str]) -> Result<()> {
        self.fastpath_json(namespace, args).map(drop)
    }

    /// What a stopped appliance (and the client's detached counter) must not leave: pins,
    /// rule locks, a program, the pid file and the control socket.
    fn leftovers(&self) -> Vec<String> {
        let iface = &self.lab.dut.iface;
        let client = &self.lab.client.iface;
        let mut left = Vec::new();
        // Where fastpath in the dut's and the client's namespaces keeps its things.
        let in_namespace = |namespace: &str| {
            lab::netns::run_in(namespace, || {
                (
                    offload::bpffs::Bpffs::get().fastpath_dir(),
                    offload::netns::run_dir(),
                )
            })
            .expect("enter the lab's namespace")
        };
        let (bpffs, run) = in_namespace(&self.lab.dut.namespace);
        let (client_bpffs, client_run) = in_namespace(&self.lab.client.namespace);
        for path in [
            bpffs.join(iface),
            client_bpffs.join(client),
            run.join(format!("{iface}.lock")),
            client_run.join(format!("{client}.lock")),
            run.join(format!("lb-{iface}.pid")),
            self.control.clone(),
        ] {
            if path.exists() {
                left.push(path.display().to_string());
            }
        }
        let running = {
            let iface = iface.clone();
            lab::netns::run_in(&self.lab.dut.namespace, move || {
                offload::xdp_attached(&iface)
            })
        };
        if let Ok(Ok(Some(state))) = running {
            left.push(format!("XDP program {} on {iface}", state.program_id));
        }
        left
    }
}

/// The packets of the one rule in `fastpath xdp status --json`.
fn rule_packets(status: &serde_json::Value) -> Result<u64> {
    status["rules"]
        .as_array()
        .and_then(|rules| rules.first())
        .and_then(|rule| rule["packets"].as_u64())
        .context("no rule counters in xdp status")
}

/// A `/proc/PID/status` memory field, in KiB.
fn rss_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn print_report(report: &Report) {
    println!(
        "sent {} frames in {:.1} s ({:.3} Mpps); the load balancer's memory (VmRSS): {} KiB at start, {} KiB after the warm-up, {} KiB at the end (peak {} KiB)",
        report.sent,
        report.seconds,
        report.mpps,
        report.rss_kib_at_start,
        report.rss_kib_after_warmup,
        report.rss_kib_at_end,
        report.peak_rss_kib
    );
    let mut rows: Vec<(String, u64)> = vec![
        (
            "refused by the sending driver".into(),
            report.refused_by_driver,
        ),
        (
            "reached the load balancer (VIP rule)".into(),
            report.reached_lb,
        ),
        (
            "  passed to the kernel: no socket".into(),
            report.passed_to_kernel_no_socket,
        ),
        ("  dropped at the socket".into(), report.dropped_at_socket),
        ("  received by the workers".into(), report.received_by_lb),
    ];
    for (reason, count) in &report.dropped_by_lb {
        rows.push((format!("    dropped: {reason}"), *count));
    }
    rows.push(("    transmitted".into(), report.transmitted_by_lb));
    rows.push(("back at the client".into(), report.back_at_client));
    rows.push((
        "connection-table evictions".into(),
        report.conntrack_evictions,
    ));
    for (what, count) in rows {
        println!("  {what:<40} {count:>12}");
    }
    println!("  {:<40} {:>12}", "unaccounted", report.unaccounted);
}
