//! The four AF_XDP rings share one shape: a producer index, a consumer index, a flags word
//! and a power-of-two array of descriptors, all in memory shared with the kernel.
//!
//! Discipline (the kernel's side is in net/xdp/xsk_queue.h):
//! - Each side keeps its own index locally and a cached copy of the other side's index.
//!   The shared index of the other side is read (with Acquire) only when the cached copy
//!   says there is not enough room or data, so most batches touch no shared cache line.
//! - Our index is published with a Release store after the descriptors are written (as
//!   producer) or read (as consumer), which orders them before the kernel sees the index.
//! - Indexes are free-running `u32`s; the slot is `index & mask`, and all distances use
//!   wrapping arithmetic, so crossing `u32::MAX` needs no special case.

use std::{
    marker::PhantomData,
    os::fd::BorrowedFd,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{XskError, sys};

/// Where the ring lives: an mmap of the socket, or heap memory laid out the same way (unit
/// tests and the ring benchmark, where both ends of a ring share one block).
enum Memory {
    Mapped {
        base: NonNull<u8>,
        len: usize,
    },
    #[cfg(any(test, feature = "bench-rings"))]
    Heap(#[allow(dead_code)] std::sync::Arc<HeapBlock>),
}

/// The layout the kernel gives its rings on x86-64: each index on its own cache line, so
/// the two ends do not share one.
#[cfg(any(test, feature = "bench-rings"))]
pub(crate) const HEAP_LAYOUT: Layout = Layout {
    producer: 0,
    consumer: 64,
    flags: 128,
    descs: 192,
};

/// Zeroed, 8-byte aligned heap memory standing in for a ring's mapping.
#[cfg(any(test, feature = "bench-rings"))]
pub(crate) struct HeapBlock(NonNull<[u64]>);

// SAFETY: like a socket's mapping, the block is plain memory whose shared parts (the
// indexes) are only touched through atomics; each ring end owns its own slots.
#[cfg(any(test, feature = "bench-rings"))]
unsafe impl Send for HeapBlock {}
#[cfg(any(test, feature = "bench-rings"))]
unsafe impl Sync for HeapBlock {}

#[cfg(any(test, feature = "bench-rings"))]
impl HeapBlock {
    /// A block big enough for `layout` with `size` descriptors of `T`.
    pub fn for_ring<T>(layout: Layout, size: u32) -> std::sync::Arc<HeapBlock> {
        let bytes = layout.descs as usize + size as usize * size_of::<T>();
        let words = vec![0u64; bytes.div_ceil(8)].into_boxed_slice();
        // A raw pointer rather than the box itself: both ends of a ring write through it.
        std::sync::Arc::new(HeapBlock(NonNull::from(Box::leak(words))))
    }

    pub fn base(&self) -> NonNull<u8> {
        self.0.cast()
    }
}

#[cfg(any(test, feature = "bench-rings"))]
impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `for_ring`, and no ring over it is left.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

impl Drop for Memory {
    // Irrefutable without `Heap` (outside tests and the ring benchmark).
    #[allow(irrefutable_let_patterns)]
    fn drop(&mut self) {
        if let Memory::Mapped { base, len } = *self {
            // SAFETY: the mapping was made in `Ring::map` and the ring that used it is gone.
            unsafe { sys::munmap(base, len) };
        }
    }
}

/// Byte offsets of a ring's parts inside its mapping (`struct xdp_ring_offset`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub producer: u64,
    pub consumer: u64,
    pub flags: u64,
    pub descs: u64,
}

impl From<libc::xdp_ring_offset> for Layout {
    fn from(offset: libc::xdp_ring_offset) -> Layout {
        Layout {
            producer: offset.producer,
            consumer: offset.consumer,
            flags: offset.flags,
            descs: offset.desc,
        }
    }
}

pub(crate) struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    /// Our own index: the next slot to write (producer rings) or to read (consumer rings).
    local: u32,
    /// The kernel's index as last read.
    cached_remote: u32,
    _memory: Memory,
    _descs: PhantomData<T>,
}

