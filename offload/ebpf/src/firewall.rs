//! The stateful firewall as an IO module: the packet's parse comes from the chain's
//! context, its connection-tracking state from `conntrack.rs`, and the rule that decides
//! from a tuple-space search (one hash probe per distinct mask of the running policy bank).
//! Accepted packets continue down the chain; dropped ones end it; rejected ones are
//! answered (`firewall_reject.rs`). `log` rules send sampled events to a ring buffer and
//! decide nothing; a datagram's later fragments take its first fragment's verdict
//! (`firewall_fragments.rs`).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use fastpath_module::{Module, ModuleContext, XDP_PASS, parse as parse_outcome};
use offload_common::{
    Counter,
    firewall::{
        BANKS, COUNTERS_PER_BANK, LOG_RING_BYTES, LOG_SLOT_CONNTRACK_FULL, LogEvent, LogRate,
        MAX_MASKS, NO_PRIORITY, PolicyState, RULE_ENTRIES, RuleKey, RuleValue, ct_counter,
        log_kind, verdict,
    },
    fragment, proto,
};

use crate::{conntrack, firewall_fragments};

#[map]
static FW_POLICY: Array<PolicyState> = Array::with_max_entries(1, 0);
#[map]
static FW_MASKS: Array<RuleKey> = Array::with_max_entries(BANKS * MAX_MASKS, 0);
#[map]
static FW_RULES: HashMap<RuleKey, RuleValue> = HashMap::with_max_entries(RULE_ENTRIES, 0);
/// Per-CPU room for the packet's rule key (0) and the masked key being probed (1): the
/// BPF stack (512 bytes for all frames of a call chain) cannot hold them beside the rest.
#[map]
static FW_KEYS: PerCpuArray<RuleKey> = PerCpuArray::with_max_entries(2, 0);
#[map]
static FW_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(BANKS * COUNTERS_PER_BANK, 0);
#[map]
static FW_LOG: RingBuf = RingBuf::with_byte_size(LOG_RING_BYTES, 0);
#[map]
static FW_LOG_RATES: Array<LogRate> = Array::with_max_entries(BANKS * COUNTERS_PER_BANK + 1, 0);
/// Per-CPU: the best `log` rule the probes of one packet met, priority << 32 | counter.
#[map]
static FW_LOG_BEST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// What [`judge`] decided for a packet.
pub mod outcome {
    /// Let it through.
    pub const ACCEPT: u8 = 0;
    /// Drop it.
    pub const DROP: u8 = 1;
    /// It was rewritten in place into the answer of a `reject` rule: send it back where
    /// it came from.
    pub const ANSWERED: u8 = 2;
}

/// The module's program body.
#[inline(always)]
pub fn run(ctx: XdpContext) -> u32 {
    let Some(module) = Module::new(ctx) else {
        return XDP_PASS;
    };
    match judge(module.xdp(), module.context()) {
        outcome::ACCEPT => module.next(),
        outcome::ANSWERED => module.tx(),
        _ => module.drop_packet(),
    }
}

/// Judges the packet `context` describes (its parse, its ingress interface): tracks its
/// flow, picks the rule that decides, counts it, and, for a `reject`, rewrites the frame
/// into the answer. Shared by the chain module and the topology instance, which differ
/// only in where an accepted or answered packet goes.
#[inline(always)]
pub fn judge(frame: &XdpContext, context: &ModuleContext) -> u8 {
    match context.parse {
        parse_outcome::IP => {}
        // ARP, LLDP...: not the firewall's to judge (IP needs ARP).
        parse_outcome::NOT_IP => return outcome::ACCEPT,
        _ => return outcome::DROP,
    }
    // A later fragment has no ports (nor any L4 header): its datagram's first fragment
    // decided for it.
    if context.fragment == fragment::LATER {
        let decision = firewall_fragments::recall(frame.data(), frame.data_end(), context);
        if decision == firewall_fragments::UNKNOWN {
            conntrack::count(ct_counter::ORPHAN_FRAGMENT);
            return outcome::DROP;
        }
        count_on(
            (decision >> 8) as u32,
            (frame.data_end() - frame.data()) as u64,
        );
        return if decision as u8 == verdict::ACCEPT {
            outcome::ACCEPT
        } else {
            outcome::DROP
        };
    }
    let ports = (context.has_ports != 0).then_some((context.src_port, context.dst_port));
    let flow = conntrack::flow_of(
        frame,
        context.ip_version,
        context.protocol,
        context.src_addr,
        context.dst_addr,
        ports,
        context.l3_offset,
        context.l4_offset,
    );
    let mut tracked = conntrack::lookup(&flow);
    let state = conntrack::track(&mut tracked, &flow, Some(frame));
    let Some(key) = FW_KEYS.get_ptr_mut(0) else {
        return outcome::DROP;
    };
    // SAFETY: a per-CPU scratch slot; the program runs with migration disabled.
    let key = unsafe { &mut *key };
    let bytes = (frame.data_end() - frame.data()) as u64;
    let decision = classify(key, &flow, state, context.ingress_ifindex, bytes);
    let mut decided = decision as u8;
    // Fail closed: a flow the table cannot hold is not let in.
    // A new flow's entry waits for an accept (a tracked flow moved in `track`, whatever
    // the rules decide).
    if decided == verdict::ACCEPT && conntrack::record(&tracked, &flow).is_err() {
        decided = verdict::DROP;
        log_refused(key, &flow, state, context.ingress_ifindex);
    }
    if context.fragment == fragment::FIRST {
        // The later fragments get no answer of their own: a rejected datagram's are dropped.
        let rest = if decided == verdict::ACCEPT {
            verdict::ACCEPT
        } else {
            verdict::DROP
        };
        firewall_fragments::remember(
            frame.data(),
            frame.data_end(),
            context,
            decision & !0xff | u32::from(rest),
        );
    }
    match decided {
        verdict::ACCEPT => outcome::ACCEPT,
        verdict::REJECT if crate::firewall_reject::rewrite(frame, context) => outcome::ANSWERED,
        _ => outcome::DROP,
    }
}

