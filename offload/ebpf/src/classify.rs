//! Rule matching. First the exact-match hash (host, port, protocol; IPv4 hosts in a hash
//! of their own, keyed in 8 bytes), then the longest
//! destination prefix in the trie, whose chain holds every rule that covers that prefix,
//! already sorted by priority in user space (offload::rules).

use aya_ebpf::maps::lpm_trie::Key;
use offload_common::{
    ChainEntry, ExactKey, ExactKeyV4, FAMILY_V4, MAX_CHAIN, RuleChain, RuleRef, Settings,
};

use crate::{
    parse::Packet,
    steer::{EXACT_RULES, EXACT_V4, PREFIX_V4, PREFIX_V6},
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
        let dst = [packet.dst[0], packet.dst[1], packet.dst[2], packet.dst[3]];
        PREFIX_V4.get(Key::new(32, dst))?
    } else {
        if settings.prefixes_v6 == 0 {
            return None;
        }
        PREFIX_V6.get(Key::new(128, packet.dst))?
    };
    first_match(chain, packet)
}

/// The exact rule of the packet's destination host, port and protocol: IPv4 hosts in the
/// 8-byte-keyed `EXACT_V4`, IPv6 hosts in `EXACT_RULES`.
#[inline(always)]
fn exact(packet: &Packet) -> Option<RuleRef> {
    // SAFETY (both lookups): the value is copied out at once; user space replaces entries
    // whole.
    if packet.family == FAMILY_V4 {
        let key = ExactKeyV4 {
            addr: [packet.dst[0], packet.dst[1], packet.dst[2], packet.dst[3]],
            dport: packet.dport,
            proto: packet.proto,
            _pad: 0,
        };
        return unsafe { EXACT_V4.get(&key) }.copied();
    }
    let key = ExactKey {
        addr: packet.dst,
        dport: packet.dport,
        proto: packet.proto,
        family: packet.family,
    };
    unsafe { EXACT_RULES.get(&key) }.copied()
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
