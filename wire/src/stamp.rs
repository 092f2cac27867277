//! The generator stamp: 16 bytes the traffic generator writes into the payload of every
//! frame it sends, and sinks read back to count loss and measure latency.
//!
//! Layout, both fields little-endian (the byte order of every host fastpath runs on, and
//! of `bpf_ktime_get_ns` stored as is):
//!
//! ```text
//! 0..8   sequence: the sending thread (or CPU) in the top 8 bits, then its frame count
//! 8..16  sent_ns:  CLOCK_MONOTONIC in nanoseconds when the frame was sent
//! ```
//!
//! This module uses `core` only, so the kernel-side generator (through `offload-common`)
//! writes the same bytes as the user-space one.

/// The stamp's length in bytes.
pub const STAMP_LEN: usize = 16;

/// Where the send time starts within the stamp.
const SENT_NS_AT: usize = 8;

/// How far the sender's number is shifted in [`Stamp::sequence`].
const SENDER_SHIFT: u32 = 56;

/// One frame's stamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The sender (thread or CPU) in the top 8 bits, then that sender's frame count.
    pub sequence: u64,
    /// CLOCK_MONOTONIC in nanoseconds when the frame was sent.
    pub sent_ns: u64,
}

impl Stamp {
    /// The stamp of the `count`-th frame of sender `sender`, sent at `sent_ns`.
    #[inline(always)]
    pub const fn new(sender: u64, count: u64, sent_ns: u64) -> Stamp {
        Stamp {
            sequence: (sender << SENDER_SHIFT) | count,
            sent_ns,
        }
    }

    /// The sender this stamp names (the top 8 bits of the sequence).
    pub const fn sender(&self) -> u64 {
        self.sequence >> SENDER_SHIFT
    }

    /// The sender's frame count (the sequence without the sender).
    pub const fn count(&self) -> u64 {
        self.sequence & ((1 << SENDER_SHIFT) - 1)
    }

    /// The 16 bytes written into a frame.
    #[inline(always)]
    pub const fn to_bytes(&self) -> [u8; STAMP_LEN] {
        let sequence = self.sequence.to_le_bytes();
        let sent_ns = self.sent_ns.to_le_bytes();
        let mut bytes = [0u8; STAMP_LEN];
        let mut i = 0;
        while i < SENT_NS_AT {
            bytes[i] = sequence[i];
            bytes[SENT_NS_AT + i] = sent_ns[i];
            i += 1;
        }
        bytes
    }

    /// The stamp in 16 bytes read from a frame.
    pub const fn from_bytes(bytes: &[u8; STAMP_LEN]) -> Stamp {
        let mut sequence = [0u8; 8];
        let mut sent_ns = [0u8; 8];
        let mut i = 0;
        while i < SENT_NS_AT {
            sequence[i] = bytes[i];
            sent_ns[i] = bytes[SENT_NS_AT + i];
            i += 1;
        }
        Stamp {
            sequence: u64::from_le_bytes(sequence),
            sent_ns: u64::from_le_bytes(sent_ns),
        }
    }

    /// The stamp at `offset` in `frame`, or None when the frame is too short to hold one.
    pub fn read(frame: &[u8], offset: usize) -> Option<Stamp> {
        let end = offset.checked_add(STAMP_LEN)?;
        let bytes: &[u8; STAMP_LEN] = frame.get(offset..end)?.try_into().ok()?;
        Some(Stamp::from_bytes(bytes))
    }

    /// Writes the stamp at `offset` in `frame`; false (and nothing written) when it does
    /// not fit.
    pub fn write(&self, frame: &mut [u8], offset: usize) -> bool {
        let Some(end) = offset.checked_add(STAMP_LEN) else {
            return false;
        };
        match frame.get_mut(offset..end) {
            Some(room) => {
                room.copy_from_slice(&self.to_bytes());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_sequence_then_time_both_little_endian() {
        let stamp = Stamp::new(1, 14, 0x0102_0304_0506_0708);
        let bytes = stamp.to_bytes();
        assert_eq!(bytes[..8], [14, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(bytes[8..], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(Stamp::from_bytes(&bytes), stamp);
        assert_eq!((stamp.sender(), stamp.count()), (1, 14));
    }

    #[test]
    fn read_and_write_check_the_frame_is_long_enough() {
        let stamp = Stamp::new(3, 7, u64::MAX);
        let mut frame = [0u8; 60];
        assert!(stamp.write(&mut frame, 42));
        assert_eq!(Stamp::read(&frame, 42), Some(stamp));
        assert!(!stamp.write(&mut frame, 45), "45 + 16 is past 60");
        assert_eq!(Stamp::read(&frame, 45), None);
        assert_eq!(Stamp::read(&frame, usize::MAX), None);
        assert!(!stamp.write(&mut frame, usize::MAX));
    }

    #[test]
    fn the_sender_takes_the_top_byte() {
        let stamp = Stamp::new(0xff, (1 << 56) - 1, 0);
        assert_eq!(stamp.sequence, u64::MAX);
        assert_eq!(stamp.count(), (1 << 56) - 1);
    }
}
