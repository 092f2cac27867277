//! The `vxlan-trace` module's body, one implementation for every hook it is built for
//! (XDP in both frags flavours, TC): counts tunnel traffic per pair of outer and inner
//! endpoints, and always continues down the chain. It never drops, changes or delays a
//! packet.
//!
//! The outer headers come from the chain's context (the entry's parse); the tunnel header
//! is read here; the inner frame goes through the same parse as the outer one
//! (`parse::parse_at`). The maps' layouts are `offload_common::vxlan_trace`.

use core::cmp::Ordering;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, LruPerCpuHashMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use fastpath_module::{Hook, Module, ModuleContext, parse as parse_outcome};
use offload_common::{
    fragment, proto,
    vxlan_trace::{
        GENEVE_PROTO_ETHERNET, LastPair, MAX_TUNNEL_PORTS, PAIRS_MAX_ENTRIES, PairKey, PairStats,
        TUNNEL_HLEN, TraceSettings, VXLAN_FLAG_VNI, counter, granularity, kind,
    },
};

use crate::parse::{self, Frame, Malformed, be16, read};

#[map]
static TRACE_PAIRS: LruPerCpuHashMap<PairKey, PairStats> =
    LruPerCpuHashMap::with_max_entries(PAIRS_MAX_ENTRIES, 0);
#[map]
static TRACE_LAST: PerCpuArray<LastPair> = PerCpuArray::with_max_entries(1, 0);
#[map]
static TRACE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
#[map]
static TRACE_SETTINGS: Array<TraceSettings> = Array::with_max_entries(1, 0);

/// Bytes of a UDP header.
const UDP_HLEN: usize = 8;
/// The furthest an inner frame may start. Real headers end far before; the bound keeps the
/// inner parse's offsets visibly small for the verifier.
const MAX_INNER_START: usize = 0x3ff;

/// How many wire packets the hook's packet stands for.
pub trait Segments {
    /// 1 for an XDP frame; for a socket buffer at a TC hook, its GSO segments (a TCP
    /// burst through the tunnel reaches TC egress as one buffer the device, or the kernel
    /// after TC, cuts into many packets).
    fn segments(&self) -> u64;
}

impl Segments for XdpContext {
    #[inline(always)]
    fn segments(&self) -> u64 {
        1
    }
}

impl Segments for TcContext {
    #[inline(always)]
    fn segments(&self) -> u64 {
        // SAFETY: the kernel's __sk_buff, valid for the program's run.
        let segments = unsafe { (*self.skb.skb).gso_segs };
        u64::from(segments.max(1))
    }
}

/// The module's program body: count, then continue.
#[inline(always)]
pub fn run<C: Hook + Frame + Segments>(ctx: C) -> C::Action {
    let Some(module) = Module::new(ctx) else {
        return C::CHAIN_END;
    };
    let slot = trace(module.hook_context(), module.context());
    if let Some(counter) = TRACE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; the chain runs one packet at a time per CPU.
        unsafe { *counter += module.hook_context().segments() };
    }
    module.next()
}

/// Attributes the packet to its pair; returns the counter slot it belongs under.
#[inline(always)]
fn trace(ctx: &(impl Frame + Segments), context: &ModuleContext) -> u32 {
    if context.parse != parse_outcome::IP
        || context.protocol != proto::UDP
        || context.has_ports == 0
        || context.fragment != fragment::NONE
    {
        return counter::OTHER;
    }
    let settings = match TRACE_SETTINGS.get(0) {
        Some(settings) if settings.configured != 0 => *settings,
        _ => TraceSettings::DEFAULT,
    };
    let tunnel = if listed(&settings.vxlan_ports, context.dst_port) {
        kind::VXLAN
    } else if listed(&settings.geneve_ports, context.dst_port) {
        kind::GENEVE
    } else {
        return counter::OTHER;
    };
    let header_at = usize::from(context.l4_offset) + UDP_HLEN;
    if header_at > MAX_INNER_START {
        return counter::OTHER;
    }
    let header_at = header_at & MAX_INNER_START;
    let Ok(header) = read::<[u8; TUNNEL_HLEN]>(ctx, header_at) else {
        return counter::MALFORMED;
    };
    let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
    let inner_start = if tunnel == kind::VXLAN {
        if header[0] & VXLAN_FLAG_VNI == 0 {
            return counter::MALFORMED;
        }
        header_at + TUNNEL_HLEN
    } else {
        // Geneve: version in the top two bits, options length (4-byte words) below.
        if header[0] >> 6 != 0 {
            return counter::MALFORMED;
        }
        if be16(&header, 2) != GENEVE_PROTO_ETHERNET {
            return counter::OTHER;
        }
        header_at + TUNNEL_HLEN + usize::from(header[0] & 0x3f) * 4
    };
    if inner_start > MAX_INNER_START {
        return counter::MALFORMED;
    }
    let inner = match parse::parse_at(ctx, inner_start & MAX_INNER_START) {
        Ok(inner) => inner,
        Err(Malformed) => return counter::MALFORMED,
    };
    let mut key = PairKey {
        outer_a: context.src_addr,
        outer_b: context.dst_addr,
        vni,
        outer_version: context.ip_version,
        kind: tunnel,
        ..PairKey::default()
    };
    if settings.granularity != granularity::TUNNEL
        && let Some(inner) = inner
    {
        key.inner_a = offload_common::address_bytes(inner.src);
        key.inner_b = offload_common::address_bytes(inner.dst);
        key.inner_protocol = inner.proto;
        key.inner_version = inner.family;
        if settings.granularity == granularity::FIVE_TUPLE && inner.has_ports {
            key.inner_port_a = inner.sport;
            key.inner_port_b = inner.dport;
        }
    }
    let reverse = normalise(&mut key);
    count(&key, reverse, ctx.segments(), ctx.total_len() as u64);
    counter::TUNNEL
}

