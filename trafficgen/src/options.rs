//! What to send and what was sent: a run's options and its report.

use std::time::Duration;

use offload_common::FlowSpace;
use serde::Serialize;

use crate::frame::GenFrame;

/// How the frames leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenMode {
    /// `BPF_PROG_RUN` live frames through the driver's XDP transmit path.
    #[default]
    LiveFrames,
    /// An AF_XDP socket per core (zero-copy where the driver has it, else copy).
    XskTx,
}

/// How much to send.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The interface to send from.
    pub iface: String,
    /// Its index, named in each live-frames run's context.
    pub ifindex: u32,
    /// How the frames leave.
    pub mode: GenMode,
    /// The frames with their shares: one entry for a fixed size, several for a mix. Their
    /// port and stamp offsets must agree (same headers, different lengths).
    pub frames: Vec<(GenFrame, u32)>,
    /// Flows to cycle through, the first `flows` points of `space`.
    pub flows: u32,
    /// The 5-tuple ranges; their bases are the template's own fields.
    pub space: FlowSpace,
    /// Frames per second over all cores; None sends as fast as the cores can.
    pub rate_pps: Option<u64>,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many frames, if sooner.
    pub count: Option<u64>,
    /// Cores to send from, one thread each; empty means the current one.
    pub cores: Vec<usize>,
}

/// What was offered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenReport {
    /// How the frames left.
    pub mode: GenMode,
    /// Frames handed to the transmit path (AF_XDP: completed by the driver).
    pub sent: u64,
    /// How long the sending threads ran.
    pub seconds: f64,
    /// `sent` per second, in millions.
    pub mpps: f64,
    /// The mix's mean size on the wire (the size itself when fixed).
    pub mean_frame_size: f64,
    /// Flows the frames cycled through.
    pub flows: u32,
    /// Frames the driver took for transmission, from its `ethtool -S` XDP counters: live
    /// frames only, and None when the driver has no such counters.
    pub transmitted: Option<u64>,
    /// Frames the driver refused (e.g. the veth peer's ring was full), as `transmitted`.
    pub transmit_errors: Option<u64>,
    /// What fell back or was adjusted (AF_XDP copy mode instead of zero-copy...).
    pub notes: Vec<String>,
}
