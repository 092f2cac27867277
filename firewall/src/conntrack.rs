//! The node's connection-tracking table from user space: its entries, its fill against its
//! limit and its counters (`fastpath conntrack list|flush`, `firewall status`).

use std::net::IpAddr;

use aya::maps::{Array, HashMap as BpfHashMap, PerCpuArray};
use offload_common::{
    FAMILY_V4,
    firewall::{
        CT_DEFAULT_LIMIT, CT_MAX_ENTRIES, CtEntry, CtKey, CtSettings, FILL_INSERTED, FILL_REMOVED,
        ct_counter, ct_flag, maps, tcp_state,
    },
    proto,
};
use serde::Serialize;

use crate::{
    FirewallError,
    tables::{node_dir, open_map},
};

/// The table's size, fill and counters.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TableStatus {
    /// Entries the LRU hash has room for.
    pub capacity: u32,
    /// Entries allowed before new flows are refused.
    pub limit: u32,
    /// Entries held (expired ones are removed first).
    pub entries: u64,
    /// Whether the table is at its limit: new flows are dropped (fail closed).
    pub full: bool,
    /// New flows refused because the table was full (their packets dropped).
    pub refused_full: u64,
    /// Entries ever created.
    pub created: u64,
    /// Packets whose state was invalid.
    pub invalid: u64,
    /// Later fragments dropped because their datagram's first fragment had not been seen
    /// (its ports and verdict unknown).
    pub orphan_fragments: u64,
}

/// One tracked flow, from its originator's side.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Connection {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the protocol number.
    pub proto: String,
    /// The side that opened the flow.
    pub src: IpAddr,
    /// Its port (the echo identifier for ICMP).
    pub src_port: u16,
    /// The answering side.
    pub dst: IpAddr,
    /// Its port.
    pub dst_port: u16,
    /// The TCP state (`syn-sent`, `established`...), `-` for other protocols.
    pub state: String,
    /// Whether the answering side has sent a packet.
    pub replied: bool,
    /// Packets seen, both directions.
    pub packets: u64,
    /// Seconds until it expires.
    pub expires_in_s: u64,
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC is the clock of
    // bpf_ktime_get_ns, which the kernel side stamps expiries with.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

type Table = BpfHashMap<aya::maps::MapData, CtKey, CtEntry>;

fn table() -> Result<Table, FirewallError> {
    let path = node_dir().join(maps::CONNTRACK);
    if !path.exists() {
        return Err(FirewallError::Pin {
            action: "open the node's conntrack table at",
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no firewall runs on this node (`fastpath firewall apply` makes the table)",
            ),
        });
    }
    BpfHashMap::try_from(open_map(&path, maps::CONNTRACK)?).map_err(FirewallError::map(
        "open",
        maps::CONNTRACK,
        &path,
    ))
}

/// Adds `count` to the removals the kernel subtracts from its inserts.
fn add_removed(count: u64) -> Result<(), FirewallError> {
    if count == 0 {
        return Ok(());
    }
    let path = node_dir().join(maps::CT_FILL);
    let mut fill: Array<_, u64> = Array::try_from(open_map(&path, maps::CT_FILL)?)
        .map_err(FirewallError::map("open", maps::CT_FILL, &path))?;
    let removed =
        fill.get(&FILL_REMOVED, 0)
            .map_err(FirewallError::map("read", maps::CT_FILL, &path))?;
    fill.set(FILL_REMOVED, removed + count, 0)
        .map_err(FirewallError::map("write", maps::CT_FILL, &path))
}

/// Removes the entries `doomed` picks; returns how many went.
fn remove_where(doomed: impl Fn(&CtEntry, u64) -> bool) -> Result<u64, FirewallError> {
    let mut table = table()?;
    let now = monotonic_ns();
    let keys: Vec<CtKey> = table
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, entry)| doomed(entry, now))
        .map(|(key, _)| key)
        .collect();
    let mut removed = 0;
    for key in keys {
        // Gone meanwhile (the LRU or another command): not ours to count.
        if table.remove(&key).is_ok() {
            removed += 1;
        }
    }
    add_removed(removed)?;
    Ok(removed)
}

