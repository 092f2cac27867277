//! The exact rules' own hash tables, which the steering program reads with inline array
//! look-ups. A kernel hash map look-up is a call that hashes the key (jhash) and walks a
//! bucket list: measured at about 16 ns of the 40 ns an exact match took, against about 1 ns
//! for an array element the verifier inlines.
//!
//! Each family's table is an array of buckets of [`SLOTS`] keys, the bucket picked by a
//! multiplicative hash of the key. User space lays the whole table out (`offload::rules::
//! exact_table`) and writes it into the idle one of two banks, after a grace period that
//! guarantees no program still reads that bank, then switches `EXACT_TABLES` to it with one
//! 4-byte write: a program sees one whole table, never one being written. A bucket with more
//! keys than slots keeps [`SLOTS`]` - 1` of them and marks its last key [`SPILLED`]: the
//! other keys are found in the kernel hash (`EXACT_V4`, `EXACT_RULES`), which always holds
//! every exact rule. Until a table is written (`at` without [`VALID`]: an attachment made
//! by a build before these maps) the program asks the kernel hash.

use crate::RuleRef;

/// Keys per bucket: four IPv4 keys and their rules fill one 64-byte cache line.
pub const SLOTS: usize = 4;
/// Buckets per bank (a power of two): `MAX_EXACT` keys at four per bucket.
pub const MAX_BUCKETS: u32 = crate::MAX_EXACT / SLOTS as u32;
/// Two banks: the one the program reads and the one user space writes.
pub const BANKS: u32 = 2;
/// An unused slot's key. A real key carries [`KEY_MARK`] in its top byte, so none is 0.
pub const EMPTY: u64 = 0;
/// The last key of a bucket that had more keys than slots: look in the kernel hash too.
pub const SPILLED: u64 = u64::MAX;
/// The top byte of every real key (and of an IPv6 key's last word).
const KEY_MARK: u64 = 1 << 56;

/// `at` bits: log2 of the bucket count.
const LOG2: u32 = 0x1f;
/// `at` bit: a table is written. Without it the program uses the kernel hash alone.
pub const VALID: u32 = 1 << 31;

/// Slots of `EXACT_TABLES`: one [`Shape`] per family.
pub mod family {
    /// The IPv4 table's slot.
    pub const V4: u32 = 0;
    /// The IPv6 table's slot.
    pub const V6: u32 = 1;
    /// Slots in all.
    pub const SLOTS: u32 = 2;
}

/// Where a family's table is: the bank and the bucket count, in the one word the program
/// reads, and what user space needs to know whether it is up to date.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// [`VALID`] | the bank's first bucket (0 or [`MAX_BUCKETS`]) | log2 of the bucket
    /// count (at most 14); 0 when no table is written.
    pub at: u32,
    /// Zero padding.
    pub _pad: u32,
    /// FNV-1a of the written table, so an unchanged table is not written again (and a
    /// change interrupted before its switch is redone).
    pub fingerprint: u64,
}

impl Shape {
    /// The shape of a table of `buckets` (a power of two, at most [`MAX_BUCKETS`]) in
    /// `bank`.
    pub fn new(bank: u32, buckets: u32, fingerprint: u64) -> Shape {
        Shape {
            at: VALID | (bank * MAX_BUCKETS) | buckets.trailing_zeros(),
            _pad: 0,
            fingerprint,
        }
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        1 << (self.at & LOG2)
    }

    /// The bank the program reads, when a table is written.
    pub fn bank(&self) -> Option<u32> {
        (self.at & VALID != 0).then_some(u32::from(self.at & MAX_BUCKETS != 0))
    }
}

/// The array index of the bucket `hash` falls in, in the table `at` describes: the hash's
/// top bits, the ones every bit of the key reaches (a multiplicative hash's low bits see
/// only the key's low bits). Shifted in two steps so that a table of one bucket (log2 0)
/// shifts by 63, not 64.
#[inline(always)]
pub fn bucket_index(at: u32, hash: u64) -> u32 {
    let log2 = u64::from(at & LOG2);
    (at & MAX_BUCKETS) | ((hash >> 1) >> (63 - log2)) as u32
}

/// A bucket: [`SLOTS`] keys ([`EMPTY`], or last the spilled mark) and each key's rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket<K> {
    /// The keys: [`key_v4`]s or [`key_v6`]s.
    pub keys: [K; SLOTS],
    /// The rule of the key in the same slot.
    pub rules: [RuleRef; SLOTS],
}

