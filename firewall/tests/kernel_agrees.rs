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

#[path = "support/conversation.rs"]
mod conversation;
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
        let states = *random.pick(&[
            "",
            "",
            "",
            "\"new\"",
            "\"established\", \"invalid\"",
            "\"established\"",
            "\"invalid\"",
            "\"new\", \"established\"",
        ]);
        if !states.is_empty() {
            text.push_str(&format!("ct_state = [{states}]\n"));
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
            // A SYN opens a flow, and so does an ACK: Linux picks a connection up in
            // mid-stream. Anything else without a flow is invalid.
            let kind = flags & 0x17;
            if kind != 0x02 && kind != 0x10 {
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
    let side = NftSide::new(&lab);
    let mut random = Random(0xfeed_beef_0bad_cafe);
    let mut serial = 0u32;
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    let send = |frame: Vec<u8>| side.send(frame);
    let settle = |before: &[u64], count: u64| side.settle(before, count);
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

/// nftables' side of a differential: frames sent for real from the lab's client to the
/// dut, whose prerouting hook holds the ruleset, and the ruleset's per-rule counters.
struct NftSide {
    namespace: String,
    socket: lab::raw::RawSocket,
    dut_mac: [u8; 6],
    client_mac: [u8; 6],
}

impl NftSide {
    fn new(lab: &Lab) -> NftSide {
        NftSide {
            namespace: lab.dut.namespace.clone(),
            socket: lab::raw::RawSocket::open(&lab.client.namespace, &lab.client.iface).unwrap(),
            dut_mac: lab.dut.read_mac().unwrap(),
            client_mac: lab.client.read_mac().unwrap(),
        }
    }

    /// Sends `frame` to the dut (its MACs set).
    fn send(&self, mut frame: Vec<u8>) {
        frame[0..6].copy_from_slice(&self.dut_mac);
        frame[6..12].copy_from_slice(&self.client_mac);
        self.socket.send(&frame).unwrap();
    }

    /// Waits until nft has counted `count` packets more than `before`; the counters then.
    fn settle(&self, before: &[u64], count: u64) -> Vec<u64> {
        let mut after = before.to_vec();
        lab::wait_until(
            Duration::from_secs(10),
            "nftables to count the batch",
            || {
                after = nft::counters(&self.namespace);
                after.iter().sum::<u64>() >= before.iter().sum::<u64>() + count
            },
        );
        after
    }
}

/// The module's side of the conversations' differential: its firewall on the loopback of
/// a namespace no traffic goes through (a test run's frame arrives on the loopback), fed
/// with `BPF_PROG_TEST_RUN`; its conntrack is that namespace's table.
struct ModuleSide {
    namespace: String,
}

impl ModuleSide {
    const IFACE: &str = "lo";

    fn apply(&self, text: String) {
        Lab::run_in(&self.namespace, move || {
            let policy = Policy::parse(Path::new("random.toml"), &text).unwrap();
            firewall::apply(ModuleSide::IFACE, &policy, false).unwrap();
        })
        .unwrap();
    }

    /// Runs `frames` in order through the module; its counters after each of
    /// `after_each`'s frames (rules in order, the default last), else after the last.
    fn run(&self, frames: Vec<Vec<u8>>, after_each: bool) -> Vec<Vec<u64>> {
        Lab::run_in(&self.namespace, move || {
            let entry = offload::bpffs::Bpffs::get()
                .fastpath_dir()
                .join(ModuleSide::IFACE)
                .join("chain/entry");
            let program =
                Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface).unwrap();
            let counters = || {
                let status = firewall::status(ModuleSide::IFACE).unwrap();
                let mut counts: Vec<u64> = status.rules.iter().map(|rule| rule.packets).collect();
                counts.push(status.default.packets);
                counts
            };
            let mut seen = Vec::new();
            for frame in &frames {
                offload::test_run::run_once(&program, frame).unwrap();
                if after_each {
                    seen.push(counters());
                }
            }
            if !after_each {
                seen.push(counters());
            }
            seen
        })
        .unwrap()
    }

    fn counters(&self) -> Vec<u64> {
        self.run(Vec::new(), false).remove(0)
    }

    fn remove(&self) {
        Lab::run_in(&self.namespace, || firewall::remove(ModuleSide::IFACE))
            .unwrap()
            .unwrap();
    }
}

/// The counter that moved between `before` and `after`: the rule that decided (the
/// default's index is the rules' count), or every one that moved when not exactly one did.
fn moved(before: &[u64], after: &[u64]) -> Vec<usize> {
    (0..after.len())
        .filter(|&i| after[i] != before[i])
        .collect()
}

/// A random conversation between a client (10.1.x.x or fd00::0-3) and a server
/// (10.2.x.x or fd00::ff), the client's port its own (`serial`).
fn random_conversation(random: &mut Random, serial: u32) -> conversation::Conversation {
    let (client, server): (IpAddr, IpAddr) = if random.below(6) == 0 {
        (
            format!("fd00::{:x}", random.below(4)).parse().unwrap(),
            "fd00::ff".parse().unwrap(),
        )
    } else {
        (IpAddr::from(v4(random, 1)), IpAddr::from(v4(random, 2)))
    };
    let server_port = 998 + random.below(14) as u16;
    let client_port = 1024 + (serial % 64_000) as u16;
    conversation::random(
        &mut |bound| random.below(bound),
        (client, client_port),
        (server, server_port),
    )
}

/// Both sides of the conversations' differential on one lab.
struct Differential {
    lab: Lab,
    nft: NftSide,
    module: ModuleSide,
}

impl Differential {
    fn new(tag: &str) -> Differential {
        let lab = Lab::for_test(tag);
        // Both directions come in on the dut's veth and are forwarded on to a backend
        // (which drops them): a forwarded packet passes postrouting, where Linux confirms a
        // new conntrack entry (one dropped at routing would leave none).
        let gateway = (lab.backends[0].ipv4, lab.backends[0].ipv6);
        Lab::run_in(&lab.dut.namespace, move || {
            for (destination, prefix, via) in [
                ("10.1.0.0", 16, gateway.0),
                ("10.2.0.0", 16, gateway.0),
                ("fd00::", 120, gateway.1),
            ] {
                lab::netlink::add_route(destination.parse().unwrap(), prefix, via).unwrap();
            }
        })
        .unwrap();
        // In order: Linux's backlog keeps one CPU's packets in order, so the sender stays
        // on one CPU (moving between sends, a SYN-ACK could overtake its SYN).
        pin_to_one_cpu();
        Differential {
            nft: NftSide::new(&lab),
            module: ModuleSide {
                namespace: lab.backends[1].namespace.clone(),
            },
            lab,
        }
    }

    fn namespace(&self) -> &str {
        &self.lab.dut.namespace
    }

    /// Loads `text` (interfaces `@in`, where the packets come in, and `@other`) on both
    /// sides; nft's text, policy and ruleset.
    fn load(&self, text: &str) -> (String, Policy, String) {
        // The dut's veth is where nft's packets arrive, the loopback where the module's do.
        let nft_text = text
            .replace("@in", &self.lab.dut.iface)
            .replace("@other", "lo");
        let nft_policy = Policy::parse(Path::new("random.toml"), &nft_text).unwrap();
        let ruleset = nft::ruleset(
            &nft_policy,
            &[
                "ip saddr 10.1.0.0/16",
                "ip saddr 10.2.0.0/16",
                "ip6 saddr fd00::/120",
            ],
        );
        nft::load(self.namespace(), ruleset.clone());
        self.module.apply(
            text.replace("@in", ModuleSide::IFACE)
                .replace("@other", &self.lab.backends[1].iface),
        );
        (nft_text, nft_policy, ruleset)
    }

    /// Sends `conversation` one segment at a time through both; the rule (by name, or
    /// `default`) each side counted each segment on: `[nft's, the module's]`.
    fn decide(
        &self,
        policy: &Policy,
        conversation: &conversation::Conversation,
    ) -> Vec<[String; 2]> {
        let frames = conversation.frames();
        let mut module_before = self.module.counters();
        let module_each = self.module.run(frames.clone(), true);
        let mut nft_before = nft::counters(self.namespace());
        let name = |rules: &[usize]| -> String {
            match rules {
                [index] => policy
                    .rules
                    .get(*index)
                    .map_or("default".to_string(), |rule| rule.name.clone()),
                other => format!("{other:?}"),
            }
        };
        let mut decided = Vec::new();
        for (frame, module_after) in frames.into_iter().zip(module_each) {
            self.nft.send(frame);
            let nft_after = self.nft.settle(&nft_before, 1);
            decided.push([
                name(&moved(&nft_before, &nft_after)),
                name(&moved(&module_before, &module_after)),
            ]);
            (nft_before, module_before) = (nft_after, module_after);
        }
        decided
    }

    fn clean_up(&self) {
        nft::delete(self.namespace());
        self.module.remove();
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn nftables_and_the_module_agree_on_tcp_conversations() {
    require_root("the firewall module's conntrack against Linux's");
    // Whole conversations go in batches of about 250 segments; after each, the per-rule
    // counts of the module and of nft must be equal. A batch that differs is sent again
    // one conversation and one segment at a time (fresh client ports) to name the segment.
    const BATCH: usize = 250;
    const PER_ROUND: usize = 5_000;
    let total = nft_packets();
    let rounds = total.div_ceil(PER_ROUND);
    let differential = Differential::new("fc");
    let (side, module, namespace) = (
        &differential.nft,
        &differential.module,
        differential.namespace(),
    );
    let mut random = Random(0x7cb0_5e55_1011_d00d);
    let mut serial = 0u32;
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    let mut round = 0;
    while compared < total && round < rounds * 2 {
        round += 1;
        let text = random_policy(
            &mut random,
            &["@in", "@other"],
            &["accept", "drop", "reject"],
        );
        let policy = Policy::parse(Path::new("random.toml"), &text).unwrap();
        if firewall::compile(&policy, |_| Ok(1)).is_err() {
            continue; // more masks than the module probes
        }
        let (nft_text, nft_policy, ruleset) = differential.load(&text);
        let (mut nft_before, mut module_before) = (nft::counters(namespace), module.counters());
        let mut in_round = 0;
        while in_round < PER_ROUND && compared < total {
            let mut batch = Vec::new();
            let mut frames = Vec::new();
            while frames.len() < BATCH {
                serial += 1;
                let conversation = random_conversation(&mut random, serial);
                frames.extend(conversation.frames());
                batch.push(conversation);
            }
            for frame in &frames {
                side.send(frame.clone());
            }
            let nft_after = side.settle(&nft_before, frames.len() as u64);
            let module_after = module.run(frames.clone(), false).remove(0);
            let delta = |before: &[u64], after: &[u64]| -> Vec<u64> {
                (0..after.len()).map(|i| after[i] - before[i]).collect()
            };
            let (nft_moved, module_moved) = (
                delta(&nft_before, &nft_after),
                delta(&module_before, &module_after),
            );
            compared += frames.len();
            in_round += frames.len();
            (nft_before, module_before) = (nft_after, module_after);
            if nft_moved == module_moved {
                continue;
            }
            let found = mismatches.len();
            for conversation in &batch {
                serial += 1;
                let again = conversation::Conversation {
                    client: (conversation.client.0, 1024 + (serial % 64_000) as u16),
                    ..conversation.clone()
                };
                let frames = again.frames();
                let module_each = module.run(frames.clone(), true);
                for (index, frame) in frames.into_iter().enumerate() {
                    side.send(frame);
                    let nft_after = side.settle(&nft_before, 1);
                    let (nft_rule, module_rule) = (
                        moved(&nft_before, &nft_after),
                        moved(&module_before, &module_each[index]),
                    );
                    (nft_before, module_before) = (nft_after, module_each[index].clone());
                    if nft_rule != module_rule {
                        let rule_text = |rules: &[usize]| -> String {
                            rules
                                .iter()
                                .map(|&index| rule_block(&nft_text, &nft_policy, index))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        };
                        mismatches.push(format!(
                            "round {round}: \"{}\", segment {index} of {}: nftables counted \
                             {nft_rule:?} ({}), the module {module_rule:?} ({})\n{again:?}\n\
                             {nft_text}",
                            again.script,
                            again.brief(),
                            rule_text(&nft_rule),
                            rule_text(&module_rule),
                        ));
                    }
                }
            }
            if mismatches.len() == found {
                mismatches.push(format!(
                    "round {round}: a batch counted {module_moved:?} in the module, \
                     {nft_moved:?} in nft, but each conversation alone agreed\n{ruleset}"
                ));
            }
        }
    }
    differential.clean_up();
    assert!(
        compared >= total,
        "only {compared} of {total} segments compared"
    );
    let headlines: Vec<&str> = mismatches
        .iter()
        .filter_map(|mismatch| mismatch.lines().next())
        .take(20)
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} mismatches in {compared} segments:\n{}\nthe first in full:\n{}",
        mismatches.len(),
        headlines.join("\n"),
        mismatches[0]
    );
}

/// Rule `index` of `policy` as its lines in `text` (the default past the rules).
fn rule_block(text: &str, policy: &Policy, index: usize) -> String {
    let Some(rule) = policy.rules.get(index) else {
        return format!("default {}", text.lines().next().unwrap_or(""));
    };
    text.lines()
        .skip(rule.line)
        .take_while(|line| !line.starts_with("[["))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps the calling thread on the CPU it is on.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls read and write it only.
    unsafe {
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin the sender to CPU {cpu}"
        );
    }
}

