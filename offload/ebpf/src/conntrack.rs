//! Connection tracking, shared by the firewall module (XDP, what comes in) and the egress
//! tracker (TC egress, what the node sends): one LRU hash per node, pinned under
//! `/sys/fs/bpf/fastpath/conntrack/`, one entry per flow for both directions.
//!
//! A packet's state: ESTABLISHED when its flow's entry has seen the answering side (or the
//! packet is the answer), NEW when it opens a flow (or the answer has not come yet),
//! RELATED for an ICMP error quoting a tracked flow, INVALID for what no flow explains.
//! TCP is tracked as Linux tracks it ([`tcp`]). As in Linux, a packet moves its flow's
//! entry before any rule looks at it ([`track`]), and a new flow's entry is made only for
//! a packet the firewall lets through ([`record`], and for everything the node sends), and
//! only when the table is below its limit: a full table refuses the new flow (the caller
//! drops its packet) and counts it, never evicting a live flow silently.

mod tcp;

use aya_ebpf::{
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use offload_common::{
    FAMILY_V4,
    firewall::{
        CT_DEFAULT_LIMIT, CT_MAX_ENTRIES, CtEntry, CtKey, CtSettings, FILL_INSERTED, FILL_REMOVED,
        ct_counter, ct_flag, ct_state, timeout,
    },
    proto,
};

use crate::parse::{self, Frame};

#[map]
static FW_CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CT_MAX_ENTRIES, 0);
#[map]
static FW_CT_SETTINGS: Array<CtSettings> = Array::with_max_entries(1, 0);
#[map]
static FW_CT_FILL: Array<u64> = Array::with_max_entries(2, 0);
/// Per-CPU room for the flow keys being built (0: the packet's, 1: an ICMP error's quoted
/// flow): the BPF stack (512 bytes for all frames of a call chain) cannot hold them.
#[map]
static FW_CT_SCRATCH: PerCpuArray<CtKey> = PerCpuArray::with_max_entries(2, 0);
/// Per-CPU: the entry a TCP packet without a flow would open, made by [`track`] (the
/// segment judged as Linux judges a new flow's first) and written by [`record`] if the
/// packet goes through.
#[map]
static FW_CT_FRESH: PerCpuArray<CtEntry> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FW_CT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ct_counter::COUNT, 0);

/// L4 headers read at most this far in (a power of two).
const MAX_L4_OFFSET: usize = 1024;
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;

