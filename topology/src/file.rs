//! The topology file: instances of modules with named ports, as `fastpath topology apply`
//! reads it.
//!
//! ```toml
//! name = "lab"                       # optional: the topology's name ("default")
//!
//! [[instance]]
//! name = "br-a"
//! kind = "bridge"
//! ports = { p1 = "veth-a1", p2 = "veth-a2", up = "r1:a" }
//! vlans = { p1 = 10, up = [10, 20] } # optional: an access port's VLAN, a trunk's VLANs
//! aging = 300                        # optional: seconds a learned MAC lives
//! fdb = [{ mac = "02:00:00:00:00:01", port = "p1", vlan = 10 }]   # static entries
//!
//! [[instance]]
//! name = "r1"
//! kind = "router"
//! ports = { a = "br-a:up", b = "br-b:up" }
//! addresses = { a = ["10.1.0.1/24", "fd01::1/64"], b = ["10.2.0.1/24"] }
//! routes = [{ to = "10.9.0.0/16", via = "10.2.0.254" }]
//!
//! [[instance]]
//! name = "fw"
//! kind = "firewall"
//! ports = { outside = "veth-x", inside = "r1:c" }   # exactly two
//! rules = "fw.toml"                  # `fastpath firewall apply`'s format, relative to this file
//!
//! [[instance]]
//! name = "probe"
//! module = "probe.o"                 # a user module, relative to this file
//! ports = { in = "veth-y" }
//! ```
//!
//! A port names an interface (`"veth-a1"`) or another instance's port (`"r1:a"`); a link
//! between two instances is written on both sides, and both must agree. Every error names
//! the file and the line at fault.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use offload_common::topology::{MAX_HOPS, MAX_INSTANCE_PORTS, MAX_INSTANCES};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    TopologyError,
    lb::{LbSettings, RawVip},
};

/// The name a topology gets when its file gives none.
pub const DEFAULT_NAME: &str = "default";

/// Seconds a learned MAC lives when the file does not say.
pub const DEFAULT_AGING_SECONDS: u32 = 300;

/// A topology file, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyFile {
    /// Where it was read from (named in errors).
    pub path: PathBuf,
    /// The topology's name: its pins live under `/sys/fs/bpf/fastpath/topology/<name>/`.
    pub name: String,
    /// The instances, in the file's order.
    pub instances: Vec<Instance>,
}

/// What an instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The learning bridge.
    Bridge,
    /// The IPv4 and IPv6 router.
    Router,
    /// The stateful firewall.
    Firewall,
    /// The load balancer.
    Lb,
    /// A user module (`module = "path.o"` without a kind).
    Module,
}

impl Kind {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bridge => "bridge",
            Kind::Router => "router",
            Kind::Firewall => "firewall",
            Kind::Lb => "lb",
            Kind::Module => "module",
        }
    }
}

/// One `[[instance]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its name, unique in the topology.
    pub name: String,
    /// The line of its `[[instance]]`.
    pub line: usize,
    /// What it runs.
    pub kind: Kind,
    /// The object to run instead of the built-in program of its kind (or, for
    /// [`Kind::Module`], the only one), resolved against the file's folder.
    pub module: Option<PathBuf>,
    /// Its ports, in the file's order (their numbers follow it for a new instance).
    pub ports: Vec<Port>,
    /// The router's addresses and routes.
    pub router: RouterSettings,
    /// The bridge's ports' VLANs, aging and static entries.
    pub bridge: BridgeSettings,
    /// The firewall's rules file (`fastpath firewall apply`'s format), resolved against
    /// the file's folder.
    pub rules: Option<PathBuf>,
    /// The load balancer's VIPs and backends.
    pub lb: LbSettings,
}

impl Instance {
    /// The port named `name`.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|port| port.name == name)
    }
}

/// One named port of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Its name, unique in the instance.
    pub name: String,
    /// The line it is written on.
    pub line: usize,
    /// What it is connected to.
    pub peer: Peer,
}

/// What a port is connected to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// An interface of the network namespace.
    Iface(String),
    /// Another instance's port.
    Instance {
        /// The instance.
        instance: String,
        /// Its port.
        port: String,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Iface(iface) => write!(f, "{iface}"),
            Peer::Instance { instance, port } => write!(f, "{instance}:{port}"),
        }
    }
}

