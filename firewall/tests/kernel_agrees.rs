//! The kernel's classification against the compiler's reference: random policies applied
//! to a lab veth's firewall, random packets run through the real chain's entry with
//! `BPF_PROG_TEST_RUN`, each verdict (drop, or accept: the chain's end passes) compared
//! with what `Tables::classify` (the same tuple-space search in user space) decides; and
//! that reference against nftables: the same random policies as an nft ruleset on a lab
//! namespace's prerouting hook (after Linux's conntrack), the same random packets sent
//! there for real, the rule whose counter moved against the rule the reference picks.

use std::{net::IpAddr, path::Path, time::Duration};

use aya::programs::Xdp;
use firewall::Policy;
use lab::{Lab, require_root};
use offload_common::{
    FAMILY_V4, FAMILY_V6,
    firewall::{RuleKey, ct_state, verdict},
    proto,
};
use wire::build::{FrameBuilder, L4};

#[path = "support/nft.rs"]
mod nft;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const ROUNDS: usize = 12;
const PACKETS: usize = 400;

/// xorshift64*: reproducible without a dependency.
#[derive(Clone)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn v4(random: &mut Random, second: u8) -> [u8; 4] {
    [10, second, random.below(4) as u8, random.below(4) as u8]
}

/// A random policy; `actions` the rules' actions to pick from.
fn random_policy(random: &mut Random, ifaces: &[&str], actions: &[&str]) -> String {
    let mut text = format!("default = \"{}\"\n", random.pick(&["accept", "drop"]));
    for _ in 0..(5 + random.below(40)) {
        text.push_str("[[rule]]\n");
        let six = random.below(6) == 0;
        let protocol = *random.pick(&[None, Some("tcp"), Some("udp"), Some("icmp")]);
        let protocol = if six && protocol == Some("icmp") {
            Some("icmpv6")
        } else {
            protocol
        };
        if six {
            if random.below(2) == 0 {
                text.push_str(&format!(
                    "src = \"fd00::{:x}/{}\"\n",
                    random.below(4),
                    random.pick(&[126, 128])
                ));
            }
        } else {
            if let Some(prefix) = random.pick(&[None, Some(16), Some(24), Some(32)]) {
                let [a, b, c, d] = v4(random, 1);
                text.push_str(&format!("src = \"{a}.{b}.{c}.{d}/{prefix}\"\n"));
            }
            if random.below(3) == 0 {
                let [a, b, c, d] = v4(random, 2);
                text.push_str(&format!("dst = \"{a}.{b}.{c}.{d}/24\"\n"));
            }
        }
        if let Some(protocol) = protocol {
            text.push_str(&format!("proto = \"{protocol}\"\n"));
            match protocol {
                "tcp" | "udp" if random.below(2) == 0 => {
                    let low = 1000 + random.below(8);
                    let high = low + *random.pick(&[0, 1, 3]);
                    text.push_str(&format!("dst_port = \"{low}-{high}\"\n"));
                }
                "tcp" if random.below(2) == 0 => {
                    text.push_str(&format!(
                        "tcp_flags = \"{}\"\n",
                        random.pick(&[
                            "syn",
                            "syn,!ack",
                            "!syn",
                            "ack",
                            "syn,ece,cwr",
                            "!ece",
                            "rst"
                        ])
                    ));
                }
                "icmp" | "icmpv6" if random.below(2) == 0 => {
                    text.push_str(&format!(
                        "icmp_type = {}\n",
                        random.pick(&[0, 3, 8, 128, 129])
                    ));
                }
                _ => {}
            }
        }
        match random.below(4) {
            0 => text.push_str("ct_state = [\"new\"]\n"),
            1 => text.push_str("ct_state = [\"established\", \"invalid\"]\n"),
            _ => {}
        }
        if random.below(3) == 0 {
            text.push_str(&format!("iface = \"{}\"\n", random.pick(ifaces)));
        }
        text.push_str(&format!("action = \"{}\"\n", random.pick(actions)));
    }
    text
}

/// TCP flags of the random segments: ones that open a flow (SYN, and SYN with ECN's ECE
/// and CWR, which Linux's conntrack takes as a SYN too), and, with `mid_flow`, segments
/// of no tracked flow (invalid).
fn random_tcp_flags(random: &mut Random, mid_flow: bool) -> u8 {
    use wire::parse::tcp_flags::{ACK, FIN, RST, SYN};
    const ECE_CWR: u8 = 0xc0;
    if mid_flow {
        *random.pick(&[
            SYN,
            SYN | ECE_CWR,
            SYN | ACK,
            ACK,
            FIN | ACK,
            RST,
            RST | ACK,
        ])
    } else {
        *random.pick(&[SYN, SYN | ECE_CWR])
    }
}

