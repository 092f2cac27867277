//! Lays out the exact rules' own hash tables (`offload_common::exact_table`, which says
//! why they exist and how the program reads them). The layout is a pure function of the
//! rules, so a table can be rebuilt whole and compared by its fingerprint.

use std::collections::HashMap;

use serde::Serialize;

use offload_common::{
    ExactKey, ExactKeyV4, RuleRef, address_words,
    exact_table::{
        Bucket, BucketV4, BucketV6, MAX_BUCKETS, SLOTS, Shape, TableKey, bucket_index, hash_v4,
        hash_v6, key_v4, key_v6,
    },
};

/// How the program finds one family's exact rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactMethod {
    /// The family has no exact rules.
    None,
    /// The family's own table, inline.
    Table,
    /// The kernel hash alone: no table written yet (an attachment upgraded from a build
    /// before the tables, until its next rule change).
    KernelHash,
}

/// How one family's exact rules are looked up, for `xdp status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilyExactLookup {
    /// The lookup in use.
    pub method: ExactMethod,
    /// The family's exact rules.
    pub rules: usize,
    /// Buckets in its table (0 without one).
    pub buckets: u32,
    /// Rules found through the kernel hash because their bucket was full.
    pub spilled: usize,
}

impl FamilyExactLookup {
    /// The lookup of a family with `rules` exact rules, laid out as `table`, written when
    /// `shape` says so.
    pub fn of<B>(rules: usize, table: &Table<B>, shape: &Shape) -> FamilyExactLookup {
        let method = match (rules, shape.bank()) {
            (0, _) => ExactMethod::None,
            (_, Some(_)) => ExactMethod::Table,
            (_, None) => ExactMethod::KernelHash,
        };
        let written = shape.bank().is_some();
        FamilyExactLookup {
            method,
            rules,
            buckets: if written { shape.buckets() } else { 0 },
            spilled: if written { table.spilled } else { 0 },
        }
    }

    /// One line for `xdp status`.
    pub fn describe(&self, family: &str) -> String {
        let rules = self.rules;
        match self.method {
            ExactMethod::None => format!("{family} exact rules: none"),
            ExactMethod::Table => {
                let buckets = self.buckets;
                let plural = if buckets == 1 { "" } else { "s" };
                let spilled = match self.spilled {
                    0 => String::new(),
                    n => format!(", {n} in the kernel hash: their bucket was full"),
                };
                format!(
                    "{family} exact rules: {rules} in a table of {buckets} bucket{plural}{spilled}"
                )
            }
            ExactMethod::KernelHash => format!(
                "{family} exact rules: {rules} in the kernel hash (no table yet: the next rule change writes it)"
            ),
        }
    }
}

/// Both families' exact lookups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExactLookup {
    /// IPv4 hosts' rules.
    pub v4: FamilyExactLookup,
    /// IPv6 hosts' rules.
    pub v6: FamilyExactLookup,
}

/// A table laid out: its buckets (a power of two of them) and their fingerprint.
#[derive(Debug)]
pub struct Table<B> {
    /// Bucket `i` is written at the bank's first bucket + `i`.
    pub buckets: Vec<B>,
    /// Kept beside the table's shape (`exact_table::Shape`).
    pub fingerprint: u64,
    /// Keys left to the kernel hash because their bucket was full.
    pub spilled: usize,
}

/// The IPv4 table of the exact rules `rules` (IPv6 hosts' keys are left out).
pub fn layout_v4(rules: &HashMap<ExactKey, RuleRef>) -> Table<BucketV4> {
    let entries = rules.iter().filter_map(|(key, rule)| {
        let narrow = ExactKeyV4::of(key)?;
        Some((key_v4(narrow.addr, narrow.dport, narrow.proto), *rule))
    });
    layout(entries.collect(), |key| hash_v4(*key))
}

