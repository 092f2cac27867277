//! The AF_XDP measurement apps, as xdpsock has them: [`rxdrop`] (receive and drop),
//! [`l2fwd`] (receive, swap the MACs, send back) and [`txpush`] (send one packet over and
//! over). `fastpath xsk` and the line-rate benchmark's sinks run these same loops, so a
//! benchmark of l2fwd measures the code behind `fastpath xsk l2fwd`.
//!
//! Each loop spins on its socket and asks a [`Monitor`] after every batch whether to go
//! on: [`Meter`] stops on time, count or a flag and reports each second's rate; a sink can
//! publish its counters and read the frames' stamps instead.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use afxdp::{Frame, FramePool, Socket, XskError};

/// What a loop has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets received (rxdrop, l2fwd) or completed (txpush).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// l2fwd: packets that found no room on the TX ring.
    pub tx_dropped: u64,
}

/// Watches a loop: asked after every batch whether to go on, and shown each received
/// packet's first frame.
pub trait Monitor {
    /// Whether [`Monitor::received`] wants the frames: when false, the loops never touch a
    /// frame's bytes for it (rxdrop stays off the payload's cache lines).
    const READS_FRAMES: bool = false;

    /// Whether the loop goes on, with `tally` done so far.
    fn keep_going(&mut self, socket: &Socket, tally: &Tally) -> bool;

    /// Each received packet's first frame, before l2fwd swaps its MACs; called only when
    /// [`Monitor::READS_FRAMES`] is set.
    #[inline(always)]
    fn received(&mut self, _frame: &[u8]) {}
}

/// When a [`Meter`] stops: after `duration`, after `count` packets, or when `stop` is set.
pub struct RunLimits<'a> {
    /// How long the loop may run.
    pub duration: Duration,
    /// Packets after which it stops (`u64::MAX` for no limit).
    pub count: u64,
    /// Set (by a signal handler) to stop it.
    pub stop: &'a AtomicBool,
}

/// One second's rate, as a [`Meter`] reports it.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    /// Time since the loop started.
    pub elapsed: Duration,
    /// Packets in this interval.
    pub packets: u64,
    /// Packets per second over the interval.
    pub rate_pps: f64,
    /// Mean packet size so far, in bytes.
    pub average_size: f64,
}

/// A [`Monitor`] that stops on [`RunLimits`] and calls `each_second` with the rate once a
/// second. It reads the clock every 64 batches: a batch is far shorter than the resolution
/// needed.
pub struct Meter<'a, F: FnMut(&Interval)> {
    limits: &'a RunLimits<'a>,
    each_second: F,
    start: Instant,
    last: Instant,
    last_packets: u64,
    /// Batches since the clock was last read.
    calls: u32,
    /// Whether the loop has checked in yet: its setup (filling the fill ring, writing the
    /// TX frames) is not part of the measured time.
    running: bool,
}

impl<'a, F: FnMut(&Interval)> Meter<'a, F> {
    /// A meter whose clock starts at the loop's first check, after its setup.
    pub fn new(limits: &'a RunLimits<'a>, each_second: F) -> Meter<'a, F> {
        let now = Instant::now();
        Meter {
            limits,
            each_second,
            start: now,
            last: now,
            last_packets: 0,
            calls: 0,
            running: false,
        }
    }

    /// Time since the meter started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl<F: FnMut(&Interval)> Monitor for Meter<'_, F> {
    fn keep_going(&mut self, _socket: &Socket, tally: &Tally) -> bool {
        if !self.running {
            self.running = true;
            self.start = Instant::now();
            self.last = self.start;
        }
        self.calls += 1;
        if self.calls < 64 && tally.packets < self.limits.count {
            return true;
        }
        self.calls = 0;
        let now = Instant::now();
        let since = now - self.last;
        if since >= Duration::from_secs(1) {
            let packets = tally.packets - self.last_packets;
            (self.each_second)(&Interval {
                elapsed: now - self.start,
                packets,
                rate_pps: packets as f64 / since.as_secs_f64(),
                average_size: tally.bytes as f64 / tally.packets.max(1) as f64,
            });
            self.last = now;
            self.last_packets = tally.packets;
        }
        now - self.start < self.limits.duration
            && tally.packets < self.limits.count
            && !self.limits.stop.load(Ordering::Relaxed)
    }
}

