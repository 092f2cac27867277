//! An instance's settings from the file, written into its maps (the layouts are
//! `offload_common::{bridge, router}`): a router's ports, addresses and routes (connected
//! ones from its addresses, static ones from the file), a bridge's aging, flood ports,
//! the addresses behind its instance ports and its static entries, a firewall's port
//! pairs and rules (a load balancer's are in lb.rs).
//!
//! Settings are written before the switch and add to what runs (a new route, a new
//! port's address); what the new file drops is removed after the switch. Routes and
//! static entries added at run time (`fastpath router route add`, `fastpath bridge fdb
//! add`) are left alone: only those an earlier file wrote (the record's) are removed.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use aya::maps::{
    Array, DevMapHash, HashMap as BpfHashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::IpNet;
use offload_common::{
    bridge::{self, BridgeSettings, FdbEntry, FdbKey, TargetKey, VlanPort, fdb_flags},
    firewall::maps as firewall_maps,
    router::{self, AddrKey, Route, RouterPort, port_flags, route_flags},
    topology::{MAX_HOPS, MAX_INSTANCE_PORTS},
};
use sha2::{Digest as _, Sha256};

use crate::{
    Instance, Kind, Peer, TopologyError, TopologyFile,
    file::PortVlans,
    pins,
    plan::{Plan, PlannedInstance},
    record::RecordInstance,
};

/// What a file wrote into an instance's maps (kept in the record).
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Routes, as prefix and id ("10.1.0.0/24#3").
    pub routes: Vec<String>,
    /// The router's addresses.
    pub addresses: Vec<String>,
    /// Static FDB entries, "vlan/mac".
    pub fdb: Vec<String>,
    /// The digest of a firewall's rules or a load balancer's VIPs.
    pub rules_digest: Option<String>,
}

impl From<&RecordInstance> for Written {
    /// What the file wrote, as its record keeps it.
    fn from(instance: &RecordInstance) -> Written {
        Written {
            routes: instance.routes.clone(),
            addresses: instance.addresses.clone(),
            fdb: instance.fdb.clone(),
            rules_digest: instance.rules_digest.clone(),
        }
    }
}

/// The MAC of a router port joined to another instance: locally administered, from the
/// topology's name, the instance's id and the port's number, so it stays across applies.
pub fn instance_port_mac(topology: &str, id: u32, port: u32) -> [u8; 6] {
    let hash = topology.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    [
        0x02,
        0xfa,
        (hash >> 8) as u8,
        hash as u8,
        id as u8,
        port as u8,
    ]
}

pub(crate) fn instance_map(topology: &str, instance: &str, map: &str) -> std::path::PathBuf {
    pins::instance_dir(topology, instance).join(map)
}

pub(crate) fn address_bytes(address: IpAddr) -> (u32, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match address {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (router::family::IPV4, bytes)
        }
        IpAddr::V6(v6) => (router::family::IPV6, v6.octets()),
    }
}

