//! The three measurement loops. Each spins on its socket until the time, packet count or a
//! signal says stop, and prints a rate line every second.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use afxdp::{Frame, FramePool, Socket, XskError};

use lab::frame::swap_macs;

pub struct Limits<'a> {
    pub duration: Duration,
    pub count: u64,
    pub stop: &'a AtomicBool,
    pub live: bool,
}

pub struct Outcome {
    pub packets: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub tx_dropped: u64,
}

/// Counts packets and bytes and prints the per-second rate to stderr.
struct Meter<'a> {
    limits: &'a Limits<'a>,
    start: Instant,
    last: Instant,
    last_packets: u64,
    /// Calls since the clock was last read.
    calls: u32,
    packets: u64,
    bytes: u64,
    tx_dropped: u64,
}

impl<'a> Meter<'a> {
    fn new(limits: &'a Limits<'a>) -> Meter<'a> {
        let now = Instant::now();
        Meter {
            limits,
            start: now,
            last: now,
            last_packets: 0,
            calls: 0,
            packets: 0,
            bytes: 0,
            tx_dropped: 0,
        }
    }

    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }

    /// Prints the rate once a second; returns whether the run should go on. The clock is
    /// read every 64 calls: a loop iteration is far shorter than the resolution needed.
    fn keep_going(&mut self) -> bool {
        self.calls += 1;
        if self.calls < 64 && self.packets < self.limits.count {
            return true;
        }
        self.calls = 0;
        let now = Instant::now();
        let since = now - self.last;
        if since >= Duration::from_secs(1) {
            if self.limits.live {
                let packets = self.packets - self.last_packets;
                let rate = packets as f64 / since.as_secs_f64();
                let average_size = self.bytes as f64 / self.packets.max(1) as f64;
                eprintln!(
                    "{:6.1}s  {:>12} pkts  {:8.3} Mpps  {:7.3} Gbit/s",
                    (now - self.start).as_secs_f64(),
                    packets,
                    rate / 1e6,
                    rate * average_size * 8.0 / 1e9
                );
            }
            self.last = now;
            self.last_packets = self.packets;
        }
        now - self.start < self.limits.duration
            && self.packets < self.limits.count
            && !self.limits.stop.load(Ordering::Relaxed)
    }

    fn finish(self) -> Outcome {
        Outcome {
            packets: self.packets,
            bytes: self.bytes,
            elapsed: self.start.elapsed(),
            tx_dropped: self.tx_dropped,
        }
    }
}

/// Counts a received frame: a packet ends at a frame without the continuation flag.
fn count_frame(frame: &Frame, packets: &mut u64, bytes: &mut u64) {
    *bytes += frame.len() as u64;
    if !frame.continues() {
        *packets += 1;
    }
}

/// Gives `count` frames back to the fill ring. Refilling only what was used keeps the loop
/// off the kernel's consumer index (a shared cache line) while nothing arrives.
pub(crate) fn refill(
    socket: &mut Socket,
    pool: &mut FramePool,
    count: u32,
) -> Result<(), XskError> {
    if count > 0 {
        socket.fill(pool, count);
    }
    if socket.is_busy_polling() || socket.fill_needs_wakeup() {
        socket.wake_rx()?;
    }
    Ok(())
}

pub fn rxdrop(
    socket: &mut Socket,
    mut pool: FramePool,
    batch: u32,
    limits: &Limits<'_>,
) -> Result<Outcome, XskError> {
    let umem = socket.umem().clone();
    socket.fill(&mut pool, u32::MAX);
    let mut meter = Meter::new(limits);
    let mut used = 0;
    while meter.keep_going() {
        refill(socket, &mut pool, used)?;
        let (mut packets, mut bytes) = (0, 0);
        used = 0;
        for frame in socket.receive(batch) {
            count_frame(&frame, &mut packets, &mut bytes);
            pool.put(frame, &umem);
            used += 1;
        }
        meter.add(packets, bytes);
    }
    Ok(meter.finish())
}

pub fn l2fwd(
    socket: &mut Socket,
    mut pool: FramePool,
    batch: u32,
    limits: &Limits<'_>,
) -> Result<Outcome, XskError> {
    let umem = socket.umem().clone();
    // Half the frames wait in the fill ring; the rest circulate through RX and TX.
    let half = (pool.len() / 2) as u32;
    socket.fill(&mut pool, half);
    let mut frames: Vec<Frame> = Vec::with_capacity(batch as usize);
    let mut meter = Meter::new(limits);
    while meter.keep_going() {
        let sent = socket.complete(&mut pool, batch * 2);
        refill(socket, &mut pool, sent)?;
        // Take no more than the TX ring can hold, so every received frame goes back out.
        let room = socket.tx_room(batch);
        let (mut packets, mut bytes) = (0, 0);
        let mut starts_packet = true;
        for mut frame in socket.receive(room) {
            count_frame(&frame, &mut packets, &mut bytes);
            if starts_packet {
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
                meter.tx_dropped += 1;
                tx.pool().put(frame, &umem);
            }
        }
        tx.commit();
        if socket.tx_needs_wakeup() {
            socket.wake_tx()?;
        }
        meter.add(packets, bytes);
    }
    Ok(meter.finish())
}

pub fn txpush(
    socket: &mut Socket,
    mut pool: FramePool,
    packet: &[u8],
    batch: u32,
    limits: &Limits<'_>,
) -> Result<Outcome, XskError> {
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
    let mut meter = Meter::new(limits);
    while meter.keep_going() {
        let done = socket.complete(&mut pool, batch * 2) as u64;
        in_flight -= done;
        meter.add(
            done / per_packet as u64,
            done / per_packet as u64 * frame_bytes,
        );
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
        in_flight += tx.commit() as u64;
        debug_assert_eq!(queued as u64 % per_packet as u64, 0);
        if in_flight > 0 && socket.tx_needs_wakeup() {
            socket.wake_tx()?;
        }
    }
    // Let the last frames complete so the count is what actually left.
    let deadline = Instant::now() + Duration::from_millis(200);
    while in_flight > 0 && Instant::now() < deadline {
        socket.wake_tx()?;
        let done = socket.complete(&mut pool, u32::MAX) as u64;
        in_flight -= done;
        meter.add(
            done / per_packet as u64,
            done / per_packet as u64 * frame_bytes,
        );
    }
    Ok(meter.finish())
}
