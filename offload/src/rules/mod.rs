//! Flow rules: what a user writes, how it is checked, and how a rule set compiles into the
//! steering program's maps.
//!
//! # Priority (for rules that overlap)
//!
//! A packet takes the action of the first rule, in this order, that matches it:
//!
//! 1. the longer destination prefix (a rule with no `dst` is a /0);
//! 2. then a rule with a source prefix before one without, the longer source prefix first;
//! 3. then the narrower destination-port range (a rule without ports spans all 65536);
//! 4. then a rule naming a protocol before one that matches any;
//! 5. then the lower rule id.
//!
//! Rules that name one host, one port and one protocol, with no source, go into the exact-match
//! hash (one lookup); all others into the destination-prefix tries, where each prefix carries
//! the chain of every rule covering it, sorted in the order above. A host rule stays out of
//! the hash when a rule with a source prefix on the same host could outrank it, so both paths
//! always agree with the order above.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
    str::FromStr,
};

pub mod exact_table;
pub mod tuple_space;

pub use ipnet::IpNet;
use offload_common::{
    ABSENT_PREFIX, ChainEntry, ExactKey, FAMILY_V4, FAMILY_V6, MAX_CHAIN, MAX_RULES, PrefixKeyV4,
    PrefixKeyV6, RuleChain, RuleDef, RuleRef, action, proto,
};
use serde::Serialize;

/// Errors in a rule or a rule set, each naming the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// An action other than xsk, pass, drop or tx; holds the text given.
    #[error("invalid action {0:?}: expected xsk, pass, drop or tx")]
    Action(String),
    /// A protocol other than tcp, udp or icmp; holds the text given.
    #[error("invalid --proto {0:?}: expected tcp, udp or icmp")]
    Protocol(String),
    /// Neither an address nor a CIDR prefix.
    #[error(
        "invalid --{field} {value:?}: expected an address or CIDR such as 10.0.0.0/24 or 2001:db8::/32"
    )]
    Cidr {
        /// The option it was given for, without dashes ("dst", "src").
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// A port or range that does not parse, or a port above 65535; holds the text given.
    #[error("invalid --dport {0:?}: expected a port N or a range N-M with 0 <= N <= M <= 65535")]
    PortSyntax(String),
    /// A port range written backwards.
    #[error("invalid --dport {lo}-{hi}: the range start is greater than its end")]
    PortOrder {
        /// The start given.
        lo: u16,
        /// The end given, below the start.
        hi: u16,
    },
    /// A port range on an icmp rule: ICMP has no ports, so the rule could never match.
    #[error("--dport needs --proto tcp or udp (or no --proto); icmp has no ports")]
    PortsWithoutPorts,
    /// A prefix with bits set past its length (`10.0.0.7/24`): its rule would never match,
    /// since the tries hold network addresses.
    #[error("--{field} {value}: host bits are set past /{len}; did you mean {network}?", len = value.prefix_len(), network = value.trunc())]
    HostBits {
        /// The option it was given for, without dashes ("dst", "src").
        field: &'static str,
        /// The prefix given.
        value: IpNet,
    },
    /// A source and a destination of different IP families: no packet has both.
    #[error("--src {src} and --dst {dst} are of different IP families")]
    FamilyMismatch {
        /// The source prefix.
        src: IpNet,
        /// The destination prefix.
        dst: IpNet,
    },
    /// A new rule matches exactly what an existing rule matches (the action aside): change
    /// the action by deleting that rule first. Holds the existing rule's id.
    #[error("the rule duplicates rule {0}: same protocol, destination, ports and source")]
    Duplicate(u32),
    /// No rule with that id (already deleted, or never added); holds the id.
    #[error("no rule with id {0}")]
    UnknownId(u32),
    /// No free rule id: the per-rule counter array has [`MAX_RULES`] slots and id 0 is not
    /// used, so at most `MAX_RULES - 1` rules (16383) exist at once.
    #[error("too many rules: at most {} are supported", MAX_RULES - 1)]
    TooMany,
    /// More rules cover one destination prefix than its chain in the trie holds
    /// ([`MAX_CHAIN`], 32): use fewer overlapping rules (the rules of a wide prefix cover
    /// every narrower prefix under it).
    #[error(
        "destination {prefix} is covered by {count} rules (its own and those of shorter prefixes); at most {MAX_CHAIN} are supported"
    )]
    ChainTooLong {
        /// The destination prefix whose chain overflows.
        prefix: IpNet,
        /// The rules that cover it.
        count: usize,
    },
}

