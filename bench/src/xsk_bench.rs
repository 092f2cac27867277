//! The AF_XDP benchmark: rxdrop, txpush and l2fwd through `fastpath xsk` (afxdp) and the
//! xsk-rs peer, side by side with identical settings, plus the in-kernel bound measured by
//! the steering program's own counters (XDP_DROP for rxdrop, XDP_TX for l2fwd).
//!
//! `cargo xtask bench-xsk` builds both binaries and runs this. Traffic flows client -> dut
//! on the lab; the generator is `fastpath xsk txpush`, pinned to CPU 0; the subject is
//! pinned to CPU 1. A report, not a test: it asserts nothing about speed.

use std::{
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

struct Setup {
    fastpath: String,
    peer: String,
    seconds: f64,
    lab: Lab,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, fastpath, peer, seconds] = args.as_slice() else {
        bail!("usage: xsk-bench FASTPATH_BINARY XSK_PEER_BINARY SECONDS");
    };
    Lab::teardown_on_signals();
    let _ = Lab::down("fpbx");
    let setup = Setup {
        fastpath: fastpath.clone(),
        peer: peer.clone(),
        seconds: seconds.parse().context("SECONDS")?,
        lab: Lab::up("fpbx")?,
    };
    println!(
        "| app | frame | afxdp Mpps | xsk-rs Mpps | kernel bound Mpps | afxdp/xsk-rs | afxdp/kernel |"
    );
    println!("|---|---|---|---|---|---|---|");
    for app in ["rxdrop", "txpush", "l2fwd"] {
        for size in [64usize, 1500] {
            let afxdp = setup.subject(app, size, Subject::Afxdp)?;
            let xsk_rs = setup.subject(app, size, Subject::XskRs)?;
            let kernel = match app {
                "rxdrop" => Some(setup.kernel_bound(size, Action::Drop)?),
                "l2fwd" => Some(setup.kernel_bound(size, Action::Tx)?),
                _ => None,
            };
            let show = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.3}"));
            println!(
                "| {app} | {size} | {afxdp:.3} | {xsk_rs:.3} | {} | {:.2} | {} |",
                show(kernel),
                afxdp / xsk_rs,
                kernel.map_or("-".into(), |k| format!("{:.2}", afxdp / k)),
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Subject {
    Afxdp,
    XskRs,
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
            Subject::Afxdp => command.args([
                self.fastpath.as_str(),
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
        let output = command.stderr(Stdio::inherit()).output()?;
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
