//! The built-in `firewall` IO module for multi-buffer chains (`chain_entry_frags`).
//! Every program of one chain agrees on `xdp.frags`, so the module is built twice, like
//! `steer`; the two roots differ only in that flag. The body is `firewall.rs`.
#![no_std]
#![no_main]
// The atomic add of conntrack's fill counter is inline assembly.
#![feature(asm_experimental_arch)]

mod conntrack;
mod firewall;
mod firewall_fragments;
mod firewall_reject;
mod object;
// The chain's entry parsed the packet; the module reads headers with the parse's bounds
// checks only.
#[allow(dead_code)]
mod parse;

use aya_ebpf::{macros::xdp, programs::XdpContext};

object::builtin_module!(name = "firewall", frags = true);

#[xdp(frags)]
pub fn firewall(ctx: XdpContext) -> u32 {
    firewall::run(ctx)
}
