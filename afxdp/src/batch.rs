//! Frame-level batches over the rings, and the record of which frames the kernel holds.

use crate::{
    Frame, FramePool, Umem,
    ring::{Consume, Produce},
};

/// Which frames a socket has handed to the kernel (fill or TX ring) and not yet got back.
/// A frame handed over twice is a bug in this crate; debug builds catch it here.
pub(crate) struct KernelFrames {
    held: Vec<bool>,
    count: usize,
}

impl KernelFrames {
    pub fn new(frames: usize) -> KernelFrames {
        KernelFrames {
            held: vec![false; frames],
            count: 0,
        }
    }

    pub fn give(&mut self, index: usize) {
        debug_assert!(
            !self.held[index],
            "frame {index} handed to the kernel twice"
        );
        self.held[index] = true;
        self.count += 1;
    }

    pub fn take(&mut self, index: usize) {
        debug_assert!(
            self.held[index],
            "kernel returned frame {index} it did not hold"
        );
        self.held[index] = false;
        self.count -= 1;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn indexes(&self) -> Vec<usize> {
        (0..self.held.len()).filter(|&i| self.held[i]).collect()
    }
}

/// Received frames. Iterating hands each frame to the caller; on drop, the frames taken are
/// released from the RX ring and the rest roll back for the next `receive`.
#[must_use = "received frames stay in the RX ring until taken out of the batch"]
pub struct RxBatch<'a> {
    descs: Consume<'a, libc::xdp_desc>,
    umem: &'a Umem,
    kernel: &'a mut KernelFrames,
}

impl<'a> RxBatch<'a> {
    pub(crate) fn new(
        descs: Consume<'a, libc::xdp_desc>,
        umem: &'a Umem,
        kernel: &'a mut KernelFrames,
    ) -> RxBatch<'a> {
        RxBatch {
            descs,
            umem,
            kernel,
        }
    }

    /// Frames not yet taken.
    pub fn len(&self) -> usize {
        self.descs.remaining() as usize
    }

    /// Whether every frame of the batch has been taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for RxBatch<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let desc = self.descs.next()?;
        let frame = self.umem.frame_at(desc.addr, desc.len, desc.options);
        self.kernel.take(self.umem.index_of(frame.base()));
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

/// Room on the TX ring. `push` moves frames in; `commit` hands them to the kernel.
/// Dropped without `commit`, the batch rolls back and its frames go to the pool.
#[must_use = "nothing is sent until the batch is committed"]
pub struct TxBatch<'a> {
    descs: Option<Produce<'a, libc::xdp_desc>>,
    umem: &'a Umem,
    kernel: &'a mut KernelFrames,
    pool: &'a mut FramePool,
}

impl<'a> TxBatch<'a> {
    pub(crate) fn new(
        descs: Produce<'a, libc::xdp_desc>,
        umem: &'a Umem,
        kernel: &'a mut KernelFrames,
        pool: &'a mut FramePool,
    ) -> TxBatch<'a> {
        TxBatch {
            descs: Some(descs),
            umem,
            kernel,
            pool,
        }
    }

    /// Room left in this batch.
    pub fn remaining(&self) -> u32 {
        self.descs
            .as_ref()
            .map_or(0, |descs| descs.capacity() - descs.written())
    }

    /// The pool this batch returns frames to on rollback; take frames to send from it.
    pub fn pool(&mut self) -> &mut FramePool {
        self.pool
    }

    /// Queues a frame for sending, or gives it back when the batch is full.
    pub fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        let Some(descs) = self.descs.as_mut() else {
            return Err(frame);
        };
        if descs.is_full() {
            return Err(frame);
        }
        let desc = libc::xdp_desc {
            addr: self.umem.tx_address(&frame),
            len: frame.len(),
            options: frame.options(),
        };
        descs.push(desc);
        self.kernel.give(self.umem.index_of(frame.base()));
        Ok(())
    }

    /// Hands the queued frames to the kernel; returns how many. The caller still has to
    /// kick the kernel when `Socket::tx_needs_wakeup` says so.
    pub fn commit(mut self) -> u32 {
        self.descs.take().map_or(0, Produce::commit)
    }
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        let Some(descs) = self.descs.take() else {
            return;
        };
        for desc in descs.written_values() {
            let frame = self.umem.frame_at(desc.addr, 0, 0);
            self.kernel.take(self.umem.index_of(frame.base()));
            self.pool.put(frame, self.umem);
        }
        // `descs` drops uncommitted: the kernel never saw these slots.
    }
}
