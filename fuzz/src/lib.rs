//! What the fuzz targets share: a small load balancer built from a config the way the
//! appliance builds it, Internet checksums verified from scratch (the oracle for the
//! incremental rewrites), and the input format of targets that take several frames.

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use nfv_apps::lb::{
    balancer::LoadBalancer,
    config::Config,
    nat::{NatTable, NatTimeouts},
    packet::{Address, IPV4_LEN, IPV6_LEN, PROTO_TCP, PROTO_UDP, Parsed, address},
    registry::Registry,
    tables::Tables,
};

/// Every forwarding mode in both families, with small Maglev tables (251 is prime), small
/// SNAT ranges (four ports for UDP/IPv4, so exhaustion is reachable) and one backend whose
/// next hop stays unresolved.
pub const LB_CONFIG: &str = r#"
interface = "fuzz0"
queues = [0]

[[vip]]
address = "10.0.0.100"
port = 80
protocol = "tcp"
forwarding = "dsr-l2"
maglev_size = 251
  [[vip.backend]]
  address = "10.0.1.11"
  [[vip.backend]]
  address = "10.0.1.12"
  weight = 2
  [[vip.backend]]
  address = "10.0.1.13"

[[vip]]
address = "10.0.0.100"
port = 53
protocol = "udp"
forwarding = "nat"
snat_address = "10.0.0.2"
snat_ports = "20000-20003"
maglev_size = 251
  [[vip.backend]]
  address = "10.0.1.21"
  port = 5353

[[vip]]
address = "10.0.0.101"
port = 80
protocol = "tcp"
forwarding = "dsr-ipip"
encap_source = "10.0.0.2"
maglev_size = 251
  [[vip.backend]]
  address = "10.0.1.31"

[[vip]]
address = "fd00::100"
port = 80
protocol = "tcp"
forwarding = "nat"
snat_address = "fd00::2"
snat_ports = "30000-30063"
maglev_size = 251
  [[vip.backend]]
  address = "fd00:1::11"
  port = 8080

[[vip]]
address = "fd00::100"
port = 53
protocol = "udp"
forwarding = "dsr-ipip"
maglev_size = 251
  [[vip.backend]]
  address = "fd00:1::21"

[[vip]]
address = "fd00::101"
port = 80
protocol = "tcp"
forwarding = "dsr-l2"
maglev_size = 251
  [[vip.backend]]
  address = "fd00:1::31"
"#;

/// The load balancer's own MAC: every frame it sends carries it as the source.
pub const OWN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const MTU: u32 = 1500;
/// The backend left without a next hop ("neighbour unresolved").
pub const UNRESOLVED: &str = "10.0.1.13";

/// The registry of [`LB_CONFIG`], as the appliance makes it from a config.
pub fn registry() -> Registry {
    let config = Config::parse(LB_CONFIG, "fuzz.toml").expect("the fuzz config is valid");
    Registry::new(&config)
}

/// A backend's MAC: its address's last byte, so a test can tell backends apart.
pub fn backend_mac(ip: IpAddr) -> [u8; 6] {
    [0x02, 0, 0, 0, 1, address(ip)[15]]
}

/// What a load balancer of [`LB_CONFIG`] starts from: the tables with every next hop but
/// [`UNRESOLVED`] known, and the SNAT port ranges.
struct Fixture {
    tables: Arc<Tables>,
    nat_ranges: Vec<(Address, u8, (u16, u16))>,
}

/// Built once: workers only read the tables (the counters they bump change no decision).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut registry = registry();
        let unresolved: IpAddr = UNRESOLVED.parse().unwrap();
        for (ip, hops) in registry.next_hops() {
            if ip != unresolved {
                hops.iter().for_each(|hop| hop.set(backend_mac(ip)));
            }
        }
        let own: [IpAddr; 2] = ["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let nat_ranges = registry
            .nat_ranges()
            .into_iter()
            .map(|(snat, protocol, ports)| (address(snat), protocol.number(), ports))
            .collect();
        Fixture {
            tables: Arc::new(registry.tables(OWN_MAC, MTU, &own, Arc::default())),
            nat_ranges,
        }
    })
}

pub fn tables() -> Arc<Tables> {
    fixture().tables.clone()
}

/// A fresh load balancer (empty connection and NAT tables) over [`tables`], with room for
/// `connections` flows.
pub fn load_balancer(connections: usize) -> LoadBalancer {
    let nat = Arc::new(NatTable::new(NatTimeouts::default()));
    for &(snat, protocol, ports) in &fixture().nat_ranges {
        nat.add_range(snat, protocol, ports);
    }
    LoadBalancer::new(tables(), connections, nat)
}

