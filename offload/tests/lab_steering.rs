//! The steering program on the lab: real XDP on a veth, real packets from another namespace.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use offload::{
    OffloadError,
    mode::{ModePolicy, XdpMode},
    rules::Action,
};
use support::{
    lab_fixture::{LabFixture, drain, drain_expecting, drain_while, send},
    require_root,
};

const PACKETS: u64 = 2000;

/// How long a test waits for traffic to show an effect before it fails.
const WAIT: Duration = Duration::from_secs(10);

fn counts_match_what_was_sent(tag: &str, mode: XdpMode) {
    let fixture = LabFixture::up(tag);
    let attachment = fixture.attach(ModePolicy::Only(mode)).expect("attach");
    assert_eq!(attachment.mode, mode);
    let ids = fixture.steering({
        let rules = [
            fixture.udp_rule(Action::Drop, 7000),
            fixture.udp_rule(Action::Pass, 7001),
        ];
        move |steering| steering.add_rules(&rules).unwrap()
    });
    let server = fixture.dut_server(7001);
    let client = fixture.client_socket();
    send(&client, fixture.dut_addr(7000), PACKETS);
    send(&client, fixture.dut_addr(7001), PACKETS);
    let received = drain_expecting(&server, PACKETS);

    let iface = fixture.iface();
    let status = fixture.in_dut(move || offload::status(&iface)).unwrap();
    assert_eq!(status.mode, Some(mode));
    let packets_of = |id: u32| {
        status
            .rules
            .iter()
            .find(|r| r.rule.id == id)
            .unwrap()
            .packets
    };
    assert_eq!(packets_of(ids[0]), PACKETS, "drop rule count");
    assert_eq!(packets_of(ids[1]), PACKETS, "pass rule count");
    assert_eq!(status.counters.drop, PACKETS);
    assert!(status.counters.pass >= PACKETS);
    assert_eq!(
        received, PACKETS,
        "passed packets reach the dut's socket, dropped ones do not"
    );
    let iface = fixture.iface();
    fixture.in_dut(move || offload::detach(&iface)).unwrap();
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn drv_mode_counters_match_what_was_sent() {
    require_root("drv counters");
    counts_match_what_was_sent("dv", XdpMode::Drv);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn skb_mode_counters_match_what_was_sent() {
    require_root("skb counters");
    counts_match_what_was_sent("sk", XdpMode::Skb);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn hw_mode_on_veth_fails_with_its_reason_and_auto_lands_on_drv() {
    require_root("hw fallback");
    let fixture = LabFixture::up("hw");
    let error = fixture.attach(ModePolicy::Only(XdpMode::Hw)).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, OffloadError::NoModeWorked { .. }),
        "{message}"
    );
    // The steering program runs as a module of the chain, which an offloaded program
    // cannot run (no tail calls): the reason says so (hardware placement is the
    // prefilter's).
    assert!(
        message.contains("hw: the steering program runs as a module of the IO module chain"),
        "{message}"
    );
    // The failed attempt left nothing behind: auto can start cleanly.
    let attachment = fixture.attach(ModePolicy::Auto).expect("auto attach");
    assert_eq!(attachment.mode, XdpMode::Drv);
    assert_eq!(attachment.fallbacks.len(), 1);
    assert_eq!(attachment.fallbacks[0].mode, XdpMode::Hw);
    assert!(attachment.fallbacks[0].reason.contains("veth"));
    // A second attach is refused, naming what runs.
    let again = fixture.attach(ModePolicy::Auto).unwrap_err().to_string();
    assert!(
        again.contains("already has fastpath's program attached"),
        "{again}"
    );
}

/// Sends continuously from a thread until stopped; returns how many it sent.
fn send_until_stopped(
    fixture: &LabFixture,
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let client = fixture.client_socket();
    let to = fixture.dut_addr(port);
    std::thread::spawn(move || {
        let mut sent = 0;
        // A bound for a test that fails before stopping it; the waits above end sooner.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            send(&client, to, 10);
            sent += 10;
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn rule_changes_take_effect_without_reload_while_traffic_flows() {
    require_root("runtime rules");
    let fixture = LabFixture::up("rc");
    let attachment = fixture.attach(ModePolicy::Only(XdpMode::Drv)).unwrap();
    let server = fixture.dut_server(7100);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until_stopped(&fixture, 7100, stop.clone());
    let receiver_stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let receiver = drain_while(server, receiver_stop.clone(), delivered.clone());
    let delivered_now = || delivered.load(Ordering::Relaxed);
    let dropped_now = || {
        let iface = fixture.iface();
        fixture
            .in_dut(move || offload::status(&iface))
            .unwrap()
            .counters
            .drop
    };

    // Each phase lasts until it has shown its effect on the traffic.
    lab::wait_until(WAIT, "traffic to pass before the rule", || {
        delivered_now() > 0
    });
    let id = fixture.steering({
        let rule = fixture.udp_rule(Action::Drop, 7100);
        move |steering| steering.add_rule(&rule).unwrap()
    });
    lab::wait_until(WAIT, "the new rule to drop packets", || dropped_now() > 0);
    fixture.steering(move |steering| steering.delete_rule(id).unwrap());
    let delivered_at_delete = delivered_now();
    lab::wait_until(WAIT, "traffic to pass again after the rule", || {
        delivered_now() > delivered_at_delete
    });
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    receiver_stop.store(true, Ordering::Relaxed);
    let received = receiver.join().unwrap();

    let iface = fixture.iface();
    let status = fixture.in_dut(move || offload::status(&iface)).unwrap();
    assert_eq!(
        status.program_id,
        Some(attachment.program_id),
        "same program: no reload"
    );
    let dropped = status.counters.drop;
    assert!(dropped > 0, "the rule dropped packets while it existed");
    assert!(
        received > 0 && received < sent,
        "traffic passed before and after the rule"
    );
    assert_eq!(
        received + dropped,
        sent,
        "every packet either dropped by the rule or delivered"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn atomic_replace_under_traffic_sees_every_packet_and_keeps_rules_and_counters() {
    require_root("atomic replace");
    let fixture = LabFixture::up("ar");
    let attachment = fixture.attach(ModePolicy::Only(XdpMode::Drv)).unwrap();
    // Drop everything on the port: a packet that met no program would reach the stack
    // instead, and the drop count would fall short of what was sent.
    let rule_id = fixture.steering({
        let rule = fixture.udp_rule(Action::Drop, 7200);
        move |steering| steering.add_rule(&rule).unwrap()
    });
    let server = fixture.dut_server(7200);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until_stopped(&fixture, 7200, stop.clone());

    let counted = || {
        let iface = fixture.iface();
        fixture
            .in_dut(move || offload::status(&iface))
            .unwrap()
            .rules[0]
            .packets
    };
    // Each program revision counts traffic before the next replaces it.
    let mut seen = 0;
    let mut program_ids = vec![attachment.program_id];
    for _ in 0..3 {
        lab::wait_until(WAIT, "the program to count traffic", || counted() > seen);
        seen = counted();
        let iface = fixture.iface();
        let replacement = fixture
            .in_dut(move || offload::replace(&iface, None))
            .unwrap();
        assert_eq!(replacement.old_program_id, *program_ids.last().unwrap());
        program_ids.push(replacement.new_program_id);
    }
    lab::wait_until(WAIT, "the last program to count traffic", || {
        counted() > seen
    });
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();

    let iface = fixture.iface();
    let status = fixture.in_dut(move || offload::status(&iface)).unwrap();
    assert_eq!(status.program_id, program_ids.last().copied());
    let mut unique = program_ids.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        4,
        "each replace loaded a new program: {program_ids:?}"
    );
    assert_eq!(status.rules.len(), 1);
    assert_eq!(status.rules[0].rule.id, rule_id);
    assert_eq!(
        status.rules[0].packets, sent,
        "counters carried over, no packet unseen"
    );
    assert_eq!(drain(&server), 0, "no packet slipped past to the stack");
}

/// The IPv4 exact keys of the attachment on `iface`, as (wide keys in `EXACT_RULES`,
/// narrow keys in `EXACT_V4`); call inside the dut.
fn exact_v4_keys(iface: &str) -> (usize, usize) {
    use aya::maps::{HashMap, Map, MapData};
    use offload_common::{ExactKey, ExactKeyV4, RuleRef};
    let pins = offload::Pins::for_iface(iface);
    let open = |name: &str| Map::from_map_data(MapData::from_pin(pins.map(name)).unwrap()).unwrap();
    let wide: HashMap<_, ExactKey, RuleRef> = HashMap::try_from(open("EXACT_RULES")).unwrap();
    let narrow: HashMap<_, ExactKeyV4, RuleRef> = HashMap::try_from(open("EXACT_V4")).unwrap();
    let wide_v4 = wide
        .keys()
        .map(Result::unwrap)
        .filter(|key| ExactKeyV4::of(key).is_some())
        .count();
    (wide_v4, narrow.keys().count())
}

/// Removes every pin called `name` under `dir`; returns how many.
fn remove_pins_named(dir: &std::path::Path, name: &str) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            removed += remove_pins_named(&path, name);
        } else if entry.file_name() == name {
            std::fs::remove_file(&path).unwrap();
            removed += 1;
        }
    }
    removed
}

/// Replacing a build from before `EXACT_V4` (IPv4 exact rules in the 20-byte-keyed
/// `EXACT_RULES`, no `EXACT_V4` pin) with this one moves the rules over: the new program
/// finds them in `EXACT_V4`, and `EXACT_RULES` keeps no IPv4 key.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn replace_moves_ipv4_exact_rules_of_an_older_build_into_their_own_map() {
    require_root("replace over the older exact-key layout");
    let fixture = LabFixture::up("ek");
    fixture.attach(ModePolicy::Only(XdpMode::Drv)).unwrap();
    fixture.steering({
        let rule = fixture.udp_rule(Action::Drop, 7300);
        move |steering| steering.add_rule(&rule).unwrap()
    });
    // The older layout: the key moved to EXACT_RULES, EXACT_V4 emptied and unpinned.
    let iface = fixture.iface();
    fixture.in_dut(move || {
        use aya::maps::{HashMap, Map, MapData};
        use offload_common::{ExactKeyV4, RuleRef};
        let pins = offload::Pins::for_iface(&iface);
        let open =
            |name: &str| Map::from_map_data(MapData::from_pin(pins.map(name)).unwrap()).unwrap();
        let mut narrow: HashMap<_, ExactKeyV4, RuleRef> =
            HashMap::try_from(open("EXACT_V4")).unwrap();
        let entries: Vec<(ExactKeyV4, RuleRef)> = narrow.iter().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1, "the rule is in EXACT_V4");
        let mut wide: HashMap<_, offload_common::ExactKey, RuleRef> =
            HashMap::try_from(open("EXACT_RULES")).unwrap();
        for (key, rule) in &entries {
            wide.insert(key.widen(), rule, 0).unwrap();
            narrow.remove(key).unwrap();
        }
        // Unpinned everywhere: beside the attachment and in the chain's folder of the
        // running steer version, as an older build never made it.
        let removed = remove_pins_named(&offload::bpffs::Bpffs::get().fastpath_dir(), "EXACT_V4");
        assert!(
            removed >= 2,
            "EXACT_V4 was pinned for the attachment and the module"
        );
    });
    let iface = fixture.iface();
    fixture
        .in_dut(move || offload::replace(&iface, None))
        .unwrap();
    let iface = fixture.iface();
    assert_eq!(fixture.in_dut(move || exact_v4_keys(&iface)), (0, 1));

    the_rule_drops_what_it_matches(&fixture, 7300);
}