/// One packet's flow, as tracking and rules see it.
pub struct Flow {
    pub family: u8,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TCP/UDP ports; for ICMP echo, the identifier in both.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type and code (0 for other protocols).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Offset of the L4 header (the ICMP header for an ICMP error's quote).
    pub l4_offset: usize,
}

/// The flow's entry, as found.
pub struct Tracked {
    src_is_low: bool,
    /// A live (unexpired) entry.
    entry: Option<*mut CtEntry>,
    /// An entry is there but expired (or closed and reopened): a new one overwrites it
    /// without adding to the fill.
    stale: bool,
    /// `FW_CT_FRESH` holds the entry this TCP packet opens.
    fresh: bool,
}

/// The table refused a new flow: it holds its limit.
pub struct TableFull;

/// The time expiries are kept in: CLOCK_MONOTONIC at the last tick (coarse). The precise
/// clock (`bpf_ktime_get_ns`) reads the TSC: about 40 ns a call on the measured VM, a
/// quarter of the module's cost when `lookup` and `record` each read it; the coarse one
/// reads the last tick's time. Timeouts are seconds, a tick is milliseconds. User space
/// compares expiries with CLOCK_MONOTONIC, which runs at most a tick ahead: an entry may
/// look expired to a sweep a tick early.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper without preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// An entry's expiry is moved later only once it would move by this much (timeouts are
/// seconds to days): most packets of a busy flow leave it as it is. An expiry may come up
/// to this much early.
const REFRESH_GRANULARITY_NS: u64 = 1_000_000_000;

#[inline(always)]
pub(crate) fn count(slot: u32) {
    if let Some(counter) = FW_CT_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; the program runs with migration disabled.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn timeout_ns(kind: usize) -> u64 {
    // Clamped, and read with `get`, not indexing: a slot chosen at run time would bring a
    // bounds check whose panic the verifier refuses, and LLVM may test a copy of the slot
    // the verifier does not connect to the access.
    let kind = kind.min(timeout::COUNT - 1);
    let configured = FW_CT_SETTINGS
        .get(0)
        .and_then(|settings| settings.timeouts.get(kind).copied())
        .unwrap_or(0);
    let seconds = if configured == 0 {
        timeout::DEFAULTS.get(kind).copied().unwrap_or(0)
    } else {
        configured
    };
    u64::from(seconds) * 1_000_000_000
}

/// `a < b` over (address, port), the order that puts a flow's lower end first.
#[inline(always)]
fn lower(a: &[u8; 16], a_port: u16, b: &[u8; 16], b_port: u16) -> bool {
    for index in 0..16 {
        if a[index] != b[index] {
            return a[index] < b[index];
        }
    }
    a_port < b_port
}

#[inline(always)]
fn is_echo_request(flow: &Flow) -> bool {
    (flow.proto == proto::ICMP && flow.icmp_type == 8)
        || (flow.proto == proto::ICMPV6 && flow.icmp_type == 128)
}

#[inline(always)]
fn is_echo(flow: &Flow) -> bool {
    is_echo_request(flow)
        || (flow.proto == proto::ICMP && flow.icmp_type == 0)
        || (flow.proto == proto::ICMPV6 && flow.icmp_type == 129)
}

/// An ICMP error that quotes the packet it is about (RFC 792, RFC 4443 section 2.4).
#[inline(always)]
fn is_icmp_error(flow: &Flow) -> bool {
    (flow.proto == proto::ICMP && matches!(flow.icmp_type, 3 | 4 | 5 | 11 | 12))
        || (flow.proto == proto::ICMPV6 && matches!(flow.icmp_type, 1..=4))
}

/// Writes the key of the flow (src, src_port) <-> (dst, dst_port) into `key`; returns
/// whether the source is the key's lower end.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_key(
    key: &mut CtKey,
    family: u8,
    protocol: u8,
    src: &[u8; 16],
    src_port: u16,
    dst: &[u8; 16],
    dst_port: u16,
) -> bool {
    let src_is_low = lower(src, src_port, dst, dst_port);
    let (low, high) = if src_is_low { (src, dst) } else { (dst, src) };
    for index in 0..16 {
        key.addr_low[index] = low[index];
        key.addr_high[index] = high[index];
    }
    (key.port_low, key.port_high) = if src_is_low {
        (src_port, dst_port)
    } else {
        (dst_port, src_port)
    };
    key.proto = protocol;
    key.family = family;
    key._pad = [0; 2];
    src_is_low
}

/// Finds the flow's entry.
#[inline(never)]
pub fn lookup(flow: &Flow) -> Tracked {
    let mut tracked = Tracked {
        src_is_low: false,
        entry: None,
        stale: false,
        fresh: false,
    };
    // ICMP other than echo has no flow of its own (an error belongs to the flow it quotes);
    // looked up with ports 0 it would find an echo flow of identifier 0.
    if (flow.proto == proto::ICMP || flow.proto == proto::ICMPV6) && !is_echo(flow) {
        return tracked;
    }
    let Some(key) = FW_CT_SCRATCH.get_ptr_mut(0) else {
        return tracked;
    };
    // SAFETY: a per-CPU scratch slot; the program runs with migration disabled.
    let key = unsafe { &mut *key };
    tracked.src_is_low = write_key(
        key,
        flow.family,
        flow.proto,
        &flow.src,
        flow.src_port,
        &flow.dst,
        flow.dst_port,
    );
    if let Some(entry) = FW_CONNTRACK.get_ptr_mut(&*key) {
        // SAFETY: a map value; concurrent updates of its plain fields may race, which only
        // loses a state step or a count (the kernel's own conntrack locks; we accept it).
        if unsafe { (*entry).expires_ns } < now() {
            tracked.stale = true;
        } else {
            tracked.entry = Some(entry);
        }
    }
    tracked
}

/// The TCP settings word ([`offload_common::firewall::tcp_setting`]).
#[inline(always)]
fn tcp_settings() -> u32 {
    FW_CT_SETTINGS.get(0).map_or(0, |settings| settings.tcp)
}

/// The packet's [`ct_state`] bit; a packet of a tracked flow moves the flow's entry (as
/// Linux's conntrack, before any rule: a dropped SYN-ACK was still seen). An ICMP error
/// is RELATED when the packet it quotes (in `frame`) belongs to a tracked flow; without a
/// frame (what the node sends) it is not looked into.
#[inline(always)]
pub fn track(tracked: &mut Tracked, flow: &Flow, frame: Option<&impl Frame>) -> u8 {
    let settings = tcp_settings();
    if let Some(entry) = tracked.entry {
        // SAFETY: see `lookup`.
        let entry = unsafe { &mut *entry };
        let from_original = tracked.src_is_low == (entry.original_is_low != 0);
        // Echo requests go one way and replies the other; the key holds no type, so a
        // reply from the requesting side (or the reverse) meets the flow: Linux's tuple
        // holds the type and finds nothing there, so it is invalid.
        if is_echo(flow) && is_echo_request(flow) != from_original {
            count(ct_counter::INVALID);
            return ct_state::INVALID;
        }
        let answered = entry.flags & ct_flag::SEEN_REPLY != 0;
        let mut refresh = tcp::Refresh::of(tcp::Refresh::UNSET);
        let mut reopened = false;
        if flow.proto == proto::TCP {
            let Some(segment) = tcp::segment() else {
                return ct_state::INVALID;
            };
            match tcp::packet(entry, !from_original, segment, settings) {
                tcp::Outcome::Accept(moved) => refresh = moved,
                tcp::Outcome::Ignore => refresh = tcp::Refresh::of(tcp::Refresh::KEEP),
                tcp::Outcome::Invalid => {
                    count(ct_counter::INVALID);
                    return ct_state::INVALID;
                }
                // The old flow ends here, whatever the rules make of the SYN; the SYN
                // opens a new one below.
                tcp::Outcome::Reopen => reopened = true,
            }
        }
        if !reopened {
            entry.packets += 1;
            if !from_original {
                entry.flags |= ct_flag::SEEN_REPLY;
            }
            if refresh.kind == tcp::Refresh::UNSET {
                refresh = tcp::Refresh::to(timeout_of(entry, flow.proto), false);
            }
            entry.expires_ns = refreshed(entry.expires_ns, refresh);
            return if !from_original || answered {
                ct_state::ESTABLISHED
            } else {
                ct_state::NEW
            };
        }
        entry.expires_ns = 0;
        tracked.entry = None;
        tracked.stale = true;
    }
    if is_icmp_error(flow) {
        let (family, l4_offset) = (flow.family, flow.l4_offset);
        let quoted = frame.is_some_and(|frame| {
            quoted_flow_tracked(family, l4_offset, frame.data(), frame.data_end())
        });
        if quoted {
            return ct_state::RELATED;
        }
        count(ct_counter::INVALID);
        return ct_state::INVALID;
    }
    // ICMP that neither opens a flow (an echo request) nor reports on one: an echo reply
    // to no request, or a type conntrack does not follow (Linux: `icmp_new` refuses it).
    let icmp = flow.proto == proto::ICMP || flow.proto == proto::ICMPV6;
    if icmp && !is_echo_request(flow) {
        count(ct_counter::INVALID);
        return ct_state::INVALID;
    }
    if flow.proto == proto::TCP {
        let Some(fresh) = FW_CT_FRESH.get_ptr_mut(0) else {
            return ct_state::INVALID;
        };
        // SAFETY: a per-CPU slot; the program runs with migration disabled.
        let fresh = unsafe { &mut *fresh };
        *fresh = CtEntry {
            packets: 1,
            original_is_low: tracked.src_is_low as u8,
            ..CtEntry::default()
        };
        let Some(segment) = tcp::segment() else {
            return ct_state::INVALID;
        };
        let refresh = tcp::open(fresh, segment, settings);
        if refresh.kind == tcp::Refresh::UNSET {
            count(ct_counter::INVALID);
            return ct_state::INVALID;
        }
        fresh.expires_ns = refreshed(0, refresh);
        tracked.fresh = true;
    }
    ct_state::NEW
}

/// An entry's expiry after a packet: sooner (a state with a shorter timeout, an RST) at
/// once, later in steps.
#[inline(always)]
fn refreshed(expires_ns: u64, refresh: tcp::Refresh) -> u64 {
    let expires = match refresh.kind {
        tcp::Refresh::KILL => 0,
        tcp::Refresh::TO => {
            let mut timeout = timeout_ns(usize::from(refresh.slot));
            if refresh.cap {
                timeout = timeout.min(timeout_ns(timeout::UNACKNOWLEDGED));
            }
            now() + timeout
        }
        _ => return expires_ns,
    };
    if expires < expires_ns || expires - expires_ns >= REFRESH_GRANULARITY_NS {
        expires
    } else {
        expires_ns
    }
}

/// Whether the packet an ICMP error quotes (its IP header and the first 8 bytes after it,
/// RFC 792) belongs to a tracked flow. Only the quoted addresses, protocol and ports are
/// read; a quoted IPv4 header with options or IPv6 extension headers leaves the error
/// unmatched (INVALID).
// A function of its own (a BPF-to-BPF call): its stack frame is not added to the
// caller's, which keeps each under the 512-byte limit.
#[inline(never)]
fn quoted_flow_tracked(family: u8, l4_offset: usize, data: usize, data_end: usize) -> bool {
    // The packet's bounds come in as values: the caller read them from the context (a
    // subprogram reading them itself would widen the 32-bit context fields with shifts,
    // which the verifier refuses on packet pointers).
    let frame = &Bounds { data, data_end };
    // Masked again: the bound must be visible inside this function too.
    let inner = (l4_offset & (MAX_L4_OFFSET - 1)) + 8;
    let Some(key) = FW_CT_SCRATCH.get_ptr_mut(1) else {
        return false;
    };
    // SAFETY: a per-CPU scratch slot; the program runs with migration disabled.
    let key = unsafe { &mut *key };
    // The quoted flow, written straight into the key's fields (the lower end sorted out
    // below): the stack has no room for another flow.
    let (protocol, quoted_l4);
    let Ok(first) = read::<u8>(frame, inner) else {
        return false;
    };
    // Each field read on its own, with an early return: a tuple of results leaves
    // undefined bytes LLVM may store from any register, which the verifier refuses.
    if family == FAMILY_V4 {
        // A quoted header with options is not matched: every read stays at a constant
        // distance from `inner`, which the verifier follows.
        if first & 0x0f != 5 {
            return false;
        }
        let Ok(next) = read::<u8>(frame, inner + 9) else {
            return false;
        };
        let Ok(src) = read::<u32>(frame, inner + 12) else {
            return false;
        };
        let Ok(dst) = read::<u32>(frame, inner + 16) else {
            return false;
        };
        key.addr_low = [0; 16];
        key.addr_high = [0; 16];
        key.addr_low[..4].copy_from_slice(&src.to_ne_bytes());
        key.addr_high[..4].copy_from_slice(&dst.to_ne_bytes());
        (protocol, quoted_l4) = (next, inner + 20);
    } else {
        let Ok(next) = read::<u8>(frame, inner + 6) else {
            return false;
        };
        for index in 0..16 {
            let (Ok(src), Ok(dst)) = (
                read::<u8>(frame, inner + 8 + index),
                read::<u8>(frame, inner + 24 + index),
            ) else {
                return false;
            };
            key.addr_low[index] = src;
            key.addr_high[index] = dst;
        }
        (protocol, quoted_l4) = (next, inner + 40);
    }
    let (mut src_port, mut dst_port) = (0u16, 0u16);
    match protocol {
        proto::TCP | proto::UDP => {
            let Ok(ports) = read::<u32>(frame, quoted_l4) else {
                return false;
            };
            let ports = ports.to_ne_bytes();
            src_port = u16::from_be_bytes([ports[0], ports[1]]);
            dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
        proto::ICMP | proto::ICMPV6 => {
            let Ok(identifier) = read::<u16>(frame, quoted_l4 + 4) else {
                return false;
            };
            let identifier = u16::from_be(identifier);
            (src_port, dst_port) = (identifier, identifier);
        }
        _ => {}
    }
    // Order the ends as a key does (addresses first, then ports).
    let swap = !lower(&key.addr_low, src_port, &key.addr_high, dst_port);
    if swap {
        for index in 0..16 {
            let low = key.addr_low[index];
            key.addr_low[index] = key.addr_high[index];
            key.addr_high[index] = low;
        }
    }
    (key.port_low, key.port_high) = if swap {
        (dst_port, src_port)
    } else {
        (src_port, dst_port)
    };
    key.proto = protocol;
    key.family = family;
    key._pad = [0; 2];
    match FW_CONNTRACK.get_ptr(&*key) {
        // SAFETY: see `lookup`.
        Some(entry) => unsafe { (*entry).expires_ns >= now() },
        None => false,
    }
}

/// Makes the entry of a new flow whose packet goes through (a TCP SYN, or an ACK picked
/// up in mid-stream, as [`track`] judged it; an ICMP echo request; any UDP or other
/// datagram); a packet of a tracked flow moved it in [`track`] already. Fails only when a
/// new entry is needed and the table is full.
#[inline(never)]
pub fn record(tracked: &Tracked, flow: &Flow) -> Result<(), TableFull> {
    if tracked.entry.is_some() {
        return Ok(());
    }
    let entry = if flow.proto == proto::TCP {
        let fresh = FW_CT_FRESH.get_ptr(0).filter(|_| tracked.fresh);
        // SAFETY: the per-CPU slot `track` filled; nothing ran on this CPU since.
        let Some(fresh) = fresh.map(|fresh| unsafe { *fresh }) else {
            return Ok(());
        };
        fresh
    } else if (flow.proto == proto::ICMP || flow.proto == proto::ICMPV6) && !is_echo_request(flow) {
        return Ok(());
    } else {
        let mut entry = CtEntry {
            packets: 1,
            original_is_low: tracked.src_is_low as u8,
            ..CtEntry::default()
        };
        entry.expires_ns = now() + timeout_ns(timeout_of(&entry, flow.proto));
        entry
    };
    let limit = FW_CT_SETTINGS
        .get(0)
        .map(|settings| settings.limit)
        .filter(|limit| *limit != 0)
        .unwrap_or(CT_DEFAULT_LIMIT);
    let (Some(inserted), Some(removed)) = (
        FW_CT_FILL.get_ptr_mut(FILL_INSERTED),
        FW_CT_FILL.get_ptr(FILL_REMOVED),
    ) else {
        return Err(TableFull);
    };
    // SAFETY: array values that live as long as the map (a racing add shows here late,
    // which at worst lets a few entries past the limit: the LRU's slack covers them).
    let held = unsafe {
        inserted
            .read_volatile()
            .wrapping_sub(removed.read_volatile())
    };
    if !tracked.stale && held >= u64::from(limit) {
        count(ct_counter::TABLE_FULL);
        return Err(TableFull);
    }
    let flags = if tracked.stale { BPF_ANY } else { BPF_NOEXIST };
    // The key `lookup` wrote (read again here, not handed on: a pointer kept in the
    // caller's struct comes back to the verifier as a plain number).
    let Some(key) = FW_CT_SCRATCH.get_ptr(0) else {
        return Err(TableFull);
    };
    // SAFETY: the scratch slot `lookup` filled; nothing ran on this CPU since.
    let key = unsafe { &*key };
    match FW_CONNTRACK.insert(key, &entry, flags) {
        Ok(()) => {
            if !tracked.stale {
                add_atomically(inserted, 1);
            }
            count(ct_counter::CREATED);
            Ok(())
        }
        // EEXIST: another CPU made it meanwhile; the flow is tracked.
        Err(error) if error == -17 => Ok(()),
        Err(_) => {
            count(ct_counter::TABLE_FULL);
            Err(TableFull)
        }
    }
}

/// `*counter += value` as one atomic instruction (`BPF_ATOMIC | BPF_ADD`): every CPU adds
/// to the one fill counter. `core`'s atomics offer no `fetch_add` on the BPF target.
#[inline(always)]
fn add_atomically(counter: *mut u64, value: u64) {
    // SAFETY: `counter` points into a map value that outlives the program run.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({counter} + 0) += {value}",
            counter = in(reg) counter,
            value = in(reg) value,
        )
    };
}

