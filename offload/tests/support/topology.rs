//! A topology built by hand for `BPF_PROG_TEST_RUN`: the built-in `topology` module and
//! instance programs loaded with their `TOPO_*` maps pinned in a transient folder, ports
//! linked in bank 0 by writing the maps as the loader does. Nothing is attached.
//!
//! Interface ports are `TOPO_TX` entries keyed by made-up ifindexes whose device is the
//! loopback of the test's namespace: a test run's redirect is returned, never carried
//! out, so the port counters tell where a packet went. Test runs come in on that loopback
//! (ifindex [`LOOPBACK`]).

use std::{collections::HashMap as StdMap, net::IpAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, ProgramArray,
        lpm_trie::Key,
    },
    programs::Xdp,
    util::nr_cpus,
};
use offload::{
    Transient,
    modules::builtin::{self, ROUTER_PROGRAM_OBJECT},
    test_run::RunResult,
};
use offload_common::router::{self, AddrKey, Route, RouterPort, port_flags, route_flags};
use offload_common::topology::{
    IfaceKey, Link, PortRef, PortStats, TopologyContext, counter, link_index, link_kind, maps,
    port_index,
};

/// The ifindex test runs come in on (the namespace's loopback).
pub const LOOPBACK: u32 = 1;

/// A hand-built topology.
pub struct Topology {
    // Declared before `pins`: programs and maps go before their folder.
    core: Ebpf,
    instances: Vec<Ebpf>,
    programs: Vec<String>,
    _pins: Transient,
}

impl Topology {
    /// The `topology` module's object loaded, with the topology's maps pinned anew.
    pub fn new() -> Topology {
        let pins = Transient::create().expect("a transient pin folder");
        let mut core = load(&pins, builtin::TOPOLOGY_MODULE_OBJECT);
        load_program(&mut core, "topology");
        Topology {
            core,
            instances: Vec::new(),
            programs: Vec::new(),
            _pins: pins,
        }
    }

    /// Loads `object`'s `program` as the next instance (its own maps fresh) and puts it
    /// in `TOPO_PROGS`; returns its instance id.
    pub fn add(&mut self, object: &[u8], program: &str) -> u32 {
        let mut ebpf = load(&self._pins, object);
        load_program(&mut ebpf, program);
        let id = self.instances.len() as u32;
        let xdp: &Xdp = ebpf.program(program).unwrap().try_into().unwrap();
        let fd = xdp.fd().unwrap();
        let mut progs = ProgramArray::try_from(self.core.map_mut(maps::PROGS).unwrap()).unwrap();
        progs.set(id, fd, 0).unwrap();
        self.instances.push(ebpf);
        self.programs.push(program.to_string());
        id
    }

    /// Connects `port` of `instance` to the interface `ifindex` (bank 0).
    pub fn connect_interface(&mut self, instance: u32, port: u32, ifindex: u32) {
        self.set_link(
            instance,
            port,
            Link {
                kind: link_kind::IFACE,
                ifindex,
                peer: PortRef::default(),
            },
        );
        let mut tx = DevMapHash::try_from(self.core.map_mut(maps::TX).unwrap()).unwrap();
        tx.insert(ifindex, LOOPBACK, None, 0).unwrap();
    }

    /// Connects two instance ports to each other (bank 0).
    pub fn connect(&mut self, a: (u32, u32), b: (u32, u32)) {
        for (from, to) in [(a, b), (b, a)] {
            self.set_link(
                from.0,
                from.1,
                Link {
                    kind: link_kind::INSTANCE,
                    ifindex: 0,
                    peer: PortRef {
                        instance: to.0,
                        port: to.1,
                    },
                },
            );
        }
    }

    fn set_link(&mut self, instance: u32, port: u32, link: Link) {
        let mut links: Array<_, Link> =
            Array::try_from(self.core.map_mut(maps::LINKS).unwrap()).unwrap();
        links
            .set(link_index(0, instance, port).unwrap(), link, 0)
            .unwrap();
    }

    /// Makes packets coming in on `ifindex` enter `port` of `instance` (bank 0).
    pub fn feed(&mut self, ifindex: u32, instance: u32, port: u32) {
        let mut ifaces: HashMap<_, IfaceKey, PortRef> =
            HashMap::try_from(self.core.map_mut(maps::IFACES).unwrap()).unwrap();
        ifaces
            .insert(IfaceKey { bank: 0, ifindex }, PortRef { instance, port }, 0)
            .unwrap();
    }

