//! Both ends of one ring in user space, for timing the ring code without a kernel.
//!
//! A socket's fill and TX rings run the producer half of `Ring`, its RX and completion rings
//! the consumer half; the kernel plays the other end. `RingLoop` puts the producer half and
//! the consumer half on one block of heap memory laid out like the kernel's mapping, so a
//! benchmark can push descriptors through the same code a socket runs, index caching and
//! memory ordering included. Built only with the `bench-rings` feature.

use crate::ring::{HEAP_LAYOUT, HeapBlock, Ring};

/// One ring of `T` (`u64` addresses like the fill and completion rings, or
/// `libc::xdp_desc` like RX and TX) with a producer end and a consumer end.
pub struct RingLoop<T: Copy> {
    producer: Ring<T>,
    consumer: Ring<T>,
}

impl<T: Copy> RingLoop<T> {
    /// A ring of `size` entries; `size` must be a power of two.
    pub fn new(size: u32) -> RingLoop<T> {
        assert!(
            size.is_power_of_two(),
            "ring size {size} is not a power of two"
        );
        let block = HeapBlock::for_ring::<T>(HEAP_LAYOUT, size);
        RingLoop {
            producer: Ring::on_heap(&block, HEAP_LAYOUT, size).into_producer(),
            consumer: Ring::on_heap(&block, HEAP_LAYOUT, size).into_consumer(),
        }
    }

    /// Reserves room, writes values until the room or `values` runs out, and commits, as
    /// `Socket::fill` and `TxBatch` do. Returns how many went in.
    pub fn produce(&mut self, wanted: u32, values: impl IntoIterator<Item = T>) -> u32 {
        let mut batch = self.producer.produce(wanted);
        for value in values {
            if !batch.push(value) {
                break;
            }
        }
        batch.commit()
    }

    /// Takes up to `max` entries and releases them, as `Socket::receive` and
    /// `Socket::complete` do. Returns how many were taken.
    pub fn consume(&mut self, max: u32, mut each: impl FnMut(T)) -> u32 {
        let mut taken = 0;
        for value in self.consumer.consume(max) {
            each(value);
            taken += 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_out_in_order_and_a_full_ring_refuses_more() {
        let mut ring = RingLoop::<u64>::new(8);
        assert_eq!(ring.produce(8, 0..100), 8, "only the ring's size fits");
        assert_eq!(ring.produce(8, 100..200), 0, "a full ring takes nothing");
        let mut seen = Vec::new();
        assert_eq!(ring.consume(5, |value| seen.push(value)), 5);
        assert_eq!(ring.produce(8, 8..100), 5, "released slots are free again");
        assert_eq!(ring.consume(64, |value| seen.push(value)), 8);
        assert_eq!(seen, (0..13).collect::<Vec<u64>>());
        assert_eq!(ring.consume(64, |_| ()), 0, "an empty ring gives nothing");
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn a_size_that_is_not_a_power_of_two_is_refused() {
        RingLoop::<u64>::new(100);
    }
}
