//! The established path: when the policy's first rule accepts established flows and looks
//! at nothing else, the module accepts an established packet right after its conntrack
//! look-up, counted on that rule, without probing the rule hash. Proved by taking that
//! rule's entries out of the hash: a probe could then only find the later rule, which
//! drops; the packet must still pass and be counted on rule 1. The same with a first rule
//! that also names a protocol (no shortcut): the packet is dropped by the later rule.
//! Frames run through the real chain's entry with `BPF_PROG_TEST_RUN`.

use std::{net::IpAddr, path::Path};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData},
    programs::Xdp,
};
use firewall::Policy;
use lab::{Lab, require_root};
use offload_common::firewall::{RuleKey, RuleValue, maps};
use wire::build::FrameBuilder;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 2];

/// A UDP frame from `src`:`src_port` to `dst`:`dst_port`.
fn udp(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Vec<u8> {
    FrameBuilder::udp(IpAddr::from(src), IpAddr::from(dst))
        .ports(src_port, dst_port)
        .payload(vec![0u8; 18])
        .build()
}

fn apply(iface: &str, text: &str) {
    let policy = Policy::parse(Path::new("test.toml"), text).unwrap();
    firewall::apply(iface, &policy, false).unwrap();
}

/// Runs `frame` through the chain's entry; its XDP verdict.
fn run(iface: &str, frame: &[u8]) -> u32 {
    let entry = offload::bpffs::Bpffs::get()
        .fastpath_dir()
        .join(iface)
        .join("chain/entry");
    let program = Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface).unwrap();
    offload::test_run::run_once(&program, frame)
        .unwrap()
        .verdict
}

/// Removes every hash entry of the running bank that rule 1 decides: probes can no longer
/// find it. Returns how many went.
fn remove_first_rule_entries(iface: &str) -> usize {
    let bank = firewall::status(iface).unwrap().bank as u8;
    let path = offload::bpffs::Bpffs::get()
        .fastpath_dir()
        .join("firewall")
        .join(offload::netns::pin_name(iface))
        .join(maps::RULES);
    let mut rules: BpfHashMap<_, RuleKey, RuleValue> =
        BpfHashMap::try_from(Map::HashMap(MapData::from_pin(&path).unwrap())).unwrap();
    let first: Vec<RuleKey> = rules
        .iter()
        .map(Result::unwrap)
        .filter(|(key, value)| key.bank == bank && value.counter == 1)
        .map(|(key, _)| key)
        .collect();
    for key in &first {
        rules.remove(key).unwrap();
    }
    first.len()
}

/// Makes the client's flow to the server's port 53 established (the client's datagram, then
/// the server's answer, under a policy accepting both), then applies `first_rule` before a
/// rule dropping UDP; removes the first rule's hash entries; returns the verdict of one more
/// client datagram and the counters of rule 1 and rule 2 (packets).
fn established_packet_under(iface: &str, first_rule: &str) -> (u32, u64, u64) {
    apply(iface, "default = \"accept\"\n");
    firewall::conntrack::flush().unwrap();
    assert_eq!(run(iface, &udp(CLIENT, 4000, SERVER, 53)), XDP_PASS);
    assert_eq!(run(iface, &udp(SERVER, 53, CLIENT, 4000)), XDP_PASS);
    apply(
        iface,
        &format!(
            "default = \"accept\"\n{first_rule}\n[[rule]]\nname = \"no-udp\"\nproto = \"udp\"\n\
             action = \"drop\"\n"
        ),
    );
    assert!(
        remove_first_rule_entries(iface) >= 1,
        "rule 1 has hash entries"
    );
    let verdict = run(iface, &udp(CLIENT, 4000, SERVER, 53));
    let status = firewall::status(iface).unwrap();
    (verdict, status.rules[0].packets, status.rules[1].packets)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_established_packet_is_accepted_by_the_first_rule_without_a_probe() {
    require_root("the firewall's established path");
    let lab = Lab::for_test("fe");
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let (shortcut, probed, new_flow) = lab::netns::run_in(&namespace, move || {
        let shortcut = established_packet_under(
            &iface,
            "[[rule]]\nname = \"replies\"\nct_state = [\"established\", \"related\"]\n\
             action = \"accept\"\n",
        );
        // A new flow is not established: the probes decide it (rule 2 drops it).
        let new_flow = run(&iface, &udp(CLIENT, 4001, SERVER, 53));
        // Rule 1 looks at the protocol too: no shortcut, the probes find only rule 2.
        let probed = established_packet_under(
            &iface,
            "[[rule]]\nname = \"udp-replies\"\nproto = \"udp\"\n\
             ct_state = [\"established\"]\naction = \"accept\"\n",
        );
        firewall::remove(&iface).unwrap();
        (shortcut, probed, new_flow)
    })
    .expect("the dut's namespace");
    assert_eq!(
        shortcut,
        (XDP_PASS, 1, 0),
        "established, state-only first rule: (verdict, rule 1, rule 2)"
    );
    assert_eq!(new_flow, XDP_DROP, "a new flow goes to the probes");
    assert_eq!(
        probed,
        (XDP_DROP, 0, 1),
        "established, first rule naming a protocol: (verdict, rule 1, rule 2)"
    );
}

/// `rule del` of the first rule ends the shortcut with it: the bank stops saying that rule 1
/// takes established packets, so the next rule decides them.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn deleting_the_first_rule_ends_the_shortcut() {
    require_root("the firewall's established path");
    let lab = Lab::for_test("fd");
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let (before, after) = lab::netns::run_in(&namespace, move || {
        apply(&iface, "default = \"accept\"\n");
        firewall::conntrack::flush().unwrap();
        assert_eq!(run(&iface, &udp(CLIENT, 4000, SERVER, 53)), XDP_PASS);
        assert_eq!(run(&iface, &udp(SERVER, 53, CLIENT, 4000)), XDP_PASS);
        apply(
            &iface,
            "default = \"accept\"\n[[rule]]\nname = \"replies\"\n\
             ct_state = [\"established\", \"related\"]\naction = \"accept\"\n\
             [[rule]]\nname = \"no-udp\"\nproto = \"udp\"\naction = \"drop\"\n",
        );
        let before = run(&iface, &udp(CLIENT, 4000, SERVER, 53));
        firewall::del_rule(&iface, "1").unwrap();
        let after = run(&iface, &udp(CLIENT, 4000, SERVER, 53));
        firewall::remove(&iface).unwrap();
        (before, after)
    })
    .expect("the dut's namespace");
    assert_eq!(before, XDP_PASS, "rule 1 accepts the established flow");
    assert_eq!(after, XDP_DROP, "rule 1 deleted: rule 2 drops");
}
