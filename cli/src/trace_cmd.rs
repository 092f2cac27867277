//! `fastpath trace vxlan`: loads the built-in `vxlan-trace` module into an interface's
//! chain when it is not there, then shows its tunnels, busiest first, with the inner pairs
//! under each: live every second, or one snapshot (`--once`).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use observe::tunnels::{self, Granularity, Settings, TraceSnapshot};
use offload::modules::ChainAt;

use crate::{module_cmd::ChainArgs, output};

#[derive(Subcommand)]
pub enum TraceCommand {
    /// VXLAN and Geneve tunnels crossing an interface: outer and inner pairs, packets and
    /// bytes per direction (the module `vxlan-trace`; it never changes a packet).
    Vxlan(VxlanArgs),
}

#[derive(Args)]
pub struct VxlanArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Print one snapshot and exit (tunnels by bytes; no rate).
    #[arg(long)]
    once: bool,
    /// UDP ports carrying VXLAN (repeat; default 4789 and 8472). Given ports replace the
    /// running tracer's settings.
    #[arg(long = "vxlan-port", value_name = "PORT")]
    vxlan_ports: Vec<u16>,
    /// UDP ports carrying Geneve (repeat; default 6081).
    #[arg(long = "geneve-port", value_name = "PORT")]
    geneve_ports: Vec<u16>,
    /// How pairs are told apart: tunnel, addresses (default) or five-tuple.
    #[arg(long)]
    granularity: Option<Granularity>,
}

pub fn run(command: &TraceCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TraceCommand::Vxlan(args) => vxlan(args, json),
    }
}

fn vxlan(args: &VxlanArgs, json: bool) -> anyhow::Result<()> {
    let at = args.chain.at();
    if let Some(loaded) = tunnels::ensure_loaded(at)? {
        eprintln!(
            "loaded vxlan-trace {} into the chain on {at} (revision {})",
            loaded.version, loaded.revision
        );
    }
    if !args.vxlan_ports.is_empty() || !args.geneve_ports.is_empty() || args.granularity.is_some() {
        let defaults = Settings::default();
        let settings = Settings {
            vxlan_ports: if args.vxlan_ports.is_empty() {
                defaults.vxlan_ports
            } else {
                args.vxlan_ports.clone()
            },
            geneve_ports: if args.geneve_ports.is_empty() {
                defaults.geneve_ports
            } else {
                args.geneve_ports.clone()
            },
            granularity: args.granularity.unwrap_or_default(),
        };
        tunnels::configure(at, &settings)?;
    }
    if args.once {
        let snapshot = tunnels::snapshot(at)?;
        show(&snapshot, json);
        return Ok(());
    }
    let mut previous = tunnels::snapshot(at)?;
    let mut taken = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let mut snapshot = tunnels::snapshot(at)?;
        let now = Instant::now();
        snapshot.rate_since(&previous, now.duration_since(taken).as_secs_f64());
        if json {
            println!("{}", serde_json::to_string(&snapshot)?);
        } else {
            // Clear the screen and go home, like top.
            print!("\x1b[2J\x1b[H");
            show(&snapshot, false);
        }
        previous = snapshot;
        taken = now;
    }
}

fn show(snapshot: &TraceSnapshot, json: bool) {
    if json {
        output::json(snapshot);
        return;
    }
    let at = ChainAt::new(&snapshot.iface, snapshot.hook);
    println!(
        "vxlan-trace on {at}: {} tunnel packets, {} malformed, {} other; {} pairs, {} evicted",
        snapshot.tunnel_packets,
        snapshot.malformed_packets,
        snapshot.other_packets,
        snapshot.pairs,
        snapshot.evictions
    );
    let mut rows = Vec::new();
    for tunnel in &snapshot.tunnels {
        rows.push(vec![
            format!("{} {}", tunnel.kind, tunnel.vni),
            tunnel.outer_a.to_string(),
            tunnel.outer_b.to_string(),
            String::new(),
            tunnel.a_to_b.packets.to_string(),
            tunnel.b_to_a.packets.to_string(),
            tunnel.total().bytes.to_string(),
            tunnel
                .bytes_per_second
                .map_or_else(|| "-".to_string(), |rate| format!("{:.0}", rate * 8.0)),
        ]);
        for pair in &tunnel.pairs {
            let side = |address: Option<std::net::IpAddr>, port: u16| {
                let address = address.map_or_else(|| "non-ip".to_string(), |a| a.to_string());
                if port == 0 {
                    address
                } else {
                    format!("{address}:{port}")
                }
            };
            rows.push(vec![
                String::new(),
                format!("  {}", side(pair.inner_a, pair.port_a)),
                side(pair.inner_b, pair.port_b),
                protocol_name(pair.protocol),
                pair.a_to_b.packets.to_string(),
                pair.b_to_a.packets.to_string(),
                (pair.a_to_b.bytes + pair.b_to_a.bytes).to_string(),
                String::new(),
            ]);
        }
    }
    output::table(
        &[
            "tunnel",
            "a",
            "b",
            "proto",
            "a->b pkts",
            "b->a pkts",
            "bytes",
            "bit/s",
        ],
        &rows,
    );
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        0 => "-".into(),
        other => other.to_string(),
    }
}