#[inline(always)]
fn listed(ports: &[u16; MAX_TUNNEL_PORTS], port: u16) -> bool {
    ports.iter().any(|known| *known != 0 && *known == port)
}

/// Puts the lower side first (outer address, then inner address, then inner port), so
/// both directions of a pair share one key; true when the packet goes b -> a.
#[inline(always)]
fn normalise(key: &mut PairKey) -> bool {
    let order = compare(&key.outer_a, &key.outer_b)
        .then(compare(&key.inner_a, &key.inner_b))
        .then(key.inner_port_a.cmp(&key.inner_port_b));
    if order.is_le() {
        return false;
    }
    core::mem::swap(&mut key.outer_a, &mut key.outer_b);
    core::mem::swap(&mut key.inner_a, &mut key.inner_b);
    core::mem::swap(&mut key.inner_port_a, &mut key.inner_port_b);
    true
}

/// Orders two addresses as big-endian numbers, two 64-bit words each: `[u8; 16]::cmp`
/// compiles to a call of the BPF target's `memcmp`, a byte at a time.
#[inline(always)]
fn compare(a: &[u8; 16], b: &[u8; 16]) -> Ordering {
    let high = |bytes: &[u8; 16]| {
        u64::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    };
    let low = |bytes: &[u8; 16]| {
        u64::from_be_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ])
    };
    high(a).cmp(&high(b)).then(low(a).cmp(&low(b)))
}

/// Counts the packet under its pair: in this CPU's pending counts when the pair is the
/// CPU's last one (no hash table look-up: a flow's packets come in bursts), else after
/// moving the last pair's pending counts into the table.
#[inline(always)]
fn count(key: &PairKey, reverse: bool, packets: u64, bytes: u64) {
    let Some(last) = TRACE_LAST.get_ptr_mut(0) else {
        let mut delta = PairStats::default();
        bump(&mut delta, reverse, packets, bytes);
        add(key, &delta);
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU map, see `run`.
    let last = unsafe { &mut *last };
    if same(&last.key, key) {
        bump(&mut last.pending, reverse, packets, bytes);
        return;
    }
    if last.key.kind != 0 {
        add(&last.key, &last.pending);
    }
    last.key = *key;
    last.pending = PairStats::default();
    bump(&mut last.pending, reverse, packets, bytes);
}

/// Whether two keys are equal, compared by 32-bit words: the derived `==` compiles to a
/// byte-wise `memcmp` on BPF.
#[inline(always)]
fn same(a: &PairKey, b: &PairKey) -> bool {
    const WORDS: usize = core::mem::size_of::<PairKey>() / 4;
    // SAFETY: `PairKey` is `repr(C)`, 4-byte aligned, 76 bytes without padding (asserted
    // in `offload_common`): 19 initialised words.
    let (a, b) = unsafe {
        (
            &*(a as *const PairKey).cast::<[u32; WORDS]>(),
            &*(b as *const PairKey).cast::<[u32; WORDS]>(),
        )
    };
    let mut difference = 0;
    for index in 0..WORDS {
        difference |= a[index] ^ b[index];
    }
    difference == 0
}

/// Adds `delta` to the pair's entry, creating it (and counting the insertion) when new.
#[inline(always)]
fn add(key: &PairKey, delta: &PairStats) {
    if let Some(stats) = TRACE_PAIRS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU map, see `run`.
        unsafe { merge(&mut *stats, delta) };
        return;
    }
    if TRACE_PAIRS
        .insert(key, delta, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        if let Some(counter) = TRACE_COUNTERS.get_ptr_mut(counter::INSERTED) {
            // SAFETY: a per-CPU slot, see `run`.
            unsafe { *counter += 1 };
        }
    } else if let Some(stats) = TRACE_PAIRS.get_ptr_mut(key) {
        // Another CPU made the entry meanwhile; this CPU's value of it starts at zero.
        // SAFETY: as above.
        unsafe { merge(&mut *stats, delta) };
    }
}

#[inline(always)]
fn merge(stats: &mut PairStats, delta: &PairStats) {
    stats.packets[0] += delta.packets[0];
    stats.packets[1] += delta.packets[1];
    stats.bytes[0] += delta.bytes[0];
    stats.bytes[1] += delta.bytes[1];
}

#[inline(always)]
fn bump(stats: &mut PairStats, reverse: bool, packets: u64, bytes: u64) {
    if reverse {
        stats.packets[1] += packets;
        stats.bytes[1] += bytes;
    } else {
        stats.packets[0] += packets;
        stats.bytes[0] += bytes;
    }
}