/// Writes the packet's rule key: its flow, ct state and ingress interface (bank and mask
/// 0; ICMP: no ports, type << 8 | code in the destination port).
#[inline(always)]
fn write_packet_key(key: &mut RuleKey, flow: &conntrack::Flow, state: u8, ifindex: u32) {
    let is_icmp = flow.proto == proto::ICMP || flow.proto == proto::ICMPV6;
    key.bank = 0;
    key.mask = 0;
    key.family = flow.family;
    key.proto = flow.proto;
    key.ct_state = state;
    key.tcp_flags = flow.tcp_flags;
    key._pad = [0; 2];
    key.ifindex = ifindex;
    key.src_port = if is_icmp { 0 } else { flow.src_port };
    key.dst_port = if is_icmp {
        u16::from(flow.icmp_type) << 8 | u16::from(flow.icmp_code)
    } else {
        flow.dst_port
    };
    key.src = flow.src;
    key.dst = flow.dst;
}

/// Sends the conntrack-full event of a new flow refused (its packet dropped).
// A function of its own: inlined, its key writes grew `run`'s stack frame, which shares
// the 512 bytes with `reject`'s largest subprogram.
#[inline(never)]
fn log_refused(key: &mut RuleKey, flow: &conntrack::Flow, state: u8, ifindex: u32) {
    // A decision by the first rule alone wrote no key (a new flow it accepts).
    write_packet_key(key, flow, state, ifindex);
    log(
        key,
        LOG_SLOT_CONNTRACK_FULL,
        u32::from(log_kind::CONNTRACK_FULL) << 8 | u32::from(verdict::DROP),
    );
}