/// A router's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterSettings {
    /// (port, address with its prefix, line), in the file's order.
    pub addresses: Vec<(String, IpNet, usize)>,
    /// Static routes.
    pub routes: Vec<Route>,
}

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub to: IpNet,
    /// The next hop; None: the destination is on the port's link.
    pub via: Option<IpAddr>,
    /// The port it leaves by: given, or the port whose connected prefix holds `via`.
    pub port: String,
    /// The line it is written on.
    pub line: usize,
}

/// A bridge port's VLANs (802.1Q).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortVlans {
    /// An access port: untagged frames belong to this VLAN and leave untagged.
    Access(u16),
    /// A trunk: frames tagged with one of these VLANs, kept tagged.
    Trunk(Vec<u16>),
}

impl PortVlans {
    /// Whether the port carries `vlan`.
    pub fn carries(&self, vlan: u16) -> bool {
        match self {
            PortVlans::Access(access) => *access == vlan,
            PortVlans::Trunk(trunk) => trunk.contains(&vlan),
        }
    }
}

/// A static forwarding entry of a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticFdb {
    /// The MAC address.
    pub mac: [u8; 6],
    /// The VLAN (0: untagged).
    pub vlan: u16,
    /// The port frames to it leave by.
    pub port: String,
    /// The line it is written on.
    pub line: usize,
}

/// A bridge's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSettings {
    /// Seconds a learned MAC lives without being seen.
    pub aging_seconds: u32,
    /// VLANs of the ports that have some (the others carry untagged frames, VLAN 0).
    pub vlans: Vec<(String, PortVlans)>,
    /// Static entries.
    pub fdb: Vec<StaticFdb>,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            aging_seconds: DEFAULT_AGING_SECONDS,
            vlans: Vec::new(),
            fdb: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<Spanned<String>>,
    #[serde(default)]
    instance: Vec<Spanned<RawInstance>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Spanned<String>,
    kind: Option<Spanned<String>>,
    module: Option<Spanned<PathBuf>>,
    #[serde(default)]
    ports: BTreeMap<Spanned<String>, Spanned<String>>,
    addresses: Option<Spanned<RawAddresses>>,
    routes: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    vlans: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawVlans>>>>,
    aging: Option<Spanned<i64>>,
    fdb: Option<Spanned<Vec<Spanned<RawFdb>>>>,
    rules: Option<Spanned<PathBuf>>,
    vips: Option<Spanned<Vec<Spanned<RawVip>>>>,
}

