//! `fastpath xsk`: measure AF_XDP on an interface, as xdpsock does: rxdrop, txpush, l2fwd.

mod run;

pub(crate) use run::refill;

use std::{
    net::Ipv4Addr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use std::os::fd::AsRawFd;

use afxdp::{BindMode, BusyPoll, Socket, SocketConfig, Umem, UmemConfig};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use offload::{AttachOptions, OffloadError, Steering, mode::ModePolicy, rules::Action};

use lab::frame::{self, FrameSpec, udp_frame};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
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
    pub app: App,
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

#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub app: App,
    pub iface: String,
    pub queue: u32,
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mpps: f64,
    pub gbps: f64,
    /// "copy" or "zero-copy", as XDP_OPTIONS reports it.
    pub mode: &'static str,
    /// Why auto mode ended in copy mode.
    pub fallback: Option<String>,
    /// l2fwd: packets that found no room on the TX ring.
    pub tx_dropped: u64,
    pub stats: afxdp::Statistics,
}

pub fn run(args: &XskArgs, as_json: bool) -> anyhow::Result<()> {
    check_args(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let summary = measure(args, &stop)?;
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

/// Binds the socket, steers the queue to it if needed, runs the app, and cleans up.
pub fn measure(args: &XskArgs, stop: &AtomicBool) -> anyhow::Result<Summary> {
    let ring = args.ring_size;
    let (umem, pool) = Umem::new(UmemConfig {
        frame_size: args.frame_size,
        frame_count: ring * 4,
        ..UmemConfig::default()
    })?;
    let config = SocketConfig {
        mode: if args.copy {
            BindMode::Copy
        } else if args.zero_copy {
            BindMode::ZeroCopy
        } else {
            BindMode::Auto
        },
        rx_size: if args.app == App::Txpush { 0 } else { ring },
        tx_size: if args.app == App::Rxdrop { 0 } else { ring },
        fill_size: ring,
        completion_size: ring,
        need_wakeup: true,
        multi_buffer: args.multi_buffer,
        busy_poll: args.busy_poll.then_some(BusyPoll {
            budget: args.batch,
            ..BusyPoll::default()
        }),
    };
    let mut socket = Socket::bind(&umem, &args.iface, args.queue, &config)?;
    if let Some(fallback) = socket.fallback() {
        eprintln!("note: {fallback}");
    }
    let _steering = match args.app {
        App::Txpush => None,
        App::Rxdrop | App::L2fwd => Some(SteeringGuard::register(&args.iface, &socket)?),
    };
    let limits = run::Limits {
        duration: Duration::from_secs_f64(args.duration),
        count: args.count.unwrap_or(u64::MAX),
        stop,
        live: !args.quiet,
    };
    let outcome = match args.app {
        App::Rxdrop => run::rxdrop(&mut socket, pool, args.batch, &limits)?,
        App::L2fwd => run::l2fwd(&mut socket, pool, args.batch, &limits)?,
        App::Txpush => {
            let spec = FrameSpec {
                src_mac: lab::netlink::mac(&args.iface).unwrap_or([2, 0, 0, 0, 0, 1]),
                dst_mac: parse_mac(&args.dst_mac)?,
                src_ip: args.src_ip,
                dst_ip: args.dst_ip,
                src_port: args.port,
                dst_port: args.port,
            };
            let frame = udp_frame(&spec, args.size);
            run::txpush(&mut socket, pool, &frame, args.batch, &limits)?
        }
    };
    let seconds = outcome.elapsed.as_secs_f64();
    Ok(Summary {
        app: args.app,
        iface: args.iface.clone(),
        queue: args.queue,
        packets: outcome.packets,
        bytes: outcome.bytes,
        seconds,
        mpps: outcome.packets as f64 / seconds / 1e6,
        gbps: outcome.bytes as f64 * 8.0 / seconds / 1e9,
        mode: if socket.is_zero_copy() {
            "zero-copy"
        } else {
            "copy"
        },
        fallback: socket.fallback().map(str::to_string),
        tx_dropped: outcome.tx_dropped,
        stats: socket.statistics()?,
    })
}

/// Makes the steering program send the queue's traffic to the socket. If no fastpath
/// program is attached, attaches one whose default action is `xsk` for the run and
/// detaches it afterwards; an existing attachment (and its rules) is used as it is.
pub(crate) struct SteeringGuard {
    iface: String,
    attached_here: bool,
}

impl SteeringGuard {
    pub(crate) fn register(iface: &str, socket: &Socket) -> anyhow::Result<SteeringGuard> {
        let (steering, attached_here) = match Steering::open(iface) {
            Ok(steering) => (steering, false),
            Err(OffloadError::NotAttached(..)) => {
                let attachment = offload::attach(&AttachOptions {
                    iface: iface.to_string(),
                    policy: ModePolicy::Auto,
                    default_action: Action::Xsk,
                    prefilter: Vec::new(),
                })?;
                eprintln!(
                    "note: attached the steering program to {iface} in {} mode, default action \
                     xsk, for this run",
                    attachment.mode
                );
                (Steering::open(iface)?, true)
            }
            Err(error) => return Err(error.into()),
        };
        let guard = SteeringGuard {
            iface: iface.to_string(),
            attached_here,
        };
        steering.register_socket(socket.queue(), socket.as_raw_fd())?;
        Ok(guard)
    }
}

impl Drop for SteeringGuard {
    fn drop(&mut self) {
        if self.attached_here
            && let Err(error) = offload::detach(&self.iface)
        {
            eprintln!("warning: could not detach from {}: {error}", self.iface);
        }
    }
}