/// Counts a packet of `bytes` on the counter slot `slot` (bank included).
#[inline(always)]
fn count_on(slot: u32, bytes: u64) {
    if let Some(counter) = FW_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; the program runs with migration disabled.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// The decision of the best (lowest priority number) rule whose masked key matches, or of
/// the default policy: its counter slot (bank included) << 8 | its verdict; counts the
/// packet there. The packet's key is written into `packet` first, unless the running
/// bank's first rule accepts every packet in its ct `state` (`first_rule_accepts`): then
/// that rule decides at once, as no probe could find a rule before it (an established
/// flow behind `ct_state = ["established", "related"]`, `accept`).
// A function of its own (a BPF-to-BPF call), so its keys do not add to `run`'s stack.
#[inline(never)]
fn classify(
    packet: &mut RuleKey,
    flow: &conntrack::Flow,
    state: u8,
    ifindex: u32,
    bytes: u64,
) -> u32 {
    let Some(policy) = FW_POLICY.get(0) else {
        return u32::from(verdict::DROP);
    };
    // Read once: the packet sees one bank, whole.
    let bank = policy.bank & 1;
    let info = policy.banks[bank as usize];
    if state & info.first_rule_accepts != 0 {
        let slot = bank * COUNTERS_PER_BANK + 1;
        count_on(slot, bytes);
        return slot << 8 | u32::from(verdict::ACCEPT);
    }
    write_packet_key(packet, flow, state, ifindex);
    let packet = &*packet;
    let mut best = RuleValue {
        verdict: info.default_verdict,
        ..RuleValue::default()
    };
    let Some(log_best) = FW_LOG_BEST.get_ptr_mut(0) else {
        return u32::from(verdict::DROP);
    };
    // SAFETY: a per-CPU slot; the program runs with migration disabled.
    unsafe { *log_best = u64::MAX };
    for index in 0..MAX_MASKS {
        if index >= info.masks {
            break;
        }
        let found = probe(packet, bank, index);
        if found != NO_RULE && ((found >> 32) as u32) < best.priority {
            best.priority = (found >> 32) as u32;
            best.counter = ((found >> 8) & 0xff_ffff) as u32;
            best.verdict = found as u8;
        }
    }
    let slot = bank * COUNTERS_PER_BANK + best.counter;
    count_on(slot, bytes);
    // A `log` rule before the one that decided: it saw the packet (nftables' `log` goes
    // on to the next rule).
    // SAFETY: as above.
    let logged = unsafe { *log_best };
    if ((logged >> 32) as u32) < best.priority {
        let log_slot = bank * COUNTERS_PER_BANK + (logged as u32 & 0x00ff_ffff);
        count_on(log_slot, bytes);
        log(
            packet,
            log_slot,
            u32::from(log_kind::RULE) << 8 | u32::from(best.verdict),
        );
    }
    slot << 8 | u32::from(best.verdict)
}

/// Sends a [`LogEvent`] about `packet` to the ring buffer, sampled by the rate of
/// `slot` (`FW_LOG_RATES`); `kind_verdict` is the event's kind << 8 | the packet's
/// verdict. A full ring buffer loses the event (the reader is behind).
#[inline(never)]
fn log(packet: &RuleKey, slot: u32, kind_verdict: u32) {
    let Some(rate) = FW_LOG_RATES.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a map value; CPUs may race on it, which lets a few more events through.
    let rate = unsafe { &mut *rate };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let second = now / 1_000_000_000;
    if rate.second != second {
        rate.second = second;
        rate.sent = 0;
    }
    if rate.per_second != 0 && rate.sent >= rate.per_second {
        return;
    }
    rate.sent += 1;
    let Some(mut entry) = FW_LOG.reserve::<LogEvent>(0) else {
        return;
    };
    entry.write(LogEvent {
        time_ns: now,
        slot,
        kind: (kind_verdict >> 8) as u8,
        verdict: kind_verdict as u8,
        family: packet.family,
        proto: packet.proto,
        src: packet.src,
        dst: packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        ifindex: packet.ifindex,
    });
    entry.submit(0);
}

/// What [`probe`] returns when the mask finds no rule.
const NO_RULE: u64 = u64::MAX;

/// Probes the rule hash with the packet's key masked by mask `index` of `bank`: the rule's
/// priority << 32 | counter << 8 | verdict, or [`NO_RULE`]. A function of its own, called
/// once per mask: an unrolled loop body would not fit the BPF stack beside the caller's.
#[inline(never)]
fn probe(packet: &RuleKey, bank: u32, index: u32) -> u64 {
    let (Some(mask), Some(key)) = (
        FW_MASKS.get(bank * MAX_MASKS + index),
        FW_KEYS.get_ptr_mut(1),
    ) else {
        return NO_RULE;
    };
    // SAFETY: a per-CPU scratch slot, see `run`.
    let key = unsafe { &mut *key };
    write_masked(key, packet, mask, bank as u8, index as u8);
    // SAFETY: the value is read at once.
    let Some(rule) = (unsafe { FW_RULES.get(&*key) }) else {
        return NO_RULE;
    };
    if rule.log_priority != NO_PRIORITY
        && let Some(log_best) = FW_LOG_BEST.get_ptr_mut(0)
    {
        let candidate = u64::from(rule.log_priority) << 32 | u64::from(rule.log_counter);
        // SAFETY: a per-CPU slot, see `run`.
        unsafe {
            if candidate < *log_best {
                *log_best = candidate;
            }
        }
    }
    if rule.priority == NO_PRIORITY {
        return NO_RULE;
    }
    u64::from(rule.priority) << 32 | u64::from(rule.counter) << 8 | u64::from(rule.verdict)
}

/// `probe = packet & mask`, then the bank and mask index set: six 8-byte ANDs (byte by
/// byte, the 48-byte key took a quarter of a probe's cost).
#[inline(always)]
fn write_masked(probe: &mut RuleKey, packet: &RuleKey, mask: &RuleKey, bank: u8, index: u8) {
    const WORDS: usize = core::mem::size_of::<RuleKey>() / 8;
    let probe = probe as *mut RuleKey;
    let words = probe as *mut u64;
    let packet = packet as *const RuleKey as *const u64;
    let mask = mask as *const RuleKey as *const u64;
    // SAFETY: the three are map values (per-CPU scratch slots and a mask of `FW_MASKS`),
    // which the kernel aligns to 8 bytes, of one `RuleKey` (48 bytes: six words) each.
    unsafe {
        for word in 0..WORDS {
            *words.add(word) = *packet.add(word) & *mask.add(word);
        }
        (*probe).bank = bank;
        (*probe).mask = index;
    }
}
