//! `topology show`: the running topology as a graph, with each port's counters
//! (`TOPO_PORT_STATS`), the topology's own counters and each instance's (a firewall's:
//! packets by the rule that decided them).

use aya::maps::{Array, MapData, PerCpuArray};
use offload_common::{
    bridge, router,
    topology::{PortStats, TopologyState, counter, maps, port_index},
};
use serde::Serialize;

use crate::{Kind, TopologyError, pins, record::Record};

/// The running topology.
#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    /// Its name.
    pub name: String,
    /// The running revision.
    pub revision: u32,
    /// The running bank.
    pub bank: u32,
    /// Its instances.
    pub instances: Vec<ShownInstance>,
    /// The interfaces it joins.
    pub ifaces: Vec<String>,
    /// Packets the topology itself ended, by reason (`loop`, `unknown_iface`, ...).
    pub counters: Vec<(String, u64)>,
}

/// A running instance.
#[derive(Clone, Debug, Serialize)]
pub struct ShownInstance {
    /// Its name.
    pub name: String,
    /// Its slot in `TOPO_PROGS`.
    pub id: u32,
    /// What it runs.
    pub kind: Kind,
    /// The version in its program's metadata.
    pub version: String,
    /// The object it runs, when not its kind's built-in program.
    pub module: Option<String>,
    /// The kernel's id of its program.
    pub program_id: Option<u32>,
    /// Its ports.
    pub ports: Vec<ShownPort>,
    /// Its own counters (the bridge's, the router's), by name.
    pub counters: Vec<(String, u64)>,
}

/// A port and its counters.
#[derive(Clone, Debug, Serialize)]
pub struct ShownPort {
    /// Its name.
    pub name: String,
    /// Its number.
    pub number: u32,
    /// What it is connected to: an interface or `instance:port`.
    pub peer: String,
    /// Packets in.
    pub rx_packets: u64,
    /// Bytes in.
    pub rx_bytes: u64,
    /// Packets out.
    pub tx_packets: u64,
    /// Bytes out.
    pub tx_bytes: u64,
    /// Packets emitted on it and dropped there.
    pub drops: u64,
    /// A router port's MAC address (what it answers ARP and ND with).
    pub mac: Option<String>,
}

/// The running topology `name`.
pub fn show(name: &str) -> Result<Shown, TopologyError> {
    let record = Record::read(name)?.ok_or_else(|| TopologyError::NotRunning {
        name: name.to_string(),
    })?;
    let state_path = pins::map_pin(name, maps::STATE);
    let state: Array<MapData, TopologyState> = pins::open_as(&state_path, maps::STATE)?;
    let state = state
        .get(&0, 0)
        .map_err(TopologyError::map("read", maps::STATE, &state_path))?;
    let stats_path = pins::map_pin(name, maps::PORT_STATS);
    let stats: PerCpuArray<MapData, PortStats> = pins::open_as(&stats_path, maps::PORT_STATS)?;
    let mut instances = Vec::new();
    for instance in &record.instances {
        let dir = pins::instance_dir(name, &instance.name);
        let router_ports: Option<Array<MapData, router::RouterPort>> = (instance.kind
            == Kind::Router)
            .then(|| pins::open_as(&dir.join(router::maps::PORTS), router::maps::PORTS).ok())
            .flatten();
        let mut ports = Vec::new();
        for (port, number) in &instance.ports {
            let index = port_index(instance.id, *number).expect("in range");
            let per_cpu = stats.get(&index, 0).map_err(TopologyError::map(
                "read",
                maps::PORT_STATS,
                &stats_path,
            ))?;
            let sum = |field: fn(&PortStats) -> u64| per_cpu.iter().map(field).sum();
            ports.push(ShownPort {
                name: port.clone(),
                number: *number,
                peer: instance
                    .peers
                    .iter()
                    .find(|(known, _)| known == port)
                    .map(|(_, peer)| peer.clone())
                    .unwrap_or_default(),
                rx_packets: sum(|stats| stats.rx_packets),
                rx_bytes: sum(|stats| stats.rx_bytes),
                tx_packets: sum(|stats| stats.tx_packets),
                tx_bytes: sum(|stats| stats.tx_bytes),
                drops: sum(|stats| stats.drops),
                mac: router_ports
                    .as_ref()
                    .and_then(|ports| ports.get(number, 0).ok())
                    .map(|port| nic::link::format_mac(port.mac)),
            });
        }
        let counters = match instance.kind {
            Kind::Bridge => read_counters(
                &dir.join(bridge::maps::COUNTERS),
                bridge::maps::COUNTERS,
                &bridge::counter::NAMES,
            ),
            Kind::Router => read_counters(
                &dir.join(router::maps::COUNTERS),
                router::maps::COUNTERS,
                &router::counter::NAMES,
            ),
            Kind::Firewall => firewall_counters(name, &instance.name),
            Kind::Lb => crate::lb::lb_counters(name, &instance.name),
            Kind::Module => Ok(Vec::new()),
        }
        .unwrap_or_default();
        let program_id = aya::programs::Xdp::from_pin(
            pins::program_pin(name, &instance.name),
            aya_obj::programs::XdpAttachType::Interface,
        )
        .ok()
        .and_then(|program| program.info().ok())
        .map(|info| info.id());
        instances.push(ShownInstance {
            name: instance.name.clone(),
            id: instance.id,
            kind: instance.kind,
            version: instance.version.clone(),
            module: instance
                .module
                .as_ref()
                .map(|path| path.display().to_string()),
            program_id,
            ports,
            counters,
        });
    }
    Ok(Shown {
        name: name.to_string(),
        revision: state.revision,
        bank: state.bank,
        instances,
        ifaces: record
            .ifaces
            .iter()
            .map(|iface| iface.iface.clone())
            .collect(),
        counters: read_counters(
            &pins::map_pin(name, maps::COUNTERS),
            maps::COUNTERS,
            &counter::NAMES,
        )?,
    })
}

/// A firewall instance's packets by the rule that decided them (`default`: its default
/// policy), in priority order.
fn firewall_counters(topology: &str, instance: &str) -> Result<Vec<(String, u64)>, TopologyError> {
    let status = firewall::status_at(&crate::program::firewall_site(topology, instance)).map_err(
        |source| TopologyError::Firewall {
            instance: instance.to_string(),
            source: Box::new(source),
        },
    )?;
    Ok(std::iter::once(status.default)
        .chain(status.rules)
        .map(|rule| (rule.name, rule.packets))
        .collect())
}

/// A per-CPU array of `u64` counters, summed, named.
pub(crate) fn read_counters(
    path: &std::path::Path,
    map: &str,
    names: &[&str],
) -> Result<Vec<(String, u64)>, TopologyError> {
    let counters: PerCpuArray<MapData, u64> = pins::open_as(path, map)?;
    let mut values = Vec::with_capacity(names.len());
    for (slot, name) in names.iter().enumerate() {
        let per_cpu = counters
            .get(&(slot as u32), 0)
            .map_err(TopologyError::map("read", map, path))?;
        values.push((name.to_string(), per_cpu.iter().sum()));
    }
    Ok(values)
}
