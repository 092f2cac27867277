//! The tracer's cost in packets per second on the lab (a report, not a test; root):
//! `cargo run -p observe --example trace_mpps [SECONDS] [ROUNDS]`.
//!
//! The generator sends live VXLAN frames (outer IPv4/UDP to 4789, inner IPv4/UDP, 110
//! bytes) from the lab's client into the device under test, whose chain drops every one
//! at `steer` (default action drop): first with `vxlan-trace` in front of `steer`, then
//! without, alternating, in the same run. The rate is what `steer` dropped per second,
//! every frame the generator handed over being one the receiver had to process; with the
//! tracer, every one must also be counted under its pair.

use std::time::Duration;

use anyhow::{Result, bail};
use lab::Lab;
use offload::{
    AttachOptions,
    mode::ModePolicy,
    modules::{self, ChainAt, Hook, builtin::VXLAN_TRACE_MODULE},
    rules::Action,
};
use trafficgen::{FCS_LEN, FrameFields, GenFrame, Generator};
use wire::build::FrameBuilder;

/// Bytes before the inner UDP payload: outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet,
/// IPv4, UDP. The generator writes its stamp there.
const INNER_PAYLOAD_AT: usize = 14 + 20 + 8 + 8 + 14 + 20 + 8;

/// The VXLAN frame from the client's VTEP to the dut's, with the generator's offsets.
fn vxlan_frame(lab: &Lab, dut_mac: [u8; 6], client_mac: [u8; 6]) -> GenFrame {
    let inner = FrameBuilder::udp(
        "192.168.81.2".parse().unwrap(),
        "192.168.81.1".parse().unwrap(),
    )
    .payload(vec![0u8; wire::stamp::STAMP_LEN + 2])
    .build();
    let vxlan = [&[0x08u8, 0, 0, 0, 0, 0, 81, 0][..], &inner].concat();
    let mut outer = FrameBuilder::udp(lab.client.ipv4, lab.dut.ipv4)
        .ports(40000, 4789)
        .payload(vxlan);
    outer.src_mac = client_mac;
    outer.dst_mac = dut_mac;
    let bytes = outer.build();
    let wire_size = bytes.len() + FCS_LEN;
    GenFrame {
        bytes,
        fields: FrameFields {
            l4: 34,
            src: 26,
            dst: 30,
            ipv4_header: Some(14),
            stamp: INNER_PAYLOAD_AT as u16,
            l4_checksum: None,
        },
        wire_size,
    }
}

/// A plain IPv4/UDP frame of 64 bytes on the wire (to port 9: not a tunnel), the
/// generator's stamp in its payload.
fn plain_frame(lab: &Lab, dut_mac: [u8; 6], client_mac: [u8; 6]) -> GenFrame {
    let mut frame = FrameBuilder::udp(lab.client.ipv4, lab.dut.ipv4)
        .ports(40000, 9)
        .payload(vec![0u8; 64 - FCS_LEN - 42]);
    frame.src_mac = client_mac;
    frame.dst_mac = dut_mac;
    let bytes = frame.build();
    let wire_size = bytes.len() + FCS_LEN;
    GenFrame {
        bytes,
        fields: FrameFields {
            l4: 34,
            src: 26,
            dst: 30,
            ipv4_header: Some(14),
            stamp: 42,
            l4_checksum: None,
        },
        wire_size,
    }
}

/// Frames `steer` dropped on the dut, and packets the tracer counted under its pairs (0
/// without it): the table's counts plus each CPU's pending ones.
fn counters(lab: &Lab) -> Result<(u64, u64)> {
    let iface = lab.dut.iface.clone();
    Lab::run_in(&lab.namespace("dut"), move || -> Result<(u64, u64)> {
        let dropped = offload::status(&iface)?.counters.drop;
        let at = ChainAt::new(&iface, Hook::Xdp);
        let traced = match observe::tunnels::snapshot(at) {
            Ok(snapshot) => snapshot
                .tunnels
                .iter()
                .map(|tunnel| tunnel.total().packets)
                .sum(),
            Err(observe::ObserveError::NotLoaded(_)) => 0,
            Err(error) => return Err(error.into()),
        };
        Ok((dropped, traced))
    })?
}

