//! The steering program: parse, match the flow rules held in maps, act, count.
//!
//! Every packet access is bounds-checked against `data_end` before it is made; the verifier
//! rejects the program otherwise. Parsing lives in `parse.rs`, rule matching in `classify.rs`.
#![no_std]
#![no_main]

mod classify;
mod generator;
mod parse;
mod prefilter;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, XskMap},
    programs::XdpContext,
};
use offload_common::{
    Counter, ExactKey, MAX_EXACT, MAX_PREFIXES, MAX_QUEUES, MAX_RULES, PrefixV4, PrefixV6,
    RuleChain, RuleDef, RuleRef, Settings, action, counter,
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
    let verdict = match classify::classify(&packet, &settings) {
        Some(rule) => {
            count_rule(rule.rule_id, len);
            rule.action
        }
        None => settings.default_action,
    };
    act(&ctx, verdict, len)
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
