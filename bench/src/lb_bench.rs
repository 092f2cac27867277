//! The load balancer's throughput on the segment lab next to `fastpath xsk l2fwd` on the
//! same interface, in the same run: the LB does everything l2fwd does (receive, rewrite,
//! transmit on the port it arrived on) plus parsing, the connection table and Maglev, so
//! l2fwd is its ceiling.
//!
//! `cargo xtask bench-lb` builds `fastpath` and runs this. The generator is `fastpath xsk
//! txpush` in the client namespace, pinned to CPU 0, sending UDP to the VIP (one flow: the
//! connection-table hit path); the subject runs on CPU 1. The LB forwards dsr-l2 to the
//! backends, whose kernels drop the frames (they do not hold the VIP). A report, not a
//! test: it asserts nothing about speed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lab::{Lab, segment::LbLab};

const GENERATOR_CPU: &str = "0";
const SUBJECT_CPU: &str = "1";
const PORT: &str = "9";

struct Bench {
    fastpath: String,
    seconds: f64,
    lab: LbLab,
    lb_mac: String,
    config: PathBuf,
    control: PathBuf,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, fastpath, seconds] = args.as_slice() else {
        bail!("usage: lb-bench FASTPATH_BINARY SECONDS");
    };
    Lab::teardown_on_signals();
    let prefix = "fpbl";
    let lab = LbLab::up(prefix, 1)?;
    let bench = Bench {
        fastpath: fastpath.clone(),
        seconds: seconds.parse().context("SECONDS")?,
        lb_mac: lab::format_mac(lab.lb.read_mac()?),
        lab,
        config: std::env::temp_dir().join(format!("{prefix}-bench.toml")),
        control: PathBuf::from(format!("/run/fastpath/{prefix}-bench.sock")),
    };
    println!(
        "| frame | xsk l2fwd Mpps | lb Mpps | lb pipelined Mpps | lb/l2fwd | pipelined/l2fwd |"
    );
    println!("|---|---|---|---|---|---|");
    let sizes: &[usize] = if std::env::var_os("LB_BENCH_QUICK").is_some() {
        &[64]
    } else {
        &[64, 1500]
    };
    for &size in sizes {
        let l2fwd = bench.l2fwd(size)?;
        let lb = bench.lb(size, "")?;
        // Two cores only: the stage shares CPU 0 with the generator.
        let pipelined = bench.lb(size, "[pipelined]\ncores = [0]\n")?;
        println!(
            "| {size} | {l2fwd:.3} | {lb:.3} | {pipelined:.3} | {:.2} | {:.2} |",
            lb / l2fwd,
            pipelined / l2fwd
        );
    }
    let _ = std::fs::remove_file(&bench.config);
    Ok(())
}

impl Bench {
    /// `fastpath xsk txpush` from the client to the LB's MAC and the VIP, for `seconds`.
    fn generator(&self, size: usize, seconds: f64) -> Result<Child> {
        let lab = &self.lab;
        let args = [
            "-c",
            GENERATOR_CPU,
            &self.fastpath,
            "--netns",
            &lab.client.namespace,
            "xsk",
            "txpush",
            "--iface",
            &lab.client.iface,
            "--copy",
            "--size",
            &size.to_string(),
            "--duration",
            &seconds.to_string(),
            "--dst-mac",
            &self.lb_mac,
            "--src-ip",
            &lab.client.ipv4.to_string(),
            "--dst-ip",
            &lab.vip(true).to_string(),
            "--port",
            PORT,
            "--quiet",
            "--json",
        ];
        Ok(Command::new("taskset")
            .args(args)
            .stdout(Stdio::null())
            .spawn()?)
    }

    fn l2fwd(&self, size: usize) -> Result<f64> {
        let mut generator = self.generator(size, self.seconds + 1.5)?;
        std::thread::sleep(Duration::from_millis(500));
        let output = Command::new("taskset")
            .args(["-c", SUBJECT_CPU, &self.fastpath, "--netns"])
            .arg(&self.lab.lb.namespace)
            .args(["xsk", "l2fwd", "--iface", &self.lab.lb.iface, "--copy"])
            .args(["--duration", &self.seconds.to_string(), "--quiet", "--json"])
            .stderr(Stdio::inherit())
            .output()?;
        generator.wait()?;
        if !output.status.success() {
            bail!("l2fwd failed: {}", String::from_utf8_lossy(&output.stdout));
        }
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        summary["mpps"]
            .as_f64()
            .context("no mpps in l2fwd's output")
    }

    /// The appliance's transmit rate over a window in the middle of the generator's run.
    fn lb(&self, size: usize, extra: &str) -> Result<f64> {
        let lab = &self.lab;
        let mut config = format!(
            "interface = \"{}\"\ncores = [{SUBJECT_CPU}]\ncontrol = \"{}\"\n{extra}\n[[vip]]\naddress = \"{}\"\nport = {PORT}\nprotocol = \"udp\"\nforwarding = \"dsr-l2\"\n",
            lab.lb.iface,
            self.control.display(),
            lab.vip(true)
        );
        for backend in &lab.backends {
            config += &format!("[[vip.backend]]\naddress = \"{}\"\n", backend.ipv4);
        }
        std::fs::write(&self.config, config)?;
        let _ = std::fs::remove_file(&self.control);
        // Not under taskset: the config pins the worker (and a stage) by itself.
        let mut appliance = Command::new(&self.fastpath)
            .arg("--netns")
            .arg(&lab.lb.namespace)
            .args(["lb", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .spawn()?;
        let measured = self.measure_lb(size);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(appliance.id() as i32, libc::SIGTERM) };
        appliance.wait()?;
        measured
    }

    fn measure_lb(&self, size: usize) -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.control.exists() {
            if Instant::now() > deadline {
                bail!("the appliance did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut generator = self.generator(size, self.seconds + 1.5)?;
        std::thread::sleep(Duration::from_millis(500));
        let before = self.lb_transmitted()?;
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(self.seconds));
        let after = self.lb_transmitted()?;
        let elapsed = start.elapsed().as_secs_f64();
        generator.wait()?;
        if std::env::var_os("LB_BENCH_VERBOSE").is_some() {
            eprintln!("{}", self.status()?["workers"]);
        }
        Ok((after - before) as f64 / elapsed / 1e6)
    }

    /// Packets the appliance's workers have transmitted so far.
    fn lb_transmitted(&self) -> Result<u64> {
        let status = self.status()?;
        let workers = status["workers"]
            .as_array()
            .context("no workers in the status")?;
        let total = workers
            .iter()
            .find_map(|w| w.get("total"))
            .context("no total in the status")?;
        total["tx_packets"].as_u64().context("no tx_packets")
    }

    fn status(&self) -> Result<serde_json::Value> {
        let output = Command::new(&self.fastpath)
            .args(["--netns", &self.lab.lb.namespace, "--json", "lb", "status"])
            .arg("--control")
            .arg(Path::new(&self.control))
            .output()?;
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
        Ok(reply["status"].clone())
    }
}