    /// Runs the program of `instance` directly on `packet`, as if it had come in on
    /// `in_port` from the interface `in_ifindex`, first in the topology.
    pub fn run(
        &mut self,
        instance: u32,
        in_port: u32,
        in_ifindex: u32,
        packet: &[u8],
    ) -> RunResult {
        let place = TopologyContext {
            bank: 0,
            instance,
            in_port,
            hops: 1,
            in_ifindex,
            _pad: 0,
        };
        let mut context: PerCpuArray<_, TopologyContext> =
            PerCpuArray::try_from(self.core.map_mut(maps::CONTEXT).unwrap()).unwrap();
        let cpus = nr_cpus().unwrap();
        context
            .set(0, PerCpuValues::try_from(vec![place; cpus]).unwrap(), 0)
            .unwrap();
        let ebpf = &self.instances[instance as usize];
        let program: &Xdp = ebpf
            .program(&self.programs[instance as usize])
            .unwrap()
            .try_into()
            .unwrap();
        offload::test_run::run_once(program, packet).unwrap()
    }

    /// Runs `packet` through the `topology` module, as it comes in on the loopback.
    pub fn enter(&self, packet: &[u8]) -> RunResult {
        let program: &Xdp = self.core.program("topology").unwrap().try_into().unwrap();
        offload::test_run::run_once(program, packet).unwrap()
    }

    /// The loaded program of `instance`, for timing.
    pub fn program(&self, instance: u32) -> &Xdp {
        self.instances[instance as usize]
            .program(&self.programs[instance as usize])
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// The counters of `port` of `instance`, summed over CPUs.
    pub fn port(&self, instance: u32, port: u32) -> PortStats {
        let stats: PerCpuArray<_, PortStats> =
            PerCpuArray::try_from(self.core.map(maps::PORT_STATS).unwrap()).unwrap();
        let values = stats.get(&port_index(instance, port).unwrap(), 0).unwrap();
        values
            .iter()
            .fold(PortStats::default(), |sum, one| PortStats {
                rx_packets: sum.rx_packets + one.rx_packets,
                rx_bytes: sum.rx_bytes + one.rx_bytes,
                tx_packets: sum.tx_packets + one.tx_packets,
                tx_bytes: sum.tx_bytes + one.tx_bytes,
                drops: sum.drops + one.drops,
            })
    }

    /// The topology's counter `slot` ([`counter`]), summed over CPUs.
    pub fn counter(&self, slot: u32) -> u64 {
        sum_u64(self.core.map(maps::COUNTERS).unwrap(), slot)
    }

    /// The `u64` counter `slot` of the per-CPU array `map` of `instance`, summed.
    pub fn instance_counter(&self, instance: u32, map: &str, slot: u32) -> u64 {
        sum_u64(self.instance_map(instance, map), slot)
    }

    /// The map `name` of `instance`.
    pub fn instance_map(&self, instance: u32, name: &str) -> &aya::maps::Map {
        self.instances[instance as usize].map(name).unwrap()
    }

    /// The map `name` of `instance`, to write.
    pub fn instance_map_mut(&mut self, instance: u32, name: &str) -> &mut aya::maps::Map {
        self.instances[instance as usize].map_mut(name).unwrap()
    }
}

fn sum_u64(map: &aya::maps::Map, slot: u32) -> u64 {
    let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).unwrap();
    array.get(&slot, 0).unwrap().iter().sum()
}

/// Every counter of the topology, for messages.
#[allow(dead_code)]
pub fn counters(topology: &Topology) -> StdMap<&'static str, u64> {
    counter::NAMES
        .iter()
        .enumerate()
        .map(|(slot, name)| (*name, topology.counter(slot as u32)))
        .collect()
}

fn load(pins: &Transient, object: &[u8]) -> Ebpf {
    let mut loader = EbpfLoader::new();
    for name in maps::ALL {
        loader.map_pin_path(name, pins.pins().maps_dir().join(name));
    }
    loader.load(object).expect("the object loads")
}

fn load_program(ebpf: &mut Ebpf, name: &str) {
    let program: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
    if let Err(error) = program.load() {
        panic!("{name} does not verify: {}", offload::error_chain(&error));
    }
}

/// The /24 prefix of route `k` of a loaded table: 20.0.0.0/24 and up.
pub fn route_prefix(k: u32) -> [u8; 4] {
    ((20u32 << 24) + (k << 8)).to_be_bytes()
}

/// Loads `count` IPv4 /24 routes (route ids from 100) out `port` via `gateway` into the
/// router `instance`; returns how many it loaded.
pub fn load_routes(
    topology: &mut Topology,
    instance: u32,
    count: u32,
    port: u32,
    gateway: &str,
) -> u32 {
    use offload_common::router::maps as router_maps;
    let std::net::IpAddr::V4(gateway) = gateway.parse().unwrap() else {
        panic!("an IPv4 gateway")
    };
    let mut next_hop = [0u8; 16];
    next_hop[..4].copy_from_slice(&gateway.octets());
    let mut routes: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(instance, router_maps::ROUTES_V4)).unwrap();
    for k in 0..count {
        let route = Route {
            port,
            id: 100 + k,
            flags: 0,
            _pad: 0,
            next_hop,
        };
        routes
            .insert(&Key::new(24, route_prefix(k)), route, 0)
            .unwrap();
    }
    count
}