/// What to do with a matching packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Redirect to the AF_XDP socket at the RX queue (pass when none is bound).
    Xsk,
    /// Pass to the kernel's stack (XDP_PASS).
    Pass,
    /// Drop (XDP_DROP).
    Drop,
    /// Bounce out of the same interface with the MAC addresses swapped.
    Tx,
}

impl Action {
    /// The action's code in the maps (`offload_common::action`).
    pub fn code(self) -> u8 {
        match self {
            Action::Pass => action::PASS,
            Action::Drop => action::DROP,
            Action::Xsk => action::XSK,
            Action::Tx => action::TX,
        }
    }

    /// The action of a map code; `None` for a code this build does not know.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            action::PASS => Some(Action::Pass),
            action::DROP => Some(Action::Drop),
            action::XSK => Some(Action::Xsk),
            action::TX => Some(Action::Tx),
            _ => None,
        }
    }
}

impl FromStr for Action {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        match text {
            "xsk" => Ok(Action::Xsk),
            "pass" => Ok(Action::Pass),
            "drop" => Ok(Action::Drop),
            "tx" => Ok(Action::Tx),
            _ => Err(RuleError::Action(text.to_string())),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Xsk => "xsk",
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::Tx => "tx",
        })
    }
}

/// The IP protocol a rule matches, parsed from `--proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// ICMP on IPv4 rules, ICMPv6 on IPv6 rules.
    Icmp,
}

impl FromStr for Protocol {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            _ => Err(RuleError::Protocol(text.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        })
    }
}

/// An inclusive destination-port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// The first port, host byte order.
    pub lo: u16,
    /// The last port, host byte order; not below `lo` (parsing refuses it).
    pub hi: u16,
}

impl PortRange {
    /// How many ports it spans, 1 to 65536 (hence `u32`); a narrower range ranks higher.
    pub fn width(self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }
}

impl FromStr for PortRange {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let port = |part: &str| {
            part.trim()
                .parse::<u16>()
                .map_err(|_| RuleError::PortSyntax(text.to_string()))
        };
        let (lo, hi) = match text.split_once('-') {
            Some((lo, hi)) => (port(lo)?, port(hi)?),
            None => (port(text)?, port(text)?),
        };
        if lo > hi {
            return Err(RuleError::PortOrder { lo, hi });
        }
        Ok(PortRange { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses an address or CIDR for the field `field` (for the error message). Host bits are
/// cleared, as iptables and nftables do: `10.0.0.7/24` means `10.0.0.0/24`.
pub fn parse_cidr(field: &'static str, text: &str) -> Result<IpNet, RuleError> {
    let error = || RuleError::Cidr {
        field,
        value: text.to_string(),
    };
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| error())
}

/// The match and action of a rule, as the user gives them.
///
/// Prefixes have their host bits clear, as [`parse_cidr`] leaves them; [`validate`] refuses
/// others ([`RuleError::HostBits`]): the compiler gathers the rules covering a prefix by the
/// network addresses of its ancestors, so such a rule would never match.
///
/// [`validate`]: RuleSpec::validate
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RuleSpec {
    /// What to do with a matching packet.
    pub action: Action,
    /// The protocol; `None` matches any.
    pub proto: Option<Protocol>,
    /// The destination prefix; `None` matches any destination (of both families, unless
    /// `src` names one).
    pub dst: Option<IpNet>,
    /// The destination ports (TCP or UDP only); `None` matches any port, and packets
    /// without ports.
    pub dport: Option<PortRange>,
    /// The source prefix; `None` matches any source.
    pub src: Option<IpNet>,
}

impl RuleSpec {
    /// A rule that matches every IP packet, with `action`; set the fields to narrow it.
    pub fn new(action: Action) -> Self {
        RuleSpec {
            action,
            proto: None,
            dst: None,
            dport: None,
            src: None,
        }
    }

    /// Checks the rule on its own: no ports on an icmp rule, source and destination of one
    /// family.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.dport.is_some() && self.proto == Some(Protocol::Icmp) {
            return Err(RuleError::PortsWithoutPorts);
        }
        for (field, net) in [("src", self.src), ("dst", self.dst)] {
            if let Some(value) = net
                && value != value.trunc()
            {
                return Err(RuleError::HostBits { field, value });
            }
        }
        if let (Some(src), Some(dst)) = (self.src, self.dst)
            && src.addr().is_ipv4() != dst.addr().is_ipv4()
        {
            return Err(RuleError::FamilyMismatch { src, dst });
        }
        Ok(())
    }