/// Separates frames in the input of multi-frame targets.
pub const FRAME_SEPARATOR: &[u8] = b"\xfe\xed\xfa\xce";

/// The frames of a multi-frame input: the bytes between separators.
pub fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let Some(at) = data
        .windows(FRAME_SEPARATOR.len())
        .position(|window| window == FRAME_SEPARATOR)
    {
        frames.push(&data[..at]);
        data = &data[at + FRAME_SEPARATOR.len()..];
    }
    frames.push(data);
    frames
}

/// The one's-complement sum of 16-bit big-endian words (RFC 1071), an odd last byte padded
/// with zero, folded to 16 bits.
fn ones_complement_sum(bytes: &[u8], mut sum: u64) -> u64 {
    for pair in bytes.chunks(2) {
        sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// A checksummed region is valid when its words, checksum included, sum to all ones.
fn sums_to_all_ones(sum: u64) -> bool {
    sum == 0xffff
}

/// Whether the IPv4 header at `l3` (options included) has a valid checksum.
pub fn ipv4_header_valid(frame: &[u8], l3: usize) -> bool {
    let header_len = usize::from(frame[l3] & 0x0f) * 4;
    sums_to_all_ones(ones_complement_sum(&frame[l3..l3 + header_len], 0))
}

/// Whether the TCP or UDP checksum of a parsed frame is valid (RFC 793, RFC 768, RFC 8200
/// section 8.1), or None for a UDP datagram over IPv4 that carries none (checksum 0). A
/// fragment's checksum covers the whole datagram and cannot be checked alone: Some(false).
pub fn transport_checksum_valid(frame: &[u8], parsed: &Parsed) -> Option<bool> {
    if parsed.fragment.is_some() {
        return Some(false);
    }
    let l3 = parsed.l3;
    let addresses = if parsed.v4 {
        &frame[l3 + 12..l3 + 20]
    } else {
        &frame[l3 + 8..l3 + 40]
    };
    let segment = &frame[parsed.l4..parsed.l3_end];
    let covered = match parsed.flow.proto {
        PROTO_TCP => segment,
        PROTO_UDP => {
            if parsed.v4 && segment[6..8] == [0, 0] {
                return None;
            }
            &segment[..usize::from(u16::from_be_bytes([segment[4], segment[5]]))]
        }
        other => panic!("parse accepted protocol {other}"),
    };
    let mut sum = ones_complement_sum(addresses, 0);
    sum += u64::from(parsed.flow.proto);
    sum += covered.len() as u64;
    Some(sums_to_all_ones(ones_complement_sum(covered, sum)))
}

/// Where the TCP or UDP checksum field of an unfragmented or first fragment is.
pub fn transport_checksum_at(parsed: &Parsed) -> usize {
    parsed.l4
        + if parsed.flow.proto == PROTO_TCP {
            16
        } else {
            6
        }
}

/// `after` equals `before` from byte `from` on, except that the load balancer may have
/// completed a checksum left partial by the sender: then the field differs and the
/// checksum is now valid. `shift` is how far `after` moved the L3 part (an outer header).
pub fn same_but_completed(before: &[u8], parsed: &Parsed, after: &[u8], from: usize, shift: usize) {
    assert_eq!(after.len(), before.len() + shift, "length");
    let field = (!parsed.later_fragment()).then(|| transport_checksum_at(parsed));
    for at in from..before.len() {
        let in_field = field.is_some_and(|field| at == field || at == field + 1);
        if !in_field {
            assert_eq!(after[at + shift], before[at], "byte {at} changed");
        }
    }
    if let Some(field) = field
        && after[field + shift..field + shift + 2] != before[field..field + 2]
    {
        assert_eq!(parsed.fragment, None, "a fragment's checksum changed");
        // The inner packet alone, as it will reach the backend.
        let mut inner = after[..parsed.l3].to_vec();
        inner.extend_from_slice(&after[parsed.l3 + shift..]);
        assert_eq!(
            transport_checksum_valid(&inner, parsed),
            Some(true),
            "a changed checksum must be a completed one"
        );
    }
}

/// The length of the IP header an IP-in-IP encapsulation adds for this family.
pub fn outer_len(v4: bool) -> usize {
    if v4 { IPV4_LEN } else { IPV6_LEN }
}
