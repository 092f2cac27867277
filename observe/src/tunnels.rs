//! The built-in `vxlan-trace` module seen from user space: load it into a chain, set its
//! ports and granularity, and read what it counted as tunnels (a pair of VTEPs and a VNI)
//! with the inner pairs under each.
//!
//! The module's maps (`offload_common::vxlan_trace`) hold one normalised entry per pair,
//! per CPU, plus each CPU's last pair with the counts not moved into the table yet: a
//! snapshot sums the CPUs, adds the pending counts and keeps both directions apart.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use offload::modules::{
    self, ChainAt, Hook, Loaded, ModuleError, Position,
    builtin::{self, VXLAN_TRACE_MODULE},
};
use offload_common::vxlan_trace::{
    LastPair, MAX_TUNNEL_PORTS, PairKey, PairStats, TraceSettings, counter, granularity, kind, maps,
};
use serde::Serialize;

use crate::ObserveError;

/// Loads `vxlan-trace` first in the chain `at` unless it runs there already (the chain's
/// entry is attached when the interface has no chain). First, so that it sees every
/// packet, those a later module drops or redirects included; it changes none. XDP chains
/// get the module of their frags flavour; a new XDP chain the multi-buffer one, which
/// runs at any MTU. Returns what was loaded, `None` when it was there.
pub fn ensure_loaded(at: ChainAt<'_>) -> Result<Option<Loaded>, ObserveError> {
    let frags = match modules::list(at) {
        Ok(listing) => {
            if listing
                .modules
                .iter()
                .any(|module| module.name == VXLAN_TRACE_MODULE)
            {
                return Ok(None);
            }
            listing.frags
        }
        Err(ModuleError::NoChain { .. }) => at.hook == Hook::Xdp,
        Err(error) => return Err(error.into()),
    };
    let object = builtin::vxlan_trace_module(at.hook, frags)?;
    Ok(Some(builtin::load_builtin(at, object, &Position::First)?))
}

/// The tracer's settings in the form the command line takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// UDP destination ports carrying VXLAN (at most 4).
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports carrying Geneve (at most 4).
    pub geneve_ports: Vec<u16>,
    /// How pairs are told apart.
    pub granularity: Granularity,
}

impl Default for Settings {
    fn default() -> Settings {
        let defaults = TraceSettings::DEFAULT;
        Settings {
            vxlan_ports: nonzero(&defaults.vxlan_ports),
            geneve_ports: nonzero(&defaults.geneve_ports),
            granularity: Granularity::Addresses,
        }
    }
}

/// How finely the tracer tells pairs apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One entry per tunnel (VTEP pair and VNI).
    Tunnel,
    /// Outer addresses, VNI, inner addresses and protocol (the default).
    #[default]
    Addresses,
    /// As `Addresses`, plus the inner ports.
    FiveTuple,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(text: &str) -> Result<Granularity, String> {
        match text {
            "tunnel" => Ok(Granularity::Tunnel),
            "addresses" => Ok(Granularity::Addresses),
            "five-tuple" => Ok(Granularity::FiveTuple),
            _ => Err(format!(
                "unknown granularity {text:?}: expected tunnel, addresses or five-tuple"
            )),
        }
    }
}

fn nonzero(ports: &[u16]) -> Vec<u16> {
    ports.iter().copied().filter(|port| *port != 0).collect()
}

fn port_slots(kind: &str, ports: &[u16]) -> Result<[u16; MAX_TUNNEL_PORTS], ObserveError> {
    if ports.len() > MAX_TUNNEL_PORTS || ports.contains(&0) {
        return Err(ObserveError::BadSetting(format!(
            "{kind} ports: at most {MAX_TUNNEL_PORTS} ports, none of them 0 (got {ports:?})"
        )));
    }
    let mut slots = [0; MAX_TUNNEL_PORTS];
    slots[..ports.len()].copy_from_slice(ports);
    Ok(slots)
}

/// Writes `settings` to the running tracer of the chain `at`; the next packet uses them.
pub fn configure(at: ChainAt<'_>, settings: &Settings) -> Result<(), ObserveError> {
    let value = TraceSettings {
        configured: 1,
        granularity: match settings.granularity {
            Granularity::Tunnel => granularity::TUNNEL,
            Granularity::Addresses => granularity::ADDRESSES,
            Granularity::FiveTuple => granularity::FIVE_TUPLE,
        },
        _pad: [0; 2],
        vxlan_ports: port_slots("VXLAN", &settings.vxlan_ports)?,
        geneve_ports: port_slots("Geneve", &settings.geneve_ports)?,
    };
    let (map, pin) = open(at, maps::SETTINGS)?;
    let mut array: Array<MapData, TraceSettings> =
        Array::try_from(map).map_err(|source| ObserveError::Map {
            what: "open",
            map: maps::SETTINGS,
            pin: pin.clone(),
            source: Box::new(source),
        })?;
    array.set(0, value, 0).map_err(|source| ObserveError::Map {
        what: "write",
        map: maps::SETTINGS,
        pin,
        source: Box::new(source),
    })
}