/// Swaps an Ethernet frame's destination and source MAC addresses (l2fwd's one change).
pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 12 {
        let (dst, rest) = frame.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

/// Counts a received frame: a packet ends at a frame without the continuation flag.
fn count_frame(frame: &Frame, tally: &mut Tally) {
    tally.bytes += frame.len() as u64;
    if !frame.continues() {
        tally.packets += 1;
    }
}

/// Gives `count` frames back to the fill ring (and those an earlier call could not place:
/// `Socket::refill`). Refilling only what was used keeps the loop off the kernel's consumer
/// index (a shared cache line) while nothing arrives.
pub fn refill(socket: &mut Socket, pool: &mut FramePool, count: u32) -> Result<(), XskError> {
    socket.refill(pool, count);
    if socket.is_busy_polling() || socket.fill_needs_wakeup() {
        socket.wake_rx()?;
    }
    Ok(())
}

/// Receives and drops, `batch` descriptors at a time, until `monitor` says stop.
pub fn rxdrop<M: Monitor>(
    socket: &mut Socket,
    mut pool: FramePool,
    batch: u32,
    monitor: &mut M,
) -> Result<Tally, XskError> {
    let umem = socket.umem().clone();
    socket.fill(&mut pool, u32::MAX);
    let mut tally = Tally::default();
    let mut used = 0;
    while monitor.keep_going(socket, &tally) {
        refill(socket, &mut pool, used)?;
        used = 0;
        let mut starts_packet = true;
        for frame in socket.receive(batch) {
            count_frame(&frame, &mut tally);
            if M::READS_FRAMES && starts_packet {
                monitor.received(umem.data(&frame));
            }
            starts_packet = !frame.continues();
            pool.put(frame, &umem);
            used += 1;
        }
    }
    Ok(tally)
}

/// Receives, swaps the MACs and sends back out, until `monitor` says stop.
pub fn l2fwd<M: Monitor>(
    socket: &mut Socket,
    mut pool: FramePool,
    batch: u32,
    monitor: &mut M,
) -> Result<Tally, XskError> {
    let umem = socket.umem().clone();
    // Half the frames wait in the fill ring; the rest circulate through RX and TX.
    let half = (pool.len() / 2) as u32;
    socket.fill(&mut pool, half);
    let mut frames: Vec<Frame> = Vec::with_capacity(batch as usize);
    let mut tally = Tally::default();
    // Frames the TX ring turned away go back to the pool, and from there to the fill ring.
    let mut turned_away = 0;
    while monitor.keep_going(socket, &tally) {
        let sent = socket.complete(&mut pool, batch * 2);
        refill(socket, &mut pool, sent + turned_away)?;
        turned_away = 0;
        // Take no more than the TX ring can hold, so every received frame goes back out.
        let room = socket.tx_room(batch);
        let mut starts_packet = true;
        for mut frame in socket.receive(room) {
            count_frame(&frame, &mut tally);
            if starts_packet {
                if M::READS_FRAMES {
                    monitor.received(umem.data(&frame));
                }
                swap_macs(umem.data_mut(&mut frame));
            }
            starts_packet = !frame.continues();
            frames.push(frame);
        }
        if frames.is_empty() {
            if socket.tx_needs_wakeup() {
                socket.wake_tx()?;
            }
            continue;
        }
        let mut tx = socket.transmit(&mut pool, frames.len() as u32);
        for frame in frames.drain(..) {
            if let Err(frame) = tx.push(frame) {
                tally.tx_dropped += 1;
                turned_away += 1;
                tx.pool().put(frame, &umem);
            }
        }
        tx.commit();
        if socket.tx_needs_wakeup() {
            socket.wake_tx()?;
        }
    }
    Ok(tally)
}

/// Sends `packet` (several frames when larger than one) over and over, until `monitor`
/// says stop; counts what the driver completed.
pub fn txpush(
    socket: &mut Socket,
    mut pool: FramePool,
    packet: &[u8],
    batch: u32,
    monitor: &mut impl Monitor,
) -> Result<Tally, XskError> {
    let umem = socket.umem().clone();
    let chunks: Vec<&[u8]> = packet.chunks(umem.data_room() as usize).collect();
    // Single-frame packets: write every frame once up front; the bytes stay in the UMEM
    // while frames circulate, so the loop only sets lengths (as xdpsock does).
    let prewritten = chunks.len() == 1;
    if prewritten {
        let mut all = Vec::with_capacity(pool.len());
        while let Some(mut frame) = pool.take() {
            umem.write(&mut frame, packet)?;
            all.push(frame);
        }
        for frame in all {
            pool.put(frame, &umem);
        }
    }
    let frame_bytes = packet.len() as u64;
    let per_packet = chunks.len() as u32;
    let mut in_flight = 0u64;
    let mut tally = Tally::default();
    let completed = |tally: &mut Tally, done: u64| {
        tally.packets += done / u64::from(per_packet);
        tally.bytes += done / u64::from(per_packet) * frame_bytes;
    };
    while monitor.keep_going(socket, &tally) {
        let done = u64::from(socket.complete(&mut pool, batch * 2));
        in_flight -= done;
        completed(&mut tally, done);
        let packets = (batch / per_packet).min(pool.len() as u32 / per_packet);
        let mut tx = socket.transmit(&mut pool, packets * per_packet);
        let mut queued = 0;
        'packets: while tx.remaining() >= per_packet {
            for (i, chunk) in chunks.iter().enumerate() {
                let Some(mut frame) = tx.pool().take() else {
                    break 'packets;
                };
                if prewritten {
                    umem.set_len(&mut frame, chunk.len() as u32)?;
                } else {
                    umem.write(&mut frame, chunk)?;
                }
                frame.set_continues(i + 1 < chunks.len());
                tx.push(frame).expect("room was checked");
                queued += 1;
            }
        }
        in_flight += u64::from(tx.commit());
        debug_assert_eq!(queued % u64::from(per_packet), 0);
        if in_flight > 0 && socket.tx_needs_wakeup() {
            socket.wake_tx()?;
        }
    }
    // Let the last frames complete so the count is what actually left.
    let deadline = Instant::now() + Duration::from_millis(200);
    while in_flight > 0 && Instant::now() < deadline {
        socket.wake_tx()?;
        let done = u64::from(socket.complete(&mut pool, u32::MAX));
        in_flight -= done;
        completed(&mut tally, done);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_macs_exchanges_source_and_destination() {
        let mut frame = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        swap_macs(&mut frame);
        assert_eq!(frame[..12], [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        let mut short = [1, 2, 3];
        swap_macs(&mut short);
        assert_eq!(short, [1, 2, 3], "too short to have MACs: untouched");
    }
}
