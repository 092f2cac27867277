//! Ethernet line rate: each frame on the wire also carries a 7-byte preamble, a 1-byte
//! start-of-frame delimiter and a 12-byte inter-frame gap.

/// Bytes on the wire around each frame (preamble, SFD, inter-frame gap).
pub const WIRE_OVERHEAD: u32 = 20;

/// Frames per second, in millions, at `gbps` for frames of `frame` bytes (FCS included,
/// so 64 is the minimum Ethernet frame).
pub fn line_rate_mpps(gbps: f64, frame: u32) -> f64 {
    gbps * 1e9 / (f64::from(frame + WIRE_OVERHEAD) * 8.0) / 1e6
}
