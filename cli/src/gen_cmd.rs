//! `fastpath gen`: the traffic generator (the `trafficgen` crate), live frames or AF_XDP TX.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use trafficgen::{FlowSpace, GenMode, GenOptions, Generator, IMIX, L4Kind, Template};

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
    /// Destination address, or a range `A-B` for flows to spread over; the family picks
    /// IPv4 or IPv6 (an IPv6 range varies only the last 32 bits).
    #[arg(long)]
    pub dst: String,
    /// Source address or range `A-B`; default, the interface's first address of the
    /// destination's family.
    #[arg(long)]
    pub src: Option<String>,
    /// Destination MAC; default broadcast (XDP sinks read frames before any MAC filter).
    #[arg(long, value_parser = parse_mac)]
    pub dst_mac: Option<[u8; 6]>,
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,
    /// Destination port or range `A-B`.
    #[arg(long, default_value = "9")]
    pub dport: String,
    /// Source port or range `A-B`; default 1024, and as many ports up from it as `--flows`
    /// needs beyond the other ranges.
    #[arg(long)]
    pub sport: Option<String>,
    /// Flows to cycle through: points of the ranges' product, the source port turning
    /// fastest, then the destination port, the source and the destination address. Default,
    /// all of them.
    #[arg(long)]
    pub flows: Option<u32>,
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

/// `A` or `A-B`, split.
fn range_ends(text: &str) -> (&str, Option<&str>) {
    match text.split_once('-') {
        Some((first, last)) => (first.trim(), Some(last.trim())),
        None => (text.trim(), None),
    }
}

/// `A` or `A-B` for a port flag: the first port and how many.
fn port_range(flag: &str, text: &str) -> anyhow::Result<(u16, u16)> {
    let port = |part: &str| {
        part.parse::<u16>()
            .map_err(|_| anyhow::anyhow!("{flag} {text}: expected a port or a range A-B"))
    };
    let (first, last) = range_ends(text);
    let first = port(first)?;
    let last = last.map(port).transpose()?.unwrap_or(first);
    if last < first || last - first == u16::MAX {
        bail!("{flag} {text}: expected A-B with A <= B, at most 65535 ports");
    }
    Ok((first, last - first + 1))
}

/// The last 32 bits of an address: the part a range varies.
fn low_word(address: IpAddr) -> u32 {
    match address {
        IpAddr::V4(v4) => v4.into(),
        IpAddr::V6(v6) => (v6.to_bits() & 0xffff_ffff) as u32,
    }
}

/// `A` or `A-B` for an address flag: the first address and how many.
fn address_range(flag: &str, text: &str) -> anyhow::Result<(IpAddr, u32)> {
    let address = |part: &str| {
        part.parse::<IpAddr>()
            .map_err(|_| anyhow::anyhow!("{flag} {text}: expected an IP address or a range A-B"))
    };
    let (first, last) = range_ends(text);
    let first = address(first)?;
    let Some(last) = last.map(address).transpose()? else {
        return Ok((first, 1));
    };
    let same_upper = match (first, last) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(a), IpAddr::V6(b)) => a.to_bits() >> 32 == b.to_bits() >> 32,
        _ => bail!("{flag} {text}: both ends must be of one IP family"),
    };
    if !same_upper {
        bail!("{flag} {text}: an IPv6 range may differ only in its last 32 bits");
    }
    let (low, high) = (low_word(first), low_word(last));
    if high < low || high - low == u32::MAX {
        bail!("{flag} {text}: expected A-B with A <= B, at most 2^32 - 1 addresses");
    }
    Ok((first, high - low + 1))
}

/// The 5-tuple ranges and the flow count from the flags.
fn flow_space(
    args: &GenArgs,
    src: (IpAddr, u32),
    dst: (IpAddr, u32),
) -> anyhow::Result<(FlowSpace, u32)> {
    let dport = port_range("--dport", &args.dport)?;
    let sport = match &args.sport {
        Some(text) => port_range("--sport", text)?,
        None => (1024, 1),
    };
    let mut space = FlowSpace {
        src_base: low_word(src.0),
        src_count: src.1,
        dst_base: low_word(dst.0),
        dst_count: dst.1,
        sport_base: sport.0,
        sport_count: sport.1,
        dport_base: dport.0,
        dport_count: dport.1,
    };
    let flows = match args.flows {
        Some(0) => bail!("--flows 0: expected at least 1"),
        Some(flows) => flows,
        None => space.size().min(u64::from(u32::MAX)) as u32,
    };
    if args.sport.is_none() && u64::from(flows) > space.size() {
        // Without --sport, the source port grows to make room for the flows asked for.
        let needed = u64::from(flows).div_ceil(space.size());
        if needed > u64::from(u16::MAX - 1024 + 1) {
            bail!(
                "--flows {flows}: more than the ranges and source ports 1024-65535 hold; widen \
                 --src, --dst or --dport"
            );
        }
        space.sport_count = needed as u16;
    }
    if u64::from(flows) > space.size() {
        bail!(
            "--flows {flows}: the address and port ranges hold only {} distinct 5-tuples",
            space.size()
        );
    }
    Ok((space, flows))
}

/// The generator's options from the arguments, checked.
pub fn options(args: &GenArgs) -> anyhow::Result<GenOptions> {
    if !(0.0..=3600.0).contains(&args.duration) || args.duration == 0.0 {
        bail!(
            "--duration {}: expected more than 0 and at most 3600 seconds",
            args.duration
        );
    }
    if args.rate == Some(0) {
        bail!("--rate 0: expected a positive number of frames per second");
    }
    let dst = address_range("--dst", &args.dst)?;
    let ifindex = nic::ifindex(&args.iface)?;
    let src = match &args.src {
        Some(text) => address_range("--src", text)?,
        None => (
            nic::addresses(&args.iface)
                .with_context(|| format!("addresses of {}", args.iface))?
                .into_iter()
                .find(|a| a.is_ipv4() == dst.0.is_ipv4())
                .with_context(|| {
                    format!(
                        "{} has no address of --dst's family; give --src",
                        args.iface
                    )
                })?,
            1,
        ),
    };
    let (space, flows) = flow_space(args, src, dst)?;
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
    let src_mac = nic::mac(&args.iface)?;
    let mut frames = Vec::new();
    for (size, share) in sizes {
        let template = Template {
            src_mac,
            dst_mac: args.dst_mac.unwrap_or([0xff; 6]),
            src: src.0,
            dst: dst.0,
            l4: match args.proto {
                Proto::Udp => L4Kind::Udp,
                Proto::TcpSyn => L4Kind::TcpSyn,
                Proto::TcpAck => L4Kind::TcpAck,
            },
            dst_port: space.dport_base,
            src_port: space.sport_base,
            frame_size: size,
        };
        let frame = template.build().with_context(|| format!("--size {size}"))?;
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
        flows,
        space,
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
    let report = Generator::for_mode(options.mode)?.run(&options, &stop)?;
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
