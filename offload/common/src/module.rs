//! The IO module ABI, version [`ABI_VERSION`]: what the chain's entry program, the modules
//! built with the SDK (`sdk/rust`, `sdk/c/module.h`) and the loader in `offload::modules`
//! agree on.
//!
//! - [`ModuleContext`]: the per-packet context the entry program fills once (offsets, VLAN
//!   tags, flow tuple, ingress interface, scratch) and every module reads from the per-CPU
//!   map [`maps::CONTEXT`]. XDP runs with migration disabled and a packet's whole chain
//!   runs in one program invocation, so one per-CPU slot carries it across tail calls
//!   (`data_meta` would give only 32 bytes).
//! - [`verdict`]: what a module decides, counted per module in [`maps::VERDICTS`].
//! - [`ModuleMeta`]: the metadata a module object carries in its [`META_SECTION`] ELF
//!   section, read without loading the object.
//! - [`maps`]: the names of the maps the chain shares with its modules, bound to the pinned
//!   ones at load.
//! - [`ChainState`] and [`ModuleRecord`]: the chain's own bookkeeping, kept in maps so that
//!   every process (and one that died half way) sees the same truth.
//!
//! A change of any layout here is a new ABI version: modules built for another version are
//! refused at load.

use core::mem::size_of;

/// The ABI version this build speaks; a module built for another one is refused.
pub const ABI_VERSION: u32 = 1;

/// Program slots of one revision. The entry tail-calls the first, each module the next: 32
/// tail calls stay within the kernel's limit of 33 (`MAX_TAIL_CALL_CNT`).
pub const CHAIN_SLOTS: u32 = 32;
/// Revisions the program array holds at once: the running one and the one being built (or
/// the one just replaced, cleared after a grace delay).
pub const REVISION_BANKS: u32 = 2;
/// Entries of the [`maps::CHAIN`] program array: each revision owns `CHAIN_SLOTS` of them,
/// starting at `(revision % REVISION_BANKS) * CHAIN_SLOTS`.
pub const CHAIN_ARRAY_SLOTS: u32 = CHAIN_SLOTS * REVISION_BANKS;
/// Module instances one chain can hold at a time (a swap holds both versions for a moment).
pub const MAX_MODULES: u32 = 64;
/// Bytes of [`ModuleContext::scratch`], free for modules to pass data down the chain.
pub const SCRATCH_LEN: usize = 32;
/// Bytes of a name or version string in [`ModuleMeta`] and [`ModuleRecord`], NUL-padded.
pub const NAME_LEN: usize = 32;
/// Entries of the port map behind [`verdict::FORWARD`].
pub const MAX_PORTS: u32 = 64;
/// XSKMAP size of [`maps::XSKS`]: the highest RX queue index plus one.
pub const MAX_XSK_QUEUES: u32 = 256;

/// The ELF section holding a module's [`ModuleMeta`]; one of the names aya and libbpf
/// ignore, so the loaders never see it.
pub const META_SECTION: &str = ".fastpath.module";
/// The first bytes of a [`ModuleMeta`].
pub const META_MAGIC: [u8; 8] = *b"FPMODULE";