// SAFETY: the ring owns its mapping, and all access goes through `&mut self`; the kernel is
// the only other party and synchronises through the atomic indexes. Moving the ring to
// another thread is therefore fine.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at `page_offset` of the socket.
    pub fn map(
        fd: BorrowedFd<'_>,
        page_offset: u64,
        layout: Layout,
        size: u32,
        call: &'static str,
    ) -> Result<Ring<T>, XskError> {
        let len = layout.descs as usize + size as usize * size_of::<T>();
        let base =
            sys::mmap_ring(fd, len, page_offset).map_err(|error| XskError::syscall(call, error))?;
        // SAFETY: the mapping covers `len` bytes laid out as the kernel described.
        Ok(unsafe { Ring::from_parts(base, layout, size, Memory::Mapped { base, len }) })
    }

    /// A ring over heap memory; every ring made from the same block shares its indexes.
    #[cfg(any(test, feature = "bench-rings"))]
    pub fn on_heap(block: &std::sync::Arc<HeapBlock>, layout: Layout, size: u32) -> Ring<T> {
        // SAFETY: `HeapBlock::for_ring` sized the block for this layout, and the ring keeps
        // the block alive.
        unsafe { Ring::from_parts(block.base(), layout, size, Memory::Heap(block.clone())) }
    }

    /// # Safety
    /// `base` must point at memory laid out as `layout` says, valid for `size` descriptors,
    /// and kept alive by `memory`.
    unsafe fn from_parts(base: NonNull<u8>, layout: Layout, size: u32, memory: Memory) -> Ring<T> {
        debug_assert!(size.is_power_of_two());
        // SAFETY: offsets come from the kernel (or the test layout) and lie inside the memory.
        let at = |offset: u64| unsafe { base.add(offset as usize) };
        Ring {
            producer: at(layout.producer).cast(),
            consumer: at(layout.consumer).cast(),
            flags: at(layout.flags).cast(),
            descs: at(layout.descs).cast(),
            mask: size - 1,
            local: 0,
            cached_remote: 0,
            _memory: memory,
            _descs: PhantomData,
        }
    }

    fn index(&self, pointer: NonNull<AtomicU32>) -> &AtomicU32 {
        // SAFETY: the pointer is inside the mapping `self` keeps alive, and aligned.
        unsafe { pointer.as_ref() }
    }

    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    pub fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: `index & mask` is below the ring size the mapping holds.
        unsafe { self.descs.as_ptr().add((index & self.mask) as usize) }
    }

    // ---- producer side (fill and TX rings) ----

    /// Sets this ring up for producing: our index is the producer's, the cached remote is
    /// the consumer's. Called once after mapping.
    pub fn into_producer(mut self) -> Ring<T> {
        self.local = self.index(self.producer).load(Ordering::Relaxed);
        self.cached_remote = self.index(self.consumer).load(Ordering::Acquire);
        self
    }

    /// Free slots, at most `wanted`; reads the kernel's consumer index only if the cached
    /// one shows fewer than `wanted` free.
    pub fn free(&mut self, wanted: u32) -> u32 {
        let mut free = self.size() - self.local.wrapping_sub(self.cached_remote);
        if free < wanted {
            // Acquire: the kernel has finished reading the slots it released.
            self.cached_remote = self.index(self.consumer).load(Ordering::Acquire);
            free = self.size() - self.local.wrapping_sub(self.cached_remote);
        }
        free.min(wanted)
    }

    /// Reserves up to `wanted` slots. Nothing is visible to the kernel until `commit`.
    pub fn produce(&mut self, wanted: u32) -> Produce<'_, T> {
        let capacity = self.free(wanted);
        Produce {
            ring: self,
            capacity,
            written: 0,
        }
    }

    // ---- consumer side (RX and completion rings) ----

    pub fn into_consumer(mut self) -> Ring<T> {
        self.local = self.index(self.consumer).load(Ordering::Relaxed);
        self.cached_remote = self.index(self.producer).load(Ordering::Acquire);
        self
    }

    /// Entries ready, at most `wanted`; reads the kernel's producer index only if the
    /// cached one shows fewer than `wanted`.
    pub fn available(&mut self, wanted: u32) -> u32 {
        let mut ready = self.cached_remote.wrapping_sub(self.local);
        if ready < wanted {
            // Acquire: the descriptors the kernel wrote before its index are visible.
            self.cached_remote = self.index(self.producer).load(Ordering::Acquire);
            ready = self.cached_remote.wrapping_sub(self.local);
        }
        ready.min(wanted)
    }

    /// Takes up to `wanted` entries. Only the entries read out are released to the kernel
    /// when the guard drops; the rest stay in the ring for the next call.
    pub fn consume(&mut self, wanted: u32) -> Consume<'_, T> {
        let available = self.available(wanted);
        Consume {
            ring: self,
            available,
            taken: 0,
        }
    }
}

