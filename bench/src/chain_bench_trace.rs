//! The tunnel tracer's cost, in the run of the hop benchmark: the chain's entry with
//! `vxlan-trace` as its one module against the same entry with one pass-through module
//! (the same hop, the same chain end), each timed on a VXLAN frame (parsed to the inner
//! L4 header and counted under its pair; the pair exists after the first repeat) and on a
//! plain UDP frame (not a tunnel: counted as other). The difference between the two
//! chains is what the tracer adds to a packet.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use offload::modules::{self, ChainAt, Hook, Position, builtin};
use wire::build::FrameBuilder;

/// One frame's times: the entry and the tracer, the entry and a pass-through module.
pub struct TraceRow {
    /// What the frame is.
    pub case: &'static str,
    /// Its length.
    pub bytes: usize,
    /// Entry + pass-through module.
    pub hop: Duration,
    /// Entry + vxlan-trace.
    pub tracer: Duration,
}

const XDP_PASS: u32 = 2;

/// The frames: VXLAN between two VTEPs carrying inner UDP, and plain UDP.
fn frames() -> [(&'static str, Vec<u8>); 2] {
    let inner = FrameBuilder::udp(
        "192.168.81.2".parse().unwrap(),
        "192.168.81.1".parse().unwrap(),
    )
    .payload(vec![0u8; 18])
    .build();
    let vxlan = [&[0x08u8, 0, 0, 0, 0, 0, 81, 0][..], &inner].concat();
    let tunnel = FrameBuilder::udp("10.81.0.2".parse().unwrap(), "10.81.0.1".parse().unwrap())
        .ports(40000, 4789)
        .payload(vxlan)
        .build();
    let plain = FrameBuilder::udp("10.77.0.1".parse().unwrap(), "10.77.0.2".parse().unwrap())
        .ports(4000, 9)
        .payload(vec![0u8; 22])
        .build();
    [("VXLAN, inner IPv4/UDP", tunnel), ("plain IPv4/UDP", plain)]
}

/// Times both chains on `iface` (which has no chain) for each frame.
pub fn measure(
    iface: &str,
    hop_object: &Path,
    repeat: u32,
    runs: usize,
    median_time: impl Fn(&Xdp, &[u8], u32, u32, usize) -> Result<Duration>,
) -> Result<Vec<TraceRow>> {
    let frames = frames();
    let entry = offload::bpffs::Bpffs::get()
        .fastpath_dir()
        .join(iface)
        .join("chain/entry");
    let time_all = |module: &str| -> Result<Vec<Duration>> {
        let program = Xdp::from_pin(&entry, XdpAttachType::Interface)
            .with_context(|| format!("open {}", entry.display()))?;
        let times = frames
            .iter()
            .map(|(_, frame)| median_time(&program, frame, XDP_PASS, repeat, runs))
            .collect();
        modules::unload(iface, module).with_context(|| format!("unload {module}"))?;
        times
    };
    modules::load(iface, hop_object, Some("hop"), &Position::Last).context("load hop")?;
    let hop = time_all("hop")?;
    let tracer = builtin::vxlan_trace_module(Hook::Xdp, true)?;
    builtin::load_builtin(ChainAt::new(iface, Hook::Xdp), tracer, &Position::Last)
        .context("load vxlan-trace")?;
    let traced = time_all(builtin::VXLAN_TRACE_MODULE)?;
    Ok(frames
        .iter()
        .zip(hop.into_iter().zip(traced))
        .map(|((case, frame), (hop, tracer))| TraceRow {
            case,
            bytes: frame.len(),
            hop,
            tracer,
        })
        .collect())
}

/// Prints the rows.
pub fn report(rows: &[TraceRow]) {
    println!();
    println!("vxlan-trace against a pass-through module, same entry, same chain end");
    println!(
        "{:<24} {:>6} {:>14} {:>14} {:>10}",
        "frame", "bytes", "entry+hop ns", "entry+trace ns", "tracer ns"
    );
    let nanos = |time: Duration| time.as_nanos() as f64;
    for row in rows {
        println!(
            "{:<24} {:>6} {:>14.1} {:>14.1} {:>10.1}",
            row.case,
            row.bytes,
            nanos(row.hop),
            nanos(row.tracer),
            nanos(row.tracer) - nanos(row.hop)
        );
    }
}
