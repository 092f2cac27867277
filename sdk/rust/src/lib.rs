//! The SDK for fastpath IO modules written in Rust with aya-ebpf, ABI version 1.
//!
//! A module is one XDP program (or, for a chain on a tcx hook, one TC classifier) plus its
//! metadata:
//!
//! ```ignore
//! use aya_ebpf::{macros::xdp, programs::XdpContext};
//! use fastpath_module::{Module, fastpath_module};
//!
//! fastpath_module!(name = "hello", version = "0.1.0", frags = true);
//!
//! #[xdp(frags)]
//! pub fn hello(ctx: XdpContext) -> u32 {
//!     let Some(module) = Module::new(ctx) else { return fastpath_module::XDP_PASS };
//!     module.next()
//! }
//! ```
//!
//! A TC module is the same with `#[classifier]`, a `TcContext` and `frags = false`:
//! [`Module::new`] takes either context, and the verdicts return the hook's action (for
//! TC: `TCX_PASS`, `TCX_DROP`, `bpf_redirect`'s, and `TCX_NEXT` at the chain's end).
//!
//! The chain's entry program parses each packet once and fills a [`ModuleContext`];
//! [`Module::context`] reads it, [`Module::scratch`] passes data to the modules after.
//! Each verdict method counts the packet under this module's verdict counters (shown by
//! `fastpath module list`) and returns the XDP action to return from the program. The
//! ABI (layouts, map names) is `offload_common::module`, shared with the C header
//! `sdk/c/module.h` and with fastpath's loader.
#![no_std]

use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_redirect},
    macros::map,
    maps::{Array, DevMap, PerCpuArray, ProgramArray, XskMap},
    programs::{TcContext, XdpContext},
};
pub use offload_common::module::{
    ABI_VERSION, META_FRAGS, META_MAGIC, ModuleContext, ModuleMeta, NAME_LEN, SCRATCH_LEN, parse,
    verdict,
};
use offload_common::module::{
    CHAIN_ARRAY_SLOTS, CHAIN_SLOTS, MAX_MODULES, MAX_PORTS, MAX_XSK_QUEUES, ModuleRuntime,
    REVISION_BANKS, chain_counter, tail_call_constant,
};

/// `XDP_PASS`, for a program that cannot build its [`Module`].
pub const XDP_PASS: u32 = xdp_action::XDP_PASS;
/// `TCX_NEXT`, for a TC program that cannot build its [`Module`]: on as if it never ran.
pub const TCX_NEXT: i32 = -1;

/// A hook a module runs on: its kernel context and what its program returns. One
/// implementation of the verdict counting serves both (the verdicts below); only the
/// action each returns differs.
pub trait Hook: EbpfContext {
    /// The program's return type.
    type Action: Copy;
    /// Pass the packet on to the kernel.
    const PASS: Self::Action;
    /// Drop it.
    const DROP: Self::Action;
    /// What the chain returns when it runs out of modules: XDP passes; TC returns
    /// `TCX_NEXT`, so later tcx programs of the hook still run.
    const CHAIN_END: Self::Action;
    /// The return value of `bpf_redirect` as this hook's action.
    fn redirect_action(code: i64) -> Self::Action;
}

impl Hook for XdpContext {
    type Action = u32;
    const PASS: u32 = xdp_action::XDP_PASS;
    const DROP: u32 = xdp_action::XDP_DROP;
    const CHAIN_END: u32 = xdp_action::XDP_PASS;
    #[inline(always)]
    fn redirect_action(code: i64) -> u32 {
        code as u32
    }
}

impl Hook for TcContext {
    type Action = i32;
    /// `TCX_PASS`.
    const PASS: i32 = 0;
    /// `TCX_DROP`.
    const DROP: i32 = 2;
    const CHAIN_END: i32 = TCX_NEXT;
    #[inline(always)]
    fn redirect_action(code: i64) -> i32 {
        code as i32
    }
}

// The maps the chain shares with its modules: same names and shapes as the chain's entry
// object, bound to the chain's pinned ones when fastpath loads the module.

