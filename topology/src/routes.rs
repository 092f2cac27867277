//! `fastpath router route add|del|show`: a running router's routes (its LPM tries) and
//! their counters, read and changed in place while it forwards. Routes added here are the
//! router's until deleted: a later `topology apply` removes only routes its files wrote.

use std::net::IpAddr;

use aya::maps::{MapData, PerCpuArray, PerCpuValues, lpm_trie::Key};
use ipnet::IpNet;
use offload_common::router::{self, Route, RouteStats, route_flags};
use serde::Serialize;

use crate::{
    Kind, TopologyError,
    instance_maps::{port_name, port_number, running},
    pins,
    settings::{RouteTries, address_bytes, instance_map},
};

/// One route of a router, with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct RouteRow {
    /// The destination prefix.
    pub prefix: String,
    /// The port packets leave on.
    pub port: String,
    /// The next hop; `None` for a connected route (the destination is on the port's link).
    pub via: Option<String>,
    /// The route's id (its counters' slot).
    pub id: u32,
    /// Packets it forwarded (resolved or not).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Every route of router `instance` of `topology`, IPv4 first, each family by prefix.
pub fn route_show(topology: &str, instance: &str) -> Result<Vec<RouteRow>, TopologyError> {
    let record = running(topology, instance, Kind::Router)?;
    let tries = RouteTries::open(topology, instance)?;
    let stats = open_stats(topology, instance)?;
    let mut rows: Vec<(IpNet, RouteRow)> = Vec::new();
    let v4_path = instance_map(topology, instance, router::maps::ROUTES_V4);
    for entry in tries.v4.iter() {
        let (key, route) = entry.map_err(TopologyError::map(
            "read",
            router::maps::ROUTES_V4,
            &v4_path,
        ))?;
        let data = key.data();
        let prefix = IpNet::new(IpAddr::from(data), key.prefix_len() as u8)
            .expect("the trie's prefix fits its family");
        rows.push((prefix, row(&record, &stats, prefix, &route)));
    }
    let v6_path = instance_map(topology, instance, router::maps::ROUTES_V6);
    for entry in tries.v6.iter() {
        let (key, route) = entry.map_err(TopologyError::map(
            "read",
            router::maps::ROUTES_V6,
            &v6_path,
        ))?;
        let data = key.data();
        let prefix = IpNet::new(IpAddr::from(data), key.prefix_len() as u8)
            .expect("the trie's prefix fits its family");
        rows.push((prefix, row(&record, &stats, prefix, &route)));
    }
    rows.sort_by_key(|(prefix, _)| *prefix);
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// Adds a route to `prefix` out of `port`, via `via` (or connected); returns its id (the
/// lowest free: the tries are read through, about a second per million routes). A
/// prefix the router already routes is refused (delete it first), as is a prefix with
/// host bits set or a next hop of the other family.
pub fn route_add(
    topology: &str,
    instance: &str,
    prefix: IpNet,
    port: &str,
    via: Option<IpAddr>,
) -> Result<u32, TopologyError> {
    let record = running(topology, instance, Kind::Router)?;
    if prefix.trunc() != prefix {
        return Err(TopologyError::Request(format!(
            "{prefix} has host bits set: the network is {}",
            prefix.trunc()
        )));
    }
    if let Some(via) = via
        && via.is_ipv4() != prefix.addr().is_ipv4()
    {
        return Err(TopologyError::Request(format!(
            "next hop {via} is not of the family of {prefix}"
        )));
    }
    let port = port_number(&record, port)?;
    let mut tries = RouteTries::open(topology, instance)?;
    let used = tries.used_ids()?;
    let id = (0..router::ROUTE_IDS)
        .find(|id| !used.contains(id))
        .ok_or_else(|| TopologyError::Request(format!("{instance}: every route id is taken")))?;
    // The slot may hold a deleted route's counts.
    let mut stats = open_stats(topology, instance)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| {
        TopologyError::map(
            "size",
            router::maps::ROUTE_STATS,
            &stats_path(topology, instance),
        )(error)
    })?;
    let zeros = PerCpuValues::try_from(vec![RouteStats::default(); cpus]).expect("one per CPU");
    stats.set(id, zeros, 0).map_err(TopologyError::map(
        "write",
        router::maps::ROUTE_STATS,
        &stats_path(topology, instance),
    ))?;
    let route = Route {
        port,
        id,
        flags: if via.is_none() {
            route_flags::CONNECTED
        } else {
            0
        },
        _pad: 0,
        next_hop: via.map_or([0; 16], |via| address_bytes(via).1),
    };
    insert_new(&mut tries, topology, instance, &prefix, &route)?;
    tries.changed()?;
    Ok(id)
}

