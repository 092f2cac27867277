//! The built-in `topology` IO module: the last module of the chain of every interface a
//! topology joins. It hands each packet to the instance port the interface feeds (see
//! `topology.rs`); packets of interfaces the running topology does not know go on down
//! the chain. Built in the frags flavour only: every program of the topology's program
//! array must be multi-buffer, so the chains it runs on are.
#![no_std]
#![no_main]

mod object;
// Only the frame's length is read here.
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod topology;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use fastpath_module::{Module, XDP_PASS, verdict};

object::builtin_module!(name = "topology", frags = true);

#[xdp(frags)]
pub fn topology(ctx: XdpContext) -> u32 {
    let raw = ctx.ctx;
    let Some(module) = Module::new(ctx) else {
        return XDP_PASS;
    };
    let Some(instance) = topology::enter(module.xdp()) else {
        return module.next();
    };
    // Counted before the hand-over, which does not return: the instances decide the
    // packet's fate from here (counted on the topology's ports and counters). A failed
    // hand-over is dropped and counted as `no_program` by the topology.
    let _ = module.counted(verdict::FORWARD, XDP_PASS);
    topology::hand_to_instance(&XdpContext::new(raw), instance)
}
