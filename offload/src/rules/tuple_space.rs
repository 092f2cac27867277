//! Tuple-space search for the destination prefixes: while one family's prefix rules use at
//! most [`MAX_PREFIX_LENGTHS`] distinct lengths, its prefixes are also written into a hash
//! keyed by (length, masked address), and the program probes one length after another,
//! longest first. The first hit is the prefix the trie would return (the longest one
//! covering the address), and its chain is the same, so the rule is the same. With more
//! lengths the family stays on the trie alone, and status says so. So does a family of
//! fewer than [`MIN_HASHED_PREFIXES`] prefixes: a trie that small is a node or two deep,
//! and a walk down it costs less than a hash probe (docs/performance.md).

use std::collections::HashMap;

use offload_common::{MAX_PREFIX_LENGTHS, PrefixKeyV4, PrefixKeyV6, PrefixLengths, RuleChain};
use serde::Serialize;

/// Prefixes a family needs before its lookups go to the hashes. Measured with /24 rules:
/// the trie was 3 to 5 ns faster at 1 prefix, level at 4, and slower from 8 on.
pub const MIN_HASHED_PREFIXES: usize = 8;

/// How the program finds one family's longest destination prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixMethod {
    /// The family has no prefix rules: no lookup.
    None,
    /// One hash probe per length, longest first.
    Hashes,
    /// The LPM trie: more than [`MAX_PREFIX_LENGTHS`] lengths, fewer than
    /// [`MIN_HASHED_PREFIXES`] prefixes, or the hashes are not filled yet (a program just
    /// upgraded from a build without them).
    Trie,
}

/// How one family's prefixes are looked up, and their distinct lengths, longest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilyLookup {
    /// The lookup in use.
    pub method: PrefixMethod,
    /// The distinct prefix lengths of the family's rules, longest first.
    pub lengths: Vec<u32>,
    /// The family's destination prefixes (trie entries).
    pub prefixes: usize,
}

impl FamilyLookup {
    /// The lookup the program uses for `prefixes` prefixes of these lengths, given what
    /// the lengths table says (`hashed`: its count is not 0).
    pub fn of(lengths: Vec<u32>, prefixes: usize, hashed: bool) -> FamilyLookup {
        let method = match (lengths.is_empty(), hashed) {
            (true, _) => PrefixMethod::None,
            (false, true) => PrefixMethod::Hashes,
            (false, false) => PrefixMethod::Trie,
        };
        FamilyLookup {
            method,
            lengths,
            prefixes,
        }
    }

    /// On the trie because the prefixes use more lengths than the hashes take: the
    /// fall-back that costs time at scale, which `xdp rule add` reports.
    pub fn fell_back(&self) -> bool {
        self.method == PrefixMethod::Trie && self.lengths.len() > MAX_PREFIX_LENGTHS
    }

    /// A line for people: which lookup, and why the trie when it is the trie.
    pub fn describe(&self, family: &str) -> String {
        let lengths = self
            .lengths
            .iter()
            .map(|len| format!("/{len}"))
            .collect::<Vec<_>>()
            .join(" ");
        match self.method {
            PrefixMethod::None => format!("{family} prefixes: none"),
            PrefixMethod::Hashes => format!("{family} prefixes: a hash per length ({lengths})"),
            PrefixMethod::Trie if self.fell_back() => format!(
                "{family} prefixes: LPM trie ({} distinct lengths, more than the {} the \
                 per-length hashes take)",
                self.lengths.len(),
                MAX_PREFIX_LENGTHS
            ),
            PrefixMethod::Trie if self.prefixes < MIN_HASHED_PREFIXES => format!(
                "{family} prefixes: LPM trie ({} prefixes; below {} a trie is faster than \
                 the per-length hashes)",
                self.prefixes, MIN_HASHED_PREFIXES
            ),
            PrefixMethod::Trie => format!(
                "{family} prefixes: LPM trie (per-length hashes not filled; the next rule \
                 change fills them)"
            ),
        }
    }
}

/// The prefix lookups of both families, as `fastpath xdp status` reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefixLookup {
    /// IPv4 destination prefixes.
    pub v4: FamilyLookup,
    /// IPv6 destination prefixes.
    pub v6: FamilyLookup,
}

/// The distinct lengths among `prefixes`' keys, longest first.
pub fn distinct_lengths<A>(prefixes: &HashMap<(u32, A), RuleChain>) -> Vec<u32> {
    let mut lengths: Vec<u32> = prefixes.keys().map(|(len, _)| *len).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    lengths.dedup();
    lengths
}

/// Whether `prefixes` (one family's) go to the hashes: enough of them, few enough lengths.
fn hashes_pay<A>(prefixes: &HashMap<(u32, A), RuleChain>) -> bool {
    prefixes.len() >= MIN_HASHED_PREFIXES && distinct_lengths(prefixes).len() <= MAX_PREFIX_LENGTHS
}

/// The `PREFIX_HASH_V4` entries for `prefixes` (the trie's), or none when they are too few
/// or use too many lengths.
pub fn hashed_v4(prefixes: &HashMap<(u32, [u8; 4]), RuleChain>) -> HashMap<PrefixKeyV4, RuleChain> {
    if !hashes_pay(prefixes) {
        return HashMap::new();
    }
    prefixes
        .iter()
        .map(|((len, addr), chain)| {
            (
                PrefixKeyV4 {
                    len: *len,
                    addr: *addr,
                },
                *chain,
            )
        })
        .collect()
}

/// The `PREFIX_HASH_V6` entries for `prefixes`; see [`hashed_v4`].
pub fn hashed_v6(
    prefixes: &HashMap<(u32, [u8; 16]), RuleChain>,
) -> HashMap<PrefixKeyV6, RuleChain> {
    if !hashes_pay(prefixes) {
        return HashMap::new();
    }
    prefixes
        .iter()
        .map(|((len, addr), chain)| {
            (
                PrefixKeyV6 {
                    len: *len,
                    addr: *addr,
                },
                *chain,
            )
        })
        .collect()
}

