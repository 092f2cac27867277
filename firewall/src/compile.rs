//! A policy compiled to the firewall module's tables: tuple-space search.
//!
//! Each rule becomes one or more entries of a hash keyed by [`RuleKey`]: its match with
//! the bits it does not look at cleared, under the index of its mask (the bits it looks
//! at). A port range becomes the prefix-aligned blocks that cover it, several `ct_state`s
//! one entry each. The kernel masks the packet's key with each distinct mask of the policy
//! and probes the hash once per mask, keeping the best priority found: the cost follows the
//! number of distinct masks (at most [`MAX_MASKS`]), not the number of rules.

use std::collections::HashMap;

use ipnet::IpNet;
use offload_common::{
    FAMILY_V4, FAMILY_V6,
    firewall::{MAX_MASKS, NO_PRIORITY, RULE_ENTRIES, RuleKey, RuleValue, ct_state, verdict},
};

use crate::{FirewallError, Policy};

/// The kernel tables of one policy, for one bank.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// The distinct masks, probed in this order.
    pub masks: Vec<RuleKey>,
    /// Hash entries, `mask` set to their mask's index (`bank` is set when written).
    pub entries: Vec<(RuleKey, RuleValue)>,
    /// The default policy's verdict.
    pub default_verdict: u8,
    /// Each rule's name, by counter slot - 1.
    pub rule_names: Vec<String>,
    /// The `log` rules' counter slots (in the bank) and rates (events per second; 0:
    /// every packet).
    pub log_rates: Vec<(u32, u32)>,
    /// The [`ct_state`] bits for which the first rule accepts every packet
    /// (`BankInfo::first_rule_accepts`: the kernel decides those packets right after
    /// conntrack, without probing); 0 when the first rule looks at more than the state.
    pub first_rule_accepts: u8,
}

