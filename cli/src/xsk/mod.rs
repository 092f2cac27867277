//! `fastpath xsk`: measure AF_XDP on an interface, as xdpsock does: rxdrop, txpush, l2fwd.
//! The measurement is `bench::xsk`'s; the loops are `pipeline::xsk_apps`'.

use std::{
    net::Ipv4Addr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use afxdp::BindMode;
use anyhow::{Context, bail};
use bench::xsk::{SocketSettings, TxpushPacket, XskApp, XskRun};
use clap::{Args, ValueEnum};
use lab::frame;
use pipeline::xsk_apps::Interval;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XskAppArg {
    /// Receive and drop.
    Rxdrop,
    /// Send UDP frames of `--size` bytes as fast as possible.
    Txpush,
    /// Receive, swap the MACs, send back out.
    L2fwd,
}

#[derive(Args, Debug)]
pub struct XskArgs {
    #[arg(value_enum)]
    pub app: XskAppArg,
    #[arg(long)]
    pub iface: String,
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Force copy mode.
    #[arg(long, conflicts_with = "zero_copy")]
    pub copy: bool,
    /// Force zero-copy mode (fails where the driver lacks it). Default: try zero-copy,
    /// fall back to copy and say so.
    #[arg(long)]
    pub zero_copy: bool,
    /// Busy-poll with SO_PREFER_BUSY_POLL, SO_BUSY_POLL=20 and SO_BUSY_POLL_BUDGET=batch.
    #[arg(long)]
    pub busy_poll: bool,
    /// Descriptors per ring operation.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// UMEM frame size: 2048 or 4096.
    #[arg(long, default_value_t = 4096)]
    pub frame_size: u32,
    /// Entries per ring (RX, TX, fill, completion).
    #[arg(long, default_value_t = 2048)]
    pub ring_size: u32,
    /// txpush: frame size on the wire in bytes, FCS included (64 to 9018).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds to run (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many packets.
    #[arg(long)]
    pub count: Option<u64>,
    /// XDP_USE_SG: packets larger than a frame as chains (needed above ~4000 bytes).
    #[arg(long)]
    pub multi_buffer: bool,
    /// txpush: destination MAC.
    #[arg(long, default_value = "ff:ff:ff:ff:ff:ff")]
    pub dst_mac: String,
    /// txpush: source and destination addresses and UDP ports.
    #[arg(long, default_value = "192.0.2.1")]
    pub src_ip: Ipv4Addr,
    #[arg(long, default_value = "192.0.2.2")]
    pub dst_ip: Ipv4Addr,
    #[arg(long, default_value_t = 9)]
    pub port: u16,
    /// No live per-second lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: &XskArgs, as_json: bool) -> anyhow::Result<()> {
    check_args(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let run = XskRun {
        app: match args.app {
            XskAppArg::Rxdrop => XskApp::Rxdrop,
            XskAppArg::Txpush => XskApp::Txpush,
            XskAppArg::L2fwd => XskApp::L2fwd,
        },
        socket: SocketSettings {
            iface: args.iface.clone(),
            queue: args.queue,
            mode: if args.copy {
                BindMode::Copy
            } else if args.zero_copy {
                BindMode::ZeroCopy
            } else {
                BindMode::Auto
            },
            busy_poll: args.busy_poll,
            batch: args.batch,
            frame_size: args.frame_size,
            ring_size: args.ring_size,
            multi_buffer: args.multi_buffer,
        },
        duration: Duration::from_secs_f64(args.duration),
        count: args.count,
        packet: TxpushPacket {
            dst_mac: parse_mac(&args.dst_mac)?,
            src_ip: args.src_ip,
            dst_ip: args.dst_ip,
            port: args.port,
            size: args.size,
        },
    };
    let live = !args.quiet;
    let summary = bench::xsk::measure(
        &run,
        &stop,
        &mut |note| eprintln!("{note}"),
        |second: &Interval| {
            if live {
                eprintln!(
                    "{:6.1}s  {:>12} pkts  {:8.3} Mpps  {:7.3} Gbit/s",
                    second.elapsed.as_secs_f64(),
                    second.packets,
                    second.rate_pps / 1e6,
                    second.rate_pps * second.average_size * 8.0 / 1e9
                );
            }
        },
    )?;
    if as_json {
        crate::output::json(&summary);
    } else {
        println!(
            "{} on {} queue {}: {} packets, {} bytes in {:.2} s = {:.3} Mpps, {:.3} Gbit/s ({})",
            args.app.to_possible_value().unwrap().get_name(),
            summary.iface,
            summary.queue,
            summary.packets,
            summary.bytes,
            summary.seconds,
            summary.mpps,
            summary.gbps,
            summary.mode
        );
        println!("statistics: {:?}", summary.stats);
    }
    Ok(())
}

fn check_args(args: &XskArgs) -> anyhow::Result<()> {
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!(
            "--duration {} must be above 0 and at most 3600 seconds",
            args.duration
        );
    }
    if !(frame::MIN_WIRE_SIZE..=frame::MAX_WIRE_SIZE).contains(&args.size) {
        bail!(
            "--size {} must be from {} to {} bytes",
            args.size,
            frame::MIN_WIRE_SIZE,
            frame::MAX_WIRE_SIZE
        );
    }
    if args.batch == 0 || args.batch > args.ring_size {
        bail!(
            "--batch {} must be from 1 to the ring size {}",
            args.batch,
            args.ring_size
        );
    }
    parse_mac(&args.dst_mac)?;
    Ok(())
}

fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("--dst-mac {text:?} is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("--dst-mac {text:?} must have six bytes"))
}
