//! The steering program: parse, match the flow rules held in maps, act, count.
//!
//! Every packet access is bounds-checked against `data_end` before it is made; the verifier
//! rejects the program otherwise. Parsing lives in `parse.rs`, rule matching in `classify.rs`.
#![no_std]
#![no_main]

mod classify;
mod object;
mod parse;
mod prefilter;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use offload_common::{
    Counter, ExactKey, FragmentKey, MAX_EXACT, MAX_FRAGMENTED_DATAGRAMS, MAX_PREFIXES, MAX_QUEUES,
    MAX_RULES, ParseReport, PrefixV4, PrefixV6, RuleChain, RuleDef, RuleRef, Settings, action,
    counter, fragment, parse_result,
};

// Every map is pinned by name under the attachment's directory, so a replacement build and
// every later process share them (see offload::pins).

#[map]
static EXACT_RULES: HashMap<ExactKey, RuleRef> = HashMap::pinned(MAX_EXACT, 0);
#[map]
static PREFIX_V4: LpmTrie<PrefixV4, RuleChain> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static PREFIX_V6: LpmTrie<PrefixV6, RuleChain> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_RULES, 0);
#[map]
static ACTION_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(counter::SLOTS, 0);
#[map]
static SETTINGS: Array<Settings> = Array::pinned(1, 0);
#[map]
static XSKS: XskMap = XskMap::pinned(MAX_QUEUES, 0);
/// The rule each fragmented datagram's first fragment matched, for its later fragments,
/// which carry no ports (as Cilium's fragment map does). LRU: a datagram whose last fragment
/// was lost ages out by itself.
#[map]
static FRAGMENTS: LruHashMap<FragmentKey, RuleRef> =
    LruHashMap::pinned(MAX_FRAGMENTED_DATAGRAMS, 0);
/// User-space record of the rules; see `RuleDef`. Referenced below so the linker keeps it.
#[map]
static RULE_DEFS: HashMap<u32, RuleDef> = HashMap::pinned(MAX_RULES, 0);

// `frags`: the program reads only the first buffer, so it is safe on multi-buffer packets,
// and it may run on devices whose MTU exceeds a page (e.g. veth at MTU 9000, where the
// kernel refuses programs without BPF_F_XDP_HAS_FRAGS: drivers/net/veth.c veth_xdp_set).
#[xdp(frags)]
pub fn steer(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let packet = match parse::parse(&ctx) {
        Ok(Some(packet)) => packet,
        Ok(None) => {
            count(counter::NON_IP, len);
            count(counter::PASS, len);
            return xdp_action::XDP_PASS;
        }
        Err(parse::Malformed) => {
            count(counter::MALFORMED, len);
            return xdp_action::XDP_PASS;
        }
    };
    let settings = settings();
    // The merged plan: the prefilter's drops run first, inside this program.
    if settings.prefilter != 0 && prefilter::listed(packet.family, &packet.src) {
        count(counter::PREFILTER, len);
        count(counter::DROP, len);
        return xdp_action::XDP_DROP;
    }
    let verdict = match rule_for(&packet, &settings) {
        Some(rule) => {
            count_rule(rule.rule_id, len);
            rule.action
        }
        None => settings.default_action,
    };
    act(&ctx, verdict, len)
}

/// The rule a packet takes. A later fragment has no ports: it takes the rule its first
/// fragment matched, so a whole datagram meets one action (one socket, one backend); when
/// its first fragment was not seen, it is classified on what it has (addresses, protocol).
#[inline(always)]
fn rule_for(packet: &parse::Packet, settings: &offload_common::Settings) -> Option<RuleRef> {
    if packet.fragment == fragment::NONE {
        return classify::classify(packet, settings);
    }
    let key = FragmentKey {
        src: packet.src,
        dst: packet.dst,
        id: packet.fragment_id,
        proto: packet.proto,
        family: packet.family,
        _pad: [0; 2],
    };
    if packet.fragment == fragment::LATER {
        // SAFETY: the value is copied out at once.
        if let Some(rule) = unsafe { FRAGMENTS.get(&key) } {
            return Some(*rule);
        }
        return classify::classify(packet, settings);
    }
    let rule = classify::classify(packet, settings)?;
    // A full LRU evicts its oldest entry; an error leaves the later fragments to be
    // classified on their own, which is the best that can be done.
    let _ = FRAGMENTS.insert(&key, &rule, 0);
    Some(rule)
}

