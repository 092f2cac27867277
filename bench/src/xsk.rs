//! The AF_XDP measurement behind `fastpath xsk`, as xdpsock does it: bind a socket on one
//! queue, steer the queue to it, run one of `pipeline::xsk_apps`' loops (rxdrop, txpush,
//! l2fwd) and sum up. The line-rate runner's sinks bind and steer the same way.

use std::{net::Ipv4Addr, sync::atomic::AtomicBool, time::Duration};

use lab::frame::{FrameSpec, udp_frame};
use pipeline::xsk_apps::{self, Interval, Meter, RunLimits};

use crate::error::BenchError;
pub use crate::socket::{SocketSettings, SocketSteering, XskApp};

/// txpush's packet: a UDP frame from this interface's MAC.
#[derive(Clone, Debug)]
pub struct TxpushPacket {
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// The UDP source and destination port.
    pub port: u16,
    /// Size on the wire, FCS included.
    pub size: usize,
}

/// One measurement, checked by the caller.
#[derive(Clone, Debug)]
pub struct XskRun {
    /// The loop to run.
    pub app: XskApp,
    /// Its socket.
    pub socket: SocketSettings,
    /// How long to run.
    pub duration: Duration,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// What txpush sends.
    pub packet: TxpushPacket,
}

/// What a measurement found.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// The loop that ran.
    pub app: XskApp,
    /// Where it ran: the interface and queue.
    pub iface: String,
    /// The queue.
    pub queue: u32,
    /// Packets received (rxdrop, l2fwd) or sent (txpush).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// How long the loop ran.
    pub seconds: f64,
    /// Million packets per second.
    pub mpps: f64,
    /// Gigabits per second (frames without FCS).
    pub gbps: f64,
    /// "copy" or "zero-copy", as XDP_OPTIONS reports it.
    pub mode: &'static str,
    /// Why auto mode ended in copy mode.
    pub fallback: Option<String>,
    /// l2fwd: packets that found no room on the TX ring.
    pub tx_dropped: u64,
    /// The socket's XDP_STATISTICS at the end.
    pub stats: afxdp::Statistics,
}

/// Binds the socket, steers the queue to it if needed, runs the app until the time, the
/// count or `stop`, and cleans up. `note` hears what fell back or was set up for the run;
/// `each_second` gets the rate once a second.
pub fn measure(
    run: &XskRun,
    stop: &AtomicBool,
    note: &mut dyn FnMut(&str),
    each_second: impl FnMut(&Interval),
) -> Result<Summary, BenchError> {
    let settings = &run.socket;
    let (mut socket, pool) = settings.bind(run.app)?;
    if let Some(fallback) = socket.fallback() {
        note(&format!("note: {fallback}"));
    }
    let _steering = match run.app {
        XskApp::Txpush => None,
        XskApp::Rxdrop | XskApp::L2fwd => {
            let steering = SocketSteering::register(&settings.iface, &socket)?;
            if let Some(mode) = steering.attached_mode() {
                note(&format!(
                    "note: attached the steering program to {} in {mode} mode, default action \
                     xsk, for this run",
                    settings.iface
                ));
            }
            Some(steering)
        }
    };
    let limits = RunLimits {
        duration: run.duration,
        count: run.count.unwrap_or(u64::MAX),
        stop,
    };
    let mut meter = Meter::new(&limits, each_second);
    let tally = match run.app {
        XskApp::Rxdrop => xsk_apps::rxdrop(&mut socket, pool, settings.batch, &mut meter)?,
        XskApp::L2fwd => xsk_apps::l2fwd(&mut socket, pool, settings.batch, &mut meter)?,
        XskApp::Txpush => {
            let packet = &run.packet;
            let spec = FrameSpec {
                src_mac: nic::mac(&settings.iface).unwrap_or([2, 0, 0, 0, 0, 1]),
                dst_mac: packet.dst_mac,
                src_ip: packet.src_ip,
                dst_ip: packet.dst_ip,
                src_port: packet.port,
                dst_port: packet.port,
            };
            let frame = udp_frame(&spec, packet.size);
            xsk_apps::txpush(&mut socket, pool, &frame, settings.batch, &mut meter)?
        }
    };
    let seconds = meter.elapsed().as_secs_f64();
    Ok(Summary {
        app: run.app,
        iface: settings.iface.clone(),
        queue: settings.queue,
        packets: tally.packets,
        bytes: tally.bytes,
        seconds,
        mpps: tally.packets as f64 / seconds / 1e6,
        gbps: tally.bytes as f64 * 8.0 / seconds / 1e9,
        mode: if socket.is_zero_copy() {
            "zero-copy"
        } else {
            "copy"
        },
        fallback: socket.fallback().map(str::to_string),
        tx_dropped: tally.tx_dropped,
        stats: socket.statistics()?,
    })
}
