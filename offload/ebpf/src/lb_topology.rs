//! The program of a topology's `lb` instances (XDP frags, tail-called through
//! `TOPO_PROGS`): a load balancer as a bump in the wire between two ports, the layouts in
//! `offload_common::lb`. Whatever comes in on one port leaves by the other:
//! - a packet to a VIP gets its connection's backend as destination (the Maglev table
//!   picks one for a connection's first packet, a TCP SYN or the first datagram of a
//!   tuple; the connection keeps it);
//! - a backend's reply to such a connection gets the VIP back as its source;
//! - an ICMP error about one of its connections gets the same translation in the packet
//!   it quotes (`lb_icmp.rs`);
//! - everything else passes unchanged (ARP, other ICMP, traffic that is no VIP's).
//!
//! Checksums: the IPv4 header's and the TCP/UDP one are updated incrementally (RFC 1624).
//! A sender with TX checksum offload on (every veth by default) leaves the TCP/UDP field
//! partial: the folded pseudo-header sum, which the device completes. XDP cannot see the
//! socket buffer's checksum state, so the field itself is the evidence: one that equals
//! the pseudo-header sum and does not verify as a complete checksum is partial, and gets
//! the new pseudo-header's sum (the ports are the device's to sum then). Anything else is
//! a complete checksum and is updated for the new addresses and ports.
#![no_std]
#![no_main]

