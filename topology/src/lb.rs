//! A topology's `lb` instances: the file's `vips`, checked; their Maglev tables and
//! backends written to the idle bank of the instance's maps and switched to
//! (`offload_common::lb`); the counters and each backend's connections for `show`.
//!
//! ```toml
//! [[instance]]
//! name = "lb"
//! kind = "lb"
//! ports = { clients = "br-a:up", servers = "r1:a" }   # exactly two
//! vips = [
//!   { address = "10.9.0.10", port = 80, backends = ["10.2.0.11:8000", "10.2.0.12:8000"] },
//!   { address = "fd09::10", port = 53, protocol = "udp",
//!     backends = [{ address = "fd02::11", port = 5353, weight = 2 }, "[fd02::12]:5353"] },
//! ]
//! ```

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    ops::Range,
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use nfv_apps::lb::maglev;
use offload_common::{
    lb::{
        self, Backend, FlowKey, MAX_BACKENDS, MAX_VIPS, TABLE_SLOTS, Target, Vip, VipKey,
        backend_index, maps, table_index,
    },
    proto,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use crate::{
    TopologyError, pins,
    plan::PlannedInstance,
    record::RecordInstance,
    settings::{Written, address_bytes, instance_map, write_other_ports},
};

/// An `lb` instance's services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbSettings {
    /// Its VIPs, in the file's order.
    pub vips: Vec<LbVip>,
}

/// One VIP and its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbVip {
    /// The address clients connect to.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// Its backends.
    pub backends: Vec<LbBackend>,
    /// The line it is written on.
    pub line: usize,
}

/// A backend of a VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbBackend {
    /// Where the VIP's connections are sent.
    pub address: SocketAddr,
    /// Its share of new connections, relative to the others' (0: none).
    pub weight: u32,
}

/// `{ address = "...", port = 80, protocol = "tcp", backends = [...] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVip {
    address: Spanned<String>,
    port: Spanned<i64>,
    protocol: Option<Spanned<String>>,
    backends: Spanned<Vec<Spanned<RawBackend>>>,
}

/// `"10.2.0.11:8000"`, or `{ address = "10.2.0.11", port = 8000, weight = 2 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBackend {
    Text(String),
    Table {
        address: String,
        port: Option<i64>,
        weight: Option<i64>,
    },
}

/// Reads an `lb` instance's `vips` (`name` is the instance's, `at` makes an error naming
/// the line of a span, `line` gives a span's line).
pub(crate) fn parse_vips(
    name: &str,
    raw: Vec<Spanned<RawVip>>,
    at: &impl Fn(Range<usize>, String) -> TopologyError,
    line: impl Fn(usize) -> usize,
) -> Result<LbSettings, TopologyError> {
    if raw.len() > MAX_VIPS as usize {
        return Err(at(
            raw[MAX_VIPS as usize].span(),
            format!("{name}: vips: an lb instance has at most {MAX_VIPS} VIPs"),
        ));
    }
    let mut vips: Vec<LbVip> = Vec::new();
    for entry in raw {
        let vip_line = line(entry.span().start);
        let span = entry.span();
        let raw = entry.into_inner();
        let address: IpAddr = raw.address.get_ref().parse().map_err(|_| {
            at(
                raw.address.span(),
                format!(
                    "{name}: vips: {:?} is not an address (e.g. 10.9.0.10 or fd09::10)",
                    raw.address.get_ref()
                ),
            )
        })?;
        let port = port_number(*raw.port.get_ref()).ok_or_else(|| {
            at(
                raw.port.span(),
                format!(
                    "{name}: vips: port {} is not 1 to 65535",
                    raw.port.get_ref()
                ),
            )
        })?;
        let protocol = match raw.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("tcp") => proto::TCP,
            Some("udp") => proto::UDP,
            Some(other) => {
                return Err(at(
                    raw.protocol.as_ref().expect("matched").span(),
                    format!("{name}: vips: protocol {other:?} is not tcp or udp"),
                ));
            }
        };
        let vip = format!(
            "{}/{}",
            SocketAddr::new(address, port),
            protocol_name(protocol)
        );
        if let Some(same) = vips
            .iter()
            .find(|known| (known.address, known.port, known.protocol) == (address, port, protocol))
        {
            return Err(at(
                span,
                format!("{name}: vips: {vip} is given twice (line {})", same.line),
            ));
        }
        let backends_span = raw.backends.span();
        let raw_backends = raw.backends.into_inner();
        if raw_backends.is_empty() || raw_backends.len() > MAX_BACKENDS as usize {
            return Err(at(
                backends_span,
                format!(
                    "{name}: vips: {vip} has {} backends; a VIP has 1 to {MAX_BACKENDS}",
                    raw_backends.len()
                ),
            ));
        }
        let mut backends: Vec<LbBackend> = Vec::new();
        for backend in raw_backends {
            let backend_span = backend.span();
            let backend = read_backend(backend.into_inner(), port).map_err(|reason| {
                at(
                    backend_span.clone(),
                    format!("{name}: vips: {vip}: {reason}"),
                )
            })?;
            if backend.address.is_ipv4() != address.is_ipv4() {
                return Err(at(
                    backend_span,
                    format!(
                        "{name}: vips: {vip}: the backend {} is not of the VIP's family (addresses are translated, not the IP version)",
                        backend.address
                    ),
                ));
            }
            if backends
                .iter()
                .any(|known| known.address == backend.address)
            {
                return Err(at(
                    backend_span,
                    format!(
                        "{name}: vips: {vip}: the backend {} is given twice",
                        backend.address
                    ),
                ));
            }
            backends.push(backend);
        }
        vips.push(LbVip {
            address,
            port,
            protocol,
            backends,
            line: vip_line,
        });
    }
    Ok(LbSettings { vips })
}

