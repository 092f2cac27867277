//! `fastpath lb`: run the L4 load balancer appliance, or talk to a running one.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nfv_apps::lb::{
    appliance::Appliance,
    config::{Config, DEFAULT_CONTROL},
    control::{self, BackendAction, Request, Response, Status},
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
                action: action
                    .parse::<BackendAction>()
                    .map_err(anyhow::Error::msg)?,
                vip: vip.clone(),
                backend: *backend,
                weight: *weight,
            },
        ),
    };
    let path = control_path(args)?;
    let response: Response = control::send(&path, &request).context("control")?;
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
    for worker in status.workers() {
        rows.push(vec![
            format!("{}:{}", worker.iface, worker.queue),
            worker.core.map_or("null".into(), |core| core.to_string()),
            worker.rx_packets.to_string(),
            worker.socket_drops.to_string(),
            worker.tx_packets.to_string(),
            format!("{:.1}", worker.batch_fill),
            format!("{:.0}", worker.cycles_per_packet),
            format!("{:.1}", worker.busy_percent),
            serde_json::to_string(&worker.drops).unwrap_or_default(),
        ]);
        // Pipelined mode: each stage's share of the chain's work.
        for stage in &worker.stages {
            rows.push(vec![
                "  stage".into(),
                stage.core.to_string(),
                stage.packets.to_string(),
                String::new(),
                String::new(),
                format!("{:.1}", stage.packets as f64 / stage.batches.max(1) as f64),
                format!("{:.0}", stage.cycles_per_packet),
                String::new(),
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
            "cycles/pkt (busy)",
            "busy %",
            "drops",
        ],
        &rows,
    );
}