/// A packet (UDP, TCP or ICMP) of a flow of its own, its frame and its rule key as the
/// module builds it (state NEW, or INVALID when it cannot open a flow; ingress the
/// loopback, where a test run's frame arrives). TCP segments other than a SYN only with
/// `mid_flow`.
fn random_packet(
    random: &mut Random,
    serial: u32,
    ifindex: u32,
    mid_flow: bool,
) -> (Vec<u8>, RuleKey) {
    let six = random.below(6) == 0;
    let (src, dst): (IpAddr, IpAddr) = if six {
        (
            format!("fd00::{:x}", random.below(4)).parse().unwrap(),
            "fd00::ff".parse().unwrap(),
        )
    } else {
        (IpAddr::from(v4(random, 1)), IpAddr::from(v4(random, 2)))
    };
    // A source port of its own for each packet: every flow is new.
    let (src_port, dst_port) = (
        1024 + (serial % 60_000) as u16,
        998 + random.below(14) as u16,
    );
    let icmp = *random.pick(&[0u8, 3, 8, 128, 129]);
    let flags = random_tcp_flags(random, mid_flow);
    let (mut builder, protocol) = match random.below(3) {
        0 => (
            FrameBuilder::udp(src, dst).ports(src_port, dst_port),
            proto::UDP,
        ),
        1 => (
            FrameBuilder::tcp(src, dst, flags).ports(src_port, dst_port),
            proto::TCP,
        ),
        _ => (
            FrameBuilder::udp(src, dst),
            if six { proto::ICMPV6 } else { proto::ICMP },
        ),
    };
    if protocol == proto::ICMP || protocol == proto::ICMPV6 {
        builder.l4 = L4::Icmp {
            kind: icmp,
            code: 0,
        };
    }
    let mut key = RuleKey {
        family: if six { FAMILY_V6 } else { FAMILY_V4 },
        proto: protocol,
        ct_state: ct_state::NEW,
        ifindex,
        ..RuleKey::default()
    };
    let echo_request = matches!((protocol, icmp), (proto::ICMP, 8) | (proto::ICMPV6, 128));
    if protocol == proto::TCP || protocol == proto::UDP {
        (key.src_port, key.dst_port) = (src_port, dst_port);
        if protocol == proto::TCP {
            key.tcp_flags = flags;
            // Only a SYN (without ACK or RST) opens a flow.
            if flags & 0x16 != 0x02 {
                key.ct_state = ct_state::INVALID;
            }
        }
    } else {
        key.dst_port = u16::from(icmp) << 8;
        if !echo_request {
            // An error quoting nothing tracked (its quote is four zero bytes), an echo
            // reply to no request, a type conntrack does not follow.
            key.ct_state = ct_state::INVALID;
        }
    }
    for (field, address) in [(&mut key.src, src), (&mut key.dst, dst)] {
        match address {
            IpAddr::V4(address) => field[..4].copy_from_slice(&address.octets()),
            IpAddr::V6(address) => *field = address.octets(),
        }
    }
    (builder.build(), key)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_kernel_module_decides_as_the_compiled_tables_say() {
    require_root("the firewall module against its reference");
    let lab = Lab::for_test("fk");
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let (compared, mismatches) = lab::netns::run_in(&namespace, move || {
        let mut random = Random(0x5eed_f00d_1234_5678);
        let mut mismatches = Vec::new();
        let mut compared = 0usize;
        let mut serial = 0u32;
        for round in 0..ROUNDS {
            // `log` rules decide nothing: the verdicts must not change with them.
            let text = random_policy(
                &mut random,
                &["lo", &iface],
                &["accept", "drop", "reject", "log"],
            );
            let policy = Policy::parse(Path::new("random.toml"), &text).unwrap();
            let Ok(tables) = firewall::compile(&policy, |name| {
                nix::net::if_::if_nametoindex(name).map_err(|error| error.to_string())
            }) else {
                continue; // more masks than the module probes: not this test's subject
            };
            firewall::apply(&iface, &policy, false).unwrap();
            let entry = offload::bpffs::Bpffs::get()
                .fastpath_dir()
                .join(&iface)
                .join("chain/entry");
            let program =
                Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface).unwrap();
            for _ in 0..PACKETS {
                serial += 1;
                let (frame, key) = random_packet(&mut random, serial, 1, true);
                let (expected, rule) = tables.classify(&key);
                let expected = match expected {
                    verdict::ACCEPT => XDP_PASS,
                    verdict::REJECT if answered(&key) => XDP_TX,
                    _ => XDP_DROP,
                };
                let output = offload::test_run::run_once(&program, &frame).unwrap();
                let got = output.verdict;
                compared += 1;
                if got != expected {
                    mismatches.push(format!(
                        "round {round}: {key:?}: kernel {got}, reference {expected} (rule slot {rule})\n{text}"
                    ));
                } else if got == XDP_TX
                    && let Err(wrong) = check_answer(&frame, &output.packet)
                {
                    mismatches.push(format!("round {round}: {key:?}: the answer: {wrong}"));
                }
            }
        }
        firewall::remove(&iface).unwrap();
        (compared, mismatches)
    })
    .expect("the dut's namespace");
    // Rounds whose policy needs more masks than the module probes are skipped; most run.
    assert!(
        compared >= ROUNDS / 2 * PACKETS,
        "only {compared} packets compared"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches; the first:\n{}",
        mismatches.len(),
        mismatches[0]
    );
}