mod lb_icmp;
mod module_context;
mod object;
mod parse;
#[allow(dead_code)]
mod topology;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::{bpf_csum_diff, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use offload_common::{
    fragment,
    lb::{
        BANKS, Backend, FLOW_ENTRIES, FlowKey, MAX_BACKENDS, MAX_VIPS, TABLE_SLOTS, Target, Vip,
        VipKey, backend_index, counter, flow_slot, table_index,
    },
    module::{ModuleContext, parse as parse_outcome},
    proto,
    topology::MAX_INSTANCE_PORTS,
};
use wire::checksum::{Sum, l4_checksum_offset, pseudo_header, update};

#[map]
static LB_STATE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static LB_VIPS: HashMap<VipKey, Vip> = HashMap::with_max_entries(BANKS * MAX_VIPS, 0);
#[map]
static LB_TABLES: Array<u32> = Array::with_max_entries(BANKS * MAX_VIPS * TABLE_SLOTS, 0);
#[map]
static LB_BACKENDS: Array<Backend> = Array::with_max_entries(BANKS * MAX_VIPS * MAX_BACKENDS, 0);
#[map]
pub(crate) static LB_FLOWS: LruHashMap<FlowKey, Target> =
    LruHashMap::with_max_entries(FLOW_ENTRIES, 0);
#[map]
pub(crate) static LB_REPLIES: LruHashMap<FlowKey, Target> =
    LruHashMap::with_max_entries(FLOW_ENTRIES, 0);
#[map]
static LB_OTHER_PORT: Array<u32> = Array::with_max_entries(MAX_INSTANCE_PORTS, 0);
#[map]
static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Per-CPU room for the packet's context.
#[map]
static LB_CONTEXT: PerCpuArray<ModuleContext> = PerCpuArray::with_max_entries(1, 0);
/// Per-CPU room for a chunk of the segment while its checksum is verified.
#[map]
static LB_CHUNK: PerCpuArray<[u32; CHUNK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

const CHUNK_WORDS: usize = 64;
const CHUNK: u32 = CHUNK_WORDS as u32 * 4;
/// Segments up to this long (a 9,000-byte jumbo frame's) are summed to tell a complete
/// checksum from a partial one. Longer ones are the stack's GSO or GRO packets, whose
/// checksums are always partial.
const CHUNKS: u32 = 36;

#[xdp(frags)]
pub fn lb(ctx: XdpContext) -> u32 {
    let (Some(place), Some(context)) = (topology::context(), LB_CONTEXT.get_ptr_mut(0)) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: a per-CPU slot; the program runs with migration disabled and the packet's
    // whole walk through the topology runs in this one invocation.
    let context = unsafe { &mut *context };
    module_context::clear(context);
    module_context::describe_apart(ctx.ctx, context);
    let Some(&out) = LB_OTHER_PORT.get(place.in_port) else {
        return xdp_action::XDP_DROP;
    };
    if balance(ctx.ctx, context) {
        topology::emit(&ctx, place, out)
    } else {
        topology::drop_at_ingress(&ctx, place)
    }
}

fn count(slot: u32) {
    if let Some(counter) = LB_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, see `lb`.
        unsafe { *counter += 1 };
    }
}

/// Per-CPU room for the keys of a packet's look-ups: the program's frames have no stack
/// to spare for them (a topology's tail calls leave each frame 256 bytes).
#[repr(C)]
pub(crate) struct Keys {
    /// The packet's direction of its connection.
    pub(crate) flow: FlowKey,
    /// A new connection's replies.
    reply: FlowKey,
    /// The VIP the packet may be for.
    vip: VipKey,
    /// A new connection's backend, then its replies' VIP.
    target: Target,
}

#[map]
pub(crate) static LB_KEYS: PerCpuArray<Keys> = PerCpuArray::with_max_entries(1, 0);

/// Translates the packet if it is a VIP's or a reply to one; false when it is dropped
/// (counted). In a frame of its own, below the topology's tail calls' 256 bytes.
#[inline(never)]
fn balance(raw: *mut xdp_md, context: &ModuleContext) -> bool {
    let ctx = &XdpContext::new(raw);
    match context.parse {
        parse_outcome::IP => {}
        parse_outcome::MALFORMED => {
            count(counter::MALFORMED);
            return false;
        }
        _ => {
            count(counter::PASSED);
            return true;
        }
    }
    if context.protocol == proto::ICMP || context.protocol == proto::ICMPV6 {
        let translated = lb_icmp::translate_error(raw, context);
        count(if translated {
            counter::ICMP_ERRORS
        } else {
            counter::PASSED
        });
        return true;
    }
    if context.protocol != proto::TCP && context.protocol != proto::UDP {
        count(counter::PASSED);
        return true;
    }
    let Some(keys) = LB_KEYS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot, see `lb`.
    let keys = unsafe { &mut *keys };
    keys.flow = FlowKey {
        src: context.src_addr,
        dst: context.dst_addr,
        src_port: context.src_port,
        dst_port: context.dst_port,
        protocol: context.protocol,
        _pad: [0; 3],
    };
    if context.has_ports != 0
        && let Some(vip) = unsafe { LB_REPLIES.get(&keys.flow) }
    {
        let done = translate(ctx, context, false, &vip.addr, vip.port);
        return translated(done, counter::REPLIES);
    }
    let bank = LB_STATE.get(0).copied().unwrap_or(0) % BANKS;
    keys.vip = VipKey {
        addr: context.dst_addr,
        port: context.dst_port,
        protocol: context.protocol,
        bank: bank as u8,
    };
    // SAFETY: read at once.
    let Some((index, backends)) =
        (unsafe { LB_VIPS.get(&keys.vip) }).map(|vip| (vip.index % MAX_VIPS, vip.backends))
    else {
        count(counter::PASSED);
        return true;
    };
    if context.fragment != fragment::NONE {
        count(counter::FRAGMENTS);
        return false;
    }
    // A connection's first packet is given a backend by the running table even when its
    // tuple was seen before (a client port used again after the backends changed), as
    // Katran does; every later packet keeps the backend its connection has.
    // SAFETY: the entry is read at once.
    if !opens_connection(ctx, context)
        && let Some(backend) = unsafe { LB_FLOWS.get(&keys.flow) }
    {
        let done = translate(ctx, context, true, &backend.addr, backend.port);
        return translated(done, counter::TO_BACKEND);
    }
    let Some(backend) = pick(bank, index, backends, &keys.flow) else {
        count(counter::NO_BACKEND);
        return false;
    };
    keys.target = *backend;
    // A full table evicts its least recently used connection, as it must.
    let _ = LB_FLOWS.insert(&keys.flow, &keys.target, 0);
    keys.reply = FlowKey {
        src: backend.addr,
        dst: context.src_addr,
        src_port: backend.port,
        dst_port: context.src_port,
        protocol: context.protocol,
        _pad: [0; 3],
    };
    keys.target.addr = context.dst_addr;
    keys.target.port = context.dst_port;
    let _ = LB_REPLIES.insert(&keys.reply, &keys.target, 0);
    count(counter::NEW_FLOWS);
    let done = translate(ctx, context, true, &backend.addr, backend.port);
    translated(done, counter::TO_BACKEND)
}

/// Whether the packet is a TCP SYN without ACK: the first packet of a connection.
#[inline(always)]
fn opens_connection(ctx: &XdpContext, context: &ModuleContext) -> bool {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    context.protocol == proto::TCP
        && load::<1>(ctx, context.l4_offset as usize + 13)
            .is_some_and(|[flags]| flags & (SYN | ACK) == SYN)
}

/// Counts a translation as `slot`, or as malformed when its headers could not be read.
#[inline(always)]
fn translated(done: bool, slot: u32) -> bool {
    count(if done { slot } else { counter::MALFORMED });
    done
}

/// The backend the Maglev table of VIP `index` (of `backends` backends) gives the
/// connection `key`.
#[inline(always)]
fn pick(bank: u32, index: u32, backends: u32, key: &FlowKey) -> Option<&'static Backend> {
    let backend = *LB_TABLES.get(table_index(bank, index) + flow_slot(key))?;
    if backend >= MAX_BACKENDS || backend >= backends {
        return None;
    }
    LB_BACKENDS.get(backend_index(bank, index) + backend)
}