/// The regression tests' policy: each ct state counts on a rule of its own, and SYN-ACKs
/// from 10.2.9.0/24 are dropped before any.
const STATES: &str = r#"
default = "drop"
[[rule]]
name = "syn-ack dropped"
src = "10.2.9.0/24"
proto = "tcp"
tcp_flags = "syn,ack"
action = "drop"
[[rule]]
name = "new"
ct_state = ["new"]
action = "accept"
[[rule]]
name = "established"
ct_state = ["established"]
action = "accept"
[[rule]]
name = "invalid"
ct_state = ["invalid"]
action = "drop"
"#;

/// Sends the conversation of `steps` (from the client?, flags, the rule it must count on)
/// between 10.1.0.1 and `server` through the module and nftables: both must count each
/// segment on its rule.
fn conversation_counts_on(tag: &str, server: &str, steps: &[(bool, u8, &str)]) {
    let flags: Vec<(bool, u8)> = steps
        .iter()
        .map(|&(client, flags, _)| (client, flags))
        .collect();
    let conversation = conversation::Conversation::scripted(
        ("10.1.0.1".parse().unwrap(), 40000),
        (server.parse().unwrap(), 1000),
        &flags,
    );
    let rules: Vec<&str> = steps.iter().map(|&(_, _, rule)| rule).collect();
    segments_count_on(tag, conversation, &rules);
}