/// Writes a router's ports, addresses and routes. `port_mac` gives each port's MAC.
pub fn write_router(
    file: &TopologyFile,
    topology: &str,
    instance: &Instance,
    planned: &PlannedInstance,
    before: Option<&RecordInstance>,
    port_mac: impl Fn(&str, u32) -> Result<[u8; 6], TopologyError>,
) -> Result<Written, TopologyError> {
    let name = &instance.name;
    let mut ports = [RouterPort::default(); MAX_INSTANCE_PORTS as usize];
    for (port, number) in &planned.ports {
        ports[*number as usize].mac = port_mac(port, *number)?;
    }
    let mut written = Written::default();
    for (port, net, line) in &instance.router.addresses {
        let number = planned.port(port).expect("checked by the file");
        let slot = &mut ports[number as usize];
        let (family, bytes) = address_bytes(net.addr());
        let taken = if family == router::family::IPV4 {
            slot.flags & port_flags::IPV4 != 0
        } else {
            slot.flags & port_flags::IPV6 != 0
        };
        if taken {
            return Err(TopologyError::File {
                file: file.path.clone(),
                line: *line,
                message: format!(
                    "{name}: addresses.{port}: {net}: a router port has one IPv4 and one IPv6 address in this build"
                ),
            });
        }
        if family == router::family::IPV4 {
            slot.flags |= port_flags::IPV4;
            slot.ipv4.copy_from_slice(&bytes[..4]);
            slot.ipv4_prefix = net.prefix_len();
        } else {
            slot.flags |= port_flags::IPV6;
            slot.ipv6 = bytes;
            slot.ipv6_prefix = net.prefix_len();
        }
    }
    let path = instance_map(topology, name, router::maps::PORTS);
    let mut array: Array<MapData, RouterPort> = pins::open_as(&path, router::maps::PORTS)?;
    for (number, port) in ports.iter().enumerate() {
        array
            .set(number as u32, port, 0)
            .map_err(TopologyError::map("write", router::maps::PORTS, &path))?;
    }

    let path = instance_map(topology, name, router::maps::LOCAL);
    let mut local: BpfHashMap<MapData, AddrKey, u32> = pins::open_as(&path, router::maps::LOCAL)?;
    for (port, net, _) in &instance.router.addresses {
        let (family, addr) = address_bytes(net.addr());
        let number = planned.port(port).expect("checked by the file");
        local
            .insert(AddrKey { family, addr }, number, 0)
            .map_err(TopologyError::map("write", router::maps::LOCAL, &path))?;
        written.addresses.push(net.addr().to_string());
    }

    // Connected routes from the addresses, then the static ones.
    let mut routes: Vec<(IpNet, Route)> = Vec::new();
    for (port, net, _) in &instance.router.addresses {
        routes.push((
            net.trunc(),
            Route {
                port: planned.port(port).expect("checked by the file"),
                flags: route_flags::CONNECTED,
                ..Route::default()
            },
        ));
    }
    for route in &instance.router.routes {
        let mut value = Route {
            port: planned.port(&route.port).expect("checked by the file"),
            ..Route::default()
        };
        match route.via {
            Some(via) => value.next_hop = address_bytes(via).1,
            None => value.flags = route_flags::CONNECTED,
        }
        routes.push((route.to, value));
    }
    let mut tries = RouteTries::open(topology, name)?;
    // A route an earlier file wrote keeps its id (and so its counters); a new one takes
    // the lowest id no route of the router holds.
    let known: HashMap<String, u32> = before
        .map(|before| {
            before
                .routes
                .iter()
                .filter_map(|route| route_entry(route))
                .collect()
        })
        .unwrap_or_default();
    let mut used: Option<BTreeSet<u32>> = None;
    for (prefix, mut value) in routes {
        let text = prefix.to_string();
        value.id = match known.get(&text) {
            Some(id) => *id,
            None => {
                if used.is_none() {
                    used = Some(tries.used_ids()?);
                }
                let used = used.as_mut().expect("filled above");
                let id = (0..router::ROUTE_IDS)
                    .find(|id| !used.contains(id))
                    .ok_or_else(|| {
                        TopologyError::Request(format!("{name}: every route id is taken"))
                    })?;
                used.insert(id);
                id
            }
        };
        tries.insert(&prefix, &value)?;
        written.routes.push(format!("{text}#{}", value.id));
    }
    tries.changed()?;
    Ok(written)
}

/// After the switch: removes the routes and addresses an earlier file gave the router
/// and the new one does not.
pub fn clean_router(
    topology: &str,
    before: &RecordInstance,
    now: &Written,
) -> Result<(), TopologyError> {
    let name = &before.name;
    let mut tries = RouteTries::open(topology, name)?;
    let kept: BTreeSet<String> = now
        .routes
        .iter()
        .filter_map(|route| route_entry(route).map(|(prefix, _)| prefix))
        .collect();
    for (prefix, _) in before.routes.iter().filter_map(|route| route_entry(route)) {
        if kept.contains(&prefix) {
            continue;
        }
        if let Ok(prefix) = prefix.parse::<IpNet>() {
            tries.remove(&prefix)?;
        }
    }
    tries.changed()?;
    let path = instance_map(topology, name, router::maps::LOCAL);
    let mut local: BpfHashMap<MapData, AddrKey, u32> = pins::open_as(&path, router::maps::LOCAL)?;
    for address in &before.addresses {
        if now.addresses.contains(address) {
            continue;
        }
        if let Ok(address) = address.parse::<IpAddr>() {
            let (family, addr) = address_bytes(address);
            let _ = local.remove(&AddrKey { family, addr });
        }
    }
    Ok(())
}