/// Replacing a build from before the per-length prefix hashes (no `PREFIX_HASH_V4`,
/// `PREFIX_HASH_V6` or `PREFIX_LENGTHS` pins) with this one fills them: the new program
/// looks the prefix rule up in the hashes and drops the rule's traffic.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn replace_fills_the_prefix_hashes_an_older_build_lacked() {
    use offload::rules::{
        IpNet, RuleSpec,
        tuple_space::{MIN_HASHED_PREFIXES, PrefixMethod},
    };
    require_root("replace over a build without prefix hashes");
    let fixture = LabFixture::up("ph");
    fixture.attach(ModePolicy::Only(XdpMode::Drv)).unwrap();
    let mut rule = fixture.udp_rule(Action::Drop, 7400);
    let host = rule.dst.unwrap();
    rule.dst = Some(IpNet::new(host.addr(), 24).unwrap().trunc());
    // More /24s, in 198.18.0.0/15 where the lab sends nothing: enough prefixes for the
    // hashes.
    let mut rules = vec![rule];
    for index in 1..MIN_HASHED_PREFIXES {
        let mut other = RuleSpec::new(Action::Drop);
        other.dst = Some(format!("198.18.{index}.0/24").parse().unwrap());
        rules.push(other);
    }
    fixture.steering(move |steering| steering.add_rules(&rules).unwrap());
    let iface = fixture.iface();
    let method = move || offload::status(&iface).unwrap().prefix_lookup.v4.method;
    let method_in_dut = || {
        let method = method.clone();
        fixture.in_dut(method)
    };
    assert_eq!(method_in_dut(), PrefixMethod::Hashes);
    // The older layout: the hashes and their lengths emptied (the program on the trie)
    // and unpinned.
    let iface = fixture.iface();
    fixture.in_dut(move || {
        use aya::maps::{Array, HashMap, Map, MapData};
        use offload_common::{PrefixKeyV4, PrefixLengths, RuleChain, prefix_lengths};
        let pins = offload::Pins::for_iface(&iface);
        let open =
            |name: &str| Map::from_map_data(MapData::from_pin(pins.map(name)).unwrap()).unwrap();
        let mut lengths: Array<_, PrefixLengths> = Array::try_from(open("PREFIX_LENGTHS")).unwrap();
        lengths
            .set(prefix_lengths::V4, PrefixLengths::default(), 0)
            .unwrap();
        let mut hashed: HashMap<_, PrefixKeyV4, RuleChain> =
            HashMap::try_from(open("PREFIX_HASH_V4")).unwrap();
        let keys: Vec<PrefixKeyV4> = hashed.keys().map(Result::unwrap).collect();
        assert_eq!(
            keys.len(),
            MIN_HASHED_PREFIXES,
            "the rules' prefixes are hashed"
        );
        for key in keys {
            hashed.remove(&key).unwrap();
        }
        let fastpath = offload::bpffs::Bpffs::get().fastpath_dir();
        for name in ["PREFIX_HASH_V4", "PREFIX_HASH_V6", "PREFIX_LENGTHS"] {
            let removed = remove_pins_named(&fastpath, name);
            assert!(
                removed >= 2,
                "{name} was pinned for the attachment and the module"
            );
        }
    });
    let iface = fixture.iface();
    fixture
        .in_dut(move || offload::replace(&iface, None))
        .unwrap();
    assert_eq!(method_in_dut(), PrefixMethod::Hashes);

    the_rule_drops_what_it_matches(&fixture, 7400);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn pins_of_an_interface_that_vanished_are_pruned() {
    require_root("stale pins");
    let fixture = LabFixture::up("pp");
    fixture.attach(ModePolicy::Only(XdpMode::Drv)).unwrap();
    // Where the dut's namespace pins (each namespace has a folder of its own).
    let iface = fixture.iface();
    let pins = fixture.in_dut(move || offload::Pins::for_iface(&iface));
    assert!(pins.exists());
    // Delete the namespaces under the attachment, as `fastpath lab down` or a crash would.
    let prefix = fixture.lab.prefix.clone();
    lab::Lab::down(&prefix).unwrap();
    // The kernel unregisters the devices from a workqueue after the namespace goes; another
    // test's attach may prune first. What matters is that the pins go.
    lab::wait_until(
        WAIT,
        "the pins of the vanished interface to be pruned",
        || {
            offload::prune_stale_pins();
            !pins.exists()
        },
    );
}

/// Sends 100 datagrams to the dut's `port`, which the first rule drops: the program in
/// place counts all of them on that rule and none arrives; then detaches.
fn the_rule_drops_what_it_matches(fixture: &LabFixture, port: u16) {
    let server = fixture.dut_server(port);
    send(&fixture.client_socket(), fixture.dut_addr(port), 100);
    let iface = fixture.iface();
    let counted = move || offload::status(&iface).unwrap().rules[0].packets;
    let counted_in_dut = || {
        let counted = counted.clone();
        fixture.in_dut(counted)
    };
    lab::wait_until(WAIT, "the new program to count the rule's packets", || {
        counted_in_dut() == 100
    });
    assert_eq!(drain(&server), 0, "the rule dropped every packet");
    let iface = fixture.iface();
    fixture.in_dut(move || offload::detach(&iface)).unwrap();
}