#[map]
static FP_CONTEXT: PerCpuArray<ModuleContext> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FP_SLOT_INSTANCE: Array<u32> = Array::with_max_entries(CHAIN_ARRAY_SLOTS, 0);
#[map]
static FP_VERDICTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(MAX_MODULES * verdict::COUNT, 0);
#[map]
static FP_CHAIN_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(chain_counter::COUNT, 0);
#[map]
static FP_XSKS: XskMap = XskMap::with_max_entries(MAX_XSK_QUEUES, 0);
#[map]
static FP_PORTS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
#[map]
static FP_NEXT: ProgramArray = ProgramArray::with_max_entries(REVISION_BANKS, 0);
#[map]
static FP_RUNTIME: PerCpuArray<ModuleRuntime> = PerCpuArray::with_max_entries(MAX_MODULES, 0);

/// The packet a module is running on: the hook's kernel context (XDP by default, or TC)
/// and the chain's context.
pub struct Module<C: Hook = XdpContext> {
    hook: C,
    context: *mut ModuleContext,
}

impl<C: Hook> Module<C> {
    /// The module's view of the packet; `None` only when the chain's context map cannot be
    /// read (a broken chain: return [`XDP_PASS`], or [`TCX_NEXT`] on a TC hook).
    #[inline(always)]
    pub fn new(hook: C) -> Option<Module<C>> {
        let context = FP_CONTEXT.get_ptr_mut(0)?;
        Some(Module { hook, context })
    }

    /// The hook's kernel context (packet data, data_end).
    #[inline(always)]
    pub fn hook_context(&self) -> &C {
        &self.hook
    }

    /// What the chain's entry parsed: offsets, VLAN tags, the flow, the ingress interface.
    #[inline(always)]
    pub fn context(&self) -> &ModuleContext {
        // SAFETY: a per-CPU map value that lives for the program's run; the chain runs one
        // packet at a time per CPU, with migration disabled.
        unsafe { &*self.context }
    }

    /// The scratch area, passed to the modules after this one.
    #[inline(always)]
    pub fn scratch(&mut self) -> &mut [u8; SCRATCH_LEN] {
        // SAFETY: as in `context`; `&mut self` keeps the borrow unique.
        unsafe { &mut (*self.context).scratch }
    }

    #[inline(always)]
    fn count(&self, verdict: u32) {
        let slot = u32::from(self.context().slot);
        let Some(instance) = FP_SLOT_INSTANCE.get(slot) else {
            return;
        };
        let instance = *instance;
        if instance == 0 {
            return;
        }
        let module = instance - 1;
        if let Some(counter) = FP_VERDICTS.get_ptr_mut(module * verdict::COUNT + verdict) {
            // SAFETY: a per-CPU slot, see `context`.
            unsafe { *counter += 1 };
        }
        // Profiling (stamp set by the entry): the time since the packet was handed over.
        let stamp = self.context().stamp;
        if stamp != 0 {
            // SAFETY: a helper without preconditions.
            let now = unsafe { bpf_ktime_get_ns() } as u32 | 1;
            if let Some(spent) = FP_RUNTIME.get_ptr_mut(module) {
                // SAFETY: a per-CPU slot, see `context`.
                unsafe {
                    (*spent).ns += u64::from(now.wrapping_sub(stamp));
                    (*spent).packets += 1;
                }
            }
            // SAFETY: as in `context`.
            unsafe { (*self.context).stamp = now };
        }
    }

    /// Hands the packet to the next module; past the last one, the chain passes it (XDP)
    /// or lets the hook's later programs have it (TC).
    #[inline(always)]
    pub fn next(self) -> C::Action {
        self.count(verdict::CONTINUE);
        let slot = u32::from(self.context().slot);
        // SAFETY: as in `context`.
        unsafe { (*self.context).slot = (slot + 1) as u16 };
        let ctx = self.hook.as_ptr();
        // One call site per bank, each with a constant key, so the JIT makes each a direct
        // jump. SAFETY: on success control never returns; FP_NEXT holds programs of this
        // chain only.
        unsafe {
            if slot < CHAIN_SLOTS {
                tail_call_constant::<0>(ctx, (&raw const FP_NEXT).cast());
            } else {
                tail_call_constant::<1>(ctx, (&raw const FP_NEXT).cast());
            }
        }
        // Past the last module of the revision (its FP_NEXT entry is empty).
        if let Some(counter) = FP_CHAIN_COUNTERS.get_ptr_mut(chain_counter::END) {
            // SAFETY: a per-CPU slot, see `context`.
            unsafe { *counter += 1 };
        }
        C::CHAIN_END
    }