/// A router's two route tries (also `fastpath router route`'s, in `routes`) and their
/// generation. Whoever changes a trie or adds an address of the router calls
/// [`RouteTries::changed`] after: the program remembers each CPU's forwarded IPv4
/// destinations (skipping the address table and the trie for them), and a new generation
/// makes them stale. `write_router` writes the addresses before the routes and bumps once
/// at the end.
pub(crate) struct RouteTries {
    pub(crate) v4: LpmTrie<MapData, [u8; 4], Route>,
    pub(crate) v6: LpmTrie<MapData, [u8; 16], Route>,
    /// `None` for a router a build without the look-up cache made (no such map).
    generation: Option<Array<MapData, u64>>,
    v4_path: std::path::PathBuf,
    v6_path: std::path::PathBuf,
    generation_path: std::path::PathBuf,
}

impl RouteTries {
    pub(crate) fn open(topology: &str, instance: &str) -> Result<RouteTries, TopologyError> {
        let v4_path = instance_map(topology, instance, router::maps::ROUTES_V4);
        let v6_path = instance_map(topology, instance, router::maps::ROUTES_V6);
        let generation_path = instance_map(topology, instance, router::maps::ROUTES_GENERATION);
        let generation = if generation_path.exists() {
            Some(pins::open_as(
                &generation_path,
                router::maps::ROUTES_GENERATION,
            )?)
        } else {
            None
        };
        Ok(RouteTries {
            v4: pins::open_as(&v4_path, router::maps::ROUTES_V4)?,
            v6: pins::open_as(&v6_path, router::maps::ROUTES_V6)?,
            generation,
            v4_path,
            v6_path,
            generation_path,
        })
    }

    /// Bumps the routes' generation: every CPU's remembered look-up is stale from now.
    /// Called after the tries changed (once for a batch).
    pub(crate) fn changed(&mut self) -> Result<(), TopologyError> {
        let Some(generation) = self.generation.as_mut() else {
            return Ok(());
        };
        let map = router::maps::ROUTES_GENERATION;
        let path = &self.generation_path;
        let now = generation
            .get(&0, 0)
            .map_err(TopologyError::map("read", map, path))?;
        generation
            .set(0, now.wrapping_add(1), 0)
            .map_err(TopologyError::map("write", map, path))
    }

    pub(crate) fn used_ids(&self) -> Result<BTreeSet<u32>, TopologyError> {
        let mut used = BTreeSet::new();
        for entry in self.v4.iter() {
            let (_, route) = entry.map_err(TopologyError::map(
                "read",
                router::maps::ROUTES_V4,
                &self.v4_path,
            ))?;
            used.insert(route.id);
        }
        for entry in self.v6.iter() {
            let (_, route) = entry.map_err(TopologyError::map(
                "read",
                router::maps::ROUTES_V6,
                &self.v6_path,
            ))?;
            used.insert(route.id);
        }
        Ok(used)
    }

    pub(crate) fn insert(&mut self, prefix: &IpNet, route: &Route) -> Result<(), TopologyError> {
        match prefix {
            IpNet::V4(net) => self
                .v4
                .insert(
                    &Key::new(u32::from(net.prefix_len()), net.network().octets()),
                    route,
                    0,
                )
                .map_err(TopologyError::map(
                    "write",
                    router::maps::ROUTES_V4,
                    &self.v4_path,
                )),
            IpNet::V6(net) => self
                .v6
                .insert(
                    &Key::new(u32::from(net.prefix_len()), net.network().octets()),
                    route,
                    0,
                )
                .map_err(TopologyError::map(
                    "write",
                    router::maps::ROUTES_V6,
                    &self.v6_path,
                )),
        }
    }

    pub(crate) fn remove(&mut self, prefix: &IpNet) -> Result<(), TopologyError> {
        let removed = match prefix {
            IpNet::V4(net) => self.v4.remove(&Key::new(
                u32::from(net.prefix_len()),
                net.network().octets(),
            )),
            IpNet::V6(net) => self.v6.remove(&Key::new(
                u32::from(net.prefix_len()),
                net.network().octets(),
            )),
        };
        match removed {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(error) => Err(TopologyError::map(
                "delete from",
                router::maps::ROUTES_V4,
                &self.v4_path,
            )(error)),
        }
    }
}