/// Whether a rejected packet gets an answer: not an RST, not an ICMP error (the random
/// packets are all unicast, untagged, without options or extension headers).
fn answered(key: &RuleKey) -> bool {
    let icmp_type = (key.dst_port >> 8) as u8;
    match key.proto {
        proto::TCP => key.tcp_flags & wire::parse::tcp_flags::RST == 0,
        proto::ICMP => !matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        proto::ICMPV6 => icmp_type >= 128,
        _ => true,
    }
}

/// The answer `reject` built for `input`: addresses swapped, checksums right, an RST to a
/// TCP segment (its sequence numbers per RFC 9293 3.10.7.1), else a port unreachable
/// quoting the packet's IP header and 8 bytes.
fn check_answer(input: &[u8], output: &[u8]) -> Result<(), String> {
    use wire::checksum::{checksum, pseudo_header};
    let question = wire::parse::parse(input)
        .ok()
        .flatten()
        .ok_or("the input parses")?;
    let answer = wire::parse::parse(output)
        .map_err(|error| format!("{error:?}"))?
        .ok_or("the answer is not IP")?;
    if output[0..6] != input[6..12] || output[6..12] != input[0..6] {
        return Err("MACs not swapped".into());
    }
    let (src, dst) = question.addresses(input);
    let (answer_src, answer_dst) = answer.addresses(output);
    if (answer_src, answer_dst) != (dst, src) {
        return Err("addresses not swapped".into());
    }
    if answer.ipv4() && checksum(&output[answer.l3..answer.l3 + 20]) != 0 {
        return Err("IPv4 header checksum".into());
    }
    let l4 = &output[answer.l4..answer.l3_end];
    let l4_sum = if answer.protocol == proto::ICMP {
        checksum(l4)
    } else {
        !pseudo_header(answer_src, answer_dst, answer.protocol, l4.len())
            .add_bytes(l4)
            .fold()
    };
    if l4_sum != 0 {
        return Err(format!("L4 checksum of protocol {}", answer.protocol));
    }
    if question.protocol == proto::TCP {
        let (flags, segment) = (question.tcp_flags, &input[question.l4..]);
        let word = |bytes: &[u8], at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let (ports, their_ports) = (answer.ports.unwrap(), question.ports.unwrap());
        if ports != (their_ports.1, their_ports.0) || answer.tcp_flags & 0x04 == 0 {
            return Err(format!("not an RST to its ports: {answer:?}"));
        }
        let expected_seq = if flags & 0x10 != 0 {
            word(segment, 8)
        } else {
            0
        };
        if word(l4, 4) != expected_seq {
            return Err(format!("RST seq {} instead of {expected_seq}", word(l4, 4)));
        }
        if flags & 0x10 == 0 {
            let length = question.l3_end - question.l4 - usize::from(segment[12] >> 4) * 4;
            let expected_ack = word(segment, 4)
                .wrapping_add(length as u32)
                .wrapping_add(u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0));
            if word(l4, 8) != expected_ack || answer.tcp_flags & 0x10 == 0 {
                return Err(format!("RST ack {} instead of {expected_ack}", word(l4, 8)));
            }
        }
        return Ok(());
    }
    let (kind, code) = answer.icmp.ok_or("no ICMP header")?;
    let expected = if answer.ipv4() { (3, 3) } else { (1, 4) };
    let quote = if answer.ipv4() { 28 } else { 48 };
    if (kind, code) != expected || l4[8..] != input[question.l3..question.l3 + quote] {
        return Err(format!("not a port unreachable quoting the packet: {l4:?}"));
    }
    Ok(())
}