fn port_number(value: i64) -> Option<u16> {
    u16::try_from(value).ok().filter(|port| *port != 0)
}

fn protocol_name(protocol: u8) -> &'static str {
    if protocol == proto::UDP { "udp" } else { "tcp" }
}

fn read_backend(raw: RawBackend, vip_port: u16) -> Result<LbBackend, String> {
    match raw {
        RawBackend::Text(text) => {
            let address = text
                .parse::<SocketAddr>()
                .or_else(|_| {
                    text.parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, vip_port))
                })
                .map_err(|_| {
                    format!("{text:?} is not a backend (ADDRESS:PORT, [IPV6]:PORT or ADDRESS)")
                })?;
            Ok(LbBackend { address, weight: 1 })
        }
        RawBackend::Table {
            address,
            port,
            weight,
        } => {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| format!("backend address {address:?} is not an address"))?;
            let port = match port {
                None => vip_port,
                Some(port) => port_number(port)
                    .ok_or_else(|| format!("backend {address}: port {port} is not 1 to 65535"))?,
            };
            let weight = u32::try_from(weight.unwrap_or(1))
                .map_err(|_| format!("backend {address}: weight is 0 or more"))?;
            Ok(LbBackend {
                address: SocketAddr::new(ip, port),
                weight,
            })
        }
    }
}

/// The address as the kernel's keys hold it: IPv4 in the first 4 bytes.
fn key_address(address: IpAddr) -> [u8; 16] {
    address_bytes(address).1
}

fn ip_of(bytes: [u8; 16], v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(bytes)
    }
}

/// The digest the record keeps: a file whose services are the running ones writes nothing.
fn digest(settings: &LbSettings) -> String {
    let mut hasher = Sha256::new();
    for vip in &settings.vips {
        hasher.update(format!("{} {} {}:", vip.address, vip.port, vip.protocol));
        for backend in &vip.backends {
            hasher.update(format!(" {}*{}", backend.address, backend.weight));
        }
        hasher.update("\n");
    }
    crate::program::hex(&hasher.finalize())
}