/// Writes a bridge's aging, flood ports, the addresses behind its instance ports and its
/// static entries. `ifindex` gives an interface's index.
pub fn write_bridge(
    file: &TopologyFile,
    topology: &str,
    instance: &Instance,
    planned: &PlannedInstance,
    plan: &Plan,
    ifindex: impl Fn(&str) -> Result<u32, TopologyError>,
) -> Result<Written, TopologyError> {
    let name = &instance.name;
    let vlan_aware = !instance.bridge.vlans.is_empty();
    // The flood: every interface port; on a VLAN-aware bridge each entry runs the egress
    // program that keeps the flood inside its VLAN and tags it as the port wants (its
    // load makes the pin of its map, which `write_vlans` fills).
    let egress = if vlan_aware {
        Some(crate::program::load_bridge_egress(topology, name)?)
    } else {
        None
    };
    write_vlans(topology, instance, planned, &ifindex)?;
    let path = instance_map(topology, name, bridge::maps::FLOOD);
    let mut flood: DevMapHash<MapData> = pins::open_as(&path, bridge::maps::FLOOD)?;
    let mut wanted = BTreeSet::new();
    for port in &instance.ports {
        if let Peer::Iface(iface) = &port.peer {
            let index = ifindex(iface)?;
            flood
                .insert(index, index, egress.as_ref(), 0)
                .map_err(TopologyError::map("write", bridge::maps::FLOOD, &path))?;
            wanted.insert(index);
        }
    }
    let stale: Vec<u32> = flood
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !wanted.contains(key))
        .collect();
    for key in stale {
        let _ = flood.remove(key);
    }
    // Last: a bridge turns VLAN-aware only once its VLAN tables and flood are written.
    let path = instance_map(topology, name, bridge::maps::SETTINGS);
    let mut settings: Array<MapData, BridgeSettings> =
        pins::open_as(&path, bridge::maps::SETTINGS)?;
    settings
        .set(
            0,
            BridgeSettings {
                aging_ns: u64::from(instance.bridge.aging_seconds) * 1_000_000_000,
                vlan_aware: u32::from(vlan_aware),
                _pad: 0,
            },
            0,
        )
        .map_err(TopologyError::map("write", bridge::maps::SETTINGS, &path))?;

    // The addresses of the routers behind instance ports.
    let path = instance_map(topology, name, bridge::maps::TARGETS);
    let mut targets: BpfHashMap<MapData, TargetKey, u32> =
        pins::open_as(&path, bridge::maps::TARGETS)?;
    let mut wanted_targets: HashMap<TargetKey, u32> = HashMap::new();
    for port in &instance.ports {
        let Some((router, router_port)) = router_behind(file, &port.peer) else {
            continue;
        };
        let number = planned.port(&port.name).expect("planned");
        for (address_port, net, _) in &router.router.addresses {
            if address_port == router_port {
                let (family, addr) = address_bytes(net.addr());
                wanted_targets.insert(TargetKey { family, addr }, number);
            }
        }
    }
    for (key, port) in &wanted_targets {
        targets.insert(key, port, 0).map_err(TopologyError::map(
            "write",
            bridge::maps::TARGETS,
            &path,
        ))?;
    }
    let stale: Vec<TargetKey> = targets
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !wanted_targets.contains_key(key))
        .collect();
    for key in stale {
        let _ = targets.remove(&key);
    }

    let mut written = Written::default();
    let path = instance_map(topology, name, bridge::maps::FDB);
    let mut fdb: BpfHashMap<MapData, FdbKey, FdbEntry> = pins::open_as(&path, bridge::maps::FDB)?;
    // A router's port behind an instance port is a static station there: the bridge
    // floods only to its interface ports, so a router MAC it forgot would be unreachable
    // until the router spoke again.
    for port in &instance.ports {
        let Peer::Instance {
            instance: other,
            port: other_port,
        } = &port.peer
        else {
            continue;
        };
        let (Some(peer), Some(peer_plan)) = (file.instance(other), plan.instance(other)) else {
            continue;
        };
        if peer.kind != crate::Kind::Router {
            continue;
        }
        let number = planned.port(&port.name).expect("planned");
        let peer_port = peer_plan.port(other_port).expect("checked by the file");
        if matches!(
            peer.port(other_port).map(|p| &p.peer),
            Some(Peer::Instance { .. })
        ) {
            let mac = instance_port_mac(topology, peer_plan.id, peer_port);
            fdb.insert(
                FdbKey {
                    vlan: bridge::UNTAGGED,
                    mac,
                },
                FdbEntry {
                    port: number,
                    flags: fdb_flags::STATIC,
                    last_seen_ns: 0,
                },
                0,
            )
            .map_err(TopologyError::map("write", bridge::maps::FDB, &path))?;
            written.fdb.push(fdb_text(bridge::UNTAGGED, mac));
        }
    }
    for entry in &instance.bridge.fdb {
        let port = planned.port(&entry.port).expect("checked by the file");
        fdb.insert(
            FdbKey {
                vlan: entry.vlan,
                mac: entry.mac,
            },
            FdbEntry {
                port,
                flags: fdb_flags::STATIC,
                last_seen_ns: 0,
            },
            0,
        )
        .map_err(TopologyError::map("write", bridge::maps::FDB, &path))?;
        written.fdb.push(fdb_text(entry.vlan, entry.mac));
    }
    Ok(written)
}