/// An IPv4 table bucket: 64 bytes, one cache line.
pub type BucketV4 = Bucket<u64>;
/// An IPv6 table bucket: 128 bytes.
pub type BucketV6 = Bucket<KeyV6>;

/// A table's key: how a spilled bucket's last key reads.
pub trait TableKey: Copy + PartialEq + Default {
    /// The last key of a spilled bucket.
    fn spilled() -> Self;
    /// Whether this is [`TableKey::spilled`].
    fn is_spilled(&self) -> bool;
    /// Whether two keys are equal. Not `==`: on an array, that is a call to a byte-wise
    /// `memcmp` in the BPF build (exact6 34 -> 29 ns at 10,000 rules).
    fn same(&self, other: &Self) -> bool;
}

impl TableKey for u64 {
    fn spilled() -> u64 {
        SPILLED
    }
    #[inline(always)]
    fn is_spilled(&self) -> bool {
        *self == SPILLED
    }
    #[inline(always)]
    fn same(&self, other: &u64) -> bool {
        self == other
    }
}

impl TableKey for KeyV6 {
    fn spilled() -> KeyV6 {
        [0, 0, SPILLED]
    }
    #[inline(always)]
    fn is_spilled(&self) -> bool {
        self[2] == SPILLED
    }
    #[inline(always)]
    fn same(&self, other: &KeyV6) -> bool {
        (self[0] ^ other[0]) | (self[1] ^ other[1]) | (self[2] ^ other[2]) == 0
    }
}

/// What a key's bucket says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// The key's rule.
    Hit(RuleRef),
    /// No rule has this key.
    Absent,
    /// The bucket spilled: the kernel hash knows.
    AskKernel,
}

impl<K: TableKey> Bucket<K> {
    /// What this bucket (the one `key` hashes to) says about `key`.
    #[inline(always)]
    pub fn probe(&self, key: &K) -> Probe {
        for slot in 0..SLOTS {
            if self.keys[slot].same(key) {
                return Probe::Hit(self.rules[slot]);
            }
        }
        if self.keys[SLOTS - 1].is_spilled() {
            return Probe::AskKernel;
        }
        Probe::Absent
    }
}

/// An IPv6 key: the address's two halves, then port, protocol and [`KEY_MARK`].
pub type KeyV6 = [u64; 3];

/// The IPv4 key of a destination address (network byte order), port and protocol.
#[inline(always)]
pub fn key_v4(addr: [u8; 4], dport: u16, proto: u8) -> u64 {
    u64::from(u32::from_ne_bytes(addr)) | u64::from(dport) << 32 | u64::from(proto) << 48 | KEY_MARK
}

/// The IPv6 key of a destination address (as [`crate::address_words`]), port and protocol.
/// From words, as the program holds the address: built from its bytes, the key took a shift
/// and an or per byte.
#[inline(always)]
pub fn key_v6(addr: &[u32; 4], dport: u16, proto: u8) -> KeyV6 {
    [
        u64::from(addr[0]) | u64::from(addr[1]) << 32,
        u64::from(addr[2]) | u64::from(addr[3]) << 32,
        u64::from(dport) | u64::from(proto) << 16 | KEY_MARK,
    ]
}

// Odd multipliers (the golden ratio and splitmix64's).
const MIX: [u64; 4] = [
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xff51_afd7_ed55_8ccd,
];

/// The hash of an IPv4 key (its bucket is `bucket_index(at, hash)`).
#[inline(always)]
pub fn hash_v4(key: u64) -> u64 {
    finish(key.wrapping_mul(MIX[0]))
}

/// The hash of an IPv6 key.
#[inline(always)]
pub fn hash_v6(key: &KeyV6) -> u64 {
    finish(key[0].wrapping_mul(MIX[0]) ^ key[1].wrapping_mul(MIX[1]) ^ key[2].wrapping_mul(MIX[2]))
}

/// A second round, so that the top bits depend on every bit of the key. One product's
/// top bits see its low bits only through a multiplier shifted up, which spreads keys
/// that differ only in their upper bytes (an address in network order) badly.
#[inline(always)]
fn finish(mixed: u64) -> u64 {
    (mixed ^ (mixed >> 32)).wrapping_mul(MIX[3])
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data without padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::Shape {}
    unsafe impl aya::Pod for super::BucketV4 {}
    unsafe impl aya::Pod for super::BucketV6 {}
}