/// `addresses = { port = ["10.1.0.1/24", ...] }`, every part with its place in the file.
type RawAddresses = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: Spanned<String>,
    via: Option<Spanned<String>>,
    port: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVlans {
    Access(i64),
    Trunk(Vec<i64>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFdb {
    mac: Spanned<String>,
    port: Spanned<String>,
    #[serde(default)]
    vlan: i64,
}

impl TopologyFile {
    /// Reads the topology file at `path`; `iface_exists` says whether the network
    /// namespace has an interface of that name.
    pub fn read(
        path: &Path,
        iface_exists: impl Fn(&str) -> bool,
    ) -> Result<TopologyFile, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::ReadFile {
            file: path.to_path_buf(),
            source,
        })?;
        // Module paths are relative to the file, wherever the command runs later.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        TopologyFile::parse(&path, &text, iface_exists)
    }

    /// Parses topology file `text`; `path` names it in errors and anchors module paths.
    pub fn parse(
        path: &Path,
        text: &str,
        iface_exists: impl Fn(&str) -> bool,
    ) -> Result<TopologyFile, TopologyError> {
        let at = |span: Range<usize>, message: String| TopologyError::File {
            file: path.to_path_buf(),
            line: line_of(text, span.start),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            at(
                error.span().unwrap_or(0..0),
                error.message().trim_end().to_string(),
            )
        })?;
        let name = match raw.name {
            None => DEFAULT_NAME.to_string(),
            Some(name) => {
                check_name(name.get_ref())
                    .map_err(|reason| at(name.span(), format!("name: {reason}")))?;
                name.into_inner()
            }
        };
        if raw.instance.len() > MAX_INSTANCES as usize {
            return Err(at(
                raw.instance[MAX_INSTANCES as usize].span(),
                format!("a topology holds at most {MAX_INSTANCES} instances"),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut instances: Vec<Instance> = Vec::new();
        for entry in raw.instance {
            let instance = parse_instance(entry, base, text, &at)?;
            if let Some(first) = instances.iter().find(|known| known.name == instance.name) {
                return Err(TopologyError::File {
                    file: path.to_path_buf(),
                    line: instance.line,
                    message: format!(
                        "the instance name {:?} is already used on line {}",
                        instance.name, first.line
                    ),
                });
            }
            instances.push(instance);
        }
        let file = TopologyFile {
            path: path.to_path_buf(),
            name,
            instances,
        };
        file.check_links(&iface_exists)?;
        file.check_loops()?;
        Ok(file)
    }

    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|instance| instance.name == name)
    }

    /// The interfaces the topology joins, each with the instance and port it feeds.
    pub fn ifaces(&self) -> Vec<(&str, &Instance, &Port)> {
        let mut ifaces = Vec::new();
        for instance in &self.instances {
            for port in &instance.ports {
                if let Peer::Iface(iface) = &port.peer {
                    ifaces.push((iface.as_str(), instance, port));
                }
            }
        }
        ifaces
    }

    fn error(&self, line: usize, message: String) -> TopologyError {
        TopologyError::File {
            file: self.path.clone(),
            line,
            message,
        }
    }

    /// Every link names a known instance and port that names it back; each interface
    /// is used once and exists.
    fn check_links(&self, iface_exists: &impl Fn(&str) -> bool) -> Result<(), TopologyError> {
        // A port two others link to first: that names the fault better than the
        // disagreement it also makes.
        let mut linked: HashMap<&Peer, (&str, &str, usize)> = HashMap::new();
        for instance in &self.instances {
            for port in &instance.ports {
                if let Peer::Instance { .. } = &port.peer {
                    if let Some((first, first_port, line)) = linked.get(&port.peer) {
                        return Err(self.error(
                            port.line,
                            format!(
                                "the port {} is connected twice: by {first}:{first_port} (line {line}) and by {}:{}",
                                port.peer, instance.name, port.name
                            ),
                        ));
                    }
                    linked.insert(&port.peer, (&instance.name, &port.name, port.line));
                }
            }
        }
        let mut ifaces: HashMap<&str, (&str, &str, usize)> = HashMap::new();
        for instance in &self.instances {
            for port in &instance.ports {
                match &port.peer {
                    Peer::Iface(iface) => {
                        if let Some((other, other_port, line)) = ifaces.get(iface.as_str()) {
                            return Err(self.error(
                                port.line,
                                format!(
                                    "{}:{}: the interface {iface} is already used by {other}:{other_port} (line {line}); an interface feeds one port",
                                    instance.name, port.name
                                ),
                            ));
                        }
                        if !iface_exists(iface) {
                            return Err(self.error(
                                port.line,
                                format!(
                                    "{}:{}: no interface {iface} in this network namespace",
                                    instance.name, port.name
                                ),
                            ));
                        }
                        ifaces.insert(iface, (&instance.name, &port.name, port.line));
                    }
                    Peer::Instance {
                        instance: other,
                        port: other_port,
                    } => {
                        let here = format!("{}:{}", instance.name, port.name);
                        let Some(peer) = self.instance(other) else {
                            return Err(self.error(
                                port.line,
                                format!(
                                    "{here}: links to the unknown instance {other:?} (instances: {})",
                                    self.instance_names()
                                ),
                            ));
                        };
                        let Some(back) = peer.port(other_port) else {
                            return Err(self.error(
                                port.line,
                                format!(
                                    "{here}: links to {other}:{other_port}, but {other} has no port {other_port:?} (its ports: {})",
                                    peer.ports
                                        .iter()
                                        .map(|port| port.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        };
                        if other == &instance.name && other_port == &port.name {
                            return Err(self.error(
                                port.line,
                                format!("{here}: a port cannot link to itself"),
                            ));
                        }
                        let expected = Peer::Instance {
                            instance: instance.name.clone(),
                            port: port.name.clone(),
                        };
                        if back.peer != expected {
                            return Err(self.error(
                                port.line,
                                format!(
                                    "{here}: links to {other}:{other_port}, but {other}:{other_port} links to {} (line {}); the two sides of a link must name each other",
                                    back.peer, back.line
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn instance_names(&self) -> String {
        self.instances
            .iter()
            .map(|instance| instance.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Refuses a cycle of instance-to-instance links (the instances and their links must
    /// form a forest: a flooded frame would go round a cycle until its hops ran out), and a
    /// path crossing more instances than a packet may (`MAX_HOPS`).
    fn check_loops(&self) -> Result<(), TopologyError> {
        // Union-find over instances: a link joining two instances already joined closes a
        // cycle. Each link is written twice; take it once, from its smaller side.
        let index: HashMap<&str, usize> = self
            .instances
            .iter()
            .enumerate()
            .map(|(at, instance)| (instance.name.as_str(), at))
            .collect();
        let mut parent: Vec<usize> = (0..self.instances.len()).collect();
        fn root(parent: &mut [usize], mut at: usize) -> usize {
            while parent[at] != at {
                parent[at] = parent[parent[at]];
                at = parent[at];
            }
            at
        }
        let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); self.instances.len()];
        for (here, instance) in self.instances.iter().enumerate() {
            for port in &instance.ports {
                let Peer::Instance {
                    instance: other,
                    port: other_port,
                } = &port.peer
                else {
                    continue;
                };
                let there = index[other.as_str()];
                if (there, other_port.as_str()) < (here, port.name.as_str()) {
                    continue;
                }
                let (a, b) = (root(&mut parent, here), root(&mut parent, there));
                if a == b {
                    return Err(self.error(
                        port.line,
                        format!(
                            "{}:{} -> {other}:{other_port} closes a loop: {} and {other} are already joined by other links, and a flooded frame would go round the loop; a topology's instance links form a tree",
                            instance.name, port.name, instance.name
                        ),
                    ));
                }
                parent[a] = b;
                neighbours[here].push(there);
                neighbours[there].push(here);
            }
        }
        // A tree's longest path from each instance (the trees are small: at most 64).
        for start in 0..self.instances.len() {
            let mut depth = vec![usize::MAX; self.instances.len()];
            depth[start] = 1;
            let mut queue = vec![start];
            while let Some(at) = queue.pop() {
                for &next in &neighbours[at] {
                    if depth[next] == usize::MAX {
                        depth[next] = depth[at] + 1;
                        if depth[next] > MAX_HOPS as usize {
                            return Err(self.error(
                                self.instances[start].line,
                                format!(
                                    "a packet from {} to {} would cross {} instances; a packet may cross at most {MAX_HOPS}",
                                    self.instances[start].name,
                                    self.instances[next].name,
                                    depth[next]
                                ),
                            ));
                        }
                        queue.push(next);
                    }
                }
            }
        }
        Ok(())
    }
}

fn parse_instance(
    entry: Spanned<RawInstance>,
    base: &Path,
    text: &str,
    at: &impl Fn(Range<usize>, String) -> TopologyError,
) -> Result<Instance, TopologyError> {
    let line = line_of(text, entry.span().start);
    let entry_span = entry.span();
    let raw = entry.into_inner();
    let name = raw.name.get_ref().clone();
    check_name(&name).map_err(|reason| at(raw.name.span(), format!("name: {reason}")))?;
    let kind = match (&raw.kind, &raw.module) {
        (None, None) => {
            return Err(at(
                entry_span,
                format!(
                    "{name}: an instance names a `kind` (bridge, router, firewall, lb), a `module` (a file), or both"
                ),
            ));
        }
        (None, Some(_)) => Kind::Module,
        (Some(kind), _) => match kind.get_ref().as_str() {
            "bridge" => Kind::Bridge,
            "router" => Kind::Router,
            "firewall" => Kind::Firewall,
            "lb" => Kind::Lb,
            other => {
                return Err(at(
                    kind.span(),
                    format!(
                        "{name}: unknown kind {other:?}; kinds: bridge, router, firewall, lb (or `module = \"FILE.o\"` for a user module)"
                    ),
                ));
            }
        },
    };
    let module = raw.module.map(|module| base.join(module.get_ref()));

    let mut ports: Vec<Port> = Vec::new();
    let mut raw_ports: Vec<_> = raw.ports.into_iter().collect();
    raw_ports.sort_by_key(|(port, _)| port.span().start);
    if raw_ports.is_empty() {
        return Err(at(entry_span, format!("{name}: an instance has `ports`")));
    }
    for (port, peer) in raw_ports {
        let port_line = line_of(text, port.span().start);
        check_name(port.get_ref()).map_err(|reason| {
            at(
                port.span(),
                format!("{name}: port {:?}: {reason}", port.get_ref()),
            )
        })?;
        if ports.len() == MAX_INSTANCE_PORTS as usize {
            return Err(at(
                port.span(),
                format!("{name}: an instance has at most {MAX_INSTANCE_PORTS} ports"),
            ));
        }
        let peer_text = peer.get_ref().as_str();
        let parsed = match peer_text.split_once(':') {
            Some((instance, other_port)) if !instance.is_empty() && !other_port.is_empty() => {
                Peer::Instance {
                    instance: instance.to_string(),
                    port: other_port.to_string(),
                }
            }
            None if !peer_text.is_empty() && peer_text.len() < libc::IFNAMSIZ => {
                Peer::Iface(peer_text.to_string())
            }
            _ => {
                return Err(at(
                    peer.span(),
                    format!(
                        "{name}:{}: {peer_text:?} is neither an interface name nor INSTANCE:PORT",
                        port.get_ref()
                    ),
                ));
            }
        };
        ports.push(Port {
            name: port.into_inner(),
            line: port_line,
            peer: parsed,
        });
    }
    let has_port = |port: &Spanned<String>, what: &str| -> Result<(), TopologyError> {
        if ports.iter().any(|known| known.name == *port.get_ref()) {
            Ok(())
        } else {
            Err(at(
                port.span(),
                format!(
                    "{name}: {what} names the port {:?}, which {name} does not have",
                    port.get_ref()
                ),
            ))
        }
    };
    let refuse = |span: Option<Range<usize>>, key: &str| -> Result<(), TopologyError> {
        match span {
            Some(span) => Err(at(
                span,
                format!(
                    "{name}: `{key}` is a setting of the {} kind; {name} is a {}",
                    setting_kind(key),
                    kind.name()
                ),
            )),
            None => Ok(()),
        }
    };

    let mut router = RouterSettings::default();
    let mut bridge = BridgeSettings::default();
    if kind == Kind::Router {
        if let Some(addresses) = raw.addresses {
            let mut addresses: Vec<_> = addresses.into_inner().into_iter().collect();
            addresses.sort_by_key(|(port, _)| port.span().start);
            for (port, list) in addresses {
                has_port(&port, "addresses")?;
                for address in list.into_inner() {
                    let net: IpNet = address.get_ref().parse().map_err(|_| {
                        at(
                            address.span(),
                            format!(
                                "{name}: addresses.{}: {:?} is not an address with its prefix length (e.g. 10.1.0.1/24 or fd01::1/64)",
                                port.get_ref(),
                                address.get_ref()
                            ),
                        )
                    })?;
                    check_host_address(&net).map_err(|reason| {
                        at(
                            address.span(),
                            format!("{name}: addresses.{}: {reason}", port.get_ref()),
                        )
                    })?;
                    let address_line = line_of(text, address.span().start);
                    if let Some((other, _, other_line)) =
                        router.addresses.iter().find(|(_, known, _)| {
                            known.network() == net.network()
                                || known.contains(&net.addr())
                                || net.contains(&known.addr())
                        })
                    {
                        return Err(at(
                            address.span(),
                            format!(
                                "{name}: addresses.{}: {net} overlaps the prefix of port {other} (line {other_line}); each port has its own subnets",
                                port.get_ref()
                            ),
                        ));
                    }
                    router
                        .addresses
                        .push((port.get_ref().clone(), net, address_line));
                }
            }
        }
        if let Some(routes) = raw.routes {
            for route in routes.into_inner() {
                let route_line = line_of(text, route.span().start);
                let route = route.into_inner();
                let to: IpNet = route.to.get_ref().parse().map_err(|_| {
                    at(
                        route.to.span(),
                        format!(
                            "{name}: routes: `to` {:?} is not a prefix (e.g. 10.9.0.0/16)",
                            route.to.get_ref()
                        ),
                    )
                })?;
                let to = to.trunc();
                let via = match &route.via {
                    None => None,
                    Some(via) => {
                        let address: IpAddr = via.get_ref().parse().map_err(|_| {
                            at(
                                via.span(),
                                format!(
                                    "{name}: routes: `via` {:?} is not an address",
                                    via.get_ref()
                                ),
                            )
                        })?;
                        if address.is_ipv4() != to.addr().is_ipv4() {
                            return Err(at(
                                via.span(),
                                format!(
                                    "{name}: routes: the next hop {address} is not of the family of {to}"
                                ),
                            ));
                        }
                        Some(address)
                    }
                };
                let port = match (&route.port, via) {
                    (Some(port), _) => {
                        has_port(port, "routes")?;
                        port.get_ref().clone()
                    }
                    (None, Some(via)) => router
                        .addresses
                        .iter()
                        .find(|(_, net, _)| net.contains(&via))
                        .map(|(port, _, _)| port.clone())
                        .ok_or_else(|| {
                            at(
                                route.via.as_ref().map_or(route.to.span(), Spanned::span),
                                format!("{name}: routes: the next hop {via} is in no port's subnet; give the route a `port`"),
                            )
                        })?,
                    (None, None) => {
                        return Err(at(
                            route.to.span(),
                            format!("{name}: routes: a route to {to} names a `via` (next hop), a `port`, or both"),
                        ));
                    }
                };
                router.routes.push(Route {
                    to,
                    via,
                    port,
                    line: route_line,
                });
            }
        }
    } else {
        refuse(raw.addresses.map(|value| value.span()), "addresses")?;
        refuse(raw.routes.map(|value| value.span()), "routes")?;
    }
    if kind == Kind::Bridge {
        if let Some(aging) = raw.aging {
            if !(1..=i64::from(u32::MAX)).contains(aging.get_ref()) {
                return Err(at(
                    aging.span(),
                    format!("{name}: aging: seconds, at least 1"),
                ));
            }
            bridge.aging_seconds = *aging.get_ref() as u32;
        }
        if let Some(vlans) = raw.vlans {
            let mut vlans: Vec<_> = vlans.into_inner().into_iter().collect();
            vlans.sort_by_key(|(port, _)| port.span().start);
            for (port, setting) in vlans {
                has_port(&port, "vlans")?;
                // A port towards another instance (a router's) would hand it tagged
                // frames it cannot read: not done, such ports carry VLAN 0 untagged.
                if ports.iter().any(|known| {
                    known.name == *port.get_ref() && matches!(known.peer, Peer::Instance { .. })
                }) {
                    return Err(at(
                        port.span(),
                        format!(
                            "{name}: vlans.{0}: {0} leads to another instance; VLANs are for interface ports in this build (docs/topology.md)",
                            port.get_ref()
                        ),
                    ));
                }
                let span = setting.span();
                let bad = |id: i64| {
                    at(
                        span.clone(),
                        format!(
                            "{name}: vlans.{}: {id} is not a VLAN id (1 to 4094)",
                            port.get_ref()
                        ),
                    )
                };
                let checked = |id: i64| {
                    if (1..=4094).contains(&id) {
                        Ok(id as u16)
                    } else {
                        Err(bad(id))
                    }
                };
                let value = match setting.into_inner() {
                    RawVlans::Access(id) => PortVlans::Access(checked(id)?),
                    RawVlans::Trunk(ids) => {
                        if ids.is_empty() {
                            return Err(at(
                                span,
                                format!(
                                    "{name}: vlans.{}: a trunk carries at least one VLAN",
                                    port.get_ref()
                                ),
                            ));
                        }
                        let mut list = ids
                            .into_iter()
                            .map(checked)
                            .collect::<Result<Vec<_>, _>>()?;
                        list.sort_unstable();
                        list.dedup();
                        PortVlans::Trunk(list)
                    }
                };
                bridge.vlans.push((port.into_inner(), value));
            }
        }
        if let Some(fdb) = raw.fdb {
            for entry in fdb.into_inner() {
                let entry_line = line_of(text, entry.span().start);
                let entry = entry.into_inner();
                has_port(&entry.port, "fdb")?;
                let mac = parse_mac(entry.mac.get_ref()).ok_or_else(|| {
                    at(
                        entry.mac.span(),
                        format!(
                            "{name}: fdb: {:?} is not a MAC address (e.g. 02:00:00:00:00:01)",
                            entry.mac.get_ref()
                        ),
                    )
                })?;
                if mac[0] & 1 != 0 {
                    return Err(at(
                        entry.mac.span(),
                        format!(
                            "{name}: fdb: {} is a group address; static entries are unicast",
                            entry.mac.get_ref()
                        ),
                    ));
                }
                if !(0..=4094).contains(&entry.vlan) {
                    return Err(at(
                        entry.mac.span(),
                        format!(
                            "{name}: fdb: vlan {} is not 0 (untagged) or 1 to 4094",
                            entry.vlan
                        ),
                    ));
                }
                // On a VLAN-aware bridge a station is on a VLAN its port carries (a port
                // without `vlans` carries VLAN 0); an entry elsewhere would never match.
                if !bridge.vlans.is_empty() {
                    let carried = bridge
                        .vlans
                        .iter()
                        .find(|(port, _)| port == entry.port.get_ref())
                        .map(|(_, vlans)| vlans.carries(entry.vlan as u16))
                        .unwrap_or(entry.vlan == 0);
                    if !carried {
                        return Err(at(
                            entry.mac.span(),
                            format!(
                                "{name}: fdb: {} on VLAN {}: port {} does not carry VLAN {}",
                                entry.mac.get_ref(),
                                entry.vlan,
                                entry.port.get_ref(),
                                entry.vlan
                            ),
                        ));
                    }
                }
                bridge.fdb.push(StaticFdb {
                    mac,
                    vlan: entry.vlan as u16,
                    port: entry.port.into_inner(),
                    line: entry_line,
                });
            }
        }
    } else {
        refuse(raw.aging.map(|value| value.span()), "aging")?;
        refuse(raw.vlans.map(|value| value.span()), "vlans")?;
        refuse(raw.fdb.map(|value| value.span()), "fdb")?;
    }
    // A bump in the wire: what one port lets through leaves by the other.
    if matches!(kind, Kind::Firewall | Kind::Lb) && ports.len() != 2 {
        return Err(at(
            entry_span,
            format!(
                "{name}: a{} {} instance has exactly two ports (what one lets through leaves by the other); it has {}",
                if kind == Kind::Lb { "n" } else { "" },
                kind.name(),
                ports.len()
            ),
        ));
    }
    let mut rules = None;
    if kind == Kind::Firewall {
        let Some(file) = raw.rules else {
            return Err(at(
                entry_span,
                format!(
                    "{name}: a firewall instance names its `rules` file (the format of `fastpath firewall apply`)"
                ),
            ));
        };
        rules = Some(base.join(file.get_ref()));
    } else {
        refuse(raw.rules.map(|value| value.span()), "rules")?;
    }
    let lb = if kind == Kind::Lb {
        let Some(vips) = raw.vips else {
            return Err(at(
                entry_span,
                format!("{name}: an lb instance names its `vips` (address, port, backends)"),
            ));
        };
        crate::lb::parse_vips(&name, vips.into_inner(), at, |offset| line_of(text, offset))?
    } else {
        refuse(raw.vips.map(|value| value.span()), "vips")?;
        LbSettings::default()
    };
    Ok(Instance {
        name,
        line,
        kind,
        module,
        ports,
        router,
        bridge,
        rules,
        lb,
    })
}

fn setting_kind(key: &str) -> &'static str {
    match key {
        "addresses" | "routes" => "router",
        "rules" => "firewall",
        "vips" => "lb",
        _ => "bridge",
    }
}

/// A router port's address must be a host of its prefix: neither the network itself
/// (for IPv4 below /31) nor its broadcast address.
fn check_host_address(net: &IpNet) -> Result<(), String> {
    let address = net.addr();
    if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
        return Err(format!("{address} cannot be a router port's address"));
    }
    if let IpNet::V4(v4) = net
        && v4.prefix_len() < 31
        && (v4.addr() == v4.network() || v4.addr() == v4.broadcast())
    {
        return Err(format!(
            "{address} is the {} address of {}; give the port a host address",
            if v4.addr() == v4.network() {
                "network"
            } else {
                "broadcast"
            },
            v4.trunc()
        ));
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff` (or with dashes).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Names of topologies, instances and ports: they become pin directories and appear in
/// `INSTANCE:PORT`, so letters, digits, `-` and `_`, at most 31 bytes.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 31 {
        return Err(format!("{name:?} must be 1 to 31 bytes"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        return Err(format!(
            "{name:?} may hold letters, digits, `-` and `_` only"
        ));
    }
    Ok(())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
