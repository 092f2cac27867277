//! The `vxlan-trace` IO module as a XDP program for chains whose programs are not multi-buffer (`chain_entry`).
//! Every program of one chain agrees on its kind and on `xdp.frags`, so the module is built
//! once per kind of chain; the roots differ only in that. The body is `vxlan_trace.rs`.
#![no_std]
#![no_main]

mod object;
// The outer parse is the entry's (in the context); the module parses the inner frame.
#[allow(dead_code)]
mod parse;
mod vxlan_trace;

use aya_ebpf::{macros::xdp, programs::XdpContext};

object::builtin_module!(name = "vxlan-trace", frags = false);

#[xdp]
pub fn vxlan_trace(ctx: XdpContext) -> u32 {
    vxlan_trace::run(ctx)
}