/// Slots reserved on a producer ring. Dropping it without `commit` rolls the reservation
/// back: the producer index never moved, so the kernel saw nothing.
#[must_use = "nothing reaches the kernel until the batch is committed"]
pub(crate) struct Produce<'a, T: Copy> {
    ring: &'a mut Ring<T>,
    capacity: u32,
    written: u32,
}

impl<T: Copy> Produce<'_, T> {
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn written(&self) -> u32 {
        self.written
    }

    pub fn is_full(&self) -> bool {
        self.written == self.capacity
    }

    /// Writes the next descriptor; returns false when the reservation is full.
    pub fn push(&mut self, value: T) -> bool {
        if self.is_full() {
            return false;
        }
        let slot = self.ring.slot(self.ring.local.wrapping_add(self.written));
        // SAFETY: the slot is reserved (free of the kernel) and inside the ring.
        unsafe { slot.write(value) };
        self.written += 1;
        true
    }

    /// The descriptors written so far, oldest first (for rolling frames back).
    pub fn written_values(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.written).map(|i| {
            // SAFETY: written above, still reserved.
            unsafe { self.ring.slot(self.ring.local.wrapping_add(i)).read() }
        })
    }

    /// Publishes what was written; returns how many.
    pub fn commit(self) -> u32 {
        let written = self.written;
        let ring = &mut *self.ring;
        ring.local = ring.local.wrapping_add(written);
        // Release: the descriptors are written before the kernel sees the index.
        ring.index(ring.producer)
            .store(ring.local, Ordering::Release);
        written
    }
}

/// Entries available on a consumer ring. On drop, the entries read are released; the rest
/// are rolled back and returned by the next `consume`.
#[must_use = "entries are only released when read out of the batch"]
pub(crate) struct Consume<'a, T: Copy> {
    ring: &'a mut Ring<T>,
    available: u32,
    taken: u32,
}

impl<T: Copy> Consume<'_, T> {
    pub fn remaining(&self) -> u32 {
        self.available - self.taken
    }

    /// Looks at the next entry without taking it.
    pub fn peek(&self) -> Option<T> {
        (self.taken < self.available).then(|| {
            // SAFETY: the kernel published this slot and we have not released it.
            unsafe {
                self.ring
                    .slot(self.ring.local.wrapping_add(self.taken))
                    .read()
            }
        })
    }
}

impl<T: Copy> Iterator for Consume<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let value = self.peek()?;
        self.taken += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining() as usize;
        (remaining, Some(remaining))
    }
}

impl<T: Copy> Drop for Consume<'_, T> {
    fn drop(&mut self) {
        if self.taken == 0 {
            return;
        }
        let ring = &mut *self.ring;
        ring.local = ring.local.wrapping_add(self.taken);
        // Release: our reads of the slots happen before the kernel may reuse them.
        ring.index(ring.consumer)
            .store(ring.local, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
