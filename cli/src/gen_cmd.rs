//! `fastpath gen`: the live-frames traffic generator (offload::generator).

use std::{
    net::IpAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use lab::frame::{L4Kind, Template};
use offload::generator::{GenFrame, GenOptions, Generator};

use crate::output;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Proto {
    Udp,
    TcpSyn,
    TcpAck,
}

#[derive(Args)]
pub struct GenArgs {
    /// Interface to send from; its driver must transmit XDP frames (on veth, the peer
    /// needs an XDP program).
    #[arg(long)]
    pub iface: String,
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
    /// Frame size on the wire, 64 to 1518 bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
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
    let template = Template {
        src_mac: lab::netlink::mac(&args.iface)?,
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
        frame_size: args.size,
    };
    let (bytes, sport_offset, stamp_offset) = template
        .build()
        .map_err(|reason| anyhow::anyhow!("--size: {reason}"))?;
    Ok(GenOptions {
        iface: args.iface.clone(),
        ifindex,
        frame: GenFrame {
            bytes,
            sport_offset,
            stamp_offset,
            first_port: template.src_port,
            wire_size: template.frame_size,
        },
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
        println!(
            "sent {} frames of {} bytes over {} flow(s) in {:.2} s: {:.3} Mpps",
            report.sent, report.frame_size, report.flows, report.seconds, report.mpps
        );
        if let (Some(taken), Some(refused)) = (report.transmitted, report.transmit_errors) {
            println!(
                "driver of {}: {taken} transmitted, {refused} refused",
                args.iface
            );
        }
    }
    Ok(())
}
