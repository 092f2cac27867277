//! A report, not a test: the router instance program's cost per packet with one route
//! against a million, IPv4 and IPv6, with `BPF_PROG_TEST_RUN`, in the same run. Needs root.
//!
//! Two routers are loaded (`tests/support/topology.rs` builds them as the tests do, with
//! three IPv4 and three IPv6 routes of their own): one with one more route of each
//! family (an IPv4 /24, an IPv6 /48), and one with a million more of each (IPv4
//! 20.0.0.0/24 and up, IPv6 2001:0:0::/48 and up, each via the same gateway). The same UDP
//! frame of each family, to an address inside a route of each table, is forwarded by
//! both: route look-up, TTL (and checksum) or hop limit, MAC rewrite, emit (a redirect the
//! test run returns, not carries out). Each sample is one test run of `REPEAT` repeats; a
//! test run repeats on the same buffer, so the TTL or hop limit starts at 255 and `REPEAT`
//! stays below it (every repeat is a forward). The router remembers each CPU's look-ups
//! (and the next hop's MAC), so all repeats but the first skip the trie: this is one
//! flow's cost; `topology_mpps --routes --destinations` measures many destinations on
//! the wire. The four (router, family) pairs take turns, sample by sample; the report
//! gives the median of each.
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
/// The IPv4 routes' gateway, behind router port 1.
const GATEWAY_V4: &str = "10.2.0.254";
/// The IPv6 routes' gateway, behind router port 1.
const GATEWAY_V6: &str = "fd02::fe";

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
        for gateway in [GATEWAY_V4, GATEWAY_V6] {
            let (family, addr) = addr16(gateway);
            let entry = Neighbour {
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
                    entry,
                    0,
                )
                .unwrap();
        }
    }
    let k = 777_777;
    let prefix = route_prefix(k);
    let prefix_v6 = route_prefix_v6(k);
    let mut single: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(one, router::maps::ROUTES_V4)).unwrap();
    single
        .insert(
            &Key::new(24, prefix),
            topology::route(1, 100, Some(GATEWAY_V4)),
            0,
        )
        .unwrap();
    let mut single_v6: LpmTrie<_, [u8; 16], Route> =
        LpmTrie::try_from(topology.instance_map_mut(one, router::maps::ROUTES_V6)).unwrap();
    single_v6
        .insert(
            &Key::new(48, prefix_v6),
            topology::route(1, 101, Some(GATEWAY_V6)),
            0,
        )
        .unwrap();
    let started = std::time::Instant::now();
    load_routes(&mut topology, many, ROUTES, 1, GATEWAY_V4);
    println!(
        "loaded {ROUTES} IPv4 routes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    load_routes_v6(&mut topology, many, ROUTES);
    println!(
        "loaded {ROUTES} IPv6 routes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let destination = format!("{}.{}.{}.9", prefix[0], prefix[1], prefix[2]);
    let v4 = packet("10.1.0.10", &destination);
    let mut destination_v6 = prefix_v6;
    destination_v6[15] = 9;
    let v6 = packet(
        "fd01::10",
        &std::net::Ipv6Addr::from(destination_v6).to_string(),
    );
    for (name, router) in [("one route", one), ("a million routes", many)] {
        for (family, packet) in [("IPv4", &v4), ("IPv6", &v6)] {
            let check = offload::test_run::run_once(topology.program(router), packet).unwrap();
            assert_eq!(check.verdict, 4, "{name}, {family}: forwarded");
        }
    }

    let runs = [(one, &v4), (many, &v4), (one, &v6), (many, &v6)];
    let mut samples = runs.map(|_| Vec::new());
    for _ in 0..SAMPLES {
        for (slot, (router, packet)) in runs.iter().enumerate() {
            samples[slot].push(time(topology.program(*router), packet));
        }
    }
    let [one_v4, many_v4, one_v6, many_v6] = samples.map(|mut values| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    });
    println!(
        "router, same frames, {SAMPLES} samples of {REPEAT} repeats each, interleaved (median ns/packet):"
    );
    println!("| family | routes    | ns/packet | packets/s (one core) |");
    println!("|--------|-----------|----------:|---------------------:|");
    for (family, one_ns, many_ns) in [("IPv4", one_v4, many_v4), ("IPv6", one_v6, many_v6)] {
        for (routes, ns) in [(1, one_ns), (ROUTES, many_ns)] {
            println!(
                "| {family:<6} | {routes:>9} | {ns:>9.1} | {:>20.0} |",
                1e9 / ns
            );
        }
    }
    for (family, one_ns, many_ns) in [("IPv4", one_v4, many_v4), ("IPv6", one_v6, many_v6)] {
        println!(
            "{family}: a million routes run at {:.0}% of one route's rate",
            100.0 * one_ns / many_ns
        );
    }
}

/// A UDP frame to the router's port 0 from `source` to `destination`, with a TTL or hop
/// limit of 255 (the IPv4 header checksum redone): every repeat of a sample is a forward.
fn packet(source: &str, destination: &str) -> Vec<u8> {
    let mut frame = wire::FrameBuilder::udp(source.parse().unwrap(), destination.parse().unwrap())
        .payload(vec![0x5a; 18]);
    frame.dst_mac = ROUTER_A;
    let mut packet = frame.build();
    if packet[12..14] == [0x86, 0xdd] {
        packet[14 + 7] = 255;
    } else {
        packet[22] = 255;
        packet[24..26].copy_from_slice(&[0, 0]);
        let sum = wire::checksum::checksum(&packet[14..34]);
        packet[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The /48 prefix of IPv6 route `k` of a loaded table: 2001:0:0::/48 and up (k in the
/// third to fifth bytes).
fn route_prefix_v6(k: u32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..2].copy_from_slice(&[0x20, 0x01]);
    prefix[2..5].copy_from_slice(&k.to_be_bytes()[1..]);
    prefix
}

/// Loads `count` IPv6 /48 routes out port 1 via [`GATEWAY_V6`] into the router
/// `instance`. Their ids are the IPv4 table's (from 100): a route id is a counter slot,
/// and the IPv4 and IPv6 million together are more than `ROUTE_IDS`; this report reads
/// no counters.
fn load_routes_v6(topology: &mut Topology, instance: u32, count: u32) {
    let mut routes: LpmTrie<_, [u8; 16], Route> =
        LpmTrie::try_from(topology.instance_map_mut(instance, router::maps::ROUTES_V6)).unwrap();
    for k in 0..count {
        let route = topology::route(1, 100 + k, Some(GATEWAY_V6));
        routes
            .insert(&Key::new(48, route_prefix_v6(k)), route, 0)
            .unwrap();
    }
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