/// Test only: parses the packet and writes what the parser found (a `ParseReport`) in
/// front of it, for the differential test against user space's `wire::parse`. Never
/// attached; run through BPF_PROG_TEST_RUN.
#[xdp]
pub fn parse_probe(ctx: XdpContext) -> u32 {
    let mut report = ParseReport::default();
    match parse::parse(&ctx) {
        Ok(Some(packet)) => {
            report.result = parse_result::IP;
            report.family = packet.family;
            report.proto = packet.proto;
            report.has_ports = packet.has_ports as u8;
            report.fragment = packet.fragment;
            report.sport = packet.sport;
            report.dport = packet.dport;
            report.fragment_id = packet.fragment_id;
            report.src = packet.src;
            report.dst = packet.dst;
        }
        Ok(None) => report.result = parse_result::NOT_IP,
        Err(parse::Malformed) => report.result = parse_result::MALFORMED,
    }
    const SIZE: usize = core::mem::size_of::<ParseReport>();
    // SAFETY: the helper only moves the start of this packet's data.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(SIZE as i32)) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let start = ctx.data();
    if start + SIZE > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the SIZE bytes at `start` were bounds-checked above.
    unsafe { (start as *mut ParseReport).write_unaligned(report) };
    xdp_action::XDP_PASS
}

/// The prefilter alone: the hardware stage of a split plan (see `prefilter.rs`). No
/// counters beyond the per-address drops: offloaded programs get array and hash maps only.
#[xdp]
pub fn prefilter(ctx: XdpContext) -> u32 {
    if prefilter::verdict(&ctx) {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// A bare XDP_PASS program: the baseline the steering program is timed against.
#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

fn act(ctx: &XdpContext, verdict: u8, len: u64) -> u32 {
    match verdict {
        action::DROP => {
            count(counter::DROP, len);
            xdp_action::XDP_DROP
        }
        action::TX => {
            if swap_macs(ctx).is_err() {
                count(counter::MALFORMED, len);
                return xdp_action::XDP_PASS;
            }
            count(counter::TX, len);
            xdp_action::XDP_TX
        }
        action::XSK => {
            // SAFETY: reading the RX queue index from the context is always allowed.
            let queue = unsafe { (*ctx.ctx).rx_queue_index };
            // The low bits of the flags are the action taken when no socket is registered
            // at `queue` (bpf_redirect_map, net/core/filter.c).
            match XSKS.redirect(queue, xdp_action::XDP_PASS as u64) {
                Ok(redirect) if redirect == xdp_action::XDP_REDIRECT => {
                    count(counter::XSK, len);
                    redirect
                }
                _ => {
                    count(counter::XSK_FALLBACK, len);
                    count(counter::PASS, len);
                    xdp_action::XDP_PASS
                }
            }
        }
        _ => {
            count(counter::PASS, len);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn settings() -> Settings {
    match SETTINGS.get(0) {
        Some(settings) => *settings,
        None => {
            // Unreachable in practice (slot 0 always exists); keeps RULE_DEFS referenced so
            // the linker does not drop a map that only user space reads.
            let _ = RULE_DEFS.get_ptr(0);
            Settings::default()
        }
    }
}

/// XDP_TX sends the frame back to where it came from; swapping the MAC addresses makes it a
/// frame the sender accepts.
fn swap_macs(ctx: &XdpContext) -> Result<(), ()> {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return Err(());
    }
    let macs = start as *mut [u8; 12];
    // SAFETY: the 12 bytes were bounds-checked above.
    unsafe {
        let mut bytes = *macs;
        let (dst, src) = bytes.split_at_mut(6);
        dst.swap_with_slice(src);
        *macs = bytes;
    }
    Ok(())
}

#[inline(always)]
fn count(slot: u32, bytes: u64) {
    add(ACTION_STATS.get_ptr_mut(slot), bytes);
}

#[inline(always)]
fn count_rule(rule_id: u32, bytes: u64) {
    add(RULE_STATS.get_ptr_mut(rule_id), bytes);
}

#[inline(always)]
fn add(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(counter) = counter {
        // SAFETY: a per-CPU slot: no other writer on this CPU while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