/// The names of the maps shared by the entry program and every module of a chain. A module
/// object declares those it uses with these names and shapes; the loader binds them to the
/// chain's pinned ones. Module maps may not use these names.
pub mod maps {
    /// `PROG_ARRAY` of [`super::CHAIN_ARRAY_SLOTS`]: the modules of every revision.
    pub const CHAIN: &str = "FP_CHAIN";
    /// Per-CPU array of one [`super::ModuleContext`].
    pub const CONTEXT: &str = "FP_CONTEXT";
    /// Array of one [`super::ChainState`]: which revision runs.
    pub const STATE: &str = "FP_STATE";
    /// Array of [`super::CHAIN_ARRAY_SLOTS`] `u32`: the module instance in each slot, as
    /// `instance + 1` (0: empty), for the verdict counters.
    pub const SLOT_INSTANCE: &str = "FP_SLOT_INSTANCE";
    /// Per-CPU array of `u64`, [`super::MAX_MODULES`] × [`super::verdict::COUNT`]: packets
    /// per module instance and verdict, at `instance * verdict::COUNT + verdict`.
    pub const VERDICTS: &str = "FP_VERDICTS";
    /// Per-CPU array of `u64` indexed by [`super::chain_counter`]: packets the chain itself
    /// ended.
    pub const CHAIN_COUNTERS: &str = "FP_CHAIN_COUNTERS";
    /// `XSKMAP` of [`super::MAX_XSK_QUEUES`]: the AF_XDP socket of each RX queue, for
    /// [`super::verdict::XSK`].
    pub const XSKS: &str = "FP_XSKS";
    /// `DEVMAP` of [`super::MAX_PORTS`]: the interface behind each port, for
    /// [`super::verdict::FORWARD`].
    pub const PORTS: &str = "FP_PORTS";
    /// Array of [`super::MAX_MODULES`] [`super::ModuleRecord`]s, read only by user space.
    pub const MODULES: &str = "FP_MODULES";
    /// Per-CPU array of [`super::MAX_MODULES`] [`super::ModuleRuntime`]: the time each
    /// module instance ran, counted only while the chain is profiled
    /// ([`super::ChainState::profile`]).
    pub const RUNTIME: &str = "FP_RUNTIME";
    /// A module's own `PROG_ARRAY` of [`super::REVISION_BANKS`] entries, not shared: entry
    /// `b` holds the next module's program in bank `b` (empty for the last module). The
    /// loader wires it when it builds a revision; a `continue` tail-calls it with a constant
    /// key, which the JIT makes a direct jump.
    pub const NEXT: &str = "FP_NEXT";
    /// Every shared map, in the order the loader binds them.
    pub const ALL: [&str; 10] = [
        CHAIN,
        CONTEXT,
        STATE,
        SLOT_INSTANCE,
        VERDICTS,
        CHAIN_COUNTERS,
        XSKS,
        PORTS,
        MODULES,
        RUNTIME,
    ];
}

/// What a module decided for a packet: the index of its verdict counter. `CONTINUE` hands
/// the packet to the next module; every other verdict ends the chain.
pub mod verdict {
    /// Tail call to the next module of the revision.
    pub const CONTINUE: u32 = 0;
    /// `XDP_DROP`.
    pub const DROP: u32 = 1;
    /// `XDP_PASS`: to the kernel's network stack.
    pub const PASS: u32 = 2;
    /// `XDP_TX`: back out of the ingress interface.
    pub const TX: u32 = 3;
    /// `bpf_redirect` to an interface by ifindex.
    pub const REDIRECT: u32 = 4;
    /// To the AF_XDP socket of the RX queue ([`super::maps::XSKS`]); passed (and counted
    /// as `PASS`) when no socket is bound there.
    pub const XSK: u32 = 5;
    /// To the interface behind a port ([`super::maps::PORTS`]); passed (and counted as
    /// `PASS`) when the port is not connected.
    pub const FORWARD: u32 = 6;
    /// `XDP_ABORTED`: the module failed (it also raises the `xdp_exception` tracepoint).
    pub const ABORTED: u32 = 7;
    /// Number of verdicts, the row length of [`super::maps::VERDICTS`].
    pub const COUNT: u32 = 8;
    /// Display names, indexed by verdict.
    pub const NAMES: [&str; COUNT as usize] = [
        "continue", "drop", "pass", "tx", "redirect", "xsk", "forward", "aborted",
    ];
}

/// Slots of [`maps::CHAIN_COUNTERS`]: packets the chain ended itself, each passed to the
/// kernel. With the modules' terminal verdicts they count every packet exactly once.
pub mod chain_counter {
    /// The running revision has no module.
    pub const EMPTY: u32 = 0;
    /// The last module continued (or a tail call failed): the chain ran out.
    pub const END: u32 = 1;
    /// The context slot could not be read (cannot happen with a well-formed chain).
    pub const NO_CONTEXT: u32 = 2;
    /// Number of slots.
    pub const COUNT: u32 = 4;
}