/// Compiles `policy`; `ifindex_of` resolves a rule's `iface`.
pub fn compile(
    policy: &Policy,
    ifindex_of: impl Fn(&str) -> Result<u32, String>,
) -> Result<Tables, FirewallError> {
    let mut tables = Tables {
        default_verdict: policy.default_verdict,
        ..Tables::default()
    };
    let mut mask_index: HashMap<RuleKey, u8> = HashMap::new();
    let mut entry_index: HashMap<RuleKey, usize> = HashMap::new();
    for (position, rule) in policy.rules.iter().enumerate() {
        let rule_error = |message: String| FirewallError::Rules {
            file: policy.file.clone(),
            line: rule.line,
            message: format!("rule `{}`: {message}", rule.name),
        };
        let mut base = RuleKey::default();
        let mut mask = RuleKey::default();
        if let Some(iface) = &rule.iface {
            base.ifindex =
                ifindex_of(iface).map_err(|reason| rule_error(format!("iface: {reason}")))?;
            mask.ifindex = u32::MAX;
        }
        if let Some(protocol) = rule.proto {
            (base.proto, mask.proto) = (protocol, 0xff);
        }
        if let Some(flags) = rule.tcp_flags {
            (base.tcp_flags, mask.tcp_flags) = (flags.value, flags.mask);
        }
        for (net, value, bits) in [
            (rule.src, &mut base.src, &mut mask.src),
            (rule.dst, &mut base.dst, &mut mask.dst),
        ] {
            if let Some(net) = net {
                let (family, address) = match net {
                    IpNet::V4(net) => (FAMILY_V4, net.addr().octets().to_vec()),
                    IpNet::V6(net) => (FAMILY_V6, net.addr().octets().to_vec()),
                };
                (base.family, mask.family) = (family, 0xff);
                value[..address.len()].copy_from_slice(&address);
                prefix_mask(bits, net.prefix_len());
            }
        }
        if base.family == 0 {
            match rule.proto {
                Some(offload_common::proto::ICMP) => (base.family, mask.family) = (FAMILY_V4, 0xff),
                Some(offload_common::proto::ICMPV6) => {
                    (base.family, mask.family) = (FAMILY_V6, 0xff)
                }
                _ => {}
            }
        }
        let src_ports = rule.src_ports.clone().map_or(vec![(0, 0)], port_blocks);
        let dst_ports = if rule.icmp_type.is_some() || rule.icmp_code.is_some() {
            let value = u16::from(rule.icmp_type.unwrap_or(0)) << 8
                | u16::from(rule.icmp_code.unwrap_or(0));
            let bits = if rule.icmp_type.is_some() { 0xff00 } else { 0 }
                | if rule.icmp_code.is_some() { 0x00ff } else { 0 };
            vec![(value, bits)]
        } else {
            rule.dst_ports.clone().map_or(vec![(0, 0)], port_blocks)
        };
        let states: Vec<(u8, u8)> = if rule.ct_states == 0 {
            vec![(0, 0)]
        } else {
            [
                ct_state::NEW,
                ct_state::ESTABLISHED,
                ct_state::RELATED,
                ct_state::INVALID,
            ]
            .into_iter()
            .filter(|state| rule.ct_states & state != 0)
            .map(|state| (state, 0xff))
            .collect()
        };
        let logs = rule.verdict == verdict::LOG;
        let value = if logs {
            RuleValue {
                log_priority: position as u32,
                log_counter: position as u32 + 1,
                ..RuleValue::default()
            }
        } else {
            RuleValue {
                priority: position as u32,
                counter: position as u32 + 1,
                verdict: rule.verdict,
                ..RuleValue::default()
            }
        };
        for &(state, state_bits) in &states {
            for &(src_port, src_bits) in &src_ports {
                for &(dst_port, dst_bits) in &dst_ports {
                    let mut entry_mask = mask;
                    entry_mask.ct_state = state_bits;
                    entry_mask.src_port = src_bits;
                    entry_mask.dst_port = dst_bits;
                    let next = mask_index.len();
                    let index = *mask_index.entry(entry_mask).or_insert(next as u8);
                    if next >= MAX_MASKS as usize && usize::from(index) == next {
                        return Err(rule_error(format!(
                            "the policy needs more than {MAX_MASKS} distinct masks (combinations of \
                             prefix lengths, port blocks, protocol, ct_state and iface); merge rules \
                             or use fewer distinct prefix lengths"
                        )));
                    }
                    if usize::from(index) == tables.masks.len() {
                        tables.masks.push(entry_mask);
                    }
                    let mut key = base;
                    key.ct_state = state;
                    key.src_port = src_port;
                    key.dst_port = dst_port;
                    let mut key = apply_mask(&key, &entry_mask);
                    key.mask = index;
                    // An earlier rule with the very same match keeps it (it decides first),
                    // except that a rule deciding after an earlier `log` rule joins its
                    // entry (one key, one entry: the log rule's half is kept).
                    if let Some(&earlier) = entry_index.get(&key) {
                        let entry = &mut tables.entries[earlier].1;
                        if !logs && entry.priority == NO_PRIORITY {
                            (entry.priority, entry.counter, entry.verdict) =
                                (value.priority, value.counter, value.verdict);
                        }
                        continue;
                    }
                    entry_index.insert(key, tables.entries.len());
                    tables.entries.push((key, value));
                }
            }
        }
        tables.rule_names.push(rule.name.clone());
        if logs {
            tables
                .log_rates
                .push((position as u32 + 1, rule.log_rate.unwrap_or(0)));
        }
    }
    tables.first_rule_accepts = policy.rules.first().map_or(0, first_rule_accepts);
    // Both banks share the hash: each policy gets half.
    if tables.entries.len() > (RULE_ENTRIES / 2) as usize {
        return Err(FirewallError::Rules {
            file: policy.file.clone(),
            line: 1,
            message: format!(
                "the policy compiles to {} hash entries; at most {} fit (port ranges and \
                 ct_state lists multiply entries)",
                tables.entries.len(),
                RULE_ENTRIES / 2
            ),
        });
    }
    Ok(tables)
}