/// Sends `conversation` through the module and nftables: both must count its segments on
/// `rules`, in order.
fn segments_count_on(tag: &str, conversation: conversation::Conversation, rules: &[&str]) {
    let differential = Differential::new(tag);
    let (_, policy, _) = differential.load(STATES);
    let decided = differential.decide(&policy, &conversation);
    differential.clean_up();
    let expected: Vec<[String; 2]> = rules
        .iter()
        .map(|rule| [rule.to_string(), rule.to_string()])
        .collect();
    assert_eq!(
        decided,
        expected,
        "[nftables, the module] for {}",
        conversation.brief()
    );
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;
const RST_ACK: u8 = 0x14;
const CLIENT: bool = true;
const SERVER: bool = false;

/// Found by the conversations' differential: the module advanced a flow only on packets
/// its policy accepted; Linux's conntrack runs before the filter, so a dropped SYN-ACK
/// was still seen and the client's ACK after it is established.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_dropped_syn_ack_still_moves_its_flow() {
    require_root("a conntrack regression against nftables");
    conversation_counts_on(
        "ra",
        "10.2.9.1",
        &[
            (CLIENT, SYN, "new"),
            (SERVER, SYN_ACK, "syn-ack dropped"),
            (CLIENT, ACK, "established"),
        ],
    );
}