/// What the entry program's parse made of the frame, [`ModuleContext::parse`].
pub mod parse {
    /// An IPv4 or IPv6 packet that follows the parse policy; every field is set.
    pub const IP: u8 = 0;
    /// Not IP (ARP, LLDP, a third VLAN tag...): only the L2 fields are set.
    pub const NOT_IP: u8 = 1;
    /// Breaks the parse policy (truncated header, impossible length): only `l2_offset`
    /// can be trusted.
    pub const MALFORMED: u8 = 2;
}

/// The per-packet context: filled once by the chain's entry program, read (and the
/// `scratch` written) by every module.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleContext {
    /// [`ABI_VERSION`] of the entry that filled it.
    pub abi_version: u16,
    /// The running module's slot in [`maps::CHAIN`] (absolute, bank included).
    pub slot: u16,
    /// The revision the packet runs on.
    pub revision: u32,
    /// Offset of the Ethernet header (0).
    pub l2_offset: u16,
    /// Offset of the IP header.
    pub l3_offset: u16,
    /// Offset of the header `protocol` names: the L4 header, 0 for a later fragment, or
    /// the IPv6 extension header left when more were chained than the parse policy skips.
    pub l4_offset: u16,
    /// [`parse`] outcome.
    pub parse: u8,
    /// VLAN tags in front of the IP header (0, 1 or 2).
    pub vlan_count: u8,
    /// The tags' TCI (priority, DEI, VLAN id), outer first, host byte order.
    pub vlan_tci: [u16; 2],
    /// 4 or 6; 0 when not IP.
    pub ip_version: u8,
    /// IP protocol (for IPv6, after the extension headers).
    pub protocol: u8,
    /// 1 when `src_port` and `dst_port` were read (TCP or UDP, not a later fragment).
    pub has_ports: u8,
    /// `fragment::NONE`, `FIRST` or `LATER` of this crate.
    pub fragment: u8,
    /// Source port, host byte order.
    pub src_port: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// Source address in network byte order; IPv4 uses the first 4 bytes, the rest zero.
    pub src_addr: [u8; 16],
    /// Destination address, laid out like `src_addr`.
    pub dst_addr: [u8; 16],
    /// The interface the packet came in on.
    pub ingress_ifindex: u32,
    /// The RX queue it came in on.
    pub rx_queue: u32,
    /// The port it came in on (topologies); 0 when the chain is on an interface.
    pub ingress_port: u32,
    /// While the chain is profiled: the low 32 bits of `bpf_ktime_get_ns()` (with bit 0
    /// set) when the packet was handed to the running module; 0 otherwise. Each verdict
    /// adds the time since to the module's [`maps::RUNTIME`] and restamps it.
    pub stamp: u32,
    /// Free for modules: zeroed by the entry, passed down the chain.
    pub scratch: [u8; SCRATCH_LEN],
}

/// Slot 0 of [`maps::STATE`]: which revision runs. Switching revisions is one update of
/// this value, so every packet runs wholly on the old or the new one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainState {
    /// The running revision; it owns slots from `first_slot`.
    pub revision: u32,
    /// `(revision % REVISION_BANKS) * CHAIN_SLOTS`, precomputed for the entry.
    pub first_slot: u32,
    /// Modules in the revision; 0 makes the entry pass every packet.
    pub modules: u32,
    /// 1 when the chain's programs handle multi-buffer frames (`xdp.frags`).
    pub frags: u32,
    /// When the revision was switched to, in `CLOCK_REALTIME` seconds.
    pub applied_at: u64,
    /// 1 while the chain is profiled: the time of each module is counted in
    /// [`maps::RUNTIME`] (a clock read per verdict, so off unless asked for).
    pub profile: u32,
    /// Zero padding.
    pub _pad: u32,
}

/// A module instance's time while the chain is profiled, one per CPU in
/// [`maps::RUNTIME`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleRuntime {
    /// Nanoseconds from being handed a packet to its verdict, summed.
    pub ns: u64,
    /// Packets timed.
    pub packets: u64,
}

