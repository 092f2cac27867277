//! The egress program of a VLAN-aware bridge's flood (`BRIDGE_FLOOD`'s entries, a devmap
//! program): the kernel runs it on each port's copy of a broadcast, after the copy is
//! made. The bridge floods a frame tagged with its VLAN (untagged for VLAN 0); here each
//! copy is dropped when its interface does not carry that VLAN, and loses its tag when
//! the interface carries the VLAN untagged (`BRIDGE_EGRESS`, keyed by ifindex). So one
//! `bpf_redirect_map` broadcast floods within the VLAN, each port with its own tagging.
#![no_std]
#![no_main]

mod object;
// Its bounds-checked reads only.
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod vlan_tag;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::HashMap,
    programs::XdpContext,
};
use offload_common::bridge::{ETH_P_8021Q, MEMBER_ENTRIES, UNTAGGED, VlanPort, tagging};
use parse::read;

#[map]
static BRIDGE_EGRESS: HashMap<VlanPort, u32> = HashMap::with_max_entries(MEMBER_ENTRIES, 0);

#[xdp(frags, map = "devmap")]
pub fn bridge_egress(ctx: XdpContext) -> u32 {
    // SAFETY: the kernel's xdp_md, valid for the program's run.
    let ifindex = unsafe { (*ctx.ctx).egress_ifindex };
    let Ok(tag) = read::<[u8; 4]>(&ctx, 12) else {
        return xdp_action::XDP_DROP;
    };
    let tagged = u16::from_be_bytes([tag[0], tag[1]]) == ETH_P_8021Q;
    let vlan = if tagged {
        u16::from_be_bytes([tag[2], tag[3]]) & 0x0fff
    } else {
        UNTAGGED
    };
    let key = VlanPort {
        port: ifindex,
        vlan: u32::from(vlan),
    };
    // SAFETY: the value is copied at once.
    match unsafe { BRIDGE_EGRESS.get(&key) }.copied() {
        Some(tagging::UNTAGGED) if tagged => {
            if vlan_tag::pop(&ctx) {
                xdp_action::XDP_PASS
            } else {
                xdp_action::XDP_DROP
            }
        }
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_DROP,
    }
}
