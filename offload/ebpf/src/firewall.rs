//! The stateful firewall as an IO module: the packet's parse comes from the chain's
//! context, its connection-tracking state from `conntrack.rs`, and the rule that decides
//! from a tuple-space search (one hash probe per distinct mask of the running policy bank).
//! Accepted packets continue down the chain; dropped ones end it.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use fastpath_module::{Module, ModuleContext, XDP_PASS, parse as parse_outcome};
use offload_common::{
    Counter,
    firewall::{
        BANKS, COUNTERS_PER_BANK, MAX_MASKS, PolicyState, RULE_ENTRIES, RuleKey, RuleValue, verdict,
    },
    fragment, proto,
};

use crate::conntrack;

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

/// The module's program body.
#[inline(always)]
pub fn run(ctx: XdpContext) -> u32 {
    let Some(module) = Module::new(ctx) else {
        return XDP_PASS;
    };
    let context: &ModuleContext = module.context();
    match context.parse {
        parse_outcome::IP => {}
        // ARP, LLDP...: not the firewall's to judge (IP needs ARP).
        parse_outcome::NOT_IP => return module.next(),
        _ => return module.drop_packet(),
    }
    let frame = module.xdp();
    let ports = (context.has_ports != 0).then_some((context.src_port, context.dst_port));
    // A later fragment has no L4 header to read.
    let l4_offset = if context.fragment == fragment::LATER {
        0
    } else {
        context.l4_offset
    };
    let flow = conntrack::flow_of(
        frame,
        context.ip_version,
        context.protocol,
        context.src_addr,
        context.dst_addr,
        ports,
        l4_offset,
    );
    let tracked = conntrack::lookup(&flow);
    let state = conntrack::state_of(&tracked, &flow, frame);
    let Some(key) = FW_KEYS.get_ptr_mut(0) else {
        return module.drop_packet();
    };
    // SAFETY: a per-CPU scratch slot; the program runs with migration disabled.
    let key = unsafe { &mut *key };
    let is_icmp = flow.proto == proto::ICMP || flow.proto == proto::ICMPV6;
    key.bank = 0;
    key.mask = 0;
    key.family = flow.family;
    key.proto = flow.proto;
    key.ct_state = state;
    key.tcp_flags = flow.tcp_flags;
    key._pad = [0; 2];
    key.ifindex = context.ingress_ifindex;
    key.src_port = if is_icmp { 0 } else { flow.src_port };
    key.dst_port = if is_icmp {
        u16::from(flow.icmp_type) << 8 | u16::from(flow.icmp_code)
    } else {
        flow.dst_port
    };
    key.src = flow.src;
    key.dst = flow.dst;
    let bytes = (frame.data_end() - frame.data()) as u64;
    if classify(key, bytes) == verdict::DROP {
        return module.drop_packet();
    }
    match conntrack::record(&tracked, &flow) {
        Ok(()) => module.next(),
        // Fail closed: a flow the table cannot hold is not let in.
        Err(conntrack::TableFull) => module.drop_packet(),
    }
}

/// The verdict of the best (lowest priority number) rule whose masked key matches, or of
/// the default policy; counts the packet on the deciding rule.
// A function of its own (a BPF-to-BPF call), so its keys do not add to `run`'s stack.
#[inline(never)]
fn classify(packet: &RuleKey, bytes: u64) -> u8 {
    let Some(state) = FW_POLICY.get(0) else {
        return verdict::ACCEPT;
    };
    let bank = state.bank & 1;
    let info = state.banks[bank as usize];
    let mut best = RuleValue {
        priority: u32::MAX,
        counter: 0,
        verdict: info.default_verdict,
        _pad: [0; 7],
    };
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
    if let Some(counter) = FW_COUNTERS.get_ptr_mut(bank * COUNTERS_PER_BANK + best.counter) {
        // SAFETY: a per-CPU slot; the program runs with migration disabled.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    best.verdict
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
    match unsafe { FW_RULES.get(&*key) } {
        Some(rule) => {
            u64::from(rule.priority) << 32 | u64::from(rule.counter) << 8 | u64::from(rule.verdict)
        }
        None => NO_RULE,
    }
}

#[inline(always)]
fn write_masked(probe: &mut RuleKey, packet: &RuleKey, mask: &RuleKey, bank: u8, index: u8) {
    probe.bank = bank;
    probe.mask = index;
    probe.family = packet.family & mask.family;
    probe.proto = packet.proto & mask.proto;
    probe.ct_state = packet.ct_state & mask.ct_state;
    probe.tcp_flags = packet.tcp_flags & mask.tcp_flags;
    probe._pad = [0; 2];
    probe.ifindex = packet.ifindex & mask.ifindex;
    probe.src_port = packet.src_port & mask.src_port;
    probe.dst_port = packet.dst_port & mask.dst_port;
    for byte in 0..16 {
        probe.src[byte] = packet.src[byte] & mask.src[byte];
        probe.dst[byte] = packet.dst[byte] & mask.dst[byte];
    }
}
