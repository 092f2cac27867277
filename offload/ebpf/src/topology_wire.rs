//! A topology instance program that does nothing but join its two ports (XDP frags,
//! tail-called through `TOPO_PROGS`): what comes in on port 0 leaves by port 1 and back,
//! unchanged. Not a kind of the topology file: the benchmark `topology_mpps` runs it as a
//! user module to measure what the topology itself costs a packet (the entry, one tail
//! call, `emit`, the redirect), the ceiling of every instance on the same path.
#![no_std]
#![no_main]

mod object;
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod topology;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp(frags)]
pub fn wire(ctx: XdpContext) -> u32 {
    let Some(place) = topology::context() else {
        return xdp_action::XDP_DROP;
    };
    let out = 1 - place.in_port.min(1);
    topology::emit(&ctx, place, out)
}
