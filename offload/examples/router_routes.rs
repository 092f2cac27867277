//! A report, not a test: the router instance program's cost per packet with one route
//! against a million, with `BPF_PROG_TEST_RUN`, in the same run. Needs root.
//!
//! Two routers are loaded (`tests/support/topology.rs` builds them as the tests do, with
//! three IPv4 routes of their own): one with one more route, a /24, and one with a
//! million more /24s (20.0.0.0/24 and up, each via the same gateway). The same UDP frame, to an address inside a route of each
//! table, is forwarded by both: route look-up, TTL and checksum, MAC rewrite, emit (a
//! redirect the test run returns, not carries out). Each sample is one test run of
//! `REPEAT` repeats; a test run repeats on the same buffer, so the TTL starts at 255 and
//! `REPEAT` stays below it (every repeat is a forward). The router remembers each CPU's
//! IPv4 look-ups (and the next hop's MAC), so all repeats but the first skip the trie:
//! this is one flow's cost; `topology_mpps --routes --destinations` measures many
//! destinations on the wire. The two routers take turns, sample by
//! sample; the report gives the median of each.
//!
//! `cargo run -p offload --example router_routes` (the timed code is the kernel's)

#[allow(dead_code)]
#[path = "../tests/support/topology.rs"]
mod topology;

use aya::{
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::{TestRun, TestRunOptions, Xdp},
};
use offload_common::router::{self, Neighbour, NeighbourKey, Route};
use topology::{ROUTER_A, Topology, add_router, addr16, load_routes, route_prefix};

const ROUTES: u32 = 1_000_000;
const REPEAT: u32 = 200;
const SAMPLES: usize = 2_000;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("router_routes needs root (BPF_PROG_TEST_RUN and bpffs)");
        std::process::exit(1);
    }
    let mut topology = Topology::new();
    let one = add_router(&mut topology, Some([201, 202]));
    let many = add_router(&mut topology, Some([203, 204]));
    for router in [one, many] {
        let mut neighbours: HashMap<_, NeighbourKey, Neighbour> =
            HashMap::try_from(topology.instance_map_mut(router, router::maps::NEIGHBOURS)).unwrap();
        let (family, addr) = addr16("10.2.0.254");
        let gateway = Neighbour {
            mac: [0x02, 0, 0, 0, 0, 0x0b],
            _pad: [0; 2],
            updated_ns: 0,
        };
        neighbours
            .insert(
                NeighbourKey {
                    port: 1,
                    family,
                    addr,
                },
                gateway,
                0,
            )
            .unwrap();
    }
    let k = 777_777;
    let prefix = route_prefix(k);
    let mut single: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(one, router::maps::ROUTES_V4)).unwrap();
    single
        .insert(
            &Key::new(24, prefix),
            topology::route(1, 100, Some("10.2.0.254")),
            0,
        )
        .unwrap();
    let started = std::time::Instant::now();
    load_routes(&mut topology, many, ROUTES, 1, "10.2.0.254");
    println!(
        "loaded {ROUTES} routes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let destination = format!("{}.{}.{}.9", prefix[0], prefix[1], prefix[2]);
    let mut frame =
        wire::FrameBuilder::udp("10.1.0.10".parse().unwrap(), destination.parse().unwrap())
            .payload(vec![0x5a; 18]);
    frame.dst_mac = ROUTER_A;
    let mut packet = frame.build();
    // TTL 255, header checksum redone: every repeat of a sample is a forward.
    packet[22] = 255;
    packet[24..26].copy_from_slice(&[0, 0]);
    let sum = wire::checksum::checksum(&packet[14..34]);
    packet[24..26].copy_from_slice(&sum.to_be_bytes());

    let check = offload::test_run::run_once(topology.program(one), &packet).unwrap();
    assert_eq!(check.verdict, 4, "one route: forwarded");
    let check = offload::test_run::run_once(topology.program(many), &packet).unwrap();
    assert_eq!(check.verdict, 4, "a million routes: forwarded");

    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..SAMPLES {
        for (slot, router) in [one, many].into_iter().enumerate() {
            samples[slot].push(time(topology.program(router), &packet));
        }
    }
    let [one_ns, many_ns] = samples.map(|mut values| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    });
    println!(
        "router, same frame, {SAMPLES} samples of {REPEAT} repeats each, interleaved (median ns/packet):"
    );
    println!("| routes    | ns/packet | packets/s (one core) |");
    println!("|-----------|----------:|---------------------:|");
    for (routes, ns) in [(1, one_ns), (ROUTES, many_ns)] {
        println!("| {routes:>9} | {ns:>9.1} | {:>20.0} |", 1e9 / ns);
    }
    println!(
        "a million routes run at {:.0}% of one route's rate",
        100.0 * one_ns / many_ns
    );
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
