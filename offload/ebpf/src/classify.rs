//! Rule matching. First the exact-match hash (host, port, protocol; IPv4 hosts in a hash
//! of their own, keyed in 8 bytes), then the longest destination prefix, whose chain holds
//! every rule that covers that prefix, already sorted by priority in user space
//! (offload::rules). The longest prefix comes from one hash per prefix length, probed
//! longest first, while the family's rules use few lengths (tuple-space search), and from
//! the trie otherwise: both hold the same prefixes and chains.

use aya_ebpf::maps::{Array, lpm_trie::Key};
use offload_common::{
    ChainEntry, ExactKey, ExactKeyV4, FAMILY_V4, MAX_CHAIN, MAX_PREFIX_LENGTHS, PrefixKeyV4,
    PrefixKeyV6, PrefixLengths, RuleChain, RuleRef, Settings, address_bytes,
    exact_table::{self, Bucket, Probe, TableKey},
    prefix_lengths,
};

use crate::{
    parse::Packet,
    steer::{
        EXACT_RULES, EXACT_TABLE_V4, EXACT_TABLE_V6, EXACT_TABLES, EXACT_V4, PREFIX_HASH_V4,
        PREFIX_HASH_V6, PREFIX_LENGTHS, PREFIX_V4, PREFIX_V6,
    },
};

#[inline(always)]
pub fn classify(packet: &Packet, settings: &Settings) -> Option<RuleRef> {
    if packet.has_ports
        && settings.exact_rules != 0
        && let Some(rule) = exact(packet)
    {
        return Some(rule);
    }
    let chain = if packet.family == FAMILY_V4 {
        if settings.prefixes_v4 == 0 {
            return None;
        }
        match longest_hashed_v4(packet.dst[0]) {
            Hashed::Found(chain) => chain,
            Hashed::NoPrefix => return None,
            Hashed::NotHashed => PREFIX_V4.get(Key::new(32, packet.dst[0].to_ne_bytes()))?,
        }
    } else {
        if settings.prefixes_v6 == 0 {
            return None;
        }
        match longest_hashed_v6(&packet.dst) {
            Hashed::Found(chain) => chain,
            Hashed::NoPrefix => return None,
            Hashed::NotHashed => PREFIX_V6.get(Key::new(128, address_bytes(packet.dst)))?,
        }
    };
    first_match(chain, packet)
}

/// What the per-length prefix hashes say about a destination.
enum Hashed {
    /// The chain of the longest prefix covering it.
    Found(&'static RuleChain),
    /// No prefix covers it.
    NoPrefix,
    /// The family's prefixes are not in hashes: look in the trie.
    NotHashed,
}

/// The family's lengths, longest first, or None when the trie is to be used.
#[inline(always)]
fn lengths(family_slot: u32) -> Option<&'static PrefixLengths> {
    let lengths = PREFIX_LENGTHS.get(family_slot)?;
    (lengths.count != 0).then_some(lengths)
}

#[inline(always)]
fn longest_hashed_v4(addr: u32) -> Hashed {
    let Some(table) = lengths(prefix_lengths::V4) else {
        return Hashed::NotHashed;
    };
    if addr & table.cover_mask[0] != table.cover[0] {
        return Hashed::NoPrefix;
    }
    let count = table.count as usize;
    for index in 0..MAX_PREFIX_LENGTHS {
        if index >= count {
            break;
        }
        let key = PrefixKeyV4 {
            len: table.lengths[index],
            addr: (addr & table.masks[index][0]).to_ne_bytes(),
        };
        // SAFETY: the chain is read while the program runs (RCU keeps it); user space
        // replaces entries whole.
        if let Some(chain) = unsafe { PREFIX_HASH_V4.get(&key) } {
            return Hashed::Found(chain);
        }
    }
    Hashed::NoPrefix
}

