//! The SDK for fastpath IO modules written in Rust with aya-ebpf, ABI version 1.
//!
//! A module is one XDP program plus its metadata:
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
//! The chain's entry program parses each packet once and fills a [`ModuleContext`];
//! [`Module::context`] reads it, [`Module::scratch`] passes data to the modules after.
//! Each verdict method counts the packet under this module's verdict counters (shown by
//! `fastpath module list`) and returns the XDP action to return from the program. The
//! ABI (layouts, map names) is `offload_common::module`, shared with the C header
//! `sdk/c/module.h` and with fastpath's loader.
#![no_std]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::map,
    maps::{Array, DevMap, PerCpuArray, ProgramArray, XskMap},
    programs::XdpContext,
};
pub use offload_common::module::{
    ABI_VERSION, META_FRAGS, META_MAGIC, ModuleContext, ModuleMeta, NAME_LEN, SCRATCH_LEN, parse,
    verdict,
};
use offload_common::module::{
    CHAIN_ARRAY_SLOTS, CHAIN_SLOTS, MAX_MODULES, MAX_PORTS, MAX_XSK_QUEUES, chain_counter,
};

/// `XDP_PASS`, for a program that cannot build its [`Module`].
pub const XDP_PASS: u32 = xdp_action::XDP_PASS;

// The maps the chain shares with its modules: same names and shapes as the chain's entry
// object, bound to the chain's pinned ones when fastpath loads the module.

#[map]
static FP_CHAIN: ProgramArray = ProgramArray::with_max_entries(CHAIN_ARRAY_SLOTS, 0);
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

/// The packet a module is running on: the kernel's XDP context and the chain's context.
pub struct Module {
    xdp: XdpContext,
    context: *mut ModuleContext,
}

impl Module {
    /// The module's view of the packet; `None` only when the chain's context map cannot be
    /// read (a broken chain: return [`XDP_PASS`]).
    #[inline(always)]
    pub fn new(xdp: XdpContext) -> Option<Module> {
        let context = FP_CONTEXT.get_ptr_mut(0)?;
        Some(Module { xdp, context })
    }

    /// The kernel's XDP context (packet data, data_end).
    #[inline(always)]
    pub fn xdp(&self) -> &XdpContext {
        &self.xdp
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
        if let Some(counter) = FP_VERDICTS.get_ptr_mut((instance - 1) * verdict::COUNT + verdict) {
            // SAFETY: a per-CPU slot, see `context`.
            unsafe { *counter += 1 };
        }
    }

    /// Hands the packet to the next module; past the last one, the chain passes it.
    #[inline(always)]
    pub fn next(self) -> u32 {
        self.count(verdict::CONTINUE);
        let next = u32::from(self.context().slot) + 1;
        // The last slot of a revision's bank: the next one belongs to another revision.
        if next % CHAIN_SLOTS != 0 {
            // SAFETY: as in `context`.
            unsafe { (*self.context).slot = next as u16 };
            tail_call_slot(&self.xdp, next);
        }
        if let Some(counter) = FP_CHAIN_COUNTERS.get_ptr_mut(chain_counter::END) {
            // SAFETY: a per-CPU slot, see `context`.
            unsafe { *counter += 1 };
        }
        xdp_action::XDP_PASS
    }

    /// Drops the packet.
    #[inline(always)]
    pub fn drop_packet(self) -> u32 {
        self.count(verdict::DROP);
        xdp_action::XDP_DROP
    }

    /// Passes the packet to the kernel's network stack.
    #[inline(always)]
    pub fn pass(self) -> u32 {
        self.count(verdict::PASS);
        xdp_action::XDP_PASS
    }

    /// Sends the packet back out of the interface it came in on (rewrite it first).
    #[inline(always)]
    pub fn tx(self) -> u32 {
        self.count(verdict::TX);
        xdp_action::XDP_TX
    }

    /// Redirects the packet to the interface `ifindex`.
    #[inline(always)]
    pub fn redirect(self, ifindex: u32) -> u32 {
        self.count(verdict::REDIRECT);
        // SAFETY: a helper taking plain values.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
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

    /// Counts `verdict` and returns `action`: for a module that carried the action out
    /// itself, e.g. a redirect through an XSKMAP or DEVMAP of its own (the built-in `steer`
    /// module redirects through the socket map its rules and AF_XDP users share).
    #[inline(always)]
    pub fn counted(self, verdict: u32, action: u32) -> u32 {
        self.count(verdict);
        action
    }

    /// Aborts (`XDP_ABORTED`): the packet is dropped and the `xdp_exception` tracepoint
    /// fires.
    #[inline(always)]
    pub fn abort(self) -> u32 {
        self.count(verdict::ABORTED);
        xdp_action::XDP_ABORTED
    }
}

/// Tail call to `slot` with one call site per slot, each with a constant key: the verifier
/// records the key and the x86 JIT makes the call a direct jump, patched when the slot
/// changes (`emit_bpf_tail_call_direct`, arch/x86/net/bpf_jit_comp.c), where a key known
/// only at run time is an indirect jump, a retpoline on CPUs with Spectre v2 mitigations.
/// The opaque marker after each call keeps LLVM from merging the calls into one.
#[inline(always)]
fn tail_call_slot(xdp: &XdpContext, slot: u32) {
    macro_rules! slots {
        ($($slot:literal)*) => {
            match slot {
                $(
                    $slot => {
                        // SAFETY: on success control never returns; every program of the
                        // array is an XDP program of this chain.
                        let _ = unsafe { FP_CHAIN.tail_call(xdp, $slot) };
                        core::hint::black_box($slot);
                    }
                )*
                _ => {}
            }
        };
    }
    slots!(
        1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63
    );
}

const _: () = assert!(CHAIN_ARRAY_SLOTS == 64, "tail_call_slot names every slot");

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