    /// Same packets matched (the action aside).
    fn same_match(&self, other: &RuleSpec) -> bool {
        (self.proto, self.dst, self.dport, self.src)
            == (other.proto, other.dst, other.dport, other.src)
    }

    /// The families the rule applies to.
    fn families(&self) -> &'static [u8] {
        match self.dst.or(self.src) {
            Some(net) if net.addr().is_ipv4() => &[FAMILY_V4],
            Some(_) => &[FAMILY_V6],
            None => &[FAMILY_V4, FAMILY_V6],
        }
    }

    fn protocol_number(&self, family: u8) -> u8 {
        match (self.proto, family) {
            (None, _) => proto::ANY,
            (Some(Protocol::Tcp), _) => proto::TCP,
            (Some(Protocol::Udp), _) => proto::UDP,
            (Some(Protocol::Icmp), FAMILY_V4) => proto::ICMP,
            (Some(Protocol::Icmp), _) => proto::ICMPV6,
        }
    }

    /// Sort key implementing the documented priority (smaller sorts first).
    fn priority(&self, id: u32) -> impl Ord {
        (
            Reverse(self.dst.map_or(0, |net| net.prefix_len())),
            Reverse(self.src.map_or(-1, |net| i16::from(net.prefix_len()))),
            self.dport.map_or(65536, PortRange::width),
            self.proto.is_none(),
            id,
        )
    }

    fn is_exact_candidate(&self) -> bool {
        matches!(self.dst, Some(dst) if dst.prefix_len() == dst.max_prefix_len())
            && matches!(self.dport, Some(ports) if ports.lo == ports.hi)
            && matches!(self.proto, Some(Protocol::Tcp | Protocol::Udp))
            && self.src.is_none()
    }

    /// Could `self` (with a source prefix) match some packet that `exact` matches?
    fn overlaps_ports_and_proto(&self, exact: &RuleSpec) -> bool {
        let port = exact.dport.map_or(0, |ports| ports.lo);
        let ports_overlap = self
            .dport
            .is_none_or(|ports| ports.lo <= port && port <= ports.hi);
        let proto_overlap = self.proto.is_none() || self.proto == exact.proto;
        ports_overlap && proto_overlap
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        if let Some(proto) = self.proto {
            write!(f, " proto {proto}")?;
        }
        if let Some(dst) = self.dst {
            write!(f, " dst {dst}")?;
        }
        if let Some(dport) = self.dport {
            write!(f, " dport {dport}")?;
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// A rule with the id it was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Its id, `1..MAX_RULES`: the key of its record in `RULE_DEFS` and its slot in the
    /// `RULE_STATS` counter array.
    pub id: u32,
    /// What it matches and does.
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// The contents of the steering maps for a rule set.
#[derive(Debug, Default, PartialEq)]
pub struct CompiledRules {
    /// The exact-match hashes: one host, port and protocol to its rule (IPv4 hosts go to
    /// `EXACT_V4` under an 8-byte key, IPv6 hosts to `EXACT_RULES`; see `Steering`).
    pub exact: HashMap<ExactKey, RuleRef>,
    /// The `PREFIX_V4` trie: (prefix length in bits, network address in network byte order)
    /// to the chain of rules covering that prefix.
    pub prefixes_v4: HashMap<(u32, [u8; 4]), RuleChain>,
    /// The `PREFIX_V6` trie, keyed like `prefixes_v4`.
    pub prefixes_v6: HashMap<(u32, [u8; 16]), RuleChain>,
    /// `PREFIX_HASH_V4`: the entries of `prefixes_v4` when they use few enough lengths
    /// for the per-length hashes, none otherwise ([`tuple_space`]).
    pub hashed_v4: HashMap<PrefixKeyV4, RuleChain>,
    /// `PREFIX_HASH_V6`, as `hashed_v4` for `prefixes_v6`.
    pub hashed_v6: HashMap<PrefixKeyV6, RuleChain>,
}

/// Checks a new rule against the rule set: valid on its own, not a duplicate.
pub fn check_new(rules: &[Rule], spec: &RuleSpec) -> Result<(), RuleError> {
    spec.validate()?;
    match rules.iter().find(|rule| rule.spec.same_match(spec)) {
        Some(existing) => Err(RuleError::Duplicate(existing.id)),
        None => Ok(()),
    }
}

/// The lowest ids not in use, one per new rule.
pub fn allocate_ids(rules: &[Rule], count: usize) -> Result<Vec<u32>, RuleError> {
    let used: std::collections::HashSet<u32> = rules.iter().map(|rule| rule.id).collect();
    let ids: Vec<u32> = (1..MAX_RULES)
        .filter(|id| !used.contains(id))
        .take(count)
        .collect();
    if ids.len() < count {
        return Err(RuleError::TooMany);
    }
    Ok(ids)
}

/// Compiles a rule set into map contents.
pub fn compile(rules: &[Rule]) -> Result<CompiledRules, RuleError> {
    let mut compiled = CompiledRules::default();
    let (exact, chained): (Vec<&Rule>, Vec<&Rule>) =
        rules.iter().partition(|rule| goes_to_exact(rule, rules));
    for rule in exact {
        let dst = rule.spec.dst.expect("exact rules have a destination");
        let family = family_of(dst.addr());
        let key = ExactKey {
            addr: address_bytes(dst.addr()),
            dport: rule.spec.dport.map_or(0, |ports| ports.lo),
            proto: rule.spec.protocol_number(family),
            family,
        };
        // Duplicates are refused at insertion, so a key is never taken twice.
        compiled.exact.insert(
            key,
            RuleRef {
                rule_id: rule.id,
                action: rule.spec.action.code(),
                _pad: [0; 3],
            },
        );
    }
    for family in [FAMILY_V4, FAMILY_V6] {
        for (prefix, chain) in chains_for_family(&chained, family)? {
            let length = u32::from(prefix.prefix_len());
            let bytes = address_bytes(prefix.addr());
            if family == FAMILY_V4 {
                let v4 = [bytes[0], bytes[1], bytes[2], bytes[3]];
                compiled.prefixes_v4.insert((length, v4), chain);
            } else {
                compiled.prefixes_v6.insert((length, bytes), chain);
            }
        }
    }
    compiled.hashed_v4 = tuple_space::hashed_v4(&compiled.prefixes_v4);
    compiled.hashed_v6 = tuple_space::hashed_v6(&compiled.prefixes_v6);
    Ok(compiled)
}

fn goes_to_exact(rule: &Rule, rules: &[Rule]) -> bool {
    rule.spec.is_exact_candidate()
        && !rules.iter().any(|other| {
            other.spec.src.is_some()
                && other.spec.dst == rule.spec.dst
                && other.spec.overlaps_ports_and_proto(&rule.spec)
        })
}

/// For every destination prefix named by a rule of `family`, the sorted chain of rules that
/// cover it.
fn chains_for_family(rules: &[&Rule], family: u8) -> Result<BTreeMap<IpNet, RuleChain>, RuleError> {
    let any = match family {
        FAMILY_V4 => IpNet::V4(Default::default()),
        _ => IpNet::V6(Default::default()),
    };
    let mut by_prefix: BTreeMap<IpNet, Vec<&Rule>> = BTreeMap::new();
    for rule in rules
        .iter()
        .filter(|rule| rule.spec.families().contains(&family))
    {
        by_prefix
            .entry(rule.spec.dst.unwrap_or(any))
            .or_default()
            .push(rule);
    }
    let mut chains = BTreeMap::new();
    for prefix in by_prefix.keys() {
        // Every rule on this prefix or on one of its ancestors covers it.
        let mut covering: Vec<&Rule> = (0..=prefix.prefix_len())
            .filter_map(|length| {
                let ancestor = IpNet::new(prefix.addr(), length).ok()?.trunc();
                by_prefix.get(&ancestor)
            })
            .flatten()
            .copied()
            .collect();
        if covering.len() > MAX_CHAIN {
            return Err(RuleError::ChainTooLong {
                prefix: *prefix,
                count: covering.len(),
            });
        }
        covering.sort_by_key(|rule| rule.spec.priority(rule.id));
        let mut chain = RuleChain {
            len: covering.len() as u32,
            ..Default::default()
        };
        for (slot, rule) in chain.entries.iter_mut().zip(&covering) {
            *slot = chain_entry(rule, family);
        }
        chains.insert(*prefix, chain);
    }
    Ok(chains)
}

fn chain_entry(rule: &Rule, family: u8) -> ChainEntry {
    let (src_addr, src_mask) = match rule.spec.src {
        Some(src) => (address_words(src.network()), address_words(src.netmask())),
        None => ([0; 4], [0; 4]),
    };
    let ports = rule.spec.dport;
    ChainEntry {
        rule_id: rule.id,
        action: rule.spec.action.code(),
        proto: rule.spec.protocol_number(family),
        has_ports: u8::from(ports.is_some()),
        dport_lo: ports.map_or(0, |p| p.lo),
        dport_hi: ports.map_or(u16::MAX, |p| p.hi),
        src_addr,
        src_mask,
        ..Default::default()
    }
}

fn family_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

/// Network-order bytes; IPv4 in the first four, the rest zero (the program's layout).
pub fn address_bytes(addr: IpAddr) -> [u8; 16] {
    let mut bytes = [0; 16];
    match addr {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

/// The program compares addresses as four native-endian loads of network-order bytes.
fn address_words(addr: IpAddr) -> [u32; 4] {
    offload_common::address_words(&address_bytes(addr))
}

/// The record kept in the `RULE_DEFS` map.
pub fn to_def(rule: &Rule) -> RuleDef {
    let spec = &rule.spec;
    let families = spec.families();
    RuleDef {
        id: rule.id,
        action: spec.action.code(),
        proto: match spec.proto {
            None => 0,
            Some(Protocol::Tcp) => 1,
            Some(Protocol::Udp) => 2,
            Some(Protocol::Icmp) => 3,
        },
        family: if families.len() == 2 { 0 } else { families[0] },
        has_ports: u8::from(spec.dport.is_some()),
        dport_lo: spec.dport.map_or(0, |p| p.lo),
        dport_hi: spec.dport.map_or(0, |p| p.hi),
        dst_len: spec.dst.map_or(ABSENT_PREFIX, |net| net.prefix_len()),
        src_len: spec.src.map_or(ABSENT_PREFIX, |net| net.prefix_len()),
        dst: spec.dst.map_or([0; 16], |net| address_bytes(net.addr())),
        src: spec.src.map_or([0; 16], |net| address_bytes(net.addr())),
        _pad: [0; 2],
    }
}

/// The inverse of [`to_def`]; `None` for a record this build cannot read.
pub fn from_def(def: &RuleDef) -> Option<Rule> {
    let net = |bytes: [u8; 16], length: u8| -> Option<Option<IpNet>> {
        if length == ABSENT_PREFIX {
            return Some(None);
        }
        let addr = match def.family {
            FAMILY_V4 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
            FAMILY_V6 => IpAddr::from(bytes),
            _ => return None,
        };
        IpNet::new(addr, length).ok().map(Some)
    };
    Some(Rule {
        id: def.id,
        spec: RuleSpec {
            action: Action::from_code(def.action)?,
            proto: match def.proto {
                0 => None,
                1 => Some(Protocol::Tcp),
                2 => Some(Protocol::Udp),
                3 => Some(Protocol::Icmp),
                _ => return None,
            },
            dst: net(def.dst, def.dst_len)?,
            dport: (def.has_ports != 0).then_some(PortRange {
                lo: def.dport_lo,
                hi: def.dport_hi,
            }),
            src: net(def.src, def.src_len)?,
        },
    })
}

#[cfg(test)]
mod tests;