/// Found by the differential: the originator's ACK before any answer was new here;
/// Linux's state table has it invalid (an ACK in SYN_SENT).
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_ack_before_any_answer_is_invalid() {
    require_root("a conntrack regression against nftables");
    conversation_counts_on(
        "rb",
        "10.2.0.1",
        &[
            (CLIENT, SYN, "new"),
            (CLIENT, ACK, "invalid"),
            (SERVER, SYN_ACK, "established"),
            (CLIENT, ACK, "established"),
        ],
    );
}

/// Found by the differential: a SYN on a flow the other side reset started it over here;
/// Linux ignores it (its flow stays, established: the peer may not have seen the RST),
/// and starts over only after the SYN's own side's RST (or a FIN).
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_syn_after_the_peers_rst_stays_established_and_after_its_own_starts_over() {
    require_root("a conntrack regression against nftables");
    conversation_counts_on(
        "rc",
        "10.2.0.1",
        &[
            (CLIENT, SYN, "new"),
            (SERVER, SYN_ACK, "established"),
            (CLIENT, ACK, "established"),
            (SERVER, RST, "established"),
            (CLIENT, SYN, "established"),
            (SERVER, SYN_ACK, "established"),
            (CLIENT, ACK, "established"),
            (CLIENT, RST, "established"),
            (CLIENT, SYN, "new"),
        ],
    );
}

