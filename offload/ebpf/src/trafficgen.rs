//! The traffic generator's program, run by `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`:
//! the kernel hands it the template frame again and again, and every XDP_TX goes out of the
//! interface named in the run's context, through the driver's transmit path
//! (net/bpf/test_run.c, xdp_test_run_batch). The technique is xdp-trafficgen's.
//!
//! An object of its own (loaded only by the `trafficgen` crate), so that loading the
//! generator creates none of the steering program's maps, and attaching the steering program
//! loads no generator.
#![no_std]
#![no_main]

mod object;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use offload_common::{GEN_OFFSET_MASK, GenConfig, Stamp, ipv4_checksum};

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);
/// Frames sent, per CPU: the next sequence number.
#[map]
static GEN_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn gen_tx(ctx: XdpContext) -> u32 {
    let Some(config) = GEN_CONFIG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(sent) = GEN_SENT.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a per-CPU slot; nothing else writes it on this CPU while the program runs.
    let count = unsafe {
        let count = *sent;
        *sent = count + 1;
        count
    };
    let flows = if config.flows == 0 { 1 } else { config.flows };
    let flow = config.space.flow((count % flows as u64) as u32);
    // SAFETY: helpers with no arguments.
    let (cpu, now) = unsafe { (bpf_get_smp_processor_id() as u64, bpf_ktime_get_ns()) };
    let stamp_bytes = Stamp::new(cpu, count, now).to_bytes();
    // The pages of a live-frames run are recycled with what the last run wrote, so every
    // field is written whole, never adjusted from what is there.
    let mut ports = [0u8; 4];
    ports[..2].copy_from_slice(&flow.sport.to_be_bytes());
    ports[2..].copy_from_slice(&flow.dport.to_be_bytes());
    // Receivers on the way may have changed the Ethernet header and the TTL in place (a
    // router forwards by rewriting them), and their frames come back as this run's pages.
    if write(&ctx, 0, config.ethernet).is_none()
        || (config.hop_limit_offset != 0
            && write(&ctx, config.hop_limit_offset, config.hop_limit).is_none())
        || write(&ctx, config.l4_offset, ports).is_none()
        || write(&ctx, config.src_offset, flow.src.to_be_bytes()).is_none()
        || write(&ctx, config.dst_offset, flow.dst.to_be_bytes()).is_none()
        || write(&ctx, config.stamp_offset, stamp_bytes).is_none()
    {
        return xdp_action::XDP_ABORTED;
    }
    if config.ipv4_offset != 0 && refresh_ipv4_checksum(&ctx, config.ipv4_offset).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    if config.checksum_offset != 0 {
        let l4_len = (ctx.data_end() - ctx.data()) as u32 - u32::from(config.l4_offset);
        let checksum = config.l4_checksum(&flow, &stamp_bytes, l4_len);
        if write(&ctx, config.checksum_offset, checksum.to_be_bytes()).is_none() {
            return xdp_action::XDP_ABORTED;
        }
    }
    xdp_action::XDP_TX
}

/// The frame's `N` bytes at `offset`, if they lie inside it. The offset comes from a map: a
/// mask bounds it for the verifier, which then accepts the variable-offset check.
fn at<const N: usize>(ctx: &XdpContext, offset: u16) -> Option<*mut [u8; N]> {
    let start = ctx.data() + (offset & GEN_OFFSET_MASK) as usize;
    (start + N <= ctx.data_end()).then_some(start as *mut [u8; N])
}

fn write<const N: usize>(ctx: &XdpContext, offset: u16, bytes: [u8; N]) -> Option<()> {
    // SAFETY: `at` checked the range against data_end; packet data is unaligned.
    unsafe { at::<N>(ctx, offset)?.write_unaligned(bytes) };
    Some(())
}

fn refresh_ipv4_checksum(ctx: &XdpContext, offset: u16) -> Option<()> {
    let header = at::<20>(ctx, offset)?;
    // SAFETY: as in `write`.
    let header = unsafe { header.read_unaligned() };
    let checksum = ipv4_checksum(&header);
    write(ctx, offset + 10, checksum.to_be_bytes())
}
