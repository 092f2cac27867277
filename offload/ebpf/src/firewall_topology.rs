//! The program of a topology's `firewall` instances (XDP frags, tail-called through
//! `TOPO_PROGS`): the stateful firewall as a bump in the wire between its two ports. A
//! packet in on one port is judged by the same code as the `firewall` chain module
//! (`firewall.rs`, on the interface's node-wide conntrack table), against the rules of
//! the instance's own tables; accepted, it leaves on the other port; answered (`reject`),
//! back on the port it came in on; dropped, it is counted on that port.
//!
//! The packet is parsed here, with the data path's one parse, into a context laid out
//! like the chain's; its ingress interface is the one the packet entered the topology on,
//! so rules that name an interface match it.
#![no_std]
#![no_main]
// The atomic add of conntrack's fill counter is inline assembly.
#![feature(asm_experimental_arch)]

mod conntrack;
// Its chain-module body (`run`) is the `firewall` module's; this program judges with `judge`.
#[allow(dead_code)]
mod firewall;
mod firewall_fragments;
mod firewall_reject;
mod module_context;
mod object;
mod parse;
#[allow(dead_code)]
mod topology;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use offload_common::{module::ModuleContext, topology::MAX_INSTANCE_PORTS};

/// Each port's other port (`offload_common::firewall::maps::OTHER_PORT`).
#[map]
static FW_OTHER_PORT: Array<u32> = Array::with_max_entries(MAX_INSTANCE_PORTS, 0);
/// Per-CPU room for the packet's context: the firewall's frames leave no stack for it.
#[map]
static FW_TOPO_CONTEXT: PerCpuArray<ModuleContext> = PerCpuArray::with_max_entries(1, 0);

#[xdp(frags)]
pub fn firewall(ctx: XdpContext) -> u32 {
    let (Some(place), Some(context)) = (topology::context(), FW_TOPO_CONTEXT.get_ptr_mut(0)) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: a per-CPU slot; the program runs with migration disabled and the packet's
    // whole walk through the topology runs in this one invocation.
    let context = unsafe { &mut *context };
    module_context::clear(context);
    context.ingress_ifindex = place.in_ifindex;
    context.ingress_port = place.in_port;
    module_context::describe_apart(ctx.ctx, context);
    match firewall::judge(&ctx, context) {
        firewall::outcome::ACCEPT => match FW_OTHER_PORT.get(place.in_port) {
            Some(&out) => topology::emit(&ctx, place, out),
            None => xdp_action::XDP_DROP,
        },
        firewall::outcome::ANSWERED => {
            let in_port = place.in_port;
            topology::emit(&ctx, place, in_port)
        }
        _ => topology::drop_at_ingress(&ctx, place),
    }
}