    /// Drops the packet.
    #[inline(always)]
    pub fn drop_packet(self) -> C::Action {
        self.count(verdict::DROP);
        C::DROP
    }

    /// Passes the packet to the kernel's network stack.
    #[inline(always)]
    pub fn pass(self) -> C::Action {
        self.count(verdict::PASS);
        C::PASS
    }

    /// Redirects the packet to the interface `ifindex`.
    #[inline(always)]
    pub fn redirect(self, ifindex: u32) -> C::Action {
        self.count(verdict::REDIRECT);
        // SAFETY: a helper taking plain values.
        C::redirect_action(unsafe { bpf_redirect(ifindex, 0) })
    }

    /// Counts `verdict` and returns `action`: for a module that carried the action out
    /// itself, e.g. a redirect through an XSKMAP or DEVMAP of its own (the built-in `steer`
    /// module redirects through the socket map its rules and AF_XDP users share).
    #[inline(always)]
    pub fn counted(self, verdict: u32, action: C::Action) -> C::Action {
        self.count(verdict);
        action
    }
}

/// The verdicts only XDP has.
impl Module<XdpContext> {
    /// The kernel's XDP context (packet data, data_end).
    #[inline(always)]
    pub fn xdp(&self) -> &XdpContext {
        &self.hook
    }

    /// Sends the packet back out of the interface it came in on (rewrite it first).
    #[inline(always)]
    pub fn tx(self) -> u32 {
        self.count(verdict::TX);
        xdp_action::XDP_TX
    }

    /// Redirects the packet to the AF_XDP socket of its RX queue; passes it (counted as
    /// `pass`) when no socket is bound there.
    #[inline(always)]
    pub fn xsk(self) -> u32 {
        match FP_XSKS.redirect(self.context().rx_queue, u64::from(xdp_action::XDP_PASS)) {
            Ok(action) if action == xdp_action::XDP_REDIRECT => {
                self.count(verdict::XSK);
                action
            }
            _ => self.pass(),
        }
    }

    /// Forwards the packet to the interface connected to `port`; passes it (counted as
    /// `pass`) when the port is not connected.
    #[inline(always)]
    pub fn forward(self, port: u32) -> u32 {
        match FP_PORTS.redirect(port, u64::from(xdp_action::XDP_PASS)) {
            Ok(action) if action == xdp_action::XDP_REDIRECT => {
                self.count(verdict::FORWARD);
                action
            }
            _ => self.pass(),
        }
    }

    /// Aborts (`XDP_ABORTED`): the packet is dropped and the `xdp_exception` tracepoint
    /// fires.
    #[inline(always)]
    pub fn abort(self) -> u32 {
        self.count(verdict::ABORTED);
        xdp_action::XDP_ABORTED
    }
}

/// The bytes of `text` in a NUL-padded name field; a compile error when it does not fit.
pub const fn name_field(text: &str) -> [u8; NAME_LEN] {
    let bytes = text.as_bytes();
    assert!(
        bytes.len() < NAME_LEN,
        "module names and versions hold at most 31 bytes"
    );
    let mut field = [0u8; NAME_LEN];
    let mut i = 0;
    while i < bytes.len() {
        field[i] = bytes[i];
        i += 1;
    }
    field
}

/// The metadata of a module built for this SDK's ABI.
pub const fn meta(name: &str, version: &str, frags: bool) -> ModuleMeta {
    ModuleMeta {
        magic: META_MAGIC,
        abi_version: ABI_VERSION,
        flags: if frags { META_FRAGS } else { 0 },
        name: name_field(name),
        version: name_field(version),
    }
}

/// Declares the module's metadata (read by fastpath without loading the object), its
/// license (GPL, for the helpers the SDK uses) and the panic handler `no_std` needs.
/// `frags` must match the program's `#[xdp(frags)]`.
#[macro_export]
macro_rules! fastpath_module {
    (name = $name:literal, version = $version:literal, frags = $frags:literal $(,)?) => {
        #[unsafe(link_section = ".fastpath.module")]
        #[unsafe(no_mangle)]
        #[used]
        static FASTPATH_MODULE_META: $crate::ModuleMeta = $crate::meta($name, $version, $frags);

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 4] = *b"GPL\0";

        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }
    };
}
