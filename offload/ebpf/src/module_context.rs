//! Filling a [`ModuleContext`]: what the chain's entry writes for every packet before the
//! first module runs, and what a program that runs the chain's modules' code outside a
//! chain (the firewall as a topology instance) writes for itself.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use offload_common::module::{ModuleContext, parse as parse_outcome};

use crate::parse::{self, Frame};

/// Zeroes the context with one store per word. Assigning a whole `ModuleContext` compiles
/// to calls of the BPF target's `memset`, which stores a byte at a time: some 370
/// instructions a packet, more than the rest of the entry. Volatile stores keep LLVM from
/// turning these back into a `memset`.
#[inline(always)]
pub fn clear(context: &mut ModuleContext) {
    const WORDS: usize = core::mem::size_of::<ModuleContext>() / 4;
    let words = (context as *mut ModuleContext).cast::<u32>();
    for index in 0..WORDS {
        // SAFETY: `WORDS` u32s fit in the context (108 bytes, 4-aligned: its largest
        // fields are u32s).
        unsafe { words.add(index).write_volatile(0) };
    }
}

/// Writes the packet's parse into `context`: the outcome, and for IP the offsets, VLAN
/// tags, addresses, protocol, ports and fragment (the data path's one parse).
#[inline(always)]
pub fn describe(ctx: &impl Frame, context: &mut ModuleContext) {
    match parse::parse(ctx) {
        Ok(Some(packet)) => {
            context.parse = parse_outcome::IP;
            context.l3_offset = packet.l3_offset;
            context.l4_offset = packet.l4_offset;
            context.vlan_count = packet.vlan_count;
            context.vlan_tci = packet.vlan_tci;
            context.ip_version = packet.family;
            context.protocol = packet.proto;
            context.has_ports = packet.has_ports as u8;
            context.fragment = packet.fragment;
            context.src_port = packet.sport;
            context.dst_port = packet.dport;
            context.src_addr = offload_common::address_bytes(packet.src);
            context.dst_addr = offload_common::address_bytes(packet.dst);
        }
        Ok(None) => context.parse = parse_outcome::NOT_IP,
        Err(parse::Malformed) => context.parse = parse_outcome::MALFORMED,
    }
}

/// [`describe`] in a frame of its own, for the topology's instance programs: inlined, the
/// parse's copies of the headers stayed on the program's frame beneath its other calls,
/// past the 512 bytes the kernel gives them all.
#[inline(never)]
#[allow(dead_code)] // the chain entry inlines `describe`
pub fn describe_apart(raw: *mut xdp_md, context: &mut ModuleContext) {
    describe(&XdpContext::new(raw), context);
}
