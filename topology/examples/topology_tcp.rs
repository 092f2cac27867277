//! Bulk TCP through the topology against Linux, on the topology lab (a report, not a test;
//! root): `cargo run --release -p topology --example topology_tcp [SECONDS] [ROUNDS]`
//! (defaults 3 s, 3 rounds).
//!
//! One `iperf3` stream a1 -> b1 through a router, and a1 -> a2 through a bridge, each
//! against Linux doing the same job on the same interfaces (forwarding with
//! `ip_forward=1`, a Linux bridge), alternating round by round in one run. The hosts keep
//! the kernel's defaults (TSO and GSO on: the sender hands its veth 64 KB segments) and
//! the topology runs alone on the node's veths, in generic mode, as `topology apply`
//! attaches it: what a container host gets. Large segments leave the topology through
//! its TC hand-off (docs/topology-datapath.md); before it, these transfers stalled.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lab::{netlink, netns, topology::TopologyLab};
use topology::TopologyFile;

const NAME: &str = "tcp";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Router,
    LinuxForwarding,
    Bridge,
    LinuxBridge,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Router => "router",
            Case::LinuxForwarding => "Linux forwarding",
            Case::Bridge => "bridge",
            Case::LinuxBridge => "Linux bridge",
        }
    }

    /// The iperf3 server's host and address.
    fn server(self) -> (&'static str, &'static str) {
        match self {
            Case::Router | Case::LinuxForwarding => ("b1", "10.31.2.11"),
            Case::Bridge | Case::LinuxBridge => ("a2", "10.31.1.12"),
        }
    }
}

/// The topology of `case` on the node's veth peers.
fn topology_text(lab: &TopologyLab, case: Case) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    if case == Case::Router {
        format!(
            "name = \"{NAME}\"\n\n[[instance]]\nname = \"r1\"\nkind = \"router\"\n\
             ports = {{ a = \"{}\", b = \"{}\" }}\n\
             addresses = {{ a = [\"10.31.1.1/24\"], b = [\"10.31.2.1/24\"] }}\n",
            iface("a1"),
            iface("b1"),
        )
    } else {
        format!(
            "name = \"{NAME}\"\n\n[[instance]]\nname = \"br\"\nkind = \"bridge\"\n\
             ports = {{ p1 = \"{}\", p2 = \"{}\" }}\n",
            iface("a1"),
            iface("a2"),
        )
    }
}

fn bridge_name(lab: &TopologyLab) -> String {
    format!("{}-br", lab.prefix)
}

fn set_up(lab: &TopologyLab, case: Case) -> Result<()> {
    match case {
        Case::Router | Case::Bridge => {
            let text = topology_text(lab, case);
            netns::run_in(&lab.node, move || -> Result<()> {
                let file = TopologyFile::parse(Path::new("topology_tcp.toml"), &text, |iface| {
                    topology::ifindex(iface).is_ok()
                })?;
                topology::apply(&file, false)?;
                Ok(())
            })??;
        }
        // Addresses and ip_forward are set once, in `main`: the topology, when it runs,
        // takes the packets at XDP before that stack sees them.
        Case::LinuxForwarding => {}
        Case::LinuxBridge => lab.linux_bridge(&bridge_name(lab))?,
    }
    Ok(())
}

fn tear_down(lab: &TopologyLab, case: Case) -> Result<()> {
    let bridge = bridge_name(lab);
    netns::run_in(&lab.node, move || -> Result<()> {
        match case {
            Case::Router | Case::Bridge => {
                topology::down(NAME)?;
            }
            Case::LinuxForwarding => {}
            Case::LinuxBridge => netlink::delete_link(&bridge)?,
        }
        Ok(())
    })?
}

/// An iperf3 server, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf3_server(lab: &TopologyLab, host: &str, address: &str) -> Result<Server> {
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.host(host).host.namespace])
        .args(["iperf3", "-s", "-B", address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 -s (apt-get install iperf3)")?;
    Ok(Server(child))
}

/// One `iperf3` run from a1 to `case`'s server: the receiver's Gbit/s. Tried until it
/// connects (the server starting, the topology's first ARP) for up to 10 s.
fn run(lab: &TopologyLab, case: Case, seconds: u64) -> Result<f64> {
    let (_, address) = case.server();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", &lab.host("a1").host.namespace])
            .args(["iperf3", "-J", "-c", address, "-t", &seconds.to_string()])
            .output()
            .context("run iperf3 -c")?;
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if let Some(bits) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bits / 1e9);
        }
        if Instant::now() > deadline {
            bail!(
                "{}: iperf3 gave no result: {}",
                case.name(),
                report["error"].as_str().unwrap_or("(no report)")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(3), |text| text.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |text| text.parse())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("topology_tcp needs root (it builds a lab of network namespaces)");
    }
    lab::Lab::teardown_on_signals();
    let lab = TopologyLab::up(&format!("fptt{:04}", std::process::id() % 10000))?;
    lab.linux_forwarding()?;
    let cases = [
        Case::Router,
        Case::LinuxForwarding,
        Case::Bridge,
        Case::LinuxBridge,
    ];
    let _servers = [
        iperf3_server(&lab, "b1", "10.31.2.11")?,
        iperf3_server(&lab, "a2", "10.31.1.12")?,
    ];
    let mut rates = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for (at, case) in cases.iter().copied().enumerate() {
            set_up(&lab, case)?;
            let rate = run(&lab, case, seconds);
            tear_down(&lab, case)?;
            let rate = rate?;
            eprintln!("round {round}, {}: {rate:.2} Gbit/s", case.name());
            rates[at].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|values| median(values)).collect();
    println!("one iperf3 stream, median of {rounds} rounds of {seconds} s, Gbit/s received");
    for (case, median) in cases.iter().zip(&medians) {
        println!("{}: {median:.2} Gbit/s", case.name());
    }
    println!(
        "router against Linux forwarding: {:.2}×; bridge against Linux bridge: {:.2}×",
        medians[0] / medians[1],
        medians[2] / medians[3]
    );
    Ok(())
}
