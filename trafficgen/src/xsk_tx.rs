//! The AF_XDP TX mode: each thread binds a socket on its own queue, writes the frames into
//! its UMEM and hands them to the driver in batches, as xdpsock's txpush does. Each frame
//! gets its flow's ports and addresses and a stamp (sequence, CLOCK_MONOTONIC ns) where the
//! live-frames program writes them, so sinks read both modes alike. A mix is sent frame by
//! frame in its exact proportions. `sent` counts the frames the driver completed.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use afxdp::{BindMode, Socket, SocketConfig, Umem, UmemConfig, XskError};
use offload_common::{GenConfig, ipv4_checksum};
use wire::stamp::Stamp;

use crate::{
    error::GenError,
    frame::GenFrame,
    options::GenOptions,
    pacer::{Pacer, monotonic_ns},
};

const BATCH: u32 = 64;
const RING: u32 = 2048;

fn xsk_error(what: &'static str, source: XskError) -> GenError {
    GenError::Xsk { what, source }
}

/// The frame for each position of a cycle, each frame as often as its share.
fn schedule(frames: &[(GenFrame, u32)]) -> Vec<&GenFrame> {
    frames
        .iter()
        .flat_map(|(frame, share)| std::iter::repeat_n(frame, *share as usize))
        .collect()
}