/// The router and its port a link leads to, directly or through the bumps in the wire on
/// the way (firewalls and load balancers pass ARP and neighbour discovery on to their
/// other port). None when it leads elsewhere.
fn router_behind<'a>(file: &'a TopologyFile, peer: &'a Peer) -> Option<(&'a Instance, &'a str)> {
    let mut peer = peer;
    for _ in 0..MAX_HOPS {
        let Peer::Instance { instance, port } = peer else {
            return None;
        };
        let next = file.instance(instance)?;
        match next.kind {
            Kind::Router => return Some((next, port)),
            Kind::Firewall | Kind::Lb => {
                peer = &next.ports.iter().find(|other| other.name != *port)?.peer;
            }
            _ => return None,
        }
    }
    None
}

/// The VLANs a bridge port carries and how each leaves it: an access port its VLAN
/// untagged, a trunk its VLANs tagged, a port without `vlans` VLAN 0 untagged.
fn port_vlans(instance: &Instance, port: &str) -> Vec<(u16, u32)> {
    match instance.bridge.vlans.iter().find(|(name, _)| name == port) {
        Some((_, PortVlans::Access(vlan))) => vec![(*vlan, bridge::tagging::UNTAGGED)],
        Some((_, PortVlans::Trunk(vlans))) => vlans
            .iter()
            .map(|vlan| (*vlan, bridge::tagging::TAGGED))
            .collect(),
        None => vec![(bridge::UNTAGGED, bridge::tagging::UNTAGGED)],
    }
}

/// Writes a bridge's VLAN tables: each port's VLAN for untagged frames
/// ([`bridge::maps::PVID`]) and the VLANs each port carries, by port number
/// ([`bridge::maps::MEMBERS`]) and, for interface ports, by ifindex
/// ([`bridge::maps::EGRESS`], when a flood egress program made it). Entries the file no
/// longer gives are removed.
fn write_vlans(
    topology: &str,
    instance: &Instance,
    planned: &PlannedInstance,
    ifindex: &impl Fn(&str) -> Result<u32, TopologyError>,
) -> Result<(), TopologyError> {
    let name = &instance.name;
    let mut pvids = [u32::from(bridge::UNTAGGED); MAX_INSTANCE_PORTS as usize];
    let mut members: HashMap<VlanPort, u32> = HashMap::new();
    let mut egress: HashMap<VlanPort, u32> = HashMap::new();
    for port in &instance.ports {
        let number = planned.port(&port.name).expect("planned");
        pvids[number as usize] = match instance.bridge.vlans.iter().find(|(p, _)| *p == port.name) {
            Some((_, PortVlans::Access(vlan))) => u32::from(*vlan),
            Some((_, PortVlans::Trunk(_))) => bridge::NO_PVID,
            None => u32::from(bridge::UNTAGGED),
        };
        let iface = match &port.peer {
            Peer::Iface(iface) => Some(ifindex(iface)?),
            Peer::Instance { .. } => None,
        };
        for (vlan, tagging) in port_vlans(instance, &port.name) {
            let vlan = u32::from(vlan);
            members.insert(VlanPort { port: number, vlan }, tagging);
            if let Some(iface) = iface {
                egress.insert(VlanPort { port: iface, vlan }, tagging);
            }
        }
    }
    let path = instance_map(topology, name, bridge::maps::PVID);
    let mut array: Array<MapData, u32> = pins::open_as(&path, bridge::maps::PVID)?;
    for (number, pvid) in pvids.iter().enumerate() {
        array
            .set(number as u32, pvid, 0)
            .map_err(TopologyError::map("write", bridge::maps::PVID, &path))?;
    }
    sync_table(topology, name, bridge::maps::MEMBERS, &members)?;
    if instance_map(topology, name, bridge::maps::EGRESS).exists() {
        sync_table(topology, name, bridge::maps::EGRESS, &egress)?;
    }
    Ok(())
}