/// One run of `seconds`: Mpps the dut dropped, and whether the tracer counted each.
fn run(lab: &Lab, frame: &GenFrame, seconds: f64) -> Result<(f64, u64, u64)> {
    let (dropped_before, traced_before) = counters(lab)?;
    let (iface, frame) = (lab.client.iface.clone(), frame.clone());
    let report = Lab::run_in(&lab.namespace("client"), move || {
        Generator::one_flow_at_full_rate(&iface, frame, Duration::from_secs_f64(seconds))
    })??;
    let elapsed = report.seconds;
    let (dropped_after, traced_after) = counters(lab)?;
    let dropped = dropped_after - dropped_before;
    Ok((
        dropped as f64 / elapsed / 1e6,
        dropped,
        traced_after - traced_before,
    ))
}

fn set_tracer(lab: &Lab, on: bool) -> Result<()> {
    let iface = lab.dut.iface.clone();
    Lab::run_in(&lab.namespace("dut"), move || -> Result<()> {
        let at = ChainAt::new(&iface, Hook::Xdp);
        if on {
            observe::tunnels::ensure_loaded(at)?;
        } else {
            modules::unload(at, VXLAN_TRACE_MODULE)?;
        }
        Ok(())
    })?
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(Ok(3.0), |text| text.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |text| text.parse())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("trace_mpps needs root (it builds a lab of network namespaces)");
    }
    Lab::teardown_on_signals();
    let prefix = format!("fpmp{:04}", std::process::id() % 10000);
    let lab = Lab::up(&prefix)?;
    let dut_iface = lab.dut.iface.clone();
    let attached = Lab::run_in(&lab.namespace("dut"), move || {
        offload::attach(&AttachOptions {
            iface: dut_iface,
            policy: ModePolicy::Auto,
            default_action: Action::Drop,
            prefilter: Vec::new(),
        })
    })??;
    eprintln!(
        "steer (default drop) on {} in {} mode",
        attached.iface, attached.mode
    );
    let (dut_mac, client_mac) = (lab.dut.read_mac()?, lab.client.read_mac()?);
    let cases = [
        ("VXLAN 110 B", vxlan_frame(&lab, dut_mac, client_mac)),
        ("plain UDP 64 B", plain_frame(&lab, dut_mac, client_mac)),
    ];
    let result = (|| -> Result<()> {
        for (case, frame) in &cases {
            let mut with = Vec::new();
            let mut without = Vec::new();
            for round in 0..rounds {
                set_tracer(&lab, true)?;
                let (mpps, dropped, traced) = run(&lab, frame, seconds)?;
                eprintln!(
                    "{case}, round {round}: with the tracer {mpps:.3} Mpps ({dropped} dropped, {traced} counted under pairs)"
                );
                with.push(mpps);
                set_tracer(&lab, false)?;
                let (mpps, dropped, _) = run(&lab, frame, seconds)?;
                eprintln!("{case}, round {round}: without      {mpps:.3} Mpps ({dropped} dropped)");
                without.push(mpps);
            }
            let median = |values: &mut Vec<f64>| {
                values.sort_by(f64::total_cmp);
                values[values.len() / 2]
            };
            let (with, without) = (median(&mut with), median(&mut without));
            println!(
                "{case}, median of {rounds} rounds of {seconds} s: without the tracer {without:.3} Mpps, with it {with:.3} Mpps ({:+.1} %)",
                (with / without - 1.0) * 100.0
            );
        }
        Ok(())
    })();
    // Whatever happened, nothing stays pinned: the tracer (if a round failed with it in)
    // and the steering program go.
    let _ = set_tracer(&lab, false);
    let dut_iface = lab.dut.iface.clone();
    Lab::run_in(&lab.namespace("dut"), move || offload::detach(&dut_iface))??;
    result
}