impl Tables {
    /// What the kernel decides for a packet's key (`bank` and `mask` ignored): the verdict
    /// and counter slot, found the kernel's way (`log` rules decide nothing). For tests
    /// and `--check`.
    pub fn classify(&self, packet: &RuleKey) -> (u8, u32) {
        let lookup: HashMap<RuleKey, RuleValue> = self.entries.iter().copied().collect();
        let mut best: Option<RuleValue> = None;
        for (index, mask) in self.masks.iter().enumerate() {
            let mut key = apply_mask(packet, mask);
            key.mask = index as u8;
            if let Some(rule) = lookup.get(&key)
                && rule.priority != NO_PRIORITY
                && best.is_none_or(|best| rule.priority < best.priority)
            {
                best = Some(*rule);
            }
        }
        best.map_or((self.default_verdict, 0), |rule| {
            (rule.verdict, rule.counter)
        })
    }
}

/// The ct states in which `rule`, as a policy's first rule, decides every packet with
/// `accept`: all of them when it matches on its ct state alone (or on nothing), none when
/// it looks at anything else or does not accept. The first rule that matches decides, so
/// such a packet needs no probe to be decided.
fn first_rule_accepts(rule: &crate::Rule) -> u8 {
    let state_only = rule.src.is_none()
        && rule.dst.is_none()
        && rule.proto.is_none()
        && rule.src_ports.is_none()
        && rule.dst_ports.is_none()
        && rule.icmp_type.is_none()
        && rule.icmp_code.is_none()
        && rule.tcp_flags.is_none()
        && rule.iface.is_none();
    if !state_only || rule.verdict != verdict::ACCEPT {
        return 0;
    }
    if rule.ct_states == 0 {
        ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED | ct_state::INVALID
    } else {
        rule.ct_states
    }
}

fn apply_mask(key: &RuleKey, mask: &RuleKey) -> RuleKey {
    let mut masked = RuleKey {
        family: key.family & mask.family,
        proto: key.proto & mask.proto,
        ct_state: key.ct_state & mask.ct_state,
        tcp_flags: key.tcp_flags & mask.tcp_flags,
        ifindex: key.ifindex & mask.ifindex,
        src_port: key.src_port & mask.src_port,
        dst_port: key.dst_port & mask.dst_port,
        ..RuleKey::default()
    };
    for byte in 0..16 {
        masked.src[byte] = key.src[byte] & mask.src[byte];
        masked.dst[byte] = key.dst[byte] & mask.dst[byte];
    }
    masked
}

fn prefix_mask(bits: &mut [u8; 16], prefix_len: u8) {
    for (index, byte) in bits.iter_mut().enumerate() {
        let covered = usize::from(prefix_len).saturating_sub(index * 8).min(8);
        *byte = if covered == 0 {
            0
        } else {
            0xffu8 << (8 - covered)
        };
    }
}