/// Writes `addr` and `port` as the packet's destination (`destination`) or source, with
/// its checksums.
#[inline(always)]
fn translate(
    ctx: &XdpContext,
    context: &ModuleContext,
    destination: bool,
    addr: &[u8; 16],
    port: u16,
) -> bool {
    if context.ip_version == 4 {
        rewrite::<4>(ctx, context, destination, addr, port).is_some()
    } else {
        rewrite::<16>(ctx, context, destination, addr, port).is_some()
    }
}

/// [`translate`] for addresses of `N` bytes, in a frame of its own. The addresses are read
/// where they lie (the context, the maps): a copy of each would not fit the frame.
#[inline(never)]
fn rewrite<const N: usize>(
    ctx: &XdpContext,
    context: &ModuleContext,
    destination: bool,
    addr: &[u8; 16],
    port: u16,
) -> Option<()> {
    let l3 = context.l3_offset as usize;
    let l4 = context.l4_offset as usize;
    let v4 = N == 4;
    let (src, dst) = (&context.src_addr[..N], &context.dst_addr[..N]);
    let (src_at, dst_at) = if v4 {
        (l3 + 12, l3 + 16)
    } else {
        (l3 + 8, l3 + 24)
    };
    let (addr_at, old) = if destination {
        (dst_at, dst)
    } else {
        (src_at, src)
    };
    let new = &addr[..N];
    let ports = load::<4>(ctx, l4)?;
    let mut new_ports = ports;
    let port = port.to_be_bytes();
    if destination {
        new_ports[2..].copy_from_slice(&port);
    } else {
        new_ports[..2].copy_from_slice(&port);
    }
    // The L4 length from the IP header: what the pseudo-header counts.
    let length = u16::from_be_bytes(load::<2>(ctx, l3 + if v4 { 2 } else { 4 })?) as usize;
    let l4_len = if v4 { length } else { length + 40 }.checked_sub(l4 - l3)?;
    let checksum_at = l4 + l4_checksum_offset(context.protocol)?;
    let field = u16::from_be_bytes(load::<2>(ctx, checksum_at)?);
    // An IPv4 UDP checksum of 0 means none (RFC 768): left so.
    if !(v4 && context.protocol == proto::UDP && field == 0) {
        let pseudo = pseudo_header(src, dst, context.protocol, l4_len);
        let partial =
            field == pseudo.fold() && !verifies(ctx.ctx, l4 as u32, l4_len as u32, pseudo);
        let fixed = if partial {
            count(counter::PARTIAL_CHECKSUMS);
            // The pseudo-header sum of the new addresses: RFC 1624's update, inverted.
            !update(!field, old, new)
        } else {
            let fixed = update(update(field, old, new), &ports, &new_ports);
            if context.protocol == proto::UDP && fixed == 0 {
                0xffff
            } else {
                fixed
            }
        };
        store(ctx, checksum_at, &fixed.to_be_bytes())?;
    }
    if v4 {
        let header = u16::from_be_bytes(load::<2>(ctx, l3 + 10)?);
        store(ctx, l3 + 10, &update(header, old, new).to_be_bytes())?;
    }
    store(ctx, l4, &new_ports)?;
    store(ctx, addr_at, new)
}

