//! Steering: the flow rules held in maps, the merged prefilter, the actions and their
//! counters. One implementation, built into two kinds of object: the standalone `steer`
//! program (`main.rs`; test runs, the offload check, the probe) and the `steer` IO module
//! (`steer_module.rs`), which runs in the module chain behind the chain's entry.
//!
//! Every packet access is bounds-checked against `data_end` before it is made; the verifier
//! rejects the program otherwise. Parsing lives in `parse.rs`, rule matching in `classify.rs`.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use offload_common::{
    Counter, ExactKey, ExactKeyV4, FragmentKey, MAX_EXACT, MAX_FRAGMENTED_DATAGRAMS, MAX_PREFIXES,
    MAX_QUEUES, MAX_RULES, PrefixKeyV4, PrefixKeyV6, PrefixLengths, PrefixV4, PrefixV6, RuleChain,
    RuleDef, RuleRef, Settings, action, counter, exact_table, fragment, module::verdict,
    prefix_lengths,
};

use crate::{classify, parse, prefilter};

// Every map is pinned by name under the attachment's directory (offload::pins), so a
// replacement build, the module build and every later process share them.

/// Per family (`exact_table::family`): where its exact table is (`exact_table::Shape`).
#[map]
pub static EXACT_TABLES: Array<exact_table::Shape> = Array::pinned(exact_table::family::SLOTS, 0);
/// The IPv4 exact rules' own table, both banks: looked up inline, unlike `EXACT_V4`, which
/// holds the same rules and answers for a bucket that spilled (see `exact_table`).
#[map]
pub static EXACT_TABLE_V4: Array<exact_table::BucketV4> =
    Array::pinned(exact_table::MAX_BUCKETS * exact_table::BANKS, 0);
/// `EXACT_TABLE_V4` for the IPv6 exact rules (`EXACT_RULES`).
#[map]
pub static EXACT_TABLE_V6: Array<exact_table::BucketV6> =
    Array::pinned(exact_table::MAX_BUCKETS * exact_table::BANKS, 0);
/// The IPv6 hosts' exact rules (an IPv4 host's key is in `EXACT_V4`).
#[map]
pub static EXACT_RULES: HashMap<ExactKey, RuleRef> = HashMap::pinned(MAX_EXACT, 0);
/// The IPv4 hosts' exact rules, keyed in 8 bytes: the hash and compare cost scales with
/// the key's width.
#[map]
pub static EXACT_V4: HashMap<ExactKeyV4, RuleRef> = HashMap::pinned(MAX_EXACT, 0);
#[map]
pub static PREFIX_V4: LpmTrie<PrefixV4, RuleChain> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
pub static PREFIX_V6: LpmTrie<PrefixV6, RuleChain> = LpmTrie::pinned(MAX_PREFIXES, 0);
/// The same prefixes as `PREFIX_V4`, one entry per (length, masked address), written only
/// while the IPv4 prefix rules use at most `MAX_PREFIX_LENGTHS` lengths (`PREFIX_LENGTHS`):
/// a few 8-byte hash probes cost less than a walk down a deep trie. Not preallocated: the
/// values are large and most attachments hold few prefixes.
#[map]
pub static PREFIX_HASH_V4: HashMap<PrefixKeyV4, RuleChain> =
    HashMap::pinned(MAX_PREFIXES, BPF_F_NO_PREALLOC);
/// `PREFIX_HASH_V4` for IPv6 prefixes.
#[map]
pub static PREFIX_HASH_V6: HashMap<PrefixKeyV6, RuleChain> =
    HashMap::pinned(MAX_PREFIXES, BPF_F_NO_PREALLOC);
/// Per family (`prefix_lengths::V4`, `V6`): the lengths the prefix hash holds, longest
/// first; a count of 0 sends the lookup to the trie.
#[map]
pub static PREFIX_LENGTHS: Array<PrefixLengths> = Array::pinned(prefix_lengths::SLOTS, 0);
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

