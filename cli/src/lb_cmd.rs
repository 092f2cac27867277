//! `fastpath lb`: run the L4 load balancer appliance, or talk to a running one.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nfv_apps::lb::{
    appliance::{Appliance, Status},
    config::{Config, DEFAULT_CONTROL},
    control::{self, Request, Response},
};

use crate::output;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LbArgs {
    /// Run the appliance with this config until SIGINT/SIGTERM.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<LbCommand>,
}

#[derive(Args)]
pub struct ControlArgs {
    /// The appliance's control socket [default: the config's `control`, else /run/fastpath/lb.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Find the control socket in this config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum LbCommand {
    /// Per VIP and backend: state, weight, packets, bytes, connections; and worker stats.
    Status(ControlArgs),
    /// Change a backend without a restart.
    Backend {
        #[arg(value_parser = ["add", "remove", "drain", "disable", "enable"])]
        action: String,
        /// ADDR:PORT/PROTO, e.g. 10.0.0.100:80/tcp or [fd00::100]:80/tcp.
        #[arg(long)]
        vip: String,
        #[arg(long)]
        backend: IpAddr,
        #[arg(long)]
        weight: Option<u32>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Re-read the config file and apply only the difference.
    Reload(ControlArgs),
}

pub fn run(args: &LbArgs, as_json: bool) -> anyhow::Result<()> {
    match (&args.config, &args.command) {
        (Some(config), None) => serve(config, as_json),
        (None, Some(command)) => command_run(command, as_json),
        _ => {
            bail!("give --config FILE to run the appliance, or a command: status, backend, reload")
        }
    }
}

fn serve(config: &Path, as_json: bool) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut appliance = Appliance::start(config)?;
    for line in &appliance.log {
        eprintln!("lb: {line}");
    }
    eprintln!(
        "lb: serving; control socket {} (Ctrl-C stops)",
        appliance.control_path().display()
    );
    appliance.serve(&stop, &mut |event| eprintln!("lb: {event}"))?;
    let status = appliance.status();
    drop(appliance);
    eprintln!("lb: stopped; XDP detached, sockets closed");
    if as_json {
        output::json(&status);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn control_path(args: &ControlArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.control {
        return Ok(path.clone());
    }
    if let Some(config) = &args.config {
        return Ok(Config::load(config)?.control_path());
    }
    Ok(PathBuf::from(DEFAULT_CONTROL))
}

fn command_run(command: &LbCommand, as_json: bool) -> anyhow::Result<()> {
    let (args, request) = match command {
        LbCommand::Status(args) => (args, Request::Status),
        LbCommand::Reload(args) => (args, Request::Reload),
        LbCommand::Backend {
            action,
            vip,
            backend,
            weight,
            control,
        } => (
            control,
            Request::Backend {
                action: action.clone(),
                vip: vip.clone(),
                backend: *backend,
                weight: *weight,
            },
        ),
    };
    let path = control_path(args)?;
    let response: Response = control::send(&path, &request)
        .map_err(anyhow::Error::msg)
        .context("control")?;
    if as_json {
        output::json(&response);
    }
    if let Some(error) = response.error {
        bail!(error);
    }
    if !as_json {
        if let Some(status) = &response.status {
            print_status(status);
        }
        if let Some(changes) = &response.changes {
            if changes.is_empty() {
                println!("ok");
            } else {
                println!("{}", serde_json::to_string_pretty(changes)?);
            }
        }
    }
    Ok(())
}

pub fn print_status(status: &Status) {
    println!(
        "interface {}  xdp {}  af_xdp {}  nat entries {}  cross-queue replies {}  \
         partial checksums completed {}  fragments {}  too-big replies {}",
        status.interface,
        status.xdp_mode,
        status.socket_mode,
        status.nat_entries,
        status.cross_queue_replies,
        status.partial_checksums,
        status.fragments,
        status.too_big_replies
    );
    let mut rows = Vec::new();
    for vip in &status.vips {
        for backend in &vip.backends {
            rows.push(vec![
                vip.vip.clone(),
                output::serde_name(&vip.forwarding),
                format!("{}:{}", backend.address, backend.port),
                output::serde_name(&backend.state),
                backend.weight.to_string(),
                backend.packets.to_string(),
                backend.bytes.to_string(),
                backend.connections.to_string(),
            ]);
        }
    }
    output::table(
        &[
            "vip", "mode", "backend", "state", "weight", "packets", "bytes", "conns",
        ],
        &rows,
    );
    let mut rows = Vec::new();
    for worker in &status.workers {
        let get = |key: &str| worker.get(key).map(|v| v.to_string()).unwrap_or_default();
        if worker.get("total").is_some() {
            continue;
        }
        rows.push(vec![
            format!("{}:{}", get("iface").trim_matches('"'), get("queue")),
            get("core"),
            get("rx_packets"),
            get("socket_drops"),
            get("tx_packets"),
            worker
                .get("batch_fill")
                .and_then(|v| v.as_f64())
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
            worker
                .get("cycles_per_packet")
                .and_then(|v| v.as_f64())
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default(),
            get("drops"),
        ]);
        // Pipelined mode: each stage's share of the chain's work.
        let stages = worker.get("stages").and_then(|v| v.as_array());
        for stage in stages.into_iter().flatten() {
            let number = |key: &str| stage.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
            rows.push(vec![
                "  stage".into(),
                number("core").to_string(),
                number("packets").to_string(),
                String::new(),
                String::new(),
                format!("{:.1}", number("packets") / number("batches").max(1.0)),
                format!("{:.0}", number("cycles_per_packet")),
                String::new(),
            ]);
        }
    }
    output::table(
        &[
            "worker",
            "core",
            "rx",
            "dropped at socket",
            "tx",
            "batch",
            "cycles/pkt",
            "drops",
        ],
        &rows,
    );
}