/// The `N` bytes at `offset` of the packet. Through the helper: its offsets come from the
/// context's map value, whose packet reads the verifier cannot bound.
#[inline(always)]
pub(crate) fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    // SAFETY: the helper copies N bytes of the packet into the array, or fails.
    let read =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, bytes.as_mut_ptr().cast(), N as u32) };
    (read == 0).then_some(bytes)
}

/// Writes `bytes` at `offset` of the packet (see [`load`]); they may lie in a map.
#[inline(always)]
pub(crate) fn store(ctx: &XdpContext, offset: usize, bytes: &[u8]) -> Option<()> {
    // SAFETY: the helper copies the slice's bytes into the packet, or fails; it only reads
    // them.
    let written = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            offset as u32,
            bytes.as_ptr().cast_mut().cast(),
            bytes.len() as u32,
        )
    };
    (written == 0).then_some(())
}

/// Adds the `take` (1 to CHUNK) bytes at `offset` of the packet, copied into `chunk`, to
/// the running sum `seed`.
#[inline(always)]
fn sum_chunk(
    ctx: *mut xdp_md,
    chunk: *mut [u32; CHUNK_WORDS],
    offset: u32,
    take: u32,
    seed: u32,
) -> Option<u32> {
    // SAFETY: the helper copies `take` bytes of the packet into the slot, or fails.
    if unsafe { bpf_xdp_load_bytes(ctx, offset, chunk.cast(), take) } != 0 {
        return None;
    }
    // SAFETY: the helper sums the slot's CHUNK bytes.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, chunk.cast(), CHUNK, seed) };
    (sum >= 0).then_some(sum as u32)
}

/// Whether the `len` bytes of the segment at `l4` (every buffer of the packet) and the
/// pseudo-header sum to a valid checksum: a complete one, not a partial one. False for
/// segments longer than [`CHUNKS`] chunks (only GSO and GRO make them, always partial).
#[inline(never)]
fn verifies(ctx: *mut xdp_md, l4: u32, len: u32, pseudo: Sum) -> bool {
    let Some(chunk) = LB_CHUNK.get_ptr_mut(0) else {
        return false;
    };
    if len > CHUNKS * CHUNK {
        return false;
    }
    // Whole chunks in a loop the verifier walks once per chunk, then the tail: a loop
    // with a shorter last chunk inside doubles the verifier's paths at every turn.
    let whole = len / CHUNK;
    let mut seed: u32 = 0;
    for index in 0..CHUNKS {
        if index >= whole {
            break;
        }
        match sum_chunk(ctx, chunk, l4 + index * CHUNK, CHUNK, seed) {
            Some(sum) => seed = sum,
            None => return false,
        }
    }
    let tail = len % CHUNK;
    if tail != 0 {
        for word in 0..CHUNK_WORDS {
            // SAFETY: a per-CPU slot of CHUNK_WORDS words, see `lb`. Volatile: a `memset`
            // call would cost a frame of its own. Zeros past the segment add nothing.
            unsafe { (*chunk).as_mut_ptr().add(word).write_volatile(0) };
        }
        match sum_chunk(ctx, chunk, l4 + whole * CHUNK, tail, seed) {
            Some(sum) => seed = sum,
            None => return false,
        }
    }
    pseudo.add_bytes(&seed.to_ne_bytes()).fold() == 0xffff
}