/// The IPv6 table of the exact rules `rules` (IPv4 hosts' keys are left out).
pub fn layout_v6(rules: &HashMap<ExactKey, RuleRef>) -> Table<BucketV6> {
    let entries = rules
        .iter()
        .filter(|(key, _)| ExactKeyV4::of(key).is_none())
        .map(|(key, rule)| {
            (
                key_v6(&address_words(&key.addr), key.dport, key.proto),
                *rule,
            )
        });
    layout(entries.collect(), hash_v6)
}

/// Places `entries` by `hash`: one bucket per key rounded up to a power of two (at most
/// `MAX_BUCKETS`), so buckets rarely spill until the table nears `MAX_EXACT` keys. In a
/// bucket, keys go in ascending order; one that had more keys than slots keeps the first
/// `SLOTS - 1` and is marked spilled.
fn layout<K: TableKey + Ord>(
    mut entries: Vec<(K, RuleRef)>,
    hash: fn(&K) -> u64,
) -> Table<Bucket<K>>
where
    Bucket<K>: aya::Pod,
{
    let count = entries.len() as u32;
    let buckets = count.next_power_of_two().clamp(1, MAX_BUCKETS);
    let at = Shape::new(0, buckets, 0).at;
    let bucket_of = |key: &K| bucket_index(at, hash(key));
    entries.sort_unstable_by_key(|(key, _)| (bucket_of(key), *key));
    let mut table = vec![Bucket::<K>::default(); buckets as usize];
    let mut spilled = 0;
    for group in entries.chunk_by(|a, b| bucket_of(&a.0) == bucket_of(&b.0)) {
        let bucket = &mut table[bucket_of(&group[0].0) as usize];
        let kept = if group.len() > SLOTS {
            SLOTS - 1
        } else {
            group.len()
        };
        for (slot, (key, rule)) in group[..kept].iter().enumerate() {
            (bucket.keys[slot], bucket.rules[slot]) = (*key, *rule);
        }
        if kept < group.len() {
            bucket.keys[SLOTS - 1] = K::spilled();
            spilled += group.len() - kept;
        }
    }
    Table {
        fingerprint: fingerprint(&table),
        buckets: table,
        spilled,
    }
}

