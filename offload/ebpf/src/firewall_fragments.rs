//! Fragments: only a datagram's first fragment carries its ports, so the firewall decides
//! on the first and remembers the decision for the rest (an LRU hash keyed by the
//! datagram's addresses, protocol and IP identification, per interface). A later fragment
//! takes its first fragment's verdict and is counted on the same rule; one that arrives
//! before its first fragment (reordered, or its first was lost) is dropped and counted
//! (`ct_counter::ORPHAN_FRAGMENT`): with no ports, no port rule could judge it.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use fastpath_module::ModuleContext;
use offload_common::firewall::{FRAGMENT_ENTRIES, FragmentKey, FragmentVerdict};

use crate::{conntrack::Bounds, parse};

#[map]
static FW_FRAGMENTS: LruHashMap<FragmentKey, FragmentVerdict> =
    LruHashMap::with_max_entries(FRAGMENT_ENTRIES, 0);
/// Per-CPU room for the datagram's key: the stack has none to spare.
#[map]
static FW_FRAGMENT_KEY: PerCpuArray<FragmentKey> = PerCpuArray::with_max_entries(1, 0);

/// What [`recall`] returns for a datagram whose first fragment was not seen.
pub const UNKNOWN: u64 = u64::MAX;

/// The key of the fragment's datagram, written in the per-CPU slot: the identification
/// comes from parsing the packet again (the chain's context does not carry it; IPv6 keeps
/// it in an extension header), which only fragments pay for.
#[inline(always)]
fn key_of(data: usize, data_end: usize, context: &ModuleContext) -> Option<*mut FragmentKey> {
    let packet = parse::parse(&Bounds { data, data_end }).ok().flatten()?;
    let key = FW_FRAGMENT_KEY.get_ptr_mut(0)?;
    // SAFETY: a per-CPU scratch slot; the program runs with migration disabled.
    let slot = unsafe { &mut *key };
    slot.src = context.src_addr;
    slot.dst = context.dst_addr;
    slot.id = packet.fragment_id;
    slot.proto = context.protocol;
    slot.family = context.ip_version;
    slot._pad = [0; 2];
    Some(key)
}

/// Remembers what the first fragment of a datagram carried and was decided: `decision`
/// is the deciding rule's counter slot (bank included) << 8 | the verdict the later
/// fragments get.
#[inline(never)]
pub fn remember(data: usize, data_end: usize, context: &ModuleContext, decision: u32) {
    let Some(key) = key_of(data, data_end, context) else {
        return;
    };
    let value = FragmentVerdict {
        src_port: context.src_port,
        dst_port: context.dst_port,
        counter: decision >> 8,
        verdict: decision as u8,
        _pad: [0; 7],
    };
    // SAFETY: the slot `key_of` filled.
    let _ = FW_FRAGMENTS.insert(unsafe { &*key }, &value, 0);
}

/// A later fragment's datagram's decision: counter << 8 | verdict, or [`UNKNOWN`].
#[inline(never)]
pub fn recall(data: usize, data_end: usize, context: &ModuleContext) -> u64 {
    let Some(key) = key_of(data, data_end, context) else {
        return UNKNOWN;
    };
    // SAFETY: the slot `key_of` filled; the value is read at once.
    match unsafe { FW_FRAGMENTS.get(&*key) } {
        Some(found) => u64::from(found.counter) << 8 | u64::from(found.verdict),
        None => UNKNOWN,
    }
}
