//! The traffic generator's program, run by `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`:
//! the kernel hands it the template frame again and again, and every XDP_TX goes out of the
//! interface named in the run's context, through the driver's transmit path
//! (net/bpf/test_run.c, xdp_test_run_batch). The technique is xdp-trafficgen's.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use offload_common::{GEN_OFFSET_MASK, GenConfig, GenStamp};

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
    let port = config.port_base.wrapping_add((count % flows as u64) as u16);
    // SAFETY: helpers with no arguments.
    let (cpu, now) = unsafe { (bpf_get_smp_processor_id() as u64, bpf_ktime_get_ns()) };
    let stamp = GenStamp {
        sequence: (cpu << 56) | count,
        sent_ns: now,
    };
    let start = ctx.data();
    let end = ctx.data_end();
    // The offsets come from a map: a mask bounds them for the verifier, which then
    // accepts the variable-offset packet checks below.
    let sport = (config.sport_offset & GEN_OFFSET_MASK) as usize;
    let stamp_at = (config.stamp_offset & GEN_OFFSET_MASK) as usize;
    if start + sport + 2 > end || start + stamp_at + 16 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: both ranges were checked against data_end above; packet data is unaligned.
    unsafe {
        ((start + sport) as *mut [u8; 2]).write_unaligned(port.to_be_bytes());
        ((start + stamp_at) as *mut [u8; 8]).write_unaligned(stamp.sequence.to_le_bytes());
        ((start + stamp_at + 8) as *mut [u8; 8]).write_unaligned(stamp.sent_ns.to_le_bytes());
    }
    xdp_action::XDP_TX
}