/// One direction's packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Packets.
    pub packets: u64,
    /// Bytes of whole outer frames.
    pub bytes: u64,
}

impl Flow {
    fn add(&mut self, other: Flow) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// One inner pair of a tunnel, both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InnerPair {
    /// Inner address of side a (the tunnel's `outer_a` side); none for non-IP frames.
    pub inner_a: Option<IpAddr>,
    /// Inner address of side b.
    pub inner_b: Option<IpAddr>,
    /// Inner IP protocol (0 for non-IP frames or the tunnel granularity).
    pub protocol: u8,
    /// Inner ports of sides a and b (0 unless the granularity is the 5-tuple).
    pub port_a: u16,
    /// Inner port of side b.
    pub port_b: u16,
    /// a -> b.
    pub a_to_b: Flow,
    /// b -> a.
    pub b_to_a: Flow,
}

/// A tunnel: a pair of VTEPs and a VNI, with its inner pairs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tunnel {
    /// "vxlan" or "geneve".
    pub kind: &'static str,
    /// The VNI.
    pub vni: u32,
    /// The lower VTEP address.
    pub outer_a: IpAddr,
    /// The higher one.
    pub outer_b: IpAddr,
    /// a -> b, all inner pairs.
    pub a_to_b: Flow,
    /// b -> a.
    pub b_to_a: Flow,
    /// Bytes per second (both directions) since the previous snapshot, when there was one.
    pub bytes_per_second: Option<f64>,
    /// Its inner pairs, busiest first.
    pub pairs: Vec<InnerPair>,
}

impl Tunnel {
    /// Packets and bytes of both directions.
    pub fn total(&self) -> Flow {
        let mut total = self.a_to_b;
        total.add(self.b_to_a);
        total
    }

    fn id(&self) -> (&'static str, u32, IpAddr, IpAddr) {
        (self.kind, self.vni, self.outer_a, self.outer_b)
    }
}

/// What the tracer of one chain counted.
#[derive(Clone, Debug, Serialize)]
pub struct TraceSnapshot {
    /// The interface.
    pub iface: String,
    /// The hook.
    pub hook: Hook,
    /// Tunnel packets attributed to a pair.
    pub tunnel_packets: u64,
    /// Packets to a tunnel port with malformed tunnel or inner headers (not attributed).
    pub malformed_packets: u64,
    /// Packets that are not tunnel packets.
    pub other_packets: u64,
    /// Pairs known now: in the table or pending on a CPU.
    pub pairs: u64,
    /// Pairs the table evicted (least recently used first) to make room.
    pub evictions: u64,
    /// The tunnels, busiest first.
    pub tunnels: Vec<Tunnel>,
}

impl TraceSnapshot {
    /// Fills each tunnel's rate from `previous`, taken `seconds` before, and sorts the
    /// tunnels by rate.
    pub fn rate_since(&mut self, previous: &TraceSnapshot, seconds: f64) {
        let before: BTreeMap<_, u64> = previous
            .tunnels
            .iter()
            .map(|tunnel| (tunnel.id(), tunnel.total().bytes))
            .collect();
        for tunnel in &mut self.tunnels {
            let was = before.get(&tunnel.id()).copied().unwrap_or(0);
            tunnel.bytes_per_second =
                Some(tunnel.total().bytes.saturating_sub(was) as f64 / seconds.max(1e-9));
        }
        self.tunnels.sort_by(|a, b| {
            b.bytes_per_second
                .partial_cmp(&a.bytes_per_second)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.total().bytes.cmp(&a.total().bytes))
        });
    }
}

fn open(at: ChainAt<'_>, name: &'static str) -> Result<(Map, String), ObserveError> {
    let pin = match builtin::running_map_pin(at, VXLAN_TRACE_MODULE, name) {
        Ok(pin) => pin,
        Err(ModuleError::UnknownModule { .. } | ModuleError::NoChain { .. }) => {
            return Err(ObserveError::NotLoaded(at.to_string()));
        }
        Err(error) => return Err(error.into()),
    };
    let shown = pin.display().to_string();
    let failed = |what, source| ObserveError::Map {
        what,
        map: name,
        pin: shown.clone(),
        source: Box::new(source),
    };
    let data = MapData::from_pin(&pin).map_err(|source| failed("open", source))?;
    let map = Map::from_map_data(data).map_err(|source| failed("open", source))?;
    Ok((map, shown))
}