/// Removes expired entries (the kernel only overwrites them when their flow comes back).
pub fn sweep() -> Result<u64, FirewallError> {
    remove_where(|entry, now| entry.expires_ns < now)
}

/// Removes every entry; returns how many went. Flows still running start over as new.
pub fn flush() -> Result<u64, FirewallError> {
    remove_where(|_, _| true)
}

/// The live entries, oldest-expiring first; expired ones are removed first.
pub fn list() -> Result<Vec<Connection>, FirewallError> {
    sweep()?;
    let table = table()?;
    let now = monotonic_ns();
    let mut connections: Vec<Connection> = table
        .iter()
        .filter_map(Result::ok)
        .map(|(key, entry)| connection(&key, &entry, now))
        .collect();
    connections.sort_by_key(|connection| connection.expires_in_s);
    Ok(connections)
}

fn address(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(bytes)
    }
}

fn connection(key: &CtKey, entry: &CtEntry, now: u64) -> Connection {
    let low = (address(key.family, key.addr_low), key.port_low);
    let high = (address(key.family, key.addr_high), key.port_high);
    let (original, reply) = if entry.original_is_low != 0 {
        (low, high)
    } else {
        (high, low)
    };
    Connection {
        proto: match key.proto {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => "icmp".to_string(),
            proto::ICMPV6 => "icmpv6".to_string(),
            other => other.to_string(),
        },
        src: original.0,
        src_port: original.1,
        dst: reply.0,
        dst_port: reply.1,
        state: if key.proto == proto::TCP {
            tcp_state::NAMES
                .get(usize::from(entry.state))
                .copied()
                .unwrap_or("unknown")
                .to_string()
        } else {
            "-".to_string()
        },
        replied: entry.flags & ct_flag::SEEN_REPLY != 0,
        packets: entry.packets,
        expires_in_s: entry.expires_ns.saturating_sub(now) / 1_000_000_000,
    }
}

/// The table's size, fill and counters; removes expired entries first.
pub fn table_status() -> Result<TableStatus, FirewallError> {
    sweep()?;
    let settings_path = node_dir().join(maps::CT_SETTINGS);
    let settings: Array<_, CtSettings> =
        Array::try_from(open_map(&settings_path, maps::CT_SETTINGS)?).map_err(
            FirewallError::map("open", maps::CT_SETTINGS, &settings_path),
        )?;
    let limit = settings
        .get(&0, 0)
        .map_err(FirewallError::map(
            "read",
            maps::CT_SETTINGS,
            &settings_path,
        ))?
        .limit;
    let limit = if limit == 0 { CT_DEFAULT_LIMIT } else { limit };
    let fill_path = node_dir().join(maps::CT_FILL);
    let fill: Array<_, u64> = Array::try_from(open_map(&fill_path, maps::CT_FILL)?)
        .map_err(FirewallError::map("open", maps::CT_FILL, &fill_path))?;
    let read_fill = |slot| {
        fill.get(&slot, 0)
            .map_err(FirewallError::map("read", maps::CT_FILL, &fill_path))
    };
    let entries = read_fill(FILL_INSERTED)?.saturating_sub(read_fill(FILL_REMOVED)?);
    let counters_path = node_dir().join(maps::CT_COUNTERS);
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(open_map(&counters_path, maps::CT_COUNTERS)?).map_err(
            FirewallError::map("open", maps::CT_COUNTERS, &counters_path),
        )?;
    let counter = |slot| -> Result<u64, FirewallError> {
        Ok(counters
            .get(&slot, 0)
            .map_err(FirewallError::map(
                "read",
                maps::CT_COUNTERS,
                &counters_path,
            ))?
            .iter()
            .sum())
    };
    Ok(TableStatus {
        capacity: CT_MAX_ENTRIES,
        limit,
        entries,
        full: entries >= u64::from(limit),
        refused_full: counter(ct_counter::TABLE_FULL)?,
        created: counter(ct_counter::CREATED)?,
        invalid: counter(ct_counter::INVALID)?,
        orphan_fragments: counter(ct_counter::ORPHAN_FRAGMENT)?,
    })
}
