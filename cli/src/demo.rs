//! `fastpath demo`: the main job. Builds the load-balancer lab (a client, the appliance and
//! three backends running HTTP servers), starts the L4 load balancer on AF_XDP, sends real
//! HTTP requests to the VIP, drains a backend while connections are open, prints what
//! happened, and tears everything down.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use lab::{
    Lab,
    segment::LbLab,
    services::{PendingRequests, Servers, count_bodies, http_gets},
};
use nfv_apps::lb::{
    appliance::Appliance,
    control::{self, BackendAction, Request, Status},
};
use serde::Serialize;

use crate::{lb_cmd, output};

const PREFIX: &str = "fpdemo";
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize)]
struct Report {
    requests: usize,
    failed: usize,
    distribution: Vec<usize>,
    held_open: usize,
    held_on_drained: usize,
    held_completed: usize,
    after_drain: Vec<usize>,
    seconds: f64,
    status: Status,
}

pub fn run(requests: usize, as_json: bool) -> anyhow::Result<()> {
    if !(30..=100_000).contains(&requests) {
        bail!("--requests must be between 30 and 100000");
    }
    Lab::teardown_on_signals();
    let say = |text: String| {
        if !as_json {
            println!("{text}");
        }
    };
    let _ = Lab::down(PREFIX);
    let lab = LbLab::up(PREFIX, 1).context("build the demo lab")?;
    lab.hold_vips_on_backends()?;
    let mut servers = Vec::new();
    for (i, backend) in lab.backends.iter().enumerate() {
        let addresses = [backend.ipv4, backend.ipv6];
        servers.push(Servers::start(
            &backend.namespace,
            &format!("b{}", i + 1),
            80,
            &addresses,
        )?);
    }
    let vip = lab.vip(true);
    say(format!(
        "lab: client {} -> VIP {vip}:80 on the load balancer {} ({}) -> backends {}, {}, {} (HTTP servers b1, b2, b3)",
        lab.client.ipv4,
        lab.lb.ipv4,
        lab.lb.iface,
        lab.backends[0].ipv4,
        lab.backends[1].ipv4,
        lab.backends[2].ipv4
    ));

    let config = demo_config(&lab);
    let stop = Arc::new(AtomicBool::new(false));
    let (control_path, appliance) = start_appliance(&lab.namespace("lb"), config, stop.clone())?;
    let started = Instant::now();
    let target = SocketAddr::new(vip, 80);

    say(format!(
        "\n1. {requests} HTTP requests, one connection each, dsr-l2, weights 1:1:1"
    ));
    let results = http_gets(&lab.client.namespace, target, requests, TIMEOUT)?;
    let (distribution, failed) = tally(&results);
    say(format!(
        "   served by b1 {} / b2 {} / b3 {}; failed {failed}",
        distribution[0], distribution[1], distribution[2]
    ));

    let held = 60;
    say(format!(
        "\n2. {held} connections held open mid-request; then `fastpath lb backend drain` b2"
    ));
    let pending = Lab::run_in(&lab.client.namespace, move || {
        PendingRequests::open(target, held, TIMEOUT)
    })?
    .map_err(anyhow::Error::msg)?;
    let before = status(&control_path)?;
    let on_b2 = before.vips[0].backends[1].connections - distribution[1] as u64;
    let drained = Request::Backend {
        action: BackendAction::Drain,
        vip: format!("{vip}:80/tcp"),
        backend: lab.backends[1].ipv4,
        weight: None,
    };
    let reply = control::send(&control_path, &drained)?;
    if let Some(error) = reply.error {
        bail!("drain: {error}");
    }
    let finished = pending.finish(TIMEOUT);
    let held_completed = finished.iter().filter(|r| r.is_ok()).count();
    say(format!(
        "   {on_b2} of them were on b2; {held_completed} of {held} completed after the drain (none broke: {})",
        held_completed == held
    ));
    let after_requests = requests / 5;
    let results = http_gets(&lab.client.namespace, target, after_requests, TIMEOUT)?;
    let (after_drain, failed_after) = tally(&results);
    say(format!(
        "   {after_requests} new requests: b1 {} / b2 {} / b3 {}; failed {failed_after} (a draining backend takes no new flows)",
        after_drain[0], after_drain[1], after_drain[2]
    ));

    let status = status(&control_path)?;
    stop.store(true, Ordering::Relaxed);
    appliance
        .join()
        .map_err(|_| anyhow::anyhow!("the appliance thread panicked"))??;
    drop(servers);
    let seconds = started.elapsed().as_secs_f64();
    if as_json {
        output::json(&Report {
            requests,
            failed: failed + failed_after,
            distribution,
            held_open: held,
            held_on_drained: on_b2 as usize,
            held_completed,
            after_drain,
            seconds,
            status,
        });
    } else {
        println!("\n3. load balancer stats (`fastpath lb status`)");
        lb_cmd::print_status(&status);
        println!(
            "\nstopped the appliance (XDP detached, UMEM freed) and removed the lab ({seconds:.1} s)"
        );
    }
    drop(lab);
    if failed + failed_after > 0 || held_completed != held {
        bail!(
            "{} requests failed",
            failed + failed_after + held - held_completed
        );
    }
    Ok(())
}

fn demo_config(lab: &LbLab) -> String {
    let mut text = format!(
        "interface = \"{}\"\ncontrol = \"/run/fastpath/{PREFIX}.sock\"\n\n[[vip]]\naddress = \"{}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"dsr-l2\"\n",
        lab.lb.iface,
        lab.vip(true)
    );
    for backend in &lab.backends {
        text += &format!("\n  [[vip.backend]]\n  address = \"{}\"\n", backend.ipv4);
    }
    text
}

/// Runs the appliance on a thread inside the load balancer's namespace (its workers inherit
/// it) until `stop`; returns once it serves.
fn start_appliance(
    namespace: &str,
    config: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(PathBuf, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let path = std::env::temp_dir().join(format!("{PREFIX}-lb.toml"));
    std::fs::write(&path, config)?;
    let (ready, started) = mpsc::channel();
    let namespace = namespace.to_string();
    let thread = std::thread::spawn(move || -> anyhow::Result<()> {
        lab::netns::enter(&namespace)?;
        let mut appliance = match Appliance::start(&path) {
            Ok(appliance) => appliance,
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return Ok(());
            }
        };
        let _ = ready.send(Ok((
            appliance.control_path().to_path_buf(),
            appliance.log.clone(),
        )));
        appliance.serve(&stop, &mut |event| println!("lb: {event}"))?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    });
    let (control, log) = started
        .recv_timeout(Duration::from_secs(30))
        .context("the appliance did not start")?
        .map_err(anyhow::Error::msg)?;
    for line in log.iter().filter(|l| !l.starts_with("xdp: hw")) {
        println!("lb: {line}");
    }
    // The control socket appears once `serve` runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !control.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((control, thread))
}

fn status(control_path: &std::path::Path) -> anyhow::Result<Status> {
    control::send(control_path, &Request::Status)?
        .status
        .context("no status in the reply")
}

/// Responses per backend (b1, b2, b3), and how many failed.
fn tally(results: &[Result<String, String>]) -> (Vec<usize>, usize) {
    let (counts, failed) = count_bodies(results, &["b1", "b2", "b3"]);
    (counts, failed.len())
}