/// Packets the nftables differential sends per run: `FASTPATH_NFT_PACKETS` when set
/// (more for a longer search), else 100,000.
fn nft_packets() -> usize {
    std::env::var("FASTPATH_NFT_PACKETS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

/// One packet of a batch: the generator's state before it (to build it again), its rule
/// key and the rule index nft should count it on.
struct Sent {
    random: Random,
    key: RuleKey,
    expected: usize,
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn nftables_decides_as_the_compiled_tables_say() {
    require_root("the firewall's reference against nftables");
    // Packets go in batches of distinct flows; nft's per-rule counters after a batch must
    // equal the counts the reference's verdicts add up to. A batch that differs is sent
    // again one packet at a time (same packets, fresh flows) to name the packet.
    const BATCH: usize = 250;
    const PER_ROUND: usize = 5_000;
    let total = nft_packets();
    let rounds = total.div_ceil(PER_ROUND);
    let lab = Lab::for_test("fn");
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let ifindex = Lab::run_in(&namespace, {
        let iface = iface.clone();
        move || nix::net::if_::if_nametoindex(iface.as_str()).unwrap()
    })
    .unwrap();
    let dut_mac = lab.dut.read_mac().unwrap();
    let client_mac = lab.client.read_mac().unwrap();
    let socket = lab::raw::RawSocket::open(&lab.client.namespace, &lab.client.iface).unwrap();
    let mut random = Random(0xfeed_beef_0bad_cafe);
    let mut serial = 0u32;
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    let send = |frame: Vec<u8>| {
        let mut frame = frame;
        frame[0..6].copy_from_slice(&dut_mac);
        frame[6..12].copy_from_slice(&client_mac);
        socket.send(&frame).unwrap();
    };
    // Sends `count` more packets' worth of counts and waits until nft has counted them.
    let settle = |before: &[u64], count: u64| {
        let mut after = before.to_vec();
        lab::wait_until(
            Duration::from_secs(10),
            "nftables to count the batch",
            || {
                after = nft::counters(&namespace);
                after.iter().sum::<u64>() >= before.iter().sum::<u64>() + count
            },
        );
        after
    };
    let mut round = 0;
    while compared < total && round < rounds * 2 {
        round += 1;
        let text = random_policy(&mut random, &[&iface, "lo"], &["accept", "drop", "reject"]);
        let policy = Policy::parse(Path::new("random.toml"), &text).unwrap();
        let Ok(tables) =
            firewall::compile(
                &policy,
                |name| {
                    if name == iface { Ok(ifindex) } else { Ok(1) }
                },
            )
        else {
            continue;
        };
        let ruleset = nft::ruleset(&policy, &["ip saddr 10.1.0.0/16", "ip6 saddr fd00::/120"]);
        nft::load(&namespace, ruleset.clone());
        let rule_index = |key: &RuleKey| {
            let (_, slot) = tables.classify(key);
            if slot == 0 {
                policy.rules.len()
            } else {
                slot as usize - 1
            }
        };
        let mut before = nft::counters(&namespace);
        let mut in_round = 0;
        while in_round < PER_ROUND && compared < total {
            let mut batch = Vec::with_capacity(BATCH);
            let mut expected = vec![0u64; before.len()];
            for _ in 0..BATCH.min(total - compared) {
                serial += 1;
                let state = random.clone();
                let (frame, key) = random_packet(&mut random, serial, ifindex, false);
                let index = rule_index(&key);
                expected[index] += 1;
                send(frame);
                batch.push(Sent {
                    random: state,
                    key,
                    expected: index,
                });
            }
            let after = settle(&before, batch.len() as u64);
            let moved: Vec<u64> = (0..after.len()).map(|i| after[i] - before[i]).collect();
            compared += batch.len();
            in_round += batch.len();
            before = after;
            if moved == expected {
                continue;
            }
            // Name the packets: each again on a flow of its own.
            for sent in &batch {
                serial += 1;
                let (frame, key) = random_packet(&mut sent.random.clone(), serial, ifindex, false);
                send(frame);
                let after = settle(&before, 1);
                let counted: Vec<usize> = (0..after.len())
                    .filter(|&i| after[i] != before[i])
                    .collect();
                before = after;
                if counted != [sent.expected] {
                    mismatches.push(format!(
                        "round {round}: {key:?} (first sent as {:?}): nftables counted rule(s) \
                         {counted:?}, the reference picks {}\n{ruleset}",
                        sent.key, sent.expected
                    ));
                }
            }
            if mismatches.is_empty() {
                mismatches.push(format!(
                    "round {round}: a batch counted {moved:?} instead of {expected:?}, but each \
                     packet alone agreed\n{ruleset}"
                ));
            }
        }
    }
    nft::delete(&namespace);
    assert!(
        compared >= total,
        "only {compared} of {total} packets compared"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches in {compared} packets; the first:\n{}",
        mismatches.len(),
        mismatches[0]
    );
}