/// Found by the differential: a flow whose only answer is an RST (a refused connection)
/// stayed here, closed; Linux removes it at once, so a second RST is invalid and a new SYN
/// is new.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_rst_as_the_only_answer_ends_the_flow() {
    require_root("a conntrack regression against nftables");
    conversation_counts_on(
        "rd",
        "10.2.0.1",
        &[
            (CLIENT, SYN, "new"),
            (SERVER, RST_ACK, "established"),
            (SERVER, RST_ACK, "invalid"),
            (CLIENT, SYN, "new"),
        ],
    );
}

/// Linux picks a connection up in mid-stream (`nf_conntrack_tcp_loose=1`, its default):
/// an ACK of no known flow is new and opens one, and the other side's answer is
/// established, as are the segments after an RST closed it. The module once called the
/// first ACK invalid.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_ack_of_no_flow_picks_the_connection_up() {
    require_root("a conntrack regression against nftables");
    conversation_counts_on(
        "re",
        "10.2.0.1",
        &[
            (CLIENT, ACK, "new"),
            (SERVER, ACK, "established"),
            (CLIENT, ACK, "established"),
            (CLIENT, RST, "established"),
            (SERVER, ACK, "established"),
        ],
    );
}

/// RFC 5961 as Linux checks it (`nf_conntrack_tcp_ignore_invalid_rst=0`, its default): an
/// RST before what the peer acknowledged is invalid and leaves the flow open; one at the
/// acknowledged number closes it.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_rst_before_the_acknowledged_number_is_invalid() {
    require_root("a conntrack regression against nftables");
    let segment = |from_client, flags, seq, ack| conversation::Segment {
        from_client,
        flags,
        seq,
        ack,
        payload: 0,
    };
    let conversation = conversation::Conversation {
        script: "handshake, an old RST, the right RST",
        client: ("10.1.0.1".parse().unwrap(), 40001),
        server: ("10.2.0.1".parse().unwrap(), 1000),
        segments: vec![
            segment(CLIENT, SYN, 1000, 0),
            segment(SERVER, SYN_ACK, 5000, 1001),
            segment(CLIENT, ACK, 1001, 5001),
            segment(SERVER, RST, 4000, 0),
            segment(CLIENT, ACK, 1001, 5001),
            segment(SERVER, RST, 5001, 0),
            segment(CLIENT, ACK, 1001, 5001),
        ],
    };
    segments_count_on(
        "rf",
        conversation,
        &[
            "new",
            "established",
            "established",
            "invalid",
            "established",
            "established",
            "established",
        ],
    );
}
