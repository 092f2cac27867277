//! The IO module chain's entry program: parses each packet once (the one parse policy of
//! `parse.rs`), fills the per-packet context, and tail-calls the first module of the
//! running revision (see `offload_common::module` for the ABI, `offload::modules` for the
//! loader).
//!
//! Two copies of the entry are built, `chain_entry` and `chain_entry_frags`: every program
//! of one program array must agree on `xdp.frags` (the kernel enforces it when a program is
//! put in the array), so a chain of multi-buffer modules runs behind the second.
//!
//! An object of its own: attaching a chain loads none of the steering program's maps.
#![no_std]
#![no_main]

mod module_context;
mod object;
mod parse;

use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{Array, DevMap, PerCpuArray, ProgramArray, XskMap},
    programs::{TcContext, XdpContext},
};
use offload_common::module::{
    ABI_VERSION, CHAIN_ARRAY_SLOTS, CHAIN_SLOTS, ChainState, MAX_MODULES, MAX_PORTS,
    MAX_XSK_QUEUES, ModuleContext, ModuleRecord, ModuleRuntime, chain_counter, tail_call_constant,
    verdict,
};
use parse::Frame;

// The shared maps, pinned by name in the chain's directory (offload::modules binds them to
// every module at load). Names and shapes are the ABI: see offload_common::module::maps.

#[map]
static FP_CHAIN: ProgramArray = ProgramArray::pinned(CHAIN_ARRAY_SLOTS, 0);
#[map]
static FP_CONTEXT: PerCpuArray<ModuleContext> = PerCpuArray::pinned(1, 0);
#[map]
static FP_STATE: Array<ChainState> = Array::pinned(1, 0);
#[map]
static FP_SLOT_INSTANCE: Array<u32> = Array::pinned(CHAIN_ARRAY_SLOTS, 0);
#[map]
static FP_VERDICTS: PerCpuArray<u64> = PerCpuArray::pinned(MAX_MODULES * verdict::COUNT, 0);
#[map]
static FP_CHAIN_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(chain_counter::COUNT, 0);
#[map]
static FP_XSKS: XskMap = XskMap::pinned(MAX_XSK_QUEUES, 0);
#[map]
static FP_PORTS: DevMap = DevMap::pinned(MAX_PORTS, 0);
#[map]
static FP_MODULES: Array<ModuleRecord> = Array::pinned(MAX_MODULES, 0);
#[map]
static FP_RUNTIME: PerCpuArray<ModuleRuntime> = PerCpuArray::pinned(MAX_MODULES, 0);

#[xdp]
pub fn chain_entry(ctx: XdpContext) -> u32 {
    enter(&ctx)
}

#[xdp(frags)]
pub fn chain_entry_frags(ctx: XdpContext) -> u32 {
    enter(&ctx)
}

/// The entry of a chain on a tcx hook (ingress or egress): the same context, the same
/// modules' ABI, TC classifiers in its program array.
#[classifier]
pub fn chain_entry_tc(ctx: TcContext) -> i32 {
    enter(&ctx)
}

/// What the entry needs of its hook's context beyond the packet's bytes.
trait Hook: Frame + EbpfContext {
    /// What the hook returns to let the packet go on as if no program ran.
    const PASS: Self::Action;
    /// The program's return type.
    type Action;
    /// The interface the chain runs on, and the packet's queue.
    fn interface_and_queue(&self) -> (u32, u32);
}

impl Hook for XdpContext {
    type Action = u32;
    const PASS: u32 = xdp_action::XDP_PASS;
    #[inline(always)]
    fn interface_and_queue(&self) -> (u32, u32) {
        // SAFETY: the kernel's xdp_md, valid for the program's run.
        unsafe { ((*self.ctx).ingress_ifindex, (*self.ctx).rx_queue_index) }
    }
}

impl Hook for TcContext {
    type Action = i32;
    /// `TCX_NEXT`: on to any later tcx program, then the kernel.
    const PASS: i32 = -1;
    #[inline(always)]
    fn interface_and_queue(&self) -> (u32, u32) {
        // SAFETY: the kernel's __sk_buff, valid for the program's run; `ifindex` is the
        // device the hook runs on, ingress or egress.
        unsafe { ((*self.skb.skb).ifindex, (*self.skb.skb).queue_mapping) }
    }
}

#[inline(always)]
fn enter<C: Hook>(ctx: &C) -> C::Action {
    let Some(context) = FP_CONTEXT.get_ptr_mut(0) else {
        count(chain_counter::NO_CONTEXT);
        return C::PASS;
    };
    let state = match FP_STATE.get(0) {
        Some(state) => *state,
        None => {
            // Unreachable (slot 0 exists); keeps the maps only user space and the modules
            // use referenced, so the linker keeps them in the object.
            let _ = FP_MODULES.get_ptr(0);
            let _ = FP_SLOT_INSTANCE.get_ptr(0);
            let _ = FP_VERDICTS.get_ptr(0);
            let _ = FP_RUNTIME.get_ptr(0);
            let _ = FP_XSKS.redirect(0, 0);
            let _ = FP_PORTS.redirect(0, 0);
            ChainState::default()
        }
    };
    if state.modules == 0 {
        count(chain_counter::EMPTY);
        return C::PASS;
    }
    // SAFETY: a per-CPU slot: XDP and TC programs run with migration disabled and the
    // packet's whole chain runs in this invocation, so nothing else touches it meanwhile.
    unsafe { fill(ctx, &mut *context, &state) };
    // One call site per bank, each with a constant key, so the JIT makes the jump into the
    // first module a direct one. SAFETY: on success control never comes back; the chain's
    // modules are programs of this hook's type (and, for XDP, agree with this one on
    // frags): the kernel refuses others in the array.
    unsafe {
        let (context, chain) = (ctx.as_ptr(), (&raw const FP_CHAIN).cast());
        if state.first_slot == 0 {
            tail_call_constant::<0>(context, chain);
        } else {
            tail_call_constant::<{ CHAIN_SLOTS as u64 }>(context, chain);
        }
    }
    count(chain_counter::END);
    C::PASS
}

#[inline(always)]
fn fill(ctx: &impl Hook, context: &mut ModuleContext, state: &ChainState) {
    let (ifindex, queue) = ctx.interface_and_queue();
    module_context::clear(context);
    context.abi_version = ABI_VERSION as u16;
    context.slot = state.first_slot as u16;
    context.revision = state.revision;
    context.ingress_ifindex = ifindex;
    context.rx_queue = queue;
    context.stamp = if state.profile != 0 {
        // SAFETY: a helper without preconditions.
        unsafe { bpf_ktime_get_ns() as u32 | 1 }
    } else {
        0
    };
    module_context::describe(ctx, context);
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(counter) = FP_CHAIN_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, see `enter`.
        unsafe { *counter += 1 };
    }
}
