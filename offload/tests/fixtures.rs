//! BPF_PROG_TEST_RUN fixtures for the steering program: an input packet, the rules, the
//! expected verdict and, where the packet changes, the expected output packet.
//! Needs root and the kernel's BPF; under CI=true a missing capability fails the run.

mod support;

use offload::{
    rules::{Action, PortRange, RuleSpec, parse_cidr},
    test_run::TestBench,
};
use support::{
    packet::{self, ECHO, frame, tcp_to, udp_to},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn rule(action: &str) -> RuleSpec {
    RuleSpec::new(action.parse().unwrap())
}

trait RuleExt {
    fn proto(self, proto: &str) -> Self;
    fn dst(self, cidr: &str) -> Self;
    fn src(self, cidr: &str) -> Self;
    fn ports(self, ports: &str) -> Self;
}

impl RuleExt for RuleSpec {
    fn proto(mut self, proto: &str) -> Self {
        self.proto = Some(proto.parse().unwrap());
        self
    }
    fn dst(mut self, cidr: &str) -> Self {
        self.dst = Some(parse_cidr("dst", cidr).unwrap());
        self
    }
    fn src(mut self, cidr: &str) -> Self {
        self.src = Some(parse_cidr("src", cidr).unwrap());
        self
    }
    fn ports(mut self, ports: &str) -> Self {
        self.dport = Some(ports.parse::<PortRange>().unwrap());
        self
    }
}

/// Loads the program under a label unique to the test, with `rules` installed.
fn bench(label: &str, default: Action, rules: &[RuleSpec]) -> (TestBench, Vec<u32>) {
    require_root(label);
    let bench = TestBench::load(&format!("fixture-{label}"), default).expect("load program");
    let ids = bench
        .steering()
        .unwrap()
        .add_rules(rules)
        .expect("add rules");
    (bench, ids)
}

fn verdict(bench: &TestBench, packet: &[u8]) -> u32 {
    bench.run(packet).expect("test run").verdict
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn every_action_on_a_matching_rule() {
    let (bench, _) = bench(
        "actions",
        Action::Pass,
        &[
            rule("drop").proto("udp").dst("10.0.0.1").ports("53"),
            rule("tx").proto("udp").dst("10.0.0.2").ports("7"),
            rule("pass").proto("tcp").dst("10.0.0.3").ports("22"),
            rule("xsk").proto("udp").dst("10.0.0.4").ports("4791"),
        ],
    );
    assert_eq!(
        verdict(&bench, &packet::udp("10.1.0.1", "10.0.0.1", 53)),
        XDP_DROP
    );
    assert_eq!(
        verdict(&bench, &packet::tcp("10.1.0.1", "10.0.0.3", 22)),
        XDP_PASS
    );
    // No socket bound at queue 0: xsk falls back to pass, and says so in its counter.
    assert_eq!(
        verdict(&bench, &packet::udp("10.1.0.1", "10.0.0.4", 4791)),
        XDP_PASS
    );

    let input = packet::udp("10.1.0.1", "10.0.0.2", 7);
    let output = bench.run(&input).unwrap();
    assert_eq!(output.verdict, XDP_TX);
    let mut expected = input.clone();
    expected[0..6].copy_from_slice(&packet::SRC_MAC);
    expected[6..12].copy_from_slice(&packet::DST_MAC);
    assert_eq!(
        output.packet, expected,
        "tx swaps the MAC addresses, nothing else"
    );

    let counters = bench.steering().unwrap().counters().unwrap();
    assert_eq!(
        (
            counters.drop,
            counters.tx,
            counters.pass,
            counters.xsk_fallback
        ),
        (1, 1, 2, 1)
    );
    let stats = bench.steering().unwrap().rule_stats().unwrap();
    assert!(stats.iter().all(|rule| rule.packets == 1), "{stats:?}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn default_action_applies_when_no_rule_matches() {
    let (bench, _) = bench("default", Action::Drop, &[rule("pass").dst("10.0.0.0/8")]);
    assert_eq!(
        verdict(&bench, &packet::tcp("1.1.1.1", "10.9.9.9", 80)),
        XDP_PASS
    );
    assert_eq!(
        verdict(&bench, &packet::tcp("1.1.1.1", "192.168.1.1", 80)),
        XDP_DROP
    );
    // Non-IP traffic (ARP here) is never subject to the default: the kernel needs it.
    let mut arp = packet::udp("1.1.1.1", "192.168.1.1", 1);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(verdict(&bench, &arp), XDP_PASS);
    assert_eq!(bench.steering().unwrap().counters().unwrap().non_ip, 1);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn each_rule_kind_matches_only_its_packets() {
    let (bench, _) = bench(
        "kinds",
        Action::Pass,
        &[
            // exact host + port (hash)
            rule("drop").proto("tcp").dst("10.0.0.1").ports("80"),
            // prefix + port range
            rule("drop")
                .proto("udp")
                .dst("10.2.0.0/16")
                .ports("1000-2000"),
            // source prefix only
            rule("drop").src("192.168.50.0/24"),
            // protocol only (IPv4 and IPv6)
            rule("drop").proto("icmp"),
            // IPv6 prefix
            rule("drop").proto("tcp").dst("2001:db8:1::/48"),
        ],
    );
    let cases: &[(Vec<u8>, u32)] = &[
        (packet::tcp("1.1.1.1", "10.0.0.1", 80), XDP_DROP),
        (packet::tcp("1.1.1.1", "10.0.0.1", 81), XDP_PASS),
        (packet::udp("1.1.1.1", "10.0.0.1", 80), XDP_PASS),
        (packet::udp("1.1.1.1", "10.2.3.4", 1000), XDP_DROP),
        (packet::udp("1.1.1.1", "10.2.3.4", 2000), XDP_DROP),
        (packet::udp("1.1.1.1", "10.2.3.4", 2001), XDP_PASS),
        (packet::tcp("1.1.1.1", "10.2.3.4", 1500), XDP_PASS),
        (packet::tcp("192.168.50.7", "8.8.8.8", 443), XDP_DROP),
        (packet::tcp("192.168.51.7", "8.8.8.8", 443), XDP_PASS),
        (frame("1.1.1.1", "8.8.8.8", ECHO).build(), XDP_DROP),
        (frame("2001:db8::1", "2001:db8::2", ECHO).build(), XDP_DROP),
        (packet::tcp("2001:db8::9", "2001:db8:1::5", 22), XDP_DROP),
        (packet::tcp("2001:db8::9", "2001:db8:2::5", 22), XDP_PASS),
        (packet::udp("2001:db8::9", "2001:db8:1::5", 22), XDP_PASS),
    ];
    for (index, (input, expected)) in cases.iter().enumerate() {
        assert_eq!(verdict(&bench, input), *expected, "case {index}");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn overlapping_rules_follow_the_documented_priority() {
    let (bench, ids) = bench(
        "overlap",
        Action::Pass,
        &[
            rule("drop").dst("10.0.0.0/8"), // 1: short prefix
            rule("tx").dst("10.1.0.0/16"),  // 2: longer prefix
            rule("pass").dst("10.1.0.0/16").src("172.16.0.0/12"), // 3: + source
            rule("drop").dst("10.1.0.0/16").proto("tcp").ports("80-90"), // 4: + ports
            rule("tx").dst("10.1.0.0/16").proto("tcp").ports("80"), // 5: narrower ports
            rule("drop").proto("tcp").dst("10.1.2.3").ports("443"), // 6: exact host
            rule("pass").dst("10.1.2.3").src("172.16.0.0/12"), // 7: src on host
        ],
    );
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6, 7]);
    let cases: &[(Vec<u8>, u32)] = &[
        (packet::udp("1.1.1.1", "10.9.0.1", 5), XDP_DROP), // only rule 1
        (packet::udp("1.1.1.1", "10.1.0.1", 5), XDP_TX),   // 2 beats 1
        (packet::udp("172.16.1.1", "10.1.0.1", 5), XDP_PASS), // 3 (source) beats 2
        (packet::tcp("1.1.1.1", "10.1.0.1", 85), XDP_DROP), // 4 (ports) beats 2
        (packet::tcp("1.1.1.1", "10.1.0.1", 80), XDP_TX),  // 5 (one port) beats 4
        (packet::tcp("172.16.1.1", "10.1.0.1", 80), XDP_PASS), // source beats ports
        (packet::tcp("1.1.1.1", "10.1.2.3", 443), XDP_DROP), // 6: exact host
        (packet::tcp("172.16.1.1", "10.1.2.3", 443), XDP_PASS), // 7 outranks 6 (source)
    ];
    for (index, (input, expected)) in cases.iter().enumerate() {
        assert_eq!(verdict(&bench, input), *expected, "case {index}");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn ipv4_options_and_ipv6_extension_chains_are_skipped() {
    let (bench, _) = bench(
        "headers",
        Action::Pass,
        &[
            rule("drop").proto("udp").dst("10.0.0.1").ports("53"),
            rule("drop").proto("udp").dst("2001:db8::1").ports("53"),
        ],
    );
    let udp4 = frame("1.1.1.1", "10.0.0.1", udp_to(53));
    for options in [4, 8, 40] {
        assert_eq!(
            verdict(&bench, &udp4.clone().ipv4_options(options).build()),
            XDP_DROP,
            "IHL with {options} option bytes"
        );
    }
    let udp6 = frame("2001:db8::9", "2001:db8::1", udp_to(53));
    for chain in [&[0u8][..], &[0, 43, 60], &[0, 60, 43, 44], &[44]] {
        assert_eq!(
            verdict(&bench, &udp6.clone().ipv6_extensions(chain).build()),
            XDP_DROP,
            "extensions {chain:?}"
        );
    }
    // Non-first fragments carry no ports: a port rule cannot match them.
    assert_eq!(
        verdict(&bench, &udp4.clone().fragment_offset(10).build()),
        XDP_PASS
    );
    assert_eq!(
        verdict(
            &bench,
            &udp6
                .clone()
                .ipv6_extensions(&[44])
                .fragment_offset(10)
                .build()
        ),
        XDP_PASS
    );
    assert_eq!(bench.steering().unwrap().counters().unwrap().malformed, 0);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn vlan_and_qinq_frames_are_classified() {
    let (bench, _) = bench(
        "vlan",
        Action::Pass,
        &[rule("drop").proto("tcp").dst("10.0.0.1").ports("80")],
    );
    let base = frame("1.1.1.1", "10.0.0.1", tcp_to(80));
    assert_eq!(
        verdict(&bench, &base.clone().vlan(0x8100, 100).build()),
        XDP_DROP,
        "802.1Q"
    );
    assert_eq!(
        verdict(
            &bench,
            &base.clone().vlan(0x88a8, 100).vlan(0x8100, 100).build()
        ),
        XDP_DROP,
        "QinQ"
    );
    let v6 = frame("2001:db8::9", "2001:db8::1", tcp_to(80));
    assert_eq!(verdict(&bench, &v6.vlan(0x8100, 100).build()), XDP_PASS);
    // A third tag is beyond what the program parses: passed as non-IP.
    let triple = base
        .vlan(0x88a8, 100)
        .vlan(0x8100, 100)
        .vlan(0x8100, 100)
        .build();
    assert_eq!(verdict(&bench, &triple), XDP_PASS);
    assert_eq!(bench.steering().unwrap().counters().unwrap().non_ip, 1);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn packets_truncated_at_every_header_boundary_are_counted_malformed_and_passed() {
    let (bench, _) = bench("truncated", Action::Drop, &[]);
    let frames = [
        frame("1.1.1.1", "10.0.0.1", tcp_to(80)).ipv4_options(8),
        frame("1.1.1.1", "10.0.0.1", udp_to(80))
            .vlan(0x88a8, 100)
            .vlan(0x8100, 100),
        frame("1.1.1.1", "10.0.0.1", ECHO),
        frame("2001:db8::9", "2001:db8::1", tcp_to(80)).ipv6_extensions(&[0, 43, 44]),
        frame("2001:db8::9", "2001:db8::1", ECHO),
    ];
    let mut expected_malformed = 0;
    for frame in &frames {
        let mut frame = frame.clone();
        frame.payload.clear();
        let full = frame.build();
        for cut in packet::header_boundaries(&frame) {
            if cut >= full.len() {
                continue;
            }
            let mut truncated = full[..cut].to_vec();
            // Keep the IP length fields consistent with the cut, so that only the missing
            // header makes the packet malformed (the length checks have their own test).
            fix_lengths(&mut truncated, &frame);
            assert_eq!(
                verdict(&bench, &truncated),
                XDP_PASS,
                "{frame:?} cut at {cut}"
            );
            expected_malformed += 1;
            let counters = bench.steering().unwrap().counters().unwrap();
            assert_eq!(
                counters.malformed, expected_malformed,
                "{frame:?} cut at {cut} not counted malformed"
            );
        }
        // The untruncated frame is fine and takes the default (drop).
        assert_eq!(verdict(&bench, &full), XDP_DROP, "{frame:?} whole");
    }
}

/// Rewrites the IPv4 total length / IPv6 payload length to what the truncated frame holds.
fn fix_lengths(bytes: &mut [u8], frame: &wire::build::FrameBuilder) {
    let l3 = 14 + 4 * frame.vlans.len();
    if frame.dst.is_ipv4() && bytes.len() >= l3 + 4 {
        let total = (bytes.len() - l3) as u16;
        bytes[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    }
    if frame.dst.is_ipv6() && bytes.len() >= l3 + 6 {
        let payload = bytes.len().saturating_sub(l3 + 40) as u16;
        bytes[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn bad_ihl_and_bad_lengths_are_malformed() {
    let (bench, _) = bench("lengths", Action::Drop, &[]);
    let good = packet::udp("1.1.1.1", "10.0.0.1", 53);
    let mut cases = Vec::new();
    for ihl in [0u8, 4] {
        let mut bad = good.clone();
        bad[14] = 0x40 | ihl;
        cases.push((format!("IHL {ihl}"), bad));
    }
    let mut ihl_past_end = good.clone();
    ihl_past_end[14] = 0x4f; // 60-byte header in a 46-byte packet
    cases.push(("IHL past the end".into(), ihl_past_end));
    let mut long = good.clone();
    long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    cases.push(("total length beyond the frame".into(), long));
    let mut short = good.clone();
    short[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("total length below the header".into(), short));
    let mut version = good.clone();
    version[14] = 0x65;
    cases.push(("version 6 in an IPv4 ethertype".into(), version));
    let mut v6_long = packet::udp("2001:db8::9", "2001:db8::1", 53);
    v6_long[18..20].copy_from_slice(&4000u16.to_be_bytes());
    cases.push(("IPv6 payload length beyond the frame".into(), v6_long));
    let mut tcp_offset = packet::tcp("1.1.1.1", "10.0.0.1", 80);
    tcp_offset[14 + 20 + 12] = 2 << 4;
    cases.push(("TCP data offset 2".into(), tcp_offset));

    for (index, (name, input)) in cases.iter().enumerate() {
        assert_eq!(verdict(&bench, input), XDP_PASS, "{name}");
        let counters = bench.steering().unwrap().counters().unwrap();
        assert_eq!(
            counters.malformed,
            index as u64 + 1,
            "{name} not counted malformed"
        );
    }
    // Padding after the IP packet (short frames padded to 60 bytes) is not malformed.
    let mut padded = good.clone();
    padded.extend([0; 8]);
    assert_eq!(verdict(&bench, &padded), XDP_DROP);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn rule_changes_take_effect_without_reload() {
    let (bench, _) = bench("runtime", Action::Pass, &[]);
    let input = packet::udp("1.1.1.1", "10.0.0.1", 53);
    assert_eq!(verdict(&bench, &input), XDP_PASS);
    let id = bench
        .steering()
        .unwrap()
        .add_rule(&rule("drop").dst("10.0.0.0/24"))
        .unwrap();
    assert_eq!(verdict(&bench, &input), XDP_DROP);
    let exact = bench
        .steering()
        .unwrap()
        .add_rule(&rule("tx").proto("udp").dst("10.0.0.1").ports("53"))
        .unwrap();
    assert_eq!(verdict(&bench, &input), XDP_TX);
    bench.steering().unwrap().delete_rule(exact).unwrap();
    assert_eq!(verdict(&bench, &input), XDP_DROP);
    bench.steering().unwrap().delete_rule(id).unwrap();
    assert_eq!(verdict(&bench, &input), XDP_PASS);
}

/// A fragmented datagram meets one rule: the later fragments (no ports) take the rule their
/// first fragment matched, over IPv4 and IPv6; without their first, they are classified on
/// what they carry.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn later_fragments_follow_their_first_fragments_rule() {
    let (bench, ids) = bench(
        "fragments",
        Action::Pass,
        &[
            rule("drop").proto("udp").dst("10.0.0.1").ports("53"),
            rule("drop").proto("udp").dst("2001:db8::1").ports("53"),
        ],
    );
    for (index, (src, dst)) in [("10.1.0.1", "10.0.0.1"), ("2001:db8::2", "2001:db8::1")]
        .into_iter()
        .enumerate()
    {
        let datagram = wire::FrameBuilder::udp(src.parse().unwrap(), dst.parse().unwrap())
            .ports(4000, 53)
            .payload(vec![7; 3000]);
        let fragments = datagram.fragments(1500, 0x4242 + index as u32);
        assert_eq!(fragments.len(), 3);
        // Later fragments first: their datagram is unknown, no port rule matches them.
        assert_eq!(verdict(&bench, &fragments[2]), XDP_PASS);
        for (at, fragment) in fragments.iter().enumerate() {
            assert_eq!(
                verdict(&bench, fragment),
                XDP_DROP,
                "fragment {at} of {src}"
            );
        }
        let stats = bench.steering().unwrap().rule_stats().unwrap();
        let counted = stats.iter().find(|s| s.rule.id == ids[index]).unwrap();
        assert_eq!(counted.packets, 3, "{src}");
    }
}

/// A TCP or UDP checksum left partial by a sender with TX checksum offload (the kernel's
/// default on veth and virtio) changes nothing: same parse, same rule, the frame unchanged.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn partial_checksums_are_classified_like_complete_ones() {
    let (bench, _) = bench(
        "partial",
        Action::Drop,
        &[
            rule("tx").proto("tcp").dst("10.0.0.1").ports("80"),
            rule("pass").proto("udp").dst("2001:db8::1"),
        ],
    );
    let builders = [
        wire::FrameBuilder::tcp(
            "10.1.0.1".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            wire::parse::tcp_flags::SYN,
        ),
        wire::FrameBuilder::udp(
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ),
    ];
    for (builder, expected) in builders.into_iter().zip([XDP_TX, XDP_PASS]) {
        for fill in [
            wire::build::ChecksumFill::Complete,
            wire::build::ChecksumFill::Partial,
        ] {
            let input = builder.clone().payload(vec![1; 100]).checksum(fill).build();
            let result = bench.run(&input).unwrap();
            assert_eq!(result.verdict, expected, "{fill:?}");
            if expected == XDP_PASS {
                assert!(result.packet == input, "a passed frame is not changed");
            }
        }
    }
}

/// The rule each probe takes, told by the rule counter that moved (None: the default), with
/// the verdict.
fn picks(bench: &TestBench, probes: &[Vec<u8>]) -> Vec<(Option<u32>, u32)> {
    let steering = bench.steering().unwrap();
    let counts = || -> Vec<(u32, u64)> {
        steering
            .rule_stats()
            .unwrap()
            .iter()
            .map(|stats| (stats.rule.id, stats.packets))
            .collect()
    };
    probes
        .iter()
        .map(|probe| {
            let before = counts();
            let verdict = verdict(bench, probe);
            let after = counts();
            let moved: Vec<u32> = after
                .iter()
                .filter(|(id, packets)| !before.contains(&(*id, *packets)))
                .map(|(id, _)| *id)
                .collect();
            assert!(
                moved.len() <= 1,
                "one packet moved the counters of {moved:?}"
            );
            (moved.first().copied(), verdict)
        })
        .collect()
}

/// The per-length prefix hashes and the trie pick the same rule for every packet: the
/// same overlapping rules (five IPv4 and four IPv6 lengths, with sources, ports and
/// protocols in the chains, and rules no probe matches so that each family has enough
/// prefixes for the hashes) looked up through the hashes, then through the trie once rules
/// of more lengths push the family out of the hashes, then through the hashes again after
/// those rules go.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn prefix_hashes_and_the_trie_pick_the_same_rule() {
    use offload::rules::tuple_space::{MIN_HASHED_PREFIXES, PrefixMethod};
    // Prefixes of lengths already used, covering no probe: the families reach the count
    // the hashes need.
    let unmatched = (0..MIN_HASHED_PREFIXES).flat_map(|index| {
        [
            rule("drop").dst(&format!("10.200.{index}.0/24")),
            rule("drop").dst(&format!("2001:db8:2:{index}::/64")),
        ]
    });
    let rules: Vec<RuleSpec> = [
        rule("drop").dst("10.0.0.0/8"),                              // 1
        rule("tx").dst("10.1.0.0/16"),                               // 2
        rule("pass").dst("10.1.0.0/16").src("172.16.0.0/12"),        // 3
        rule("drop").dst("10.1.2.0/24").proto("tcp").ports("80-90"), // 4
        rule("tx").dst("10.1.2.128/25"),                             // 5
        rule("pass").dst("10.1.2.129/32").proto("udp"),              // 6
        rule("drop").dst("0.0.0.0/0").proto("tcp").ports("22"),      // 7
        rule("drop").dst("2001:db8::/32"),                           // 8
        rule("tx").dst("2001:db8:1::/48").proto("udp"),              // 9
        rule("pass")
            .dst("2001:db8:1:2::/64")
            .src("2001:db8:ff::/48"), // 10
        rule("drop").dst("2001:db8:1:2::7/128").proto("tcp"),        // 11
    ]
    .into_iter()
    .chain(unmatched)
    .collect();
    let (bench, ids) = bench("tuple-space", Action::Pass, &rules);
    assert_eq!(ids[..11], (1..=11).collect::<Vec<u32>>());
    let probes: Vec<Vec<u8>> = vec![
        packet::udp("1.1.1.1", "10.9.0.1", 5),               // 1
        packet::udp("1.1.1.1", "10.1.0.1", 5),               // 2
        packet::udp("172.16.1.1", "10.1.0.1", 5),            // 3
        packet::tcp("1.1.1.1", "10.1.2.3", 85),              // 4
        packet::tcp("1.1.1.1", "10.1.2.3", 91),              // 2: /24's ports miss
        packet::udp("1.1.1.1", "10.1.2.130", 5),             // 5
        packet::udp("1.1.1.1", "10.1.2.129", 5),             // 6
        packet::tcp("1.1.1.1", "10.1.2.129", 85),            // 5: /32 is udp only
        packet::tcp("1.1.1.1", "192.0.2.1", 22),             // 7
        packet::udp("1.1.1.1", "192.0.2.1", 22),             // default
        packet::udp("1.1.1.1", "11.0.0.1", 5),               // default
        packet::udp("2001:db8:9::1", "2001:db8:5::1", 5),    // 8
        packet::udp("2001:db8:9::1", "2001:db8:1::1", 5),    // 9
        packet::tcp("2001:db8:9::1", "2001:db8:1::1", 5),    // 8: /48 is udp only
        packet::udp("2001:db8:ff::1", "2001:db8:1:2::1", 5), // 10
        packet::tcp("2001:db8:9::1", "2001:db8:1:2::7", 5),  // 11
        packet::udp("2001:db8:9::1", "2001:db8:1:2::7", 5),  // 9
        packet::udp("2001:db8:9::1", "2001:db9::1", 5),      // default
    ];
    let expected: Vec<Option<u32>> = vec![
        Some(1),
        Some(2),
        Some(3),
        Some(4),
        Some(2),
        Some(5),
        Some(6),
        Some(5),
        Some(7),
        None,
        None,
        Some(8),
        Some(9),
        Some(8),
        Some(10),
        Some(11),
        Some(9),
        None,
    ];
    let steering = || bench.steering().unwrap();
    let methods = || {
        let lookup = steering().prefix_lookup().unwrap();
        (lookup.v4.method, lookup.v6.method)
    };
    assert_eq!(methods(), (PrefixMethod::Hashes, PrefixMethod::Hashes));
    let hashed = picks(&bench, &probes);
    let rules: Vec<Option<u32>> = hashed.iter().map(|(rule, _)| *rule).collect();
    assert_eq!(rules, expected, "rules picked through the hashes");

    // Rules of more lengths, in addresses no probe uses, send both families to the trie.
    let wide: Vec<RuleSpec> = (9..=20)
        .map(|len| {
            rule("drop")
                .dst(&format!("172.16.0.0/{len}"))
                .src("9.9.9.9/32")
        })
        .chain((49..=60).map(|len| {
            rule("drop")
                .dst(&format!("2001:db8:aaaa::/{len}"))
                .src("2001:db8:9999::1/128")
        }))
        .collect();
    let wide_ids = steering().add_rules(&wide).unwrap();
    assert_eq!(methods(), (PrefixMethod::Trie, PrefixMethod::Trie));
    assert!(steering().prefix_lookup().unwrap().v4.lengths.len() > 8);
    assert_eq!(picks(&bench, &probes), hashed, "the trie picks differently");

    for id in wide_ids {
        steering().delete_rule(id).unwrap();
    }
    assert_eq!(methods(), (PrefixMethod::Hashes, PrefixMethod::Hashes));
    assert_eq!(
        picks(&bench, &probes),
        hashed,
        "the hashes refilled pick differently"
    );
}

/// `count` destination hosts whose exact keys (`proto`, `dport`) share one bucket of a
/// table of `count` buckets, the size the rules' table gets: all but three of them spill
/// to the kernel hash. Also one more host in that bucket.
fn hosts_in_one_bucket(count: u32, v6: bool, proto: u8, dport: u16) -> Vec<std::net::IpAddr> {
    use offload_common::exact_table::{Shape, bucket_index, hash_v4, hash_v6, key_v4, key_v6};
    let at = Shape::new(0, count, 0).at;
    let mut hosts = Vec::new();
    for index in 0u32.. {
        let [a, b, c, d] = index.to_be_bytes();
        let (host, hash) = if v6 {
            let addr = [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, a, b, c, d];
            let key = key_v6(&offload_common::address_words(&addr), dport, proto);
            (std::net::IpAddr::from(addr), hash_v6(&key))
        } else {
            let addr = [10, b, c, d];
            (
                std::net::IpAddr::from(addr),
                hash_v4(key_v4(addr, dport, proto)),
            )
        };
        if bucket_index(at, hash) == 0 {
            hosts.push(host);
            if hosts.len() as u32 == count + 1 {
                return hosts;
            }
        }
    }
    unreachable!()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn exact_rules_of_a_spilled_bucket_are_found_and_others_are_not() {
    for (family, v6, proto) in [("v4", false, 17u8), ("v6", true, 17u8)] {
        let hosts = hosts_in_one_bucket(16, v6, proto, 53);
        let (rule_hosts, stranger) = hosts.split_at(16);
        let specs: Vec<RuleSpec> = rule_hosts
            .iter()
            .map(|host| rule("drop").proto("udp").dst(&host.to_string()).ports("53"))
            .collect();
        let (bench, ids) = bench(&format!("spilled-{family}"), Action::Pass, &specs);
        let source = if v6 { "2001:db8::7" } else { "192.0.2.7" };
        let probe = |host: &std::net::IpAddr| packet::udp(source, &host.to_string(), 53);
        for (host, id) in rule_hosts.iter().zip(&ids) {
            assert_eq!(verdict(&bench, &probe(host)), XDP_DROP, "{host}: rule {id}");
        }
        assert_eq!(
            verdict(&bench, &probe(&stranger[0])),
            XDP_PASS,
            "{}",
            stranger[0]
        );
        let stats = bench.steering().unwrap().rule_stats().unwrap();
        assert!(
            stats.iter().all(|rule| rule.packets == 1),
            "{family}: {stats:?}"
        );

        // Down to three rules: the bucket holds them all, the rest are gone from both.
        let mut steering = bench.steering().unwrap();
        for id in &ids[3..] {
            steering.delete_rule(*id).unwrap();
        }
        for (index, host) in rule_hosts.iter().enumerate() {
            let expected = if index < 3 { XDP_DROP } else { XDP_PASS };
            assert_eq!(
                verdict(&bench, &probe(host)),
                expected,
                "{family} after: {host}"
            );
        }
    }
}

/// A killed benchmark or test leaves its transient folder (and so its programs and maps);
/// the next transient load removes it, and only folders whose process is gone.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_dead_processs_transient_pins_go_with_the_next_load() {
    use std::os::unix::fs::MetadataExt;
    require_root("a_dead_processs_transient_pins_go_with_the_next_load");
    let namespace = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    // Above pid_max: no process has this pid.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let transient = std::path::Path::new("/sys/fs/bpf/fastpath").join(offload::TRANSIENT);
    let dead = transient.join(format!("{namespace}-{}-0", pid_max + 1));
    let alive = transient.join(format!("{namespace}-1-999999"));
    for dir in [&dead, &alive] {
        std::fs::create_dir_all(dir.join("maps")).unwrap();
    }
    let (bench, _) = bench("transient-prune", Action::Pass, &[]);
    let (dead_gone, alive_kept) = (!dead.exists(), alive.exists());
    for dir in [&dead, &alive] {
        let _ = std::fs::remove_dir_all(dir);
    }
    drop(bench);
    assert!(dead_gone, "{} is left", dead.display());
    assert!(alive_kept, "{} (pid 1 lives) was removed", alive.display());
}
