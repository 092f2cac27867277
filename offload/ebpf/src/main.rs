//! The steering object: the standalone steering program (parse, then `steer.rs`), the
//! hardware prefilter, the parse probe and the bare baseline. The same steering runs as the
//! `steer` IO module in `steer_module.rs`.
#![no_std]
#![no_main]

mod classify;
mod object;
mod parse;
mod prefilter;
mod steer;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use offload_common::{ParseReport, parse_result};

use steer::Decision;

// `frags`: the program reads only the first buffer, so it is safe on multi-buffer packets,
// and it may run on devices whose MTU exceeds a page (e.g. veth at MTU 9000, where the
// kernel refuses programs without BPF_F_XDP_HAS_FRAGS: drivers/net/veth.c veth_xdp_set).
#[xdp(frags)]
pub fn steer(ctx: XdpContext) -> u32 {
    match steer::decide(&ctx, parse::parse(&ctx)) {
        Decision::Unclaimed => xdp_action::XDP_PASS,
        Decision::Claimed { action, .. } => action,
    }
}

/// Test only: parses the packet and writes what the parser found (a `ParseReport`) in
/// front of it, for the differential test against user space's `wire::parse`. Never
/// attached; run through BPF_PROG_TEST_RUN.
#[xdp]
pub fn parse_probe(ctx: XdpContext) -> u32 {
    let mut report = ParseReport::default();
    match parse::parse(&ctx) {
        Ok(Some(packet)) => {
            report.result = parse_result::IP;
            report.family = packet.family;
            report.proto = packet.proto;
            report.has_ports = packet.has_ports as u8;
            report.fragment = packet.fragment;
            report.sport = packet.sport;
            report.dport = packet.dport;
            report.fragment_id = packet.fragment_id;
            report.src = packet.src;
            report.dst = offload_common::address_bytes(packet.dst);
        }
        Ok(None) => report.result = parse_result::NOT_IP,
        Err(parse::Malformed) => report.result = parse_result::MALFORMED,
    }
    const SIZE: usize = core::mem::size_of::<ParseReport>();
    // SAFETY: the helper only moves the start of this packet's data.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(SIZE as i32)) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let start = ctx.data();
    if start + SIZE > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the SIZE bytes at `start` were bounds-checked above.
    unsafe { (start as *mut ParseReport).write_unaligned(report) };
    xdp_action::XDP_PASS
}

/// The prefilter alone: the hardware stage of a split plan (see `prefilter.rs`). No
/// counters beyond the per-address drops: offloaded programs get array and hash maps only.
#[xdp]
pub fn prefilter(ctx: XdpContext) -> u32 {
    if prefilter::verdict(&ctx) {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// A bare XDP_PASS program: the baseline the steering program is timed against.
#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
