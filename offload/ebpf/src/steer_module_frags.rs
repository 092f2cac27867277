//! The `steer` IO module for multi-buffer chains (`chain_entry_frags`), the kind `fastpath xdp attach` makes.
//! Every program of one chain agrees on `xdp.frags`, so the module is built twice, like the
//! chain's entry; the two roots differ only in that flag. The body is `steer_in_chain.rs`.
#![no_std]
#![no_main]

mod classify;
mod object;
mod parse;
// Its standalone hardware program is not part of a module.
#[allow(dead_code)]
mod prefilter;
mod steer;
mod steer_in_chain;

use aya_ebpf::{macros::xdp, programs::XdpContext};

object::builtin_module!(name = "steer", frags = true);

#[xdp(frags)]
pub fn steer(ctx: XdpContext) -> u32 {
    steer_in_chain::run(ctx)
}
