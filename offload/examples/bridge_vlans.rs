//! A report, not a test: what VLAN awareness costs the bridge instance program per
//! packet, with `BPF_PROG_TEST_RUN`, in the same run. Needs root.
//!
//! Two bridges are loaded as the tests load them (`tests/support/topology.rs`): one
//! without VLANs, one VLAN-aware with ports 0 and 1 access ports of VLAN 10 and port 2 a
//! trunk of 10 and 20 (the tables the loader writes for such `vlans`). The same untagged
//! UDP frame from A on port 0 to B, learned on port 1, is forwarded by both: learning,
//! look-up, (on the VLAN-aware one) the port's VLAN and the egress port's membership,
//! emit (a redirect the test run returns). No tag changes hands on this path (access to
//! access), so both repeat on the same bytes. Each sample is one test run of `REPEAT`
//! repeats; the two bridges take turns, sample by sample; the report gives the medians.
//!
//! `cargo run -p offload --example bridge_vlans` (the timed code is the kernel's)

#[allow(dead_code)]
#[path = "../tests/support/topology.rs"]
mod topology;

use aya::{
    maps::{Array, DevMapHash, HashMap},
    programs::{TestRun, TestRunOptions, Xdp},
};
use offload::modules::builtin::BRIDGE_PROGRAM_OBJECT;
use offload_common::bridge::{
    self, BridgeSettings, FdbEntry, FdbKey, NO_PVID, VlanPort, fdb_flags, tagging,
};
use topology::{LOOPBACK, Topology};

const REPEAT: u32 = 200;
const SAMPLES: usize = 2_000;
const HOST_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const HOST_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bridge_vlans needs root (BPF_PROG_TEST_RUN and bpffs)");
        std::process::exit(1);
    }
    let mut topology = Topology::new();
    let plain = add_bridge(&mut topology, [301, 302, 303], 0);
    let aware = add_bridge(&mut topology, [311, 312, 313], 10);
    make_vlan_aware(&mut topology, aware);

    let mut frame =
        wire::FrameBuilder::udp("10.1.0.10".parse().unwrap(), "10.1.0.11".parse().unwrap())
            .payload(vec![0x5a; 18]);
    frame.src_mac = HOST_A;
    frame.dst_mac = HOST_B;
    let packet = frame.build();
    // The program reads its place (instance, ingress port) from the per-CPU context that
    // `run` sets: it is set again before each bridge's sample.
    let bridges = [(plain, 301, "plain"), (aware, 311, "VLAN-aware")];
    for (bridge, ifindex, name) in bridges {
        let check = topology.run(bridge, 0, ifindex, &packet);
        assert_eq!(check.verdict, 4, "{name}: forwarded");
        assert_eq!(check.packet, packet, "{name}: unchanged");
    }

    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..SAMPLES {
        for (slot, (bridge, ifindex, _)) in bridges.into_iter().enumerate() {
            topology.run(bridge, 0, ifindex, &packet);
            samples[slot].push(time(topology.program(bridge), &packet));
        }
    }
    let [plain_ns, aware_ns] = samples.map(|mut values| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    });
    println!(
        "bridge, known unicast, same frame, {SAMPLES} samples of {REPEAT} repeats each, interleaved (median ns/packet):"
    );
    println!("| bridge                      | ns/packet | packets/s (one core) |");
    println!("|-----------------------------|----------:|---------------------:|");
    for (name, ns) in [
        ("without VLANs", plain_ns),
        ("VLAN-aware, access to access", aware_ns),
    ] {
        println!("| {name:<27} | {ns:>9.1} | {:>20.0} |", 1e9 / ns);
    }
}

/// A bridge of three interface ports (`ifindexes`, all sent to the loopback) on which B
/// is learned on port 1 in `vlan`.
fn add_bridge(topology: &mut Topology, ifindexes: [u32; 3], vlan: u16) -> u32 {
    let bridge = topology.add(BRIDGE_PROGRAM_OBJECT, "bridge");
    let mut flood =
        DevMapHash::try_from(topology.instance_map_mut(bridge, bridge::maps::FLOOD)).unwrap();
    for ifindex in ifindexes {
        flood.insert(ifindex, LOOPBACK, None, 0).unwrap();
    }
    for (port, ifindex) in ifindexes.into_iter().enumerate() {
        topology.connect_interface(bridge, port as u32, ifindex);
    }
    let mut fdb: HashMap<_, FdbKey, FdbEntry> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::FDB)).unwrap();
    fdb.insert(
        FdbKey { vlan, mac: HOST_B },
        FdbEntry {
            port: 1,
            flags: fdb_flags::STATIC,
            last_seen_ns: 0,
        },
        0,
    )
    .unwrap();
    bridge
}

/// Ports 0 and 1 access ports of VLAN 10, port 2 a trunk of 10 and 20.
fn make_vlan_aware(topology: &mut Topology, bridge: u32) {
    let mut pvid: Array<_, u32> =
        Array::try_from(topology.instance_map_mut(bridge, bridge::maps::PVID)).unwrap();
    for (port, value) in [(0, 10), (1, 10), (2, NO_PVID)] {
        pvid.set(port, value, 0).unwrap();
    }
    let mut members: HashMap<_, VlanPort, u32> =
        HashMap::try_from(topology.instance_map_mut(bridge, bridge::maps::MEMBERS)).unwrap();
    for (port, vlan, how) in [
        (0, 10, tagging::UNTAGGED),
        (1, 10, tagging::UNTAGGED),
        (2, 10, tagging::TAGGED),
        (2, 20, tagging::TAGGED),
    ] {
        members.insert(VlanPort { port, vlan }, how, 0).unwrap();
    }
    let mut settings: Array<_, BridgeSettings> =
        Array::try_from(topology.instance_map_mut(bridge, bridge::maps::SETTINGS)).unwrap();
    settings
        .set(
            0,
            BridgeSettings {
                vlan_aware: 1,
                ..BridgeSettings::default()
            },
            0,
        )
        .unwrap();
}

/// Mean ns per run over one test run of `REPEAT` repeats.
fn time(program: &Xdp, packet: &[u8]) -> f64 {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })
        .unwrap();
    result.duration.as_nanos() as f64
}
