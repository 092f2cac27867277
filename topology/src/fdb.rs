//! `fastpath bridge fdb show|add|del`: a running bridge's forwarding table
//! (`offload_common::bridge::maps::FDB`), read and changed in place while it forwards.

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use offload_common::bridge::{
    self, BridgeSettings, DEFAULT_AGING_NS, FdbEntry, FdbKey, VlanPort, fdb_flags,
};
use serde::Serialize;

use crate::{
    Kind, TopologyError,
    instance_maps::{port_name, port_number, running},
    pins,
    settings::instance_map,
};

/// One station of a bridge's table.
#[derive(Clone, Debug, Serialize)]
pub struct FdbRow {
    /// The VLAN (0: untagged).
    pub vlan: u16,
    /// The station's MAC address.
    pub mac: String,
    /// The port it was learned on (or set to).
    pub port: String,
    /// A static entry (never ages, never moves).
    pub is_static: bool,
    /// Seconds since it was last seen sending (dynamic entries).
    pub age_seconds: Option<f64>,
    /// Older than the aging time: the bridge forgets it the next time a frame is for it.
    pub expired: bool,
}

/// The table of bridge `instance` of `topology`, sorted by VLAN and MAC.
pub fn fdb_show(topology: &str, instance: &str) -> Result<Vec<FdbRow>, TopologyError> {
    let bridge = running(topology, instance, Kind::Bridge)?;
    let fdb = open_fdb(topology, instance)?;
    let aging = aging_ns(topology, instance)?;
    let now = monotonic_coarse_ns();
    let mut rows = Vec::new();
    for entry in fdb.iter() {
        let (key, entry) = entry.map_err(TopologyError::map(
            "read",
            bridge::maps::FDB,
            &instance_map(topology, instance, bridge::maps::FDB),
        ))?;
        let is_static = entry.flags & fdb_flags::STATIC != 0;
        let age = now.saturating_sub(entry.last_seen_ns);
        rows.push(FdbRow {
            vlan: key.vlan,
            mac: mac_text(key.mac),
            port: port_name(&bridge, entry.port),
            is_static,
            age_seconds: (!is_static).then_some(age as f64 / 1e9),
            expired: !is_static && age > aging,
        });
    }
    rows.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
    Ok(rows)
}

/// Adds (or replaces) a static entry: `mac` on `vlan` is behind `port`.
pub fn fdb_add(
    topology: &str,
    instance: &str,
    mac: [u8; 6],
    vlan: u16,
    port: &str,
) -> Result<(), TopologyError> {
    let bridge = running(topology, instance, Kind::Bridge)?;
    check_station(mac, vlan)?;
    let number = port_number(&bridge, port)?;
    if !carries(topology, instance, number, vlan)? {
        return Err(TopologyError::Request(format!(
            "bridge {instance}: port {port} does not carry VLAN {vlan} (a station there would never be reached)"
        )));
    }
    let port = number;
    let mut fdb = open_fdb(topology, instance)?;
    let entry = FdbEntry {
        port,
        flags: fdb_flags::STATIC,
        last_seen_ns: 0,
    };
    fdb.insert(FdbKey { vlan, mac }, entry, 0)
        .map_err(TopologyError::map(
            "write",
            bridge::maps::FDB,
            &instance_map(topology, instance, bridge::maps::FDB),
        ))
}

/// Removes the entry of `mac` on `vlan`, static or learned.
pub fn fdb_del(
    topology: &str,
    instance: &str,
    mac: [u8; 6],
    vlan: u16,
) -> Result<(), TopologyError> {
    running(topology, instance, Kind::Bridge)?;
    let mut fdb = open_fdb(topology, instance)?;
    let key = FdbKey { vlan, mac };
    if fdb.get(&key, 0).is_err() {
        return Err(TopologyError::Request(format!(
            "bridge {instance} has no entry for {} on VLAN {vlan}",
            mac_text(mac)
        )));
    }
    fdb.remove(&key).map_err(TopologyError::map(
        "delete from",
        bridge::maps::FDB,
        &instance_map(topology, instance, bridge::maps::FDB),
    ))
}

fn check_station(mac: [u8; 6], vlan: u16) -> Result<(), TopologyError> {
    if mac[0] & 1 != 0 {
        return Err(TopologyError::Request(format!(
            "{} is a multicast address: a station's address is unicast",
            mac_text(mac)
        )));
    }
    if vlan > 4094 {
        return Err(TopologyError::Request(format!(
            "VLAN {vlan}: 0 (untagged) or 1 to 4094"
        )));
    }
    Ok(())
}

/// Whether `port` of the bridge carries `vlan`: any VLAN on a bridge without VLANs, else
/// what the loader wrote in its VLAN table.
fn carries(topology: &str, instance: &str, port: u32, vlan: u16) -> Result<bool, TopologyError> {
    let path = instance_map(topology, instance, bridge::maps::SETTINGS);
    let settings: Array<MapData, BridgeSettings> = pins::open_as(&path, bridge::maps::SETTINGS)?;
    let aware = settings
        .get(&0, 0)
        .map_err(TopologyError::map("read", bridge::maps::SETTINGS, &path))?
        .vlan_aware
        != 0;
    if !aware {
        return Ok(true);
    }
    let path = instance_map(topology, instance, bridge::maps::MEMBERS);
    let members: BpfHashMap<MapData, VlanPort, u32> = pins::open_as(&path, bridge::maps::MEMBERS)?;
    let key = VlanPort {
        port,
        vlan: u32::from(vlan),
    };
    Ok(members.get(&key, 0).is_ok())
}

fn open_fdb(
    topology: &str,
    instance: &str,
) -> Result<BpfHashMap<MapData, FdbKey, FdbEntry>, TopologyError> {
    let path = instance_map(topology, instance, bridge::maps::FDB);
    pins::open_as(&path, bridge::maps::FDB)
}

fn aging_ns(topology: &str, instance: &str) -> Result<u64, TopologyError> {
    let path = instance_map(topology, instance, bridge::maps::SETTINGS);
    let settings: Array<MapData, BridgeSettings> = pins::open_as(&path, bridge::maps::SETTINGS)?;
    let aging = settings
        .get(&0, 0)
        .map_err(TopologyError::map("read", bridge::maps::SETTINGS, &path))?
        .aging_ns;
    Ok(if aging == 0 { DEFAULT_AGING_NS } else { aging })
}

/// The bridge's clock: `bpf_ktime_get_coarse_ns` is `CLOCK_MONOTONIC_COARSE`.
fn monotonic_coarse_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn mac_text(mac: [u8; 6]) -> String {
    let bytes: Vec<String> = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    bytes.join(":")
}
