//! Ring index arithmetic against a fake mapping: heap memory laid out like the kernel's,
//! with the test playing the kernel's side through the same atomics.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const LAYOUT: Layout = HEAP_LAYOUT;

/// The kernel's view of a fake ring.
struct FakeKernel {
    base: *mut u8,
    mask: u32,
}

impl FakeKernel {
    fn index(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: inside the heap block the ring keeps alive for the test's duration.
        unsafe { &*self.base.add(offset as usize).cast::<AtomicU32>() }
    }

    fn producer(&self) -> u32 {
        self.index(LAYOUT.producer).load(Ordering::Acquire)
    }

    fn consumer(&self) -> u32 {
        self.index(LAYOUT.consumer).load(Ordering::Acquire)
    }

    fn slot(&self, index: u32) -> *mut u64 {
        // SAFETY: masked into the descriptor array.
        unsafe {
            self.base
                .add(LAYOUT.descs as usize)
                .cast::<u64>()
                .add((index & self.mask) as usize)
        }
    }

    /// Kernel as producer (RX / completion): writes values and publishes them.
    fn produce(&self, values: &[u64]) {
        let start = self.producer();
        for (i, value) in values.iter().enumerate() {
            // SAFETY: test-owned slot.
            unsafe { self.slot(start.wrapping_add(i as u32)).write(*value) };
        }
        self.index(LAYOUT.producer)
            .store(start.wrapping_add(values.len() as u32), Ordering::Release);
    }

    /// Kernel as consumer (fill / TX): reads up to `count` published values.
    fn consume(&self, count: u32) -> Vec<u64> {
        let start = self.consumer();
        let ready = self.producer().wrapping_sub(start).min(count);
        // SAFETY: published slots.
        let values = (0..ready)
            .map(|i| unsafe { self.slot(start.wrapping_add(i)).read() })
            .collect();
        self.index(LAYOUT.consumer)
            .store(start.wrapping_add(ready), Ordering::Release);
        values
    }

    fn set_flags(&self, flags: u32) {
        self.index(LAYOUT.flags).store(flags, Ordering::Relaxed);
    }
}

/// A ring of `size` u64 entries whose producer and consumer indexes both start at `start`.
fn fake_ring(size: u32, start: u32) -> (Ring<u64>, FakeKernel) {
    let block = HeapBlock::for_ring::<u64>(LAYOUT, size);
    let kernel = FakeKernel {
        base: block.base().as_ptr(),
        mask: size - 1,
    };
    kernel
        .index(LAYOUT.producer)
        .store(start, Ordering::Relaxed);
    kernel
        .index(LAYOUT.consumer)
        .store(start, Ordering::Relaxed);
    (Ring::on_heap(&block, LAYOUT, size), kernel)
}

#[test]
fn producer_reports_free_slots_and_refreshes_only_when_short() {
    let (ring, kernel) = fake_ring(8, 0);
    let mut ring = ring.into_producer();
    assert_eq!(ring.free(8), 8);
    let mut batch = ring.produce(8);
    for value in 0..8 {
        assert!(batch.push(value));
    }
    assert!(!batch.push(99), "a full reservation refuses more");
    assert_eq!(batch.commit(), 8);
    assert_eq!(ring.free(1), 0);
    assert_eq!(kernel.consume(3), vec![0, 1, 2]);
    // Cached consumer still says full until a refresh is needed; then it sees 3 free.
    assert_eq!(ring.free(4), 3);
}

#[test]
fn uncommitted_reservation_is_rolled_back() {
    let (ring, kernel) = fake_ring(4, 0);
    let mut ring = ring.into_producer();
    {
        let mut batch = ring.produce(4);
        assert!(batch.push(7));
        assert!(batch.push(8));
        // dropped without commit
    }
    assert_eq!(
        kernel.producer(),
        0,
        "the kernel must not see a rolled-back batch"
    );
    assert_eq!(ring.free(4), 4);
    let mut batch = ring.produce(1);
    assert!(batch.push(9));
    batch.commit();
    assert_eq!(kernel.consume(4), vec![9]);
}

#[test]
fn consumer_releases_only_what_was_taken() {
    let (ring, kernel) = fake_ring(8, 0);
    let mut ring = ring.into_consumer();
    kernel.produce(&[10, 11, 12, 13]);
    {
        let mut batch = ring.consume(8);
        assert_eq!(batch.remaining(), 4);
        assert_eq!(batch.next(), Some(10));
        assert_eq!(batch.next(), Some(11));
    }
    assert_eq!(kernel.consumer(), 2, "two taken, two rolled back");
    let rest: Vec<u64> = ring.consume(8).collect();
    assert_eq!(rest, vec![12, 13]);
    assert_eq!(kernel.consumer(), 4);
    assert_eq!(ring.consume(8).remaining(), 0);
}

#[test]
fn indexes_wrap_around_u32_max() {
    // Start four entries before the wrap, then push twelve entries through an 8-entry ring.
    let start = u32::MAX - 3;
    let (ring, kernel) = fake_ring(8, start);
    let mut producer = ring.into_producer();
    let mut sent = Vec::new();
    let mut next = 0u64;
    for _ in 0..3 {
        let mut batch = producer.produce(4);
        while batch.push(next) {
            sent.push(next);
            next += 1;
        }
        assert_eq!(batch.commit(), 4);
        assert_eq!(kernel.consume(4), sent[sent.len() - 4..]);
    }
    assert_eq!(kernel.producer(), start.wrapping_add(12));
    assert_eq!(kernel.producer(), 8, "the index wrapped past u32::MAX");
    assert_eq!(producer.free(8), 8);

    let (ring, kernel) = fake_ring(8, start);
    let mut consumer = ring.into_consumer();
    kernel.produce(&[1, 2, 3, 4, 5, 6]);
    assert_eq!(consumer.available(8), 6);
    let got: Vec<u64> = consumer.consume(8).collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(kernel.consumer(), start.wrapping_add(6));
}

#[test]
fn a_full_ring_at_the_wrap_is_not_mistaken_for_empty() {
    let start = u32::MAX - 1;
    let (ring, kernel) = fake_ring(4, start);
    let mut consumer = ring.into_consumer();
    kernel.produce(&[1, 2, 3, 4]);
    assert_eq!(consumer.available(8), 4);
    let (ring, kernel) = fake_ring(4, start);
    let mut producer = ring.into_producer();
    let mut batch = producer.produce(8);
    assert_eq!(batch.capacity(), 4);
    while batch.push(5) {}
    batch.commit();
    assert_eq!(producer.free(1), 0);
    assert_eq!(kernel.consume(8).len(), 4);
}

#[test]
fn need_wakeup_follows_the_flags_word() {
    let (ring, kernel) = fake_ring(4, 0);
    assert!(!ring.needs_wakeup());
    kernel.set_flags(libc::XDP_RING_NEED_WAKEUP);
    assert!(ring.needs_wakeup());
}