/// Reads the tracer of the chain `at`.
pub fn snapshot(at: ChainAt<'_>) -> Result<TraceSnapshot, ObserveError> {
    let (map, pin) = open(at, maps::COUNTERS)?;
    let failed = |what, map, pin: &String| {
        let pin = pin.clone();
        move |source: MapError| ObserveError::Map {
            what,
            map,
            pin,
            source: Box::new(source),
        }
    };
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(map).map_err(failed("open", maps::COUNTERS, &pin))?;
    let mut sums = [0u64; counter::COUNT as usize];
    for (slot, sum) in sums.iter_mut().enumerate() {
        let values =
            counters
                .get(&(slot as u32), 0)
                .map_err(failed("read", maps::COUNTERS, &pin))?;
        *sum = values.iter().sum();
    }
    let (map, pin) = open(at, maps::PAIRS)?;
    let pairs: PerCpuHashMap<MapData, PairKey, PairStats> =
        PerCpuHashMap::try_from(map).map_err(failed("open", maps::PAIRS, &pin))?;
    let mut entries = 0u64;
    let mut counts: BTreeMap<PairKey, PairStats> = BTreeMap::new();
    for item in pairs.iter() {
        let (key, values) = match item {
            Ok(item) => item,
            // Evicted between the key walk and the look-up.
            Err(MapError::KeyNotFound) => continue,
            Err(source) => return Err(failed("read", maps::PAIRS, &pin)(source)),
        };
        entries += 1;
        let sum = counts.entry(key).or_default();
        for value in values.iter() {
            merge(sum, value);
        }
    }
    // Each CPU's last pair: counts the table does not hold yet (a pair may be nowhere else).
    let (map, pin) = open(at, maps::LAST)?;
    let last: PerCpuArray<MapData, LastPair> =
        PerCpuArray::try_from(map).map_err(failed("open", maps::LAST, &pin))?;
    for value in last
        .get(&0, 0)
        .map_err(failed("read", maps::LAST, &pin))?
        .iter()
    {
        // No tunnel kind: the CPU has seen no tunnel packet yet.
        if value.key.kind != 0 {
            merge(counts.entry(value.key).or_default(), &value.pending);
        }
    }
    let known = counts.len() as u64;
    let mut tunnels: BTreeMap<(u8, u32, [u8; 16], [u8; 16]), Tunnel> = BTreeMap::new();
    for (key, stats) in counts {
        let a_to_b = Flow {
            packets: stats.packets[0],
            bytes: stats.bytes[0],
        };
        let b_to_a = Flow {
            packets: stats.packets[1],
            bytes: stats.bytes[1],
        };
        let tunnel = tunnels
            .entry((key.kind, key.vni, key.outer_a, key.outer_b))
            .or_insert_with(|| Tunnel {
                kind: if key.kind == kind::GENEVE {
                    "geneve"
                } else {
                    "vxlan"
                },
                vni: key.vni,
                outer_a: address(key.outer_version, &key.outer_a),
                outer_b: address(key.outer_version, &key.outer_b),
                a_to_b: Flow::default(),
                b_to_a: Flow::default(),
                bytes_per_second: None,
                pairs: Vec::new(),
            });
        tunnel.a_to_b.add(a_to_b);
        tunnel.b_to_a.add(b_to_a);
        let inner =
            |bytes: &[u8; 16]| (key.inner_version != 0).then(|| address(key.inner_version, bytes));
        tunnel.pairs.push(InnerPair {
            inner_a: inner(&key.inner_a),
            inner_b: inner(&key.inner_b),
            protocol: key.inner_protocol,
            port_a: key.inner_port_a,
            port_b: key.inner_port_b,
            a_to_b,
            b_to_a,
        });
    }
    let mut tunnels: Vec<Tunnel> = tunnels.into_values().collect();
    for tunnel in &mut tunnels {
        tunnel
            .pairs
            .sort_by_key(|pair| std::cmp::Reverse(pair.a_to_b.bytes + pair.b_to_a.bytes));
    }
    tunnels.sort_by_key(|tunnel| std::cmp::Reverse(tunnel.total().bytes));
    let inserted = sums[counter::INSERTED as usize];
    Ok(TraceSnapshot {
        iface: at.iface.to_string(),
        hook: at.hook,
        tunnel_packets: sums[counter::TUNNEL as usize],
        malformed_packets: sums[counter::MALFORMED as usize],
        other_packets: sums[counter::OTHER as usize],
        pairs: known,
        // Entries leave the table only by eviction (nothing deletes them); a pair only
        // pending is not inserted yet.
        evictions: inserted.saturating_sub(entries),
        tunnels,
    })
}

fn merge(sum: &mut PairStats, value: &PairStats) {
    for direction in 0..2 {
        sum.packets[direction] += value.packets[direction];
        sum.bytes[direction] += value.bytes[direction];
    }
}

/// An address of the key: IPv4 in the first 4 bytes.
fn address(version: u8, bytes: &[u8; 16]) -> IpAddr {
    if version == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked_before_the_kernel_sees_them() {
        assert_eq!(port_slots("VXLAN", &[4789]).unwrap(), [4789, 0, 0, 0]);
        assert!(port_slots("VXLAN", &[1, 2, 3, 4, 5]).is_err());
        let error = port_slots("Geneve", &[0]).unwrap_err().to_string();
        assert!(error.contains("Geneve ports"), "{error}");
    }

    #[test]
    fn addresses_of_both_versions() {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(address(4, &bytes), "10.0.0.1".parse::<IpAddr>().unwrap());
        bytes = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(address(6, &bytes), "fd00::1".parse::<IpAddr>().unwrap());
    }
}