/// Writes the flow's fields and the stamp, as `gen_tx` does: the thread's `count`-th frame
/// goes to flow `count % flows`, and its sequence number has the thread in the top byte.
fn personalise(data: &mut [u8], config: &GenConfig, thread: u32, count: u64, now_ns: u64) {
    let flow = config
        .space
        .flow((count % u64::from(config.flows.max(1))) as u32);
    let frame_len = data.len();
    let mut put = |offset: u16, bytes: &[u8]| {
        let at = usize::from(offset);
        data[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(config.l4_offset, &flow.sport.to_be_bytes());
    put(config.l4_offset + 2, &flow.dport.to_be_bytes());
    put(config.src_offset, &flow.src.to_be_bytes());
    put(config.dst_offset, &flow.dst.to_be_bytes());
    let stamp = Stamp::new(u64::from(thread), count, now_ns).to_bytes();
    put(config.stamp_offset, &stamp);
    if config.checksum_offset != 0 {
        let l4_len = (frame_len - usize::from(config.l4_offset)) as u32;
        let checksum = config.l4_checksum(&flow, &stamp, l4_len);
        put(config.checksum_offset, &checksum.to_be_bytes());
    }
    if config.ipv4_offset != 0 {
        let at = usize::from(config.ipv4_offset);
        let header: &[u8; 20] = data[at..at + 20].try_into().expect("20 bytes");
        let checksum = ipv4_checksum(header);
        data[at + 10..at + 12].copy_from_slice(&checksum.to_be_bytes());
    }
}

pub(super) fn send_loop(
    options: &GenOptions,
    config: &GenConfig,
    thread: u32,
    pacer: &Pacer,
    sent: &AtomicU64,
    notes: &Mutex<Vec<String>>,
) -> Result<(), GenError> {
    let (umem, mut pool) = Umem::new(UmemConfig {
        frame_size: 2048,
        frame_count: RING * 2,
        ..UmemConfig::default()
    })
    .map_err(|e| xsk_error("UMEM", e))?;
    let mut socket = Socket::bind(
        &umem,
        &options.iface,
        thread,
        &SocketConfig {
            mode: BindMode::Auto,
            rx_size: 0,
            tx_size: RING,
            fill_size: RING,
            completion_size: RING,
            ..SocketConfig::default()
        },
    )
    .map_err(|e| xsk_error("bind", e))?;
    if let Some(fallback) = socket.fallback() {
        notes
            .lock()
            .unwrap()
            .push(format!("queue {thread}: {fallback}"));
    }
    let cycle = schedule(&options.frames);
    let (mut queued, mut in_flight) = (0u64, 0u64);
    let reap = |socket: &mut Socket, pool: &mut afxdp::FramePool, in_flight: &mut u64| {
        let done = u64::from(socket.complete(pool, u32::MAX));
        *in_flight -= done;
        sent.fetch_add(done, Ordering::Relaxed);
    };
    while let Some(allowed) = pacer.allowance(queued, BATCH) {
        reap(&mut socket, &mut pool, &mut in_flight);
        let mut tx = socket.transmit(&mut pool, allowed);
        let now = monotonic_ns();
        while tx.remaining() > 0 {
            let Some(mut slot) = tx.pool().take() else {
                break;
            };
            let frame = cycle[(queued % cycle.len() as u64) as usize];
            umem.write(&mut slot, &frame.bytes)
                .map_err(|e| xsk_error("write a frame", e))?;
            personalise(umem.data_mut(&mut slot), config, thread, queued, now);
            tx.push(slot).expect("room was checked");
            queued += 1;
        }
        in_flight += u64::from(tx.commit());
        if in_flight > 0 && socket.tx_needs_wakeup() {
            socket.wake_tx().map_err(|e| xsk_error("wake", e))?;
        }
    }
    // Let the last frames complete, so `sent` is what left.
    let deadline = Instant::now() + Duration::from_millis(200);
    while in_flight > 0 && Instant::now() < deadline {
        socket.wake_tx().map_err(|e| xsk_error("wake", e))?;
        reap(&mut socket, &mut pool, &mut in_flight);
    }
    socket.shutdown(&mut pool);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(size: usize) -> GenFrame {
        crate::frame::test_frame(size, 34)
    }

    #[test]
    fn a_mix_is_scheduled_in_its_shares() {
        let frames = vec![(frame(64), 7), (frame(594), 4), (frame(1518), 1)];
        let sizes: Vec<usize> = schedule(&frames).iter().map(|f| f.wire_size).collect();
        assert_eq!(sizes.len(), 12);
        assert_eq!(sizes.iter().filter(|&&s| s == 64).count(), 7);
        assert_eq!(sizes.iter().filter(|&&s| s == 594).count(), 4);
        assert_eq!(sizes.iter().filter(|&&s| s == 1518).count(), 1);
    }

    #[test]
    fn each_frame_gets_its_flow_fields_and_stamp() {
        let mut f = frame(64);
        f.bytes[14] = 0x45;
        let space = offload_common::FlowSpace {
            src_base: 0x0a00_0001,
            src_count: 2,
            dst_base: 0x0a00_0002,
            dst_count: 1,
            sport_base: 1024,
            sport_count: 2,
            dport_base: 9,
            dport_count: 2,
        };
        let config = f.fields.config(8, space);
        let mut data = f.bytes.clone();
        personalise(&mut data, &config, 1, 14, 123_456);
        // Thread 1's frame 14 over 8 flows: flow 6 = sport 1024, dport 10, source .2.
        assert_eq!(data[34..38], [4, 0, 0, 10]);
        assert_eq!(data[26..34], [10, 0, 0, 2, 10, 0, 0, 2]);
        let header: &[u8; 20] = data[14..34].try_into().unwrap();
        assert_eq!(
            u16::from_be_bytes([data[24], data[25]]),
            ipv4_checksum(header),
            "the IPv4 checksum covers the new source"
        );
        assert_eq!(Stamp::read(&data, 42), Some(Stamp::new(1, 14, 123_456)));
    }

    /// Whether a frame's L4 checksum verifies, worked out the long way: pseudo-header plus
    /// the whole segment, checksum included, must sum to all ones.
    fn l4_checksum_verifies(frame: &[u8]) -> bool {
        let words = |bytes: &[u8]| -> u64 {
            bytes
                .chunks(2)
                .map(|pair| u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
                .sum()
        };
        let (addresses, proto, l4) = match frame[12..14] {
            [0x08, 0x00] => (&frame[26..34], frame[23], 34),
            _ => (&frame[22..54], frame[20], 54),
        };
        let segment = &frame[l4..];
        let sum = words(addresses) + u64::from(proto) + segment.len() as u64 + words(segment);
        offload_common::fold(sum) == 0xffff
    }

    #[test]
    fn tcp_and_ipv6_frames_carry_a_valid_l4_checksum_for_every_flow() {
        use crate::frame::{L4Kind, test_template};
        let cases = [
            ("10.0.0.1", "10.0.0.2", L4Kind::TcpSyn, 74),
            ("10.0.0.1", "10.0.0.2", L4Kind::TcpAck, 1518),
            ("fd00::1", "fd00::2", L4Kind::Udp, 128),
            ("fd00::1", "fd00::2", L4Kind::TcpSyn, 999),
        ];
        for (src, dst, l4, size) in cases {
            let frame = test_template(src, dst, l4, size).build().unwrap();
            assert!(
                frame.fields.l4_checksum.is_some(),
                "TCP and IPv6 frames carry an L4 checksum"
            );
            let space = offload_common::FlowSpace {
                src_count: 300,
                dst_count: 70_000,
                sport_count: 50_000,
                dport_count: 3,
                ..frame.flow_space()
            };
            let config = frame.fields.config(u32::MAX, space);
            for (count, now) in [(0, 0), (7, u64::MAX), (123_456_789, 0x0123_4567_89ab_cdef)] {
                let mut data = frame.bytes.clone();
                personalise(&mut data, &config, 3, count, now);
                assert!(
                    l4_checksum_verifies(&data),
                    "{src} {l4:?} {size} B, frame {count}"
                );
            }
        }
    }
}