/// Deletes the route to exactly `prefix`.
pub fn route_del(topology: &str, instance: &str, prefix: IpNet) -> Result<(), TopologyError> {
    running(topology, instance, Kind::Router)?;
    let mut tries = RouteTries::open(topology, instance)?;
    remove_exact(&mut tries, topology, instance, &prefix)?;
    tries.changed()
}

/// Adds `route` to `prefix` unless the router has that exact prefix already
/// (`BPF_NOEXIST`: a trie's lookup is longest-prefix, its update with this flag is exact).
fn insert_new(
    tries: &mut RouteTries,
    topology: &str,
    instance: &str,
    prefix: &IpNet,
    route: &Route,
) -> Result<(), TopologyError> {
    let (result, map) = match prefix {
        IpNet::V4(net) => (
            tries.v4.insert(
                &Key::new(u32::from(net.prefix_len()), net.network().octets()),
                route,
                BPF_NOEXIST,
            ),
            router::maps::ROUTES_V4,
        ),
        IpNet::V6(net) => (
            tries.v6.insert(
                &Key::new(u32::from(net.prefix_len()), net.network().octets()),
                route,
                BPF_NOEXIST,
            ),
            router::maps::ROUTES_V6,
        ),
    };
    match result {
        Ok(()) => Ok(()),
        Err(aya::maps::MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::EEXIST) =>
        {
            Err(TopologyError::Request(format!(
                "router {instance} already routes {prefix}: `fastpath router route del` it first"
            )))
        }
        Err(error) => Err(TopologyError::map(
            "write",
            map,
            &instance_map(topology, instance, map),
        )(error)),
    }
}

/// Removes the route to exactly `prefix` (a trie's delete is exact).
fn remove_exact(
    tries: &mut RouteTries,
    topology: &str,
    instance: &str,
    prefix: &IpNet,
) -> Result<(), TopologyError> {
    let (result, map) = match prefix {
        IpNet::V4(net) => (
            tries.v4.remove(&Key::new(
                u32::from(net.prefix_len()),
                net.network().octets(),
            )),
            router::maps::ROUTES_V4,
        ),
        IpNet::V6(net) => (
            tries.v6.remove(&Key::new(
                u32::from(net.prefix_len()),
                net.network().octets(),
            )),
            router::maps::ROUTES_V6,
        ),
    };
    match result {
        Ok(()) => Ok(()),
        Err(aya::maps::MapError::KeyNotFound) => Err(no_route(instance, prefix)),
        Err(aya::maps::MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Err(no_route(instance, prefix))
        }
        Err(error) => Err(TopologyError::map(
            "delete from",
            map,
            &instance_map(topology, instance, map),
        )(error)),
    }
}

fn no_route(instance: &str, prefix: &IpNet) -> TopologyError {
    TopologyError::Request(format!("router {instance} has no route to {prefix}"))
}

/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;

fn row(
    record: &crate::record::RecordInstance,
    stats: &PerCpuArray<MapData, RouteStats>,
    prefix: IpNet,
    route: &Route,
) -> RouteRow {
    let (packets, bytes) = stats.get(&route.id, 0).map_or((0, 0), |values| {
        values.iter().fold((0, 0), |(packets, bytes), one| {
            (packets + one.packets, bytes + one.bytes)
        })
    });
    let via = (route.flags & route_flags::CONNECTED == 0).then(|| match prefix {
        IpNet::V4(_) => IpAddr::from([
            route.next_hop[0],
            route.next_hop[1],
            route.next_hop[2],
            route.next_hop[3],
        ])
        .to_string(),
        IpNet::V6(_) => IpAddr::from(route.next_hop).to_string(),
    });
    RouteRow {
        prefix: prefix.to_string(),
        port: port_name(record, route.port),
        via,
        id: route.id,
        packets,
        bytes,
    }
}

fn stats_path(topology: &str, instance: &str) -> std::path::PathBuf {
    instance_map(topology, instance, router::maps::ROUTE_STATS)
}

fn open_stats(
    topology: &str,
    instance: &str,
) -> Result<PerCpuArray<MapData, RouteStats>, TopologyError> {
    pins::open_as(&stats_path(topology, instance), router::maps::ROUTE_STATS)
}
