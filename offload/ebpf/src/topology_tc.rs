//! The topology's TC ingress program (tcx), on every interface a topology joins: sends
//! out the packet the topology decided at XDP but could not redirect there, being larger
//! than its egress interface's MTU (`offload_common::topology::Handoff`, left in this
//! CPU's `TOPO_HANDOFF` slot by the instance that emitted it). Generic XDP and TC ingress
//! run back to back for one socket buffer on one CPU, so the slot is this packet's when
//! its length and ingress interface agree. Everything else goes on, untouched.
#![no_std]
#![no_main]

mod object;

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_skb_change_head},
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use offload_common::topology::Handoff;

/// `TCX_NEXT`: on to the next tcx program (or the stack).
const TCX_NEXT: i32 = -1;

const ETH_HLEN: u32 = 14;

/// The topology's `TOPO_HANDOFF` (bound to its pin by the loader).
#[map]
static TOPO_HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn topology_tc(ctx: TcContext) -> i32 {
    let Some(slot) = TOPO_HANDOFF.get_ptr_mut(0) else {
        return TCX_NEXT;
    };
    // SAFETY: a per-CPU slot; TC runs with migration disabled. Taken (emptied) by every
    // packet, so a slot whose packet never came here cannot claim a later one.
    let handoff = unsafe { core::ptr::replace(slot, Handoff::default()) };
    // SAFETY: the kernel's __sk_buff, valid for the program's run.
    let (len, ingress) = unsafe { ((*ctx.skb.skb).len, (*ctx.skb.skb).ingress_ifindex) };
    if handoff.len == 0 || ingress != handoff.in_ifindex {
        return TCX_NEXT;
    }
    if len + ETH_HLEN == handoff.len {
        // The copy generic XDP made of a multi-buffer packet lost its MAC header length:
        // TC sees it from the IP header on. Put the Ethernet header back in front.
        // SAFETY: a helper on the program's own socket buffer.
        if unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_HLEN, 0) } != 0
            || ctx.store(0, &handoff.ethernet, 0).is_err()
        {
            return TCX_NEXT;
        }
    } else if len != handoff.len {
        return TCX_NEXT;
    }
    // SAFETY: a helper without preconditions; it returns TC_ACT_REDIRECT.
    unsafe { bpf_redirect(handoff.ifindex, 0) as i32 }
}