/// The lengths table entry for `prefixes` (the trie's, all to be hashed): their lengths,
/// longest first (at most [`MAX_PREFIX_LENGTHS`]), and the prefix covering them all. Count
/// 0, the trie, when `prefixes` is empty.
pub fn table<A: AsRef<[u8]>>(prefixes: &HashMap<(u32, A), RuleChain>) -> PrefixLengths {
    let mut table = PrefixLengths::default();
    for (index, len) in distinct_lengths(prefixes)
        .iter()
        .take(MAX_PREFIX_LENGTHS)
        .enumerate()
    {
        table.lengths[index] = *len;
        table.masks[index] = mask_words(*len);
        table.count += 1;
    }
    let (cover_len, cover) = cover(prefixes.keys().map(|(len, addr)| (*len, addr.as_ref())));
    table.cover_mask = mask_words(cover_len);
    table.cover = words(cover & mask(cover_len));
    table
}

/// The longest prefix holding every one of `prefixes` (length, address bytes in network
/// order): no longer than the shortest of them, nor than the bits all their addresses
/// share. Any address one of them covers is inside it.
fn cover<'a>(prefixes: impl Iterator<Item = (u32, &'a [u8])>) -> (u32, u128) {
    let mut cover: Option<(u32, u128)> = None;
    for (len, bytes) in prefixes {
        let addr = widened(bytes);
        cover = Some(match cover {
            None => (len, addr),
            Some((cover_len, cover_addr)) => {
                let shared = (cover_addr ^ addr).leading_zeros();
                (cover_len.min(len).min(shared), cover_addr)
            }
        });
    }
    cover.unwrap_or((0, 0))
}

/// An address of 4 or 16 bytes in network order as the top bits of a u128.
fn widened(bytes: &[u8]) -> u128 {
    let mut full = [0u8; 16];
    full[..bytes.len().min(16)].copy_from_slice(&bytes[..bytes.len().min(16)]);
    u128::from_be_bytes(full)
}

fn mask(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0)
}

/// The netmask of a prefix of `len` bits as four words of network-order bytes, the layout
/// the program ANDs an address with.
fn mask_words(len: u32) -> [u32; 4] {
    words(mask(len))
}

/// A u128 (an address or mask, top bits first) as four words of network-order bytes.
fn words(value: u128) -> [u32; 4] {
    offload_common::address_words(&value.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_prefix_bits_in_network_order() {
        let word = |bytes: [u8; 4]| u32::from_ne_bytes(bytes);
        assert_eq!(mask_words(0), [0; 4]);
        assert_eq!(mask_words(24)[0], word([255, 255, 255, 0]));
        assert_eq!(mask_words(24)[1], 0);
        assert_eq!(mask_words(33), [u32::MAX, word([128, 0, 0, 0]), 0, 0]);
        assert_eq!(mask_words(128), [u32::MAX; 4]);
    }

    #[test]
    fn the_cover_is_the_longest_prefix_holding_them_all() {
        let v4 = |a: [u8; 4]| a;
        // Two /24s that share 21 bits: 10.0.0.0/24 and 10.0.7.0/24 lie in 10.0.0.0/21.
        let pairs = [(24, v4([10, 0, 0, 0])), (24, v4([10, 0, 7, 0]))];
        let (len, addr) = cover(pairs.iter().map(|(len, addr)| (*len, &addr[..])));
        assert_eq!(len, 21);
        assert_eq!(addr & mask(len), widened(&[10, 0, 0, 0]));
        // A /0 among them covers everything.
        let pairs = [(24, v4([10, 0, 0, 0])), (0, v4([0; 4]))];
        assert_eq!(
            cover(pairs.iter().map(|(len, addr)| (*len, &addr[..]))).0,
            0
        );
        // One prefix is its own cover.
        let pairs = [(16, v4([192, 168, 0, 0]))];
        assert_eq!(
            cover(pairs.iter().map(|(len, addr)| (*len, &addr[..]))).0,
            16
        );
    }

    #[test]
    fn lengths_are_listed_longest_first_and_too_many_stay_in_the_trie() {
        let chain = RuleChain::default();
        let mut prefixes: HashMap<(u32, [u8; 4]), RuleChain> = HashMap::new();
        for len in [8, 24, 16, 24] {
            prefixes.insert((len, [10, 0, len as u8, 0]), chain);
        }
        assert_eq!(distinct_lengths(&prefixes), vec![24, 16, 8]);
        assert!(
            hashed_v4(&prefixes).is_empty(),
            "three prefixes stay in the trie"
        );
        for third in 100..100 + MIN_HASHED_PREFIXES as u8 {
            prefixes.insert((24, [10, 0, third, 0]), chain);
        }
        let table = table(&prefixes);
        assert_eq!(table.count, 3);
        assert_eq!(table.lengths[..3], [24, 16, 8]);
        // 10.0.8.0/8, 10.0.16.0/16 and the /24s under 10.0 all lie in 10.0.0.0/8.
        assert_eq!(table.cover_mask, mask_words(8));
        assert_eq!(table.cover[0], u32::from_ne_bytes([10, 0, 0, 0]));
        assert_eq!(hashed_v4(&prefixes).len(), prefixes.len());
        for len in 0..=MAX_PREFIX_LENGTHS as u32 {
            prefixes.insert((len, [0; 4]), chain);
        }
        assert!(distinct_lengths(&prefixes).len() > MAX_PREFIX_LENGTHS);
        assert!(hashed_v4(&prefixes).is_empty());
    }
}