/// Writes an `lb` instance's settings: each port's other port, then its VIPs into the idle
/// bank, switched to with one update (left alone, with its connections' places, when they
/// are the ones `before` ran). Connections keep their backends either way.
pub fn write_lb(
    topology: &str,
    planned: &PlannedInstance,
    settings: &LbSettings,
    before: Option<&RecordInstance>,
) -> Result<Written, TopologyError> {
    let open_array =
        |map: &'static str| -> Result<(Array<MapData, u32>, std::path::PathBuf), TopologyError> {
            let path = instance_map(topology, &planned.name, map);
            Ok((pins::open_as(&path, map)?, path))
        };
    write_other_ports(topology, planned, maps::OTHER_PORT)?;
    let written = Written {
        rules_digest: Some(digest(settings)),
        ..Written::default()
    };
    if before.and_then(|record| record.rules_digest.as_ref()) == written.rules_digest.as_ref() {
        return Ok(written);
    }

    let (mut state, state_path) = open_array(maps::STATE)?;
    let running = state
        .get(&0, 0)
        .map_err(TopologyError::map("read", maps::STATE, &state_path))?;
    let idle = (running + 1) % lb::BANKS;

    let vips_path = instance_map(topology, &planned.name, maps::VIPS);
    let mut vips: BpfHashMap<MapData, VipKey, Vip> = pins::open_as(&vips_path, maps::VIPS)?;
    let stale: Vec<VipKey> = vips
        .keys()
        .filter_map(Result::ok)
        .filter(|key| u32::from(key.bank) == idle)
        .collect();
    for key in stale {
        vips.remove(&key)
            .map_err(TopologyError::map("write", maps::VIPS, &vips_path))?;
    }
    let (mut tables, tables_path) = open_array(maps::TABLES)?;
    let backends_path = instance_map(topology, &planned.name, maps::BACKENDS);
    let mut backends: Array<MapData, Backend> = pins::open_as(&backends_path, maps::BACKENDS)?;
    for (index, vip) in settings.vips.iter().enumerate() {
        let index = index as u32;
        let weighted = vip.backends.iter().map(|backend| {
            let address = backend.address;
            (address.ip(), address.port(), backend.weight)
        });
        let table = maglev::backend_table(weighted, TABLE_SLOTS as usize);
        let first_slot = table_index(idle, index);
        for (slot, backend) in table.slots().iter().enumerate() {
            tables
                .set(first_slot + slot as u32, backend, 0)
                .map_err(TopologyError::map("write", maps::TABLES, &tables_path))?;
        }
        let first_backend = backend_index(idle, index);
        for (number, backend) in vip.backends.iter().enumerate() {
            let entry = Backend {
                addr: key_address(backend.address.ip()),
                port: backend.address.port(),
                family: if backend.address.is_ipv4() {
                    lb::family::IPV4
                } else {
                    lb::family::IPV6
                },
                _pad: 0,
            };
            backends
                .set(first_backend + number as u32, entry, 0)
                .map_err(TopologyError::map("write", maps::BACKENDS, &backends_path))?;
        }
        let key = VipKey {
            addr: key_address(vip.address),
            port: vip.port,
            protocol: vip.protocol,
            bank: idle as u8,
        };
        let value = Vip {
            index,
            backends: vip.backends.len() as u32,
        };
        vips.insert(key, value, 0)
            .map_err(TopologyError::map("write", maps::VIPS, &vips_path))?;
    }
    state
        .set(0, idle, 0)
        .map_err(TopologyError::map("write", maps::STATE, &state_path))?;
    Ok(written)
}

/// An `lb` instance's counters, then its connections by backend ("connections to
/// 10.2.0.11:8000"), from its connection table.
pub fn lb_counters(topology: &str, instance: &str) -> Result<Vec<(String, u64)>, TopologyError> {
    let dir = pins::instance_dir(topology, instance);
    let mut values = crate::show::read_counters(
        &dir.join(maps::COUNTERS),
        maps::COUNTERS,
        &lb::counter::NAMES,
    )?;
    let flows_path = dir.join(maps::FLOWS);
    let flows: BpfHashMap<MapData, FlowKey, Target> = pins::open_as(&flows_path, maps::FLOWS)?;
    let mut by_backend: BTreeMap<String, u64> = BTreeMap::new();
    for (_, target) in flows.iter().filter_map(Result::ok) {
        let v4 = target.family == lb::family::IPV4;
        let backend = SocketAddr::new(ip_of(target.addr, v4), target.port);
        *by_backend
            .entry(format!("connections to {backend}"))
            .or_default() += 1;
    }
    values.extend(by_backend);
    Ok(values)
}
