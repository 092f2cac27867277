//! The network-function interface: NFs see batches of packets in place, in UMEM (no copy),
//! and give each one a verdict.

use std::any::Any;

use afxdp::{Frame, Umem};

use crate::drop_reason::DropReason;

/// What happens to a packet after a network function has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the packet to the next function of the chain. After the last one, the packet
    /// leaves on the port it arrived on.
    Next,
    /// Send the packet now, on the worker's port `port` (0: the port it arrived on).
    Transmit {
        /// The worker's port to send on.
        port: u16,
    },
    /// Drop the packet; the reason is counted per function.
    Drop(DropReason),
}

/// One received packet, writable in place in the UMEM. Its accessors are `#[inline]`: they
/// are on every function's per-packet path, in other crates.
pub struct Packet<'a> {
    umem: &'a Umem,
    frame: &'a mut Frame,
    /// The RX queue it arrived on.
    pub queue: u32,
}

impl<'a> Packet<'a> {
    /// The packet in `frame` of `umem`, received on `queue`.
    #[inline]
    pub fn new(umem: &'a Umem, frame: &'a mut Frame, queue: u32) -> Packet<'a> {
        Packet { umem, frame, queue }
    }

    /// Its bytes, from the Ethernet header on.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.umem.data(self.frame)
    }

    /// Its bytes, to rewrite in place.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.umem.data_mut(self.frame)
    }

    /// Its length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.frame.len() as usize
    }

    /// Whether it has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Inserts `bytes` bytes at `at` (for an encapsulation header) using the frame's
    /// headroom: the first `at` bytes move forward, the rest stay where they are.
    /// Returns false when the headroom is too small.
    pub fn insert(&mut self, at: usize, bytes: u16) -> bool {
        if at > self.len() || self.umem.grow_front(self.frame, bytes).is_err() {
            return false;
        }
        self.data_mut()
            .copy_within(bytes as usize..bytes as usize + at, 0);
        true
    }

    /// Shortens the packet to `len` bytes (no-op if it is not longer).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            // Shorter than the current length, so it fits the frame.
            let _ = self.umem.set_len(self.frame, len as u32);
        }
    }
}

/// The memory of a batch's packet list, kept from one batch to the next so that no worker
/// path allocates per batch. A `Packet` borrows its frame, so the list cannot outlive its
/// batch; its memory can.
#[derive(Default)]
pub struct PacketList(Vec<Packet<'static>>);

impl PacketList {
    /// The packets of `frames`, in this list's memory; give it back with
    /// [`PacketList::keep`] once the batch is done.
    pub fn fill<'a>(
        &mut self,
        umem: &'a Umem,
        frames: &'a mut [Frame],
        queue: u32,
    ) -> Vec<Packet<'a>> {
        let mut packets = relabel(std::mem::take(&mut self.0));
        packets.extend(
            frames
                .iter_mut()
                .map(|frame| Packet::new(umem, frame, queue)),
        );
        packets
    }

    /// Keeps the memory of `packets` for the next batch.
    pub fn keep(&mut self, packets: Vec<Packet<'_>>) {
        self.0 = relabel(packets);
    }
}

/// The list emptied and given another lifetime, in the same memory: the standard library
/// collects `into_iter().map(..)` in place when the items keep their layout.
fn relabel<'b>(mut packets: Vec<Packet<'_>>) -> Vec<Packet<'b>> {
    packets.clear();
    packets
        .into_iter()
        .map(|_| unreachable!("the list was emptied"))
        .collect()
}

/// A network function. One instance runs on one worker, so it needs no locks of its own;
/// state shared between workers (a NAT table, say) is the function's business.
pub trait NetworkFunction: Send + 'static {
    /// The name stats and hot swap go by.
    fn name(&self) -> &'static str;

    /// Decides what happens to one packet, possibly rewriting it.
    fn process(&mut self, packet: &mut Packet<'_>) -> Verdict;

    /// Decides a batch. `verdicts[i]` is `Next` for each packet still to be decided; the
    /// default runs `process` on those. Override to prefetch or vectorise.
    fn process_batch(&mut self, packets: &mut [Packet<'_>], verdicts: &mut [Verdict]) {
        for (packet, verdict) in packets.iter_mut().zip(verdicts.iter_mut()) {
            if *verdict == Verdict::Next {
                *verdict = self.process(packet);
            }
        }
    }

    /// Hot swap: this function replaces `previous` (same name) at a batch boundary and may
    /// take over its state, such as a connection table, when it accepts it.
    fn adopt(&mut self, _previous: &mut dyn NetworkFunction) {}

    /// For `adopt`: lets the new version downcast the old one.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

#[cfg(test)]
mod tests {
    use afxdp::UmemConfig;

    use super::*;

    #[test]
    fn a_packet_list_reuses_its_memory_from_batch_to_batch() {
        let (umem, mut pool) = Umem::new(UmemConfig {
            frame_count: 64,
            ..UmemConfig::default()
        })
        .unwrap();
        let mut frames: Vec<Frame> = (0..32).map(|_| pool.take().unwrap()).collect();
        let mut list = PacketList::default();
        let first = list.fill(&umem, &mut frames, 3);
        assert_eq!(first.len(), 32);
        assert!(first.iter().all(|packet| packet.queue == 3));
        let memory = first.as_ptr() as usize;
        list.keep(first);
        let second = list.fill(&umem, &mut frames[..16], 0);
        assert_eq!(second.len(), 16);
        assert_eq!(
            second.as_ptr() as usize,
            memory,
            "the second batch's list is the first one's memory"
        );
        list.keep(second);
    }
}
