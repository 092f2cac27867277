//! The `vxlan-trace` IO module as a TC classifier, for chains on the tcx hooks (`--hook tc-egress`, `tc-ingress`).
//! Every program of one chain agrees on its kind and on `xdp.frags`, so the module is built
//! once per kind of chain; the roots differ only in that. The body is `vxlan_trace.rs`.
#![no_std]
#![no_main]

mod object;
// The outer parse is the entry's (in the context); the module parses the inner frame.
#[allow(dead_code)]
mod parse;
mod vxlan_trace;

use aya_ebpf::{macros::classifier, programs::TcContext};

object::builtin_module!(name = "vxlan-trace", frags = false);

#[classifier]
pub fn vxlan_trace(ctx: TcContext) -> i32 {
    vxlan_trace::run(ctx)
}