/// Makes the instance's hash map `map` hold exactly `wanted`.
fn sync_table(
    topology: &str,
    instance: &str,
    map: &str,
    wanted: &HashMap<VlanPort, u32>,
) -> Result<(), TopologyError> {
    let path = instance_map(topology, instance, map);
    let mut table: BpfHashMap<MapData, VlanPort, u32> = pins::open_as(&path, map)?;
    for (key, value) in wanted {
        table
            .insert(key, value, 0)
            .map_err(TopologyError::map("write", map, &path))?;
    }
    let stale: Vec<VlanPort> = table
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !wanted.contains_key(key))
        .collect();
    for key in stale {
        let _ = table.remove(&key);
    }
    Ok(())
}

/// After the switch: removes static entries an earlier file gave the bridge and the new
/// one does not.
pub fn clean_bridge(
    topology: &str,
    before: &RecordInstance,
    now: &Written,
) -> Result<(), TopologyError> {
    let path = instance_map(topology, &before.name, bridge::maps::FDB);
    let mut fdb: BpfHashMap<MapData, FdbKey, FdbEntry> = pins::open_as(&path, bridge::maps::FDB)?;
    for entry in &before.fdb {
        if now.fdb.contains(entry) {
            continue;
        }
        if let Some((vlan, mac)) = entry.split_once('/')
            && let (Ok(vlan), Some(mac)) = (vlan.parse(), crate::file::parse_mac(mac))
        {
            let _ = fdb.remove(&FdbKey { vlan, mac });
        }
    }
    Ok(())
}

/// A route of the record: "prefix#id".
fn route_entry(text: &str) -> Option<(String, u32)> {
    let (prefix, id) = text.split_once('#')?;
    Some((prefix.to_string(), id.parse().ok()?))
}

pub(crate) fn fdb_text(vlan: u16, mac: [u8; 6]) -> String {
    let mac: Vec<String> = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{vlan}/{}", mac.join(":"))
}

/// Writes each port of a two-port instance (a bump in the wire: a firewall, a load
/// balancer) as the other's, into its `ARRAY` `map`.
pub(crate) fn write_other_ports(
    topology: &str,
    planned: &PlannedInstance,
    map: &'static str,
) -> Result<(), TopologyError> {
    let path = instance_map(topology, &planned.name, map);
    let mut other: Array<MapData, u32> = pins::open_as(&path, map)?;
    if let [(_, first), (_, second)] = planned.ports.as_slice() {
        for (port, its_other) in [(*first, *second), (*second, *first)] {
            other
                .set(port, its_other, 0)
                .map_err(TopologyError::map("write", map, &path))?;
        }
    }
    Ok(())
}

/// A firewall instance's rules, read and checked before anything changes.
pub struct FirewallRules {
    /// The policy.
    pub policy: firewall::Policy,
    /// The SHA-256 of the rules file's text: the record keeps it, and a file whose rules
    /// are the running ones leaves them (and their counters) alone.
    pub digest: String,
}

/// Reads the rules file of the firewall `instance` (an error names its line); None for
/// other kinds.
pub fn read_firewall_rules(instance: &Instance) -> Result<Option<FirewallRules>, TopologyError> {
    let Some(path) = &instance.rules else {
        return Ok(None);
    };
    let error = |source| TopologyError::Firewall {
        instance: instance.name.clone(),
        source: Box::new(source),
    };
    let text = std::fs::read_to_string(path).map_err(|source| {
        error(firewall::FirewallError::ReadFile {
            file: path.clone(),
            source,
        })
    })?;
    let policy = firewall::Policy::parse(path, &text).map_err(error)?;
    let digest = crate::program::hex(&Sha256::digest(text.as_bytes()));
    Ok(Some(FirewallRules { policy, digest }))
}

/// Writes a firewall instance's settings: each of its two ports' other port, then its
/// rules, written to the idle bank and switched to (kept, with their counters, when they
/// are the ones `before` ran).
pub fn write_firewall(
    topology: &str,
    planned: &PlannedInstance,
    rules: &FirewallRules,
    before: Option<&RecordInstance>,
) -> Result<Written, TopologyError> {
    write_other_ports(topology, planned, firewall_maps::OTHER_PORT)?;
    let written = Written {
        rules_digest: Some(rules.digest.clone()),
        ..Written::default()
    };
    if before.and_then(|record| record.rules_digest.as_ref()) == Some(&rules.digest) {
        return Ok(written);
    }
    let error = |source| TopologyError::Firewall {
        instance: planned.name.clone(),
        source: Box::new(source),
    };
    let site = crate::program::firewall_site(topology, &planned.name);
    let prepared = firewall::prepare_at(&site, &rules.policy).map_err(error)?;
    firewall::switch(vec![prepared]).map_err(error)?;
    Ok(written)
}