/// FNV-1a of the table's bytes (its length, so its bucket count, included): stable across
/// builds, unlike std's hasher, since it is kept in a pinned map.
fn fingerprint<T: aya::Pod>(buckets: &[T]) -> u64 {
    // SAFETY: `Pod` values are plain data without padding: every byte is initialised.
    let bytes =
        unsafe { std::slice::from_raw_parts(buckets.as_ptr().cast::<u8>(), size_of_val(buckets)) };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use offload_common::{
        FAMILY_V4, FAMILY_V6,
        exact_table::{EMPTY, Probe},
    };

    use super::*;

    fn rule(id: u32) -> RuleRef {
        RuleRef {
            rule_id: id,
            action: 1,
            _pad: [0; 3],
        }
    }

    fn v4(index: u32) -> ExactKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&(0x0a00_0000 + index).to_be_bytes());
        ExactKey {
            addr,
            dport: 53,
            proto: 17,
            family: FAMILY_V4,
        }
    }

    fn v6(index: u32) -> ExactKey {
        let mut addr = [0x20u8; 16];
        addr[12..].copy_from_slice(&index.to_be_bytes());
        ExactKey {
            addr,
            dport: 443,
            proto: 6,
            family: FAMILY_V6,
        }
    }

    /// What the program does: the key's bucket, its slots, then the kernel hash if the
    /// bucket spilled (`None` here: "ask the kernel hash").
    fn find_v4(table: &Table<BucketV4>, key: &ExactKey) -> Option<Option<RuleRef>> {
        let shape = Shape::new(1, table.buckets.len() as u32, table.fingerprint);
        let narrow = ExactKeyV4::of(key).unwrap();
        let key = key_v4(narrow.addr, narrow.dport, narrow.proto);
        let index = bucket_index(shape.at, hash_v4(key)) - MAX_BUCKETS;
        let bucket = &table.buckets[index as usize];
        match bucket.probe(&key) {
            Probe::Hit(rule) => Some(Some(rule)),
            Probe::Absent => Some(None),
            Probe::AskKernel => None,
        }
    }

    #[test]
    fn every_key_is_in_its_bucket_or_its_bucket_says_spilled() {
        let rules: HashMap<ExactKey, RuleRef> = (0..10_000).map(|i| (v4(i), rule(i))).collect();
        let table = layout_v4(&rules);
        assert_eq!(table.buckets.len(), 16_384);
        let mut in_table = 0;
        for (key, expected) in &rules {
            match find_v4(&table, key) {
                Some(Some(found)) => {
                    assert_eq!(found, *expected);
                    in_table += 1;
                }
                Some(None) => panic!("{key:?} is missing and its bucket did not spill"),
                None => {}
            }
        }
        assert_eq!(in_table + table.spilled, rules.len());
        // At most one key per bucket on average, few buckets overflow.
        assert!(table.spilled < 100, "{} spilled", table.spilled);
        assert!(!matches!(find_v4(&table, &v4(20_000)), Some(Some(_))));
    }

    #[test]
    fn status_lines_say_how_each_family_is_looked_up() {
        let lookup = |method, rules, buckets, spilled| FamilyExactLookup {
            method,
            rules,
            buckets,
            spilled,
        };
        assert_eq!(
            lookup(ExactMethod::Table, 1, 1, 0).describe("IPv4"),
            "IPv4 exact rules: 1 in a table of 1 bucket"
        );
        assert_eq!(
            lookup(ExactMethod::Table, 70_000, 16_384, 9).describe("IPv6"),
            "IPv6 exact rules: 70000 in a table of 16384 buckets, 9 in the kernel hash: their bucket was full"
        );
        assert_eq!(
            lookup(ExactMethod::None, 0, 0, 0).describe("IPv6"),
            "IPv6 exact rules: none"
        );
        assert!(
            lookup(ExactMethod::KernelHash, 3, 0, 0)
                .describe("IPv4")
                .contains("no table yet")
        );
    }

    #[test]
    fn a_full_bucket_keeps_three_keys_and_spills() {
        // Keys that share bucket 0 of a 16-bucket table.
        let mut same: Vec<ExactKey> = Vec::new();
        let mut index = 0;
        while same.len() < 16 {
            let key = v4(index);
            let narrow = ExactKeyV4::of(&key).unwrap();
            let at = Shape::new(0, 16, 0).at;
            if bucket_index(at, hash_v4(key_v4(narrow.addr, narrow.dport, narrow.proto))) == 0 {
                same.push(key);
            }
            index += 1;
        }
        let rules: HashMap<_, _> = same
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, rule(i as u32)))
            .collect();
        let table = layout_v4(&rules);
        assert_eq!(table.buckets.len(), 16);
        let bucket = &table.buckets[0];
        assert!(bucket.keys[SLOTS - 1].is_spilled());
        assert!(bucket.keys[..SLOTS - 1].iter().all(|key| *key != EMPTY));
        assert_eq!(table.spilled, 16 - (SLOTS - 1));
    }

    #[test]
    fn families_go_to_their_own_table_and_the_fingerprint_follows_the_rules() {
        let mut rules: HashMap<ExactKey, RuleRef> = HashMap::new();
        rules.insert(v4(1), rule(1));
        rules.insert(v6(2), rule(2));
        let (four, six) = (layout_v4(&rules), layout_v6(&rules));
        assert_eq!((four.buckets.len(), six.buckets.len()), (1, 1));
        assert_eq!(
            four.buckets[0].keys.iter().filter(|k| **k != EMPTY).count(),
            1
        );
        assert_eq!(
            six.buckets[0].keys.iter().filter(|k| k[2] != EMPTY).count(),
            1
        );
        assert_eq!(layout_v4(&rules).fingerprint, four.fingerprint);
        rules.insert(v4(1), rule(3));
        assert_ne!(layout_v4(&rules).fingerprint, four.fingerprint);
        assert_eq!(layout_v6(&rules).fingerprint, six.fingerprint);
    }
}
