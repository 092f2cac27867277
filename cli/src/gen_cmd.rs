//! `fastpath gen`: the traffic generator (offload::generator), live frames or AF_XDP TX.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use lab::frame::{L4Kind, Template};
use offload::generator::{GenFrame, GenMode, GenOptions, Generator, IMIX};

use crate::output;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Proto {
    Udp,
    TcpSyn,
    TcpAck,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// BPF_PROG_RUN live frames through the driver's XDP transmit path.
    Live,
    /// An AF_XDP socket per core, each on its own queue (zero-copy where the driver has
    /// it, else copy, and said so).
    Xsk,
}

#[derive(Args)]
pub struct GenArgs {
    /// Interface to send from. Live frames: its driver must transmit XDP frames (on veth,
    /// the peer needs an XDP program).
    #[arg(long)]
    pub iface: String,
    #[arg(long, value_enum, default_value = "live")]
    pub mode: Mode,
    /// Destination address; the family picks IPv4 or IPv6.
    #[arg(long)]
    pub dst: IpAddr,
    /// Source address; default, the interface's first address of the destination's family.
    #[arg(long)]
    pub src: Option<IpAddr>,
    /// Destination MAC; default broadcast (XDP sinks read frames before any MAC filter).
    #[arg(long, value_parser = parse_mac)]
    pub dst_mac: Option<[u8; 6]>,
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,
    #[arg(long, default_value_t = 9)]
    pub dport: u16,
    /// Flows: consecutive source ports from 1024.
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Frame size on the wire, 64 to 1518 bytes, or `imix`: 64, 594 and 1518 bytes in
    /// the shares 7:4:1.
    #[arg(long, default_value = "64")]
    pub size: String,
    /// Frames per second over all cores; default, as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many frames.
    #[arg(long)]
    pub count: Option<u64>,
    /// Cores to send from (one thread each), e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!("invalid MAC {text:?}: expected six hex bytes like 02:00:00:00:00:01")
        })?;
    parts
        .try_into()
        .map_err(|_| format!("invalid MAC {text:?}: expected six bytes"))
}

/// The generator's options from the arguments, checked.
pub fn options(args: &GenArgs) -> anyhow::Result<GenOptions> {
    if !(0.0..=3600.0).contains(&args.duration) || args.duration == 0.0 {
        bail!(
            "--duration {}: expected more than 0 and at most 3600 seconds",
            args.duration
        );
    }
    if args.flows == 0 || args.flows > 64_000 {
        bail!("--flows {}: expected 1 to 64000", args.flows);
    }
    if args.rate == Some(0) {
        bail!("--rate 0: expected a positive number of frames per second");
    }
    let ifindex = offload::netdev::ifindex(&args.iface)?;
    let src = match args.src {
        Some(src) => src,
        None => lab::netlink::addresses(&args.iface)
            .with_context(|| format!("addresses of {}", args.iface))?
            .into_iter()
            .find(|a| a.is_ipv4() == args.dst.is_ipv4())
            .with_context(|| {
                format!(
                    "{} has no address of --dst's family; give --src",
                    args.iface
                )
            })?,
    };
    let sizes: Vec<(usize, u32)> = if args.size == "imix" {
        IMIX.to_vec()
    } else {
        let size = args.size.parse().map_err(|_| {
            anyhow::anyhow!(
                "--size {}: expected a frame size in bytes or `imix`",
                args.size
            )
        })?;
        vec![(size, 1)]
    };
    let src_mac = lab::netlink::mac(&args.iface)?;
    let mut frames = Vec::new();
    for (size, share) in sizes {
        let template = Template {
            src_mac,
            dst_mac: args.dst_mac.unwrap_or([0xff; 6]),
            src,
            dst: args.dst,
            l4: match args.proto {
                Proto::Udp => L4Kind::Udp,
                Proto::TcpSyn => L4Kind::TcpSyn,
                Proto::TcpAck => L4Kind::TcpAck,
            },
            dst_port: args.dport,
            src_port: 1024,
            frame_size: size,
        };
        let (bytes, sport_offset, stamp_offset) = template
            .build()
            .map_err(|reason| anyhow::anyhow!("--size {size}: {reason}"))?;
        let frame = GenFrame {
            bytes,
            sport_offset,
            stamp_offset,
            first_port: template.src_port,
            wire_size: size,
        };
        frames.push((frame, share));
    }
    Ok(GenOptions {
        iface: args.iface.clone(),
        ifindex,
        mode: match args.mode {
            Mode::Live => GenMode::LiveFrames,
            Mode::Xsk => GenMode::XskTx,
        },
        frames,
        flows: args.flows,
        rate_pps: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        count: args.count,
        cores: args.cores.clone(),
    })
}

pub fn run(args: &GenArgs, as_json: bool) -> anyhow::Result<()> {
    let options = options(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let report = Generator::load()?.run(&options, &stop)?;
    if as_json {
        output::json(&report);
    } else {
        let size = match args.size.as_str() {
            "imix" => format!("IMIX (mean {:.1} bytes)", report.mean_frame_size),
            size => format!("{size} bytes"),
        };
        println!(
            "sent {} frames of {size} over {} flow(s) in {:.2} s: {:.3} Mpps ({})",
            report.sent,
            report.flows,
            report.seconds,
            report.mpps,
            output::serde_name(&report.mode)
        );
        if let (Some(taken), Some(refused)) = (report.transmitted, report.transmit_errors) {
            println!(
                "driver of {}: {taken} transmitted, {refused} refused",
                args.iface
            );
        }
        for note in &report.notes {
            println!("note: {note}");
        }
    }
    Ok(())
}
