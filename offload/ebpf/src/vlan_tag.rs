//! Pushing and popping an 802.1Q tag at XDP (the bridge's ports, `bridge.rs` and
//! `bridge_egress.rs`): the frame grows or shrinks at its head with
//! `bpf_xdp_adjust_head` and the MAC addresses move with it. The tag is outside every
//! checksum (IP, TCP and UDP cover the L3 packet, the FCS is the device's), so nothing
//! else changes.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use offload_common::bridge::ETH_P_8021Q;

use crate::parse::{at, read};

/// Bytes of an 802.1Q tag.
const TAG: i32 = 4;

/// Inserts a tag of `vlan` after the MAC addresses; false (the frame unchanged) when the
/// frame is shorter than its addresses or has no headroom left.
#[inline(always)]
pub fn push(ctx: &XdpContext, vlan: u16) -> bool {
    let Ok(macs) = read::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    // SAFETY: the helper only moves the start of this packet's data.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -TAG) } != 0 {
        return false;
    }
    let Ok(head) = at::<[u8; 16]>(ctx, 0) else {
        return false;
    };
    let tpid = ETH_P_8021Q.to_be_bytes();
    let tci = (vlan & 0x0fff).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..12].copy_from_slice(&macs);
    bytes[12..14].copy_from_slice(&tpid);
    bytes[14..16].copy_from_slice(&tci);
    // SAFETY: `at` checked the 16 bytes lie inside the packet.
    unsafe { (head as *mut [u8; 16]).write_unaligned(bytes) };
    true
}

/// Removes the tag after the MAC addresses (the caller saw one); false when the frame
/// cannot shrink.
#[inline(always)]
pub fn pop(ctx: &XdpContext) -> bool {
    let Ok(macs) = read::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    // SAFETY: the helper only moves the start of this packet's data.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, TAG) } != 0 {
        return false;
    }
    let Ok(head) = at::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    // SAFETY: `at` checked the 12 bytes lie inside the packet; the EtherType that
    // followed the tag now follows the addresses.
    unsafe { (head as *mut [u8; 12]).write_unaligned(macs) };
    true
}
