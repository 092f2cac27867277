//! Steering as an IO module: the packet's parse comes from the chain's context (filled by
//! the entry with the same `parse.rs`), the decision from `steer.rs`, and the verdict goes
//! through the SDK, counted in the chain's verdict counters like any module's. What no rule
//! claimed continues down the chain; at its end the chain passes it.

use aya_ebpf::programs::XdpContext;
use fastpath_module::{Module, ModuleContext, XDP_PASS, parse as parse_outcome};
use offload_common::{address_words, fragment};

use crate::{
    parse::{self, Malformed, Packet},
    steer::{self, Decision},
};

/// The module's program body.
#[inline(always)]
pub fn run(ctx: XdpContext) -> u32 {
    let Some(module) = Module::new(ctx) else {
        return XDP_PASS;
    };
    let parsed = packet_of(module.context(), module.xdp());
    match steer::decide(module.xdp(), parsed) {
        Decision::Unclaimed => module.next(),
        Decision::Claimed { action, verdict } => module.counted(verdict, action),
    }
}

/// The packet as the entry parsed it. The context of ABI 1 has no fragment id, which the
/// fragment map's key needs: a fragment (rare) is parsed again, with the same parser, so
/// steering decides exactly as the standalone program does.
#[inline(always)]
fn packet_of(context: &ModuleContext, ctx: &XdpContext) -> Result<Option<Packet>, Malformed> {
    match context.parse {
        parse_outcome::IP if context.fragment == fragment::NONE => Ok(Some(Packet {
            family: context.ip_version,
            proto: context.protocol,
            has_ports: context.has_ports != 0,
            sport: context.src_port,
            dport: context.dst_port,
            fragment: fragment::NONE,
            fragment_id: 0,
            src: address_words(&context.src_addr),
            dst: address_words(&context.dst_addr),
            l3_offset: context.l3_offset,
            l4_offset: context.l4_offset,
            vlan_count: context.vlan_count,
            vlan_tci: context.vlan_tci,
        })),
        parse_outcome::IP => parse::parse(ctx),
        parse_outcome::NOT_IP => Ok(None),
        _ => Err(Malformed),
    }
}