#[inline(always)]
fn longest_hashed_v6(words: &[u32; 4]) -> Hashed {
    let Some(table) = lengths(prefix_lengths::V6) else {
        return Hashed::NotHashed;
    };
    if (0..4).any(|index| words[index] & table.cover_mask[index] != table.cover[index]) {
        return Hashed::NoPrefix;
    }
    let count = table.count as usize;
    for index in 0..MAX_PREFIX_LENGTHS {
        if index >= count {
            break;
        }
        let mask = &table.masks[index];
        let key = PrefixKeyV6 {
            len: table.lengths[index],
            addr: address_bytes(core::array::from_fn(|word| words[word] & mask[word])),
        };
        // SAFETY: as in `longest_hashed_v4`.
        if let Some(chain) = unsafe { PREFIX_HASH_V6.get(&key) } {
            return Hashed::Found(chain);
        }
    }
    Hashed::NoPrefix
}

/// The exact rule of the packet's destination host, port and protocol: from the family's
/// own table, inline, or from the kernel hash (IPv4 hosts' `EXACT_V4`, IPv6 hosts'
/// `EXACT_RULES`) when the key's bucket spilled or no table is written yet.
#[inline(always)]
fn exact(packet: &Packet) -> Option<RuleRef> {
    // SAFETY (the kernel hash look-ups): the value is copied out at once; user space
    // replaces entries whole. A table's bank is not written while it can be read.
    if packet.family == FAMILY_V4 {
        let addr = packet.dst[0].to_ne_bytes();
        let key = exact_table::key_v4(addr, packet.dport, packet.proto);
        let at = table_at(exact_table::family::V4);
        match probe(&EXACT_TABLE_V4, at, exact_table::hash_v4(key), &key) {
            Probe::Hit(rule) => return Some(rule),
            Probe::Absent => return None,
            Probe::AskKernel => {}
        }
        let key = ExactKeyV4 {
            addr,
            dport: packet.dport,
            proto: packet.proto,
            _pad: 0,
        };
        return unsafe { EXACT_V4.get(&key) }.copied();
    }
    let key = exact_table::key_v6(&packet.dst, packet.dport, packet.proto);
    let at = table_at(exact_table::family::V6);
    match probe(&EXACT_TABLE_V6, at, exact_table::hash_v6(&key), &key) {
        Probe::Hit(rule) => return Some(rule),
        Probe::Absent => return None,
        Probe::AskKernel => {}
    }
    let key = ExactKey {
        addr: address_bytes(packet.dst),
        dport: packet.dport,
        proto: packet.proto,
        family: packet.family,
    };
    unsafe { EXACT_RULES.get(&key) }.copied()
}

/// What the table `at` describes says about `key` (whose hash is `hash`): ask the kernel
/// hash when no table is written.
#[inline(always)]
fn probe<K: TableKey>(table: &Array<Bucket<K>>, at: u32, hash: u64, key: &K) -> Probe {
    if at & exact_table::VALID == 0 {
        return Probe::AskKernel;
    }
    match table.get(exact_table::bucket_index(at, hash)) {
        Some(bucket) => bucket.probe(key),
        None => Probe::AskKernel,
    }
}

/// The family's `exact_table::Shape::at`: 0 (no table) if the slot cannot be read.
#[inline(always)]
fn table_at(family: u32) -> u32 {
    EXACT_TABLES.get(family).map_or(0, |shape| shape.at)
}

#[inline(always)]
fn first_match(chain: &RuleChain, packet: &Packet) -> Option<RuleRef> {
    let len = chain.len as usize;
    for index in 0..MAX_CHAIN {
        if index >= len {
            break;
        }
        let entry = &chain.entries[index];
        if entry_matches(entry, packet) {
            return Some(RuleRef {
                rule_id: entry.rule_id,
                action: entry.action,
                _pad: [0; 3],
            });
        }
    }
    None
}

#[inline(always)]
fn entry_matches(entry: &ChainEntry, packet: &Packet) -> bool {
    if entry.proto != 0 && entry.proto != packet.proto {
        return false;
    }
    if entry.has_ports != 0
        && !(packet.has_ports && entry.dport_lo <= packet.dport && packet.dport <= entry.dport_hi)
    {
        return false;
    }
    (packet.src[0] & entry.src_mask[0]) == entry.src_addr[0]
        && (packet.src[1] & entry.src_mask[1]) == entry.src_addr[1]
        && (packet.src[2] & entry.src_mask[2]) == entry.src_addr[2]
        && (packet.src[3] & entry.src_mask[3]) == entry.src_addr[3]
}