/// The metadata a module carries in its [`META_SECTION`] section. Written by the SDK's
/// macro (Rust) or `FASTPATH_MODULE` (C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleMeta {
    /// [`META_MAGIC`].
    pub magic: [u8; 8],
    /// The ABI version the module was built for.
    pub abi_version: u32,
    /// [`META_FRAGS`] when the module handles multi-buffer frames.
    pub flags: u32,
    /// The module's name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Its version, NUL-padded.
    pub version: [u8; NAME_LEN],
}

/// [`ModuleMeta::flags`]: the module handles multi-buffer frames (loaded as `xdp.frags`).
pub const META_FRAGS: u32 = 1;

/// One module instance of a chain, slot `instance` of [`maps::MODULES`]. The `next_*`
/// fields describe a version staged by a change in progress; the command that switches
/// revisions promotes them, and the next command does so (or clears them) if it died.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleRecord {
    /// [`RECORD_IN_USE`], and [`RECORD_FRAGS`].
    pub flags: u32,
    /// The kernel's id of the running program; 0 before the first switch.
    pub program_id: u32,
    /// The generation of the pinned maps directory of the running version.
    pub generation: u32,
    /// The kernel's id of a staged program; 0 when none.
    pub next_program_id: u32,
    /// The generation of the staged version's maps.
    pub next_generation: u32,
    /// Zero padding.
    pub _pad: u32,
    /// When the running version was loaded, `CLOCK_REALTIME` seconds.
    pub loaded_at: u64,
    /// The instance's name in the chain (unique), NUL-padded.
    pub name: [u8; NAME_LEN],
    /// The running version's version string.
    pub version: [u8; NAME_LEN],
    /// The staged version's version string.
    pub next_version: [u8; NAME_LEN],
    /// The first 16 bytes of the SHA-256 of the running version's object file: how
    /// `chain apply` tells an unchanged module from a new build of it.
    pub digest: [u8; DIGEST_LEN],
    /// The staged version's digest.
    pub next_digest: [u8; DIGEST_LEN],
}

/// Bytes of an object digest in [`ModuleRecord`].
pub const DIGEST_LEN: usize = 16;

impl Default for ModuleRecord {
    fn default() -> Self {
        Self {
            flags: 0,
            program_id: 0,
            generation: 0,
            next_program_id: 0,
            next_generation: 0,
            _pad: 0,
            loaded_at: 0,
            name: [0; NAME_LEN],
            version: [0; NAME_LEN],
            next_version: [0; NAME_LEN],
            digest: [0; DIGEST_LEN],
            next_digest: [0; DIGEST_LEN],
        }
    }
}

/// [`ModuleRecord::flags`]: the slot holds a module instance.
pub const RECORD_IN_USE: u32 = 1;
/// [`ModuleRecord::flags`]: the instance handles multi-buffer frames.
pub const RECORD_FRAGS: u32 = 2;

/// `bpf_tail_call(ctx, map, KEY)` with `KEY` an immediate of its own call site. The kernel
/// turns a tail call whose key the verifier knows into a direct jump; a computed key costs
/// an indirect jump (a retpoline on most x86 hosts, about 20 ns). Written in assembly so
/// the compiler cannot merge two call sites into one with a computed key.
///
/// # Safety
/// `ctx` is the running program's context and `map` a `PROG_ARRAY` map definition; on
/// success control does not come back.
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub unsafe fn tail_call_constant<const KEY: u64>(
    ctx: *mut core::ffi::c_void,
    map: *const core::ffi::c_void,
) {
    // SAFETY: the caller's; helper 12 is bpf_tail_call, which clobbers r0-r5.
    unsafe {
        core::arch::asm!(
            "call 12",
            inout("r1") ctx => _,
            inout("r2") map => _,
            inout("r3") KEY => _,
            lateout("r0") _,
            lateout("r4") _,
            lateout("r5") _,
        );
    }
}

const _: () = assert!(size_of::<ModuleContext>() == 108);
const _: () = assert!(size_of::<ChainState>() == 32);
const _: () = assert!(size_of::<ModuleRuntime>() == 16);
const _: () = assert!(size_of::<ModuleMeta>() == 80);
const _: () = assert!(size_of::<ModuleRecord>() == 160);
const _: () = assert!(CHAIN_SLOTS < 33, "the kernel allows 33 tail calls");