/// The timeout slot of a flow other than TCP.
#[inline(always)]
fn timeout_of(entry: &CtEntry, protocol: u8) -> usize {
    if protocol == proto::ICMP || protocol == proto::ICMPV6 {
        timeout::ICMP
    } else if entry.flags & ct_flag::SEEN_REPLY != 0 {
        // A flow both sides spoke in lives longer (Linux's UDP "stream").
        timeout::UDP_REPLIED
    } else {
        timeout::UDP
    }
}

/// A packet's bounds, read by the caller (a subprogram is handed them as values).
pub(crate) struct Bounds {
    pub(crate) data: usize,
    pub(crate) data_end: usize,
}

impl Frame for Bounds {
    #[inline(always)]
    fn data(&self) -> usize {
        self.data
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        self.data_end
    }
    #[inline(always)]
    fn total_len(&self) -> usize {
        self.data_end - self.data
    }
}

#[inline(always)]
fn read<T: Copy>(frame: &impl Frame, offset: usize) -> Result<T, parse::Malformed> {
    let at = parse::at::<T>(frame, offset)?;
    // SAFETY: `at` checked that the whole `T` is inside the packet; no alignment is
    // promised, hence read_unaligned.
    Ok(unsafe { at.read_unaligned() })
}

/// The flow of a packet the chain's parse read: its TCP flags or ICMP type, code and echo
/// identifier are read from the L4 header at `l4_offset`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn flow_of(
    frame: &impl Frame,
    family: u8,
    protocol: u8,
    src: [u8; 16],
    dst: [u8; 16],
    ports: Option<(u16, u16)>,
    l3_offset: u16,
    l4_offset: u16,
) -> Flow {
    // The verifier grants a packet read at a variable offset only when the offset's bound
    // plus the read stays under 64 KiB: masked, the bound is known. An L4 header further
    // in than 1 KiB (long IPv6 extension chains) is not read: no flags, no ICMP type.
    let l4_offset = if usize::from(l4_offset) < MAX_L4_OFFSET {
        usize::from(l4_offset) & (MAX_L4_OFFSET - 1)
    } else {
        0
    };
    let mut flow = Flow {
        family,
        proto: protocol,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
        l4_offset,
    };
    // Every TCP packet leaves its own segment for tracking: an empty one (no flag, so
    // invalid) when its header is not read (a later fragment, a header past 1 KiB), never
    // the segment an earlier packet left on this CPU.
    if protocol == proto::TCP {
        let at = if ports.is_some() { l4_offset } else { 0 };
        flow.tcp_flags = tcp::read_segment(frame, family, usize::from(l3_offset), at);
    }
    if let Some((src_port, dst_port)) = ports {
        (flow.src_port, flow.dst_port) = (src_port, dst_port);
    } else if (protocol == proto::ICMP || protocol == proto::ICMPV6) && l4_offset != 0 {
        if let Ok(header) = read::<[u8; 6]>(frame, l4_offset) {
            (flow.icmp_type, flow.icmp_code) = (header[0], header[1]);
            if is_echo(&flow) {
                let identifier = u16::from_be_bytes([header[4], header[5]]);
                (flow.src_port, flow.dst_port) = (identifier, identifier);
            }
        }
    }
    flow
}
