//! The firewall's egress tracker: a TC classifier on an interface's egress (tcx) that
//! records what the node sends in the node's conntrack table, so the answers to flows the
//! node opens come back ESTABLISHED through the firewall module at XDP, which sees only
//! what comes in. It parses with the data path's one parse (`parse.rs`, the socket
//! buffer's linear head) and judges nothing: it passes every packet on to the next tcx
//! program, except the first packet of a flow the full table cannot hold (fail closed).
#![no_std]
#![no_main]
// The atomic add of conntrack's fill counter is inline assembly.
#![feature(asm_experimental_arch)]

// Packet states and their rules are the firewall module's; the tracker only records.
#[allow(dead_code)]
mod conntrack;
mod object;
mod parse;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// `TCX_NEXT`: on to the next tcx program (or the stack).
const TCX_NEXT: i32 = -1;

/// `TC_ACT_SHOT`: drop.
const TC_ACT_SHOT: i32 = 2;

#[classifier]
pub fn firewall_egress(ctx: TcContext) -> i32 {
    let Ok(Some(packet)) = parse::parse(&ctx) else {
        return TCX_NEXT;
    };
    let ports = packet.has_ports.then_some((packet.sport, packet.dport));
    let flow = conntrack::flow_of(
        &ctx,
        packet.family,
        packet.proto,
        offload_common::address_bytes(packet.src),
        offload_common::address_bytes(packet.dst),
        ports,
        packet.l3_offset,
        packet.l4_offset,
    );
    let mut tracked = conntrack::lookup(&flow);
    // What the node sends moves its flow; an ICMP error it sends relates to nothing here.
    conntrack::track(&mut tracked, &flow, None::<&TcContext>);
    match conntrack::record(&tracked, &flow) {
        Ok(()) => TCX_NEXT,
        Err(conntrack::TableFull) => TC_ACT_SHOT,
    }
}