/// The prefix-aligned blocks (value, mask) that cover `range` exactly.
fn port_blocks(range: std::ops::RangeInclusive<u16>) -> Vec<(u16, u16)> {
    let (mut low, high) = (u32::from(*range.start()), u32::from(*range.end()));
    let mut blocks = Vec::new();
    while low <= high {
        let mut size = if low == 0 {
            1 << 16
        } else {
            low & low.wrapping_neg()
        };
        while low + size - 1 > high {
            size >>= 1;
        }
        blocks.push((low as u16, !(size - 1) as u16));
        low += size;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use offload_common::{firewall::verdict, proto};

    use super::*;

    fn tables(text: &str) -> Tables {
        let policy = Policy::parse(Path::new("rules.toml"), text).unwrap();
        compile(&policy, |name| {
            if name == "eth0" {
                Ok(7)
            } else {
                Err(format!("no {name}"))
            }
        })
        .unwrap()
    }

    fn packet(src: [u8; 4], protocol: u8, dst_port: u16, state: u8) -> RuleKey {
        let mut key = RuleKey {
            family: FAMILY_V4,
            proto: protocol,
            ct_state: state,
            ifindex: 7,
            dst_port,
            src_port: 40000,
            ..RuleKey::default()
        };
        key.src[..4].copy_from_slice(&src);
        key.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        key
    }

    #[test]
    fn port_ranges_become_exact_prefix_blocks() {
        assert_eq!(port_blocks(0..=65535), vec![(0, 0)]);
        assert_eq!(port_blocks(80..=80), vec![(80, 0xffff)]);
        assert_eq!(port_blocks(1..=3), vec![(1, 0xffff), (2, 0xfffe)]);
        for (low, high) in [(1000, 2000), (0, 1), (65534, 65535), (7, 7000)] {
            let blocks = port_blocks(low..=high);
            for port in 0..=65535u16 {
                let inside = blocks.iter().any(|(value, mask)| port & mask == *value);
                assert_eq!(inside, (low..=high).contains(&port), "{low}-{high}: {port}");
            }
        }
    }

    #[test]
    fn the_first_matching_rule_decides_else_the_default() {
        let tables = tables(
            "default = \"drop\"\n\
             [[rule]]\nct_state = [\"established\"]\naction = \"accept\"\n\
             [[rule]]\nproto = \"tcp\"\ndst_port = \"8000-8001\"\naction = \"accept\"\n\
             [[rule]]\nsrc = \"10.9.0.0/16\"\naction = \"drop\"\n\
             [[rule]]\nsrc = \"10.0.0.0/8\"\niface = \"eth0\"\naction = \"accept\"\n\
             [[rule]]\nproto = \"icmp\"\nicmp_type = 8\naction = \"accept\"\n",
        );
        let new = ct_state::NEW;
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::TCP, 8001, new)),
            (verdict::ACCEPT, 2)
        );
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::TCP, 8002, new)),
            (verdict::DROP, 0)
        );
        assert_eq!(
            tables.classify(&packet(
                [192, 0, 2, 1],
                proto::TCP,
                9,
                ct_state::ESTABLISHED
            )),
            (verdict::ACCEPT, 1)
        );
        assert_eq!(
            tables.classify(&packet([10, 9, 1, 1], proto::UDP, 53, new)),
            (verdict::DROP, 3)
        );
        assert_eq!(
            tables.classify(&packet([10, 8, 1, 1], proto::UDP, 53, new)),
            (verdict::ACCEPT, 4)
        );
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::ICMP, 8 << 8, new)),
            (verdict::ACCEPT, 5)
        );
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::ICMP, 3 << 8, new)),
            (verdict::DROP, 0)
        );
    }

    #[test]
    fn tcp_flags_match_the_bits_they_name_only() {
        let tables = tables(
            "default = \"drop\"\n\
             [[rule]]\nproto = \"tcp\"\ntcp_flags = \"syn,!ack\"\naction = \"accept\"\n\
             [[rule]]\nproto = \"tcp\"\ntcp_flags = \"rst\"\naction = \"drop\"\n\
             [[rule]]\nproto = \"tcp\"\naction = \"accept\"\n",
        );
        let with_flags = |flags: u8| {
            let mut key = packet([192, 0, 2, 1], proto::TCP, 80, ct_state::NEW);
            key.tcp_flags = flags;
            tables.classify(&key).1
        };
        assert_eq!(with_flags(0x02), 1); // SYN
        assert_eq!(with_flags(0xc2), 1); // SYN with ECE and CWR: not looked at
        assert_eq!(with_flags(0x12), 3); // SYN-ACK
        assert_eq!(with_flags(0x14), 2); // RST-ACK
        assert_eq!(with_flags(0x10), 3); // ACK
    }

    #[test]
    fn log_rules_decide_nothing_and_share_an_entry_with_the_rule_after_them() {
        let tables = tables(
            "default = \"drop\"\n\
             [[rule]]\nproto = \"udp\"\ndst_port = 53\naction = \"log\"\nlog_rate = 5\n\
             [[rule]]\nproto = \"udp\"\ndst_port = 53\naction = \"accept\"\n\
             [[rule]]\nproto = \"tcp\"\naction = \"log\"\n",
        );
        // The log rule and the accept rule have one match: one entry holds both.
        assert_eq!(tables.entries.len(), 2);
        let merged = tables.entries[0].1;
        assert_eq!((merged.priority, merged.counter), (1, 2));
        assert_eq!((merged.log_priority, merged.log_counter), (0, 1));
        assert_eq!(tables.entries[1].1.priority, NO_PRIORITY);
        assert_eq!(tables.log_rates, vec![(1, 5), (3, crate::DEFAULT_LOG_RATE)]);
        let new = ct_state::NEW;
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::UDP, 53, new)),
            (verdict::ACCEPT, 2)
        );
        assert_eq!(
            tables.classify(&packet([192, 0, 2, 1], proto::TCP, 80, new)),
            (verdict::DROP, 0)
        );
    }

    #[test]
    fn thousands_of_rules_share_a_handful_of_masks() {
        let mut text = String::from("default = \"accept\"\n");
        for index in 0..5000u32 {
            text.push_str(&format!(
                "[[rule]]\nsrc = \"10.{}.{}.0/24\"\nproto = \"udp\"\ndst_port = {}\naction = \"drop\"\n",
                index / 256,
                index % 256,
                1000 + index % 7
            ));
        }
        let tables = tables(&text);
        assert_eq!(tables.masks.len(), 1);
        assert_eq!(tables.entries.len(), 5000);
        assert_eq!(
            tables
                .classify(&packet(
                    [10, 3, 4, 9],
                    proto::UDP,
                    1000 + (3 * 256 + 4) % 7,
                    ct_state::NEW
                ))
                .1,
            3 * 256 + 4 + 1
        );
    }

    #[test]
    fn an_unknown_interface_names_the_rule() {
        let policy = Policy::parse(
            Path::new("r.toml"),
            "[[rule]]\niface = \"nope\"\naction = \"drop\"\n",
        )
        .unwrap();
        let error = compile(&policy, |name| Err(format!("no interface {name}"))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("line 1: rule `rule 1`: iface: no interface nope"),
            "{error}"
        );
    }

    #[test]
    fn a_first_rule_on_the_ct_state_alone_lets_the_kernel_skip_the_probes() {
        let established_related = ct_state::ESTABLISHED | ct_state::RELATED;
        let all = ct_state::NEW | established_related | ct_state::INVALID;
        let later = "[[rule]]\nproto = \"udp\"\naction = \"drop\"\n\
                     [[rule]]\nsrc = \"192.0.2.0/24\"\naction = \"drop\"\n";
        for (first, expected) in [
            (
                "[[rule]]\nct_state = [\"established\", \"related\"]\naction = \"accept\"\n",
                established_related,
            ),
            ("[[rule]]\naction = \"accept\"\n", all),
            // Anything else looked at, or another action: the probes decide.
            (
                "[[rule]]\nct_state = [\"established\"]\nproto = \"udp\"\naction = \"accept\"\n",
                0,
            ),
            (
                "[[rule]]\nct_state = [\"established\"]\niface = \"eth0\"\naction = \"accept\"\n",
                0,
            ),
            (
                "[[rule]]\nct_state = [\"established\"]\nsrc = \"0.0.0.0/0\"\naction = \"accept\"\n",
                0,
            ),
            (
                "[[rule]]\nct_state = [\"established\"]\naction = \"drop\"\n",
                0,
            ),
            (
                "[[rule]]\nct_state = [\"established\"]\naction = \"log\"\n",
                0,
            ),
            // The first by priority, not by place in the file.
            (
                "[[rule]]\nct_state = [\"established\"]\naction = \"accept\"\npriority = 5\n\
                 [[rule]]\nproto = \"tcp\"\naction = \"accept\"\npriority = 1\n",
                0,
            ),
            ("", 0),
        ] {
            let tables = tables(&format!("default = \"drop\"\n{first}{later}"));
            assert_eq!(tables.first_rule_accepts, expected, "{first}");
            // What the kernel then decides without probing is what the probes find: rule 1
            // (counter slot 1) accepts, whatever else the packet is.
            for state in [
                ct_state::NEW,
                ct_state::ESTABLISHED,
                ct_state::RELATED,
                ct_state::INVALID,
            ] {
                if state & expected == 0 {
                    continue;
                }
                for (src, protocol, port) in [
                    ([192, 0, 2, 1], proto::UDP, 53),
                    ([10, 0, 0, 1], proto::TCP, 80),
                    ([192, 0, 2, 9], proto::ICMP, 8 << 8),
                ] {
                    assert_eq!(
                        tables.classify(&packet(src, protocol, port, state)),
                        (verdict::ACCEPT, 1),
                        "{first}: state {state}"
                    );
                }
            }
        }
        assert_eq!(
            tables("default = \"accept\"\n").first_rule_accepts,
            0,
            "no rules"
        );
    }
}