/// What steering made of a packet.
pub enum Decision {
    /// Nothing here claimed it: not IP, malformed, or no rule matched and the default
    /// action is pass. The standalone program passes it to the kernel; the module hands it
    /// to the next module of the chain (which passes it at the chain's end).
    Unclaimed,
    /// A rule, the default action or the prefilter decided: return `action`; the module
    /// counts it under the chain's `verdict`.
    #[allow(dead_code)] // `verdict` is read by the module builds only
    Claimed { action: u32, verdict: u32 },
}

/// Steers one packet, given the parse of it (`parse::parse`, or the chain's context).
#[inline(always)]
pub fn decide(
    ctx: &XdpContext,
    parsed: Result<Option<parse::Packet>, parse::Malformed>,
) -> Decision {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let packet = match parsed {
        Ok(Some(packet)) => packet,
        Ok(None) => {
            count(counter::NON_IP, len);
            count(counter::PASS, len);
            return Decision::Unclaimed;
        }
        Err(parse::Malformed) => {
            count(counter::MALFORMED, len);
            return Decision::Unclaimed;
        }
    };
    let settings = settings();
    // The merged plan: the prefilter's drops run first, inside this program.
    if settings.prefilter != 0 && prefilter::listed(packet.family, &packet.src) {
        count(counter::PREFILTER, len);
        count(counter::DROP, len);
        return claimed(xdp_action::XDP_DROP, verdict::DROP);
    }
    match rule_for(&packet, &settings) {
        Some(rule) => {
            count_rule(rule.rule_id, len);
            act(ctx, rule.action, len)
        }
        None if settings.default_action == action::PASS => {
            count(counter::PASS, len);
            Decision::Unclaimed
        }
        None => act(ctx, settings.default_action, len),
    }
}

#[inline(always)]
fn claimed(action: u32, verdict: u32) -> Decision {
    Decision::Claimed { action, verdict }
}

/// The rule a packet takes. A later fragment has no ports: it takes the rule its first
/// fragment matched, so a whole datagram meets one action (one socket, one backend); when
/// its first fragment was not seen, it is classified on what it has (addresses, protocol).
#[inline(always)]
fn rule_for(packet: &parse::Packet, settings: &Settings) -> Option<RuleRef> {
    if packet.fragment == fragment::NONE {
        return classify::classify(packet, settings);
    }
    let key = FragmentKey {
        src: packet.src,
        dst: offload_common::address_bytes(packet.dst),
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

/// Carries out a rule's (or the default) action. A rule whose action is pass claims the
/// packet: the rule said "to the kernel", so modules after steer do not see it.
#[inline(always)]
fn act(ctx: &XdpContext, rule_action: u8, len: u64) -> Decision {
    match rule_action {
        action::DROP => {
            count(counter::DROP, len);
            claimed(xdp_action::XDP_DROP, verdict::DROP)
        }
        action::TX => {
            if swap_macs(ctx).is_err() {
                count(counter::MALFORMED, len);
                return claimed(xdp_action::XDP_PASS, verdict::PASS);
            }
            count(counter::TX, len);
            claimed(xdp_action::XDP_TX, verdict::TX)
        }
        action::XSK => {
            // SAFETY: reading the RX queue index from the context is always allowed.
            let queue = unsafe { (*ctx.ctx).rx_queue_index };
            // The low bits of the flags are the action taken when no socket is registered
            // at `queue` (bpf_redirect_map, net/core/filter.c).
            match XSKS.redirect(queue, xdp_action::XDP_PASS as u64) {
                Ok(redirect) if redirect == xdp_action::XDP_REDIRECT => {
                    count(counter::XSK, len);
                    claimed(redirect, verdict::XSK)
                }
                _ => {
                    count(counter::XSK_FALLBACK, len);
                    count(counter::PASS, len);
                    claimed(xdp_action::XDP_PASS, verdict::PASS)
                }
            }
        }
        _ => {
            count(counter::PASS, len);
            claimed(xdp_action::XDP_PASS, verdict::PASS)
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