/// Bumps router `instance`'s routes generation, as user space does after changing its
/// tries: each CPU's remembered look-ups (IPv4 and IPv6) are stale from then on.
pub fn routes_changed(topology: &mut Topology, instance: u32) {
    use offload_common::router::maps as router_maps;
    let mut generation: Array<_, u64> =
        Array::try_from(topology.instance_map_mut(instance, router_maps::ROUTES_GENERATION))
            .unwrap();
    let now = generation.get(&0, 0).unwrap();
    generation.set(0, now + 1, 0).unwrap();
}

/// The MAC of router port 0 in [`add_router`].
pub const ROUTER_A: [u8; 6] = [0x02, 0xfa, 0, 0, 0, 0x01];
/// The MAC of router port 1 in [`add_router`].
pub const ROUTER_B: [u8; 6] = [0x02, 0xfa, 0, 0, 0, 0x02];

/// Router port 0 on interface 201 (10.1.0.1/24, fd01::1/64), port 1 on 202 (10.2.0.1/24,
/// fd02::1/64); connected routes for both, 10.3.0.0/16 via 10.2.0.254 and fd03::/48 via
/// fd02::fe. Route ids: 1, 2, 3 (IPv4), 4, 5, 6 (IPv6).
pub fn add_router(topology: &mut Topology, interfaces: Option<[u32; 2]>) -> u32 {
    let router = topology.add(ROUTER_PROGRAM_OBJECT, "router");
    if let Some(interfaces) = interfaces {
        for (port, ifindex) in interfaces.into_iter().enumerate() {
            topology.connect_interface(router, port as u32, ifindex);
        }
    }
    let mut ports: Array<_, RouterPort> =
        Array::try_from(topology.instance_map_mut(router, router::maps::PORTS)).unwrap();
    for (port, mac, v4, v6) in [
        (0, ROUTER_A, [10, 1, 0, 1], "fd01::1"),
        (1, ROUTER_B, [10, 2, 0, 1], "fd02::1"),
    ] {
        let config = RouterPort {
            mac,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            flags: port_flags::IPV4 | port_flags::IPV6,
            ipv4: v4,
            ipv6: v6_octets(v6),
        };
        ports.set(port, config, 0).unwrap();
    }
    let mut local: HashMap<_, AddrKey, u32> =
        HashMap::try_from(topology.instance_map_mut(router, router::maps::LOCAL)).unwrap();
    for (port, address) in [
        (0, "10.1.0.1"),
        (1, "10.2.0.1"),
        (0, "fd01::1"),
        (1, "fd02::1"),
    ] {
        local.insert(addr_key(address), port, 0).unwrap();
    }
    let mut v4: LpmTrie<_, [u8; 4], Route> =
        LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V4)).unwrap();
    v4.insert(&Key::new(24, [10, 1, 0, 0]), route(0, 1, None), 0)
        .unwrap();
    v4.insert(&Key::new(24, [10, 2, 0, 0]), route(1, 2, None), 0)
        .unwrap();
    v4.insert(
        &Key::new(16, [10, 3, 0, 0]),
        route(1, 3, Some("10.2.0.254")),
        0,
    )
    .unwrap();
    let mut v6: LpmTrie<_, [u8; 16], Route> =
        LpmTrie::try_from(topology.instance_map_mut(router, router::maps::ROUTES_V6)).unwrap();
    v6.insert(&Key::new(64, v6_octets("fd01::")), route(0, 4, None), 0)
        .unwrap();
    v6.insert(&Key::new(64, v6_octets("fd02::")), route(1, 5, None), 0)
        .unwrap();
    v6.insert(
        &Key::new(48, v6_octets("fd03::")),
        route(1, 6, Some("fd02::fe")),
        0,
    )
    .unwrap();
    router
}

pub fn v6_octets(text: &str) -> [u8; 16] {
    let IpAddr::V6(address) = text.parse().unwrap() else {
        panic!("{text}")
    };
    address.octets()
}

pub fn addr16(text: &str) -> (u32, [u8; 16]) {
    match text.parse().unwrap() {
        IpAddr::V4(address) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&address.octets());
            (router::family::IPV4, bytes)
        }
        IpAddr::V6(address) => (router::family::IPV6, address.octets()),
    }
}

pub fn addr_key(text: &str) -> AddrKey {
    let (family, addr) = addr16(text);
    AddrKey { family, addr }
}

pub fn route(port: u32, id: u32, via: Option<&str>) -> Route {
    Route {
        port,
        id,
        flags: if via.is_none() {
            route_flags::CONNECTED
        } else {
            0
        },
        _pad: 0,
        next_hop: via.map_or([0; 16], |via| addr16(via).1),
    }
}
