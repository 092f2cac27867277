//! Groups compiled to one firewall policy per member interface, and the explanation of a
//! verdict from those policies.
//!
//! Where a rule runs: the firewall module is an XDP program, and XDP sees only what enters
//! an interface. On the host side of a container's veth, that is what the container
//! *sends*. So a destination's `allow_in` is enforced on the ingress of the **source's**
//! veth, matching the destination members' addresses, and replies come back through the
//! node's shared conntrack table. Each member interface's policy, first match wins:
//!
//! 1. established and related: accept (replies are always allowed);
//! 2. ICMPv6 neighbour discovery (types 133-136): accept;
//! 3. the node's own addresses inside member networks (the gateway address of a veth's
//!    subnet) are not members: allowed only by the source's `allow_out`, else dropped;
//! 4. every `allow_in` of every group whose source covers this interface's endpoint:
//!    accept, to that group's members;
//! 5. anything else to a member: drop (a member's inbound is decided by its `allow_in`
//!    alone);
//! 6. the `allow_out` of this interface's groups (destinations outside every group): accept;
//! 7. the default: drop.
//!
//! Sources whose interface runs no member's firewall (the uplink, a container in no group)
//! would not be judged at all; an **edge** interface (`edge = [...]`) is where such traffic
//! enters: its firewall accepts replies, neighbour discovery and the node's own addresses,
//! every `allow_in` (sources as written), drops anything else to a member, and lets the
//! rest on (default accept: it is not a member).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use offload_common::{
    FAMILY_V4, FAMILY_V6,
    firewall::{RuleKey, ct_state, timeout, verdict},
    proto,
};
use serde::{Deserialize, Serialize};

use super::{
    PolicyError,
    file::{Allow, GroupPolicy, Member, Peer, protocol_name},
};
use crate::{Policy, Rule};

/// What the node says about a policy's members: the networks routed through each member
/// interface, and the node's own addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Each member interface's networks (the routes of the `main` table through it).
    pub interfaces: BTreeMap<String, Vec<IpNet>>,
    /// The node's own addresses.
    pub local: Vec<IpAddr>,
}

/// Why a compiled rule is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Established and related flows.
    Replies,
    /// ICMPv6 neighbour discovery.
    NeighbourDiscovery,
    /// A group's `allow_in` rule (index from 0).
    AllowIn {
        /// The group.
        group: String,
        /// The rule's place in the list.
        index: usize,
        /// Its line.
        line: usize,
    },
    /// A group's `allow_out` rule (index from 0).
    AllowOut {
        /// The group.
        group: String,
        /// The rule's place in the list.
        index: usize,
        /// Its line.
        line: usize,
    },
    /// The node's own address inside a member network (a member's veth: dropped unless an
    /// `allow_out` lets it out).
    NodeAddress,
    /// The node's own address, let on (an edge: the node is no member).
    ToNode,
    /// Members are reached only through their `allow_in`.
    ToMembers,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Replies => write!(f, "replies (established, related)"),
            Origin::NeighbourDiscovery => write!(f, "neighbour discovery (icmpv6 133-136)"),
            Origin::AllowIn { group, index, line } => {
                write!(f, "{group} allow_in #{} (line {line})", index + 1)
            }
            Origin::AllowOut { group, index, line } => {
                write!(f, "{group} allow_out #{} (line {line})", index + 1)
            }
            Origin::NodeAddress => write!(f, "drop: the node's own address"),
            Origin::ToNode => write!(f, "the node's own address (no member)"),
            Origin::ToMembers => write!(f, "drop: to members, not in their allow_in"),
        }
    }
}

/// The firewall policy of one member interface.
#[derive(Clone, Debug)]
pub struct InterfacePolicy {
    /// The interface.
    pub iface: String,
    /// Whether it is an edge (no member: traffic from outside enters there).
    pub edge: bool,
    /// The groups it is a member of (directly or through others).
    pub groups: Vec<String>,
    /// Its networks.
    pub networks: Vec<IpNet>,
    /// The rules, ready for [`crate::apply`].
    pub policy: Policy,
    /// Why each rule is there, by rule index.
    pub origins: Vec<Origin>,
}

/// Every member of a group, through the groups it contains.
#[derive(Clone, Debug, Default)]
pub struct Members {
    /// Member interfaces.
    pub interfaces: BTreeSet<String>,
    /// Member networks: the CIDRs and the member interfaces' networks.
    pub networks: Vec<IpNet>,
}

impl GroupPolicy {
    /// The members of group `name`, nested groups included (the file is checked: no cycle).
    pub fn members(&self, name: &str, node: &Node) -> Members {
        let mut members = Members::default();
        let mut pending = vec![name.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(group) = self.group(&name) else {
                continue;
            };
            for member in &group.members {
                match member {
                    Member::Interface { name, .. } => {
                        if members.interfaces.insert(name.clone()) {
                            members
                                .networks
                                .extend(node.interfaces.get(name).into_iter().flatten().copied());
                        }
                    }
                    Member::Network(net) => members.networks.push(*net),
                    Member::Group(inner) => pending.push(inner.clone()),
                }
            }
        }
        members.networks.sort();
        members.networks.dedup();
        members
    }

    /// Every member interface, in name order.
    pub fn member_interfaces(&self) -> BTreeSet<String> {
        self.groups
            .iter()
            .flat_map(|group| &group.members)
            .filter_map(|member| match member {
                Member::Interface { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The narrower of two networks when one holds the other; None when they are disjoint.
fn overlap(a: IpNet, b: IpNet) -> Option<IpNet> {
    if a.contains(&b) {
        Some(b)
    } else if b.contains(&a) {
        Some(a)
    } else {
        None
    }
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!(a, IpNet::V4(_)) == matches!(b, IpNet::V4(_))
}

/// Whether `allow`'s protocol can go with networks of `net`'s family.
fn protocol_fits(allow: &Allow, net: &IpNet) -> bool {
    !matches!(
        (allow.proto, net),
        (Some(proto::ICMP), IpNet::V6(_)) | (Some(proto::ICMPV6), IpNet::V4(_))
    )
}

/// Builds the rule list of one interface.
struct RuleList {
    rules: Vec<Rule>,
    origins: Vec<Origin>,
}

impl RuleList {
    fn push(&mut self, origin: Origin, line: usize, rule: Rule) {
        self.rules.push(Rule {
            name: origin.to_string(),
            line,
            priority: self.rules.len() as u32,
            ..rule
        });
        self.origins.push(origin);
    }

    /// An accept of `allow`'s protocol and ports from `src` to `dst`.
    fn allow(&mut self, origin: Origin, allow: &Allow, src: Option<IpNet>, dst: IpNet) {
        self.push(
            origin,
            allow.line,
            Rule {
                src,
                dst: Some(dst),
                proto: allow.proto,
                dst_ports: allow.ports.clone(),
                icmp_type: allow.icmp_type,
                icmp_code: allow.icmp_code,
                ..blank_rule(verdict::ACCEPT)
            },
        );
    }
}

fn blank_rule(action: u8) -> Rule {
    Rule {
        name: String::new(),
        line: 0,
        priority: 0,
        src: None,
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        icmp_type: None,
        icmp_code: None,
        ct_states: 0,
        iface: None,
        verdict: action,
    }
}

fn host_network(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

/// Compiles `policy` to one firewall policy per member interface; `node` gives the member
/// interfaces' networks and the node's addresses.
pub fn compile(policy: &GroupPolicy, node: &Node) -> Result<Vec<InterfacePolicy>, PolicyError> {
    let members: BTreeMap<&str, Members> = policy
        .groups
        .iter()
        .map(|group| (group.name.as_str(), policy.members(&group.name, node)))
        .collect();
    let mut all_member_networks: Vec<IpNet> = members
        .values()
        .flat_map(|members| members.networks.iter().copied())
        .collect();
    all_member_networks.sort();
    all_member_networks.dedup();
    let node_addresses: Vec<IpNet> = node
        .local
        .iter()
        .map(|address| host_network(*address))
        .filter(|address| all_member_networks.iter().any(|net| net.contains(address)))
        .collect();
    let mut compiled = Vec::new();
    let interfaces = policy
        .member_interfaces()
        .into_iter()
        .map(|iface| (iface, false))
        .chain(policy.edges.iter().map(|(iface, _)| (iface.clone(), true)));
    for (iface, edge) in interfaces {
        let own: Vec<IpNet> = node.interfaces.get(&iface).cloned().unwrap_or_default();
        let groups: Vec<&str> = policy
            .groups
            .iter()
            .filter(|group| members[group.name.as_str()].interfaces.contains(&iface))
            .map(|group| group.name.as_str())
            .collect();
        // The sources this interface's endpoint sends from: its networks, else anything (an
        // edge: anything; what comes from outside has no network of its own).
        let sources = |peer: IpNet| -> Vec<Option<IpNet>> {
            if own.is_empty() || edge {
                return vec![Some(peer)];
            }
            own.iter()
                .filter_map(|net| overlap(peer, *net))
                .map(Some)
                .collect()
        };
        let own_sources = |dst: &IpNet| -> Vec<Option<IpNet>> {
            if own.is_empty() {
                return vec![None];
            }
            own.iter()
                .filter(|net| same_family(net, dst))
                .map(|net| Some(*net))
                .collect()
        };
        let mut list = RuleList {
            rules: Vec::new(),
            origins: Vec::new(),
        };
        list.push(
            Origin::Replies,
            0,
            Rule {
                ct_states: ct_state::ESTABLISHED | ct_state::RELATED,
                ..blank_rule(verdict::ACCEPT)
            },
        );
        for kind in 133..=136 {
            list.push(
                Origin::NeighbourDiscovery,
                0,
                Rule {
                    proto: Some(proto::ICMPV6),
                    icmp_type: Some(kind),
                    ..blank_rule(verdict::ACCEPT)
                },
            );
        }
        let outbound = |list: &mut RuleList, only_to: Option<IpNet>| {
            for group in &groups {
                let group = policy.group(group).expect("a group of the file");
                for (index, allow) in group.allow_out.iter().enumerate() {
                    let Peer::Network(to) = allow.peer else {
                        continue;
                    };
                    let dst = match only_to {
                        None => Some(to),
                        Some(address) => to.contains(&address).then_some(address),
                    };
                    let Some(dst) = dst.filter(|dst| protocol_fits(allow, dst)) else {
                        continue;
                    };
                    let origin = Origin::AllowOut {
                        group: group.name.clone(),
                        index,
                        line: allow.line,
                    };
                    for src in own_sources(&dst) {
                        list.allow(origin.clone(), allow, src, dst);
                    }
                }
            }
        };
        for address in &node_addresses {
            if edge {
                list.push(
                    Origin::ToNode,
                    0,
                    Rule {
                        dst: Some(*address),
                        ..blank_rule(verdict::ACCEPT)
                    },
                );
                continue;
            }
            outbound(&mut list, Some(*address));
            list.push(
                Origin::NodeAddress,
                0,
                Rule {
                    dst: Some(*address),
                    ..blank_rule(verdict::DROP)
                },
            );
        }
        for group in &policy.groups {
            let destinations = &members[group.name.as_str()].networks;
            for (index, allow) in group.allow_in.iter().enumerate() {
                let peers: Vec<IpNet> = match &allow.peer {
                    Peer::Network(net) => vec![*net],
                    Peer::Group(name) => members[name.as_str()].networks.clone(),
                };
                let origin = Origin::AllowIn {
                    group: group.name.clone(),
                    index,
                    line: allow.line,
                };
                for peer in peers {
                    for src in sources(peer) {
                        for dst in destinations {
                            let fits = src.is_none_or(|src| same_family(&src, dst));
                            if fits && protocol_fits(allow, dst) {
                                list.allow(origin.clone(), allow, src, *dst);
                            }
                        }
                    }
                }
            }
        }
        for dst in &all_member_networks {
            list.push(
                Origin::ToMembers,
                0,
                Rule {
                    dst: Some(*dst),
                    ..blank_rule(verdict::DROP)
                },
            );
        }
        outbound(&mut list, None);
        compiled.push(InterfacePolicy {
            edge,
            groups: groups.iter().map(|name| name.to_string()).collect(),
            networks: own.clone(),
            policy: Policy {
                file: policy.file.clone(),
                rules: list.rules,
                default_verdict: if edge { verdict::ACCEPT } else { verdict::DROP },
                conntrack_limit: None,
                timeouts: [0; timeout::COUNT],
            },
            origins: list.origins,
            iface,
        });
    }
    Ok(compiled)
}

/// Which rule decides a new flow, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    /// The source address.
    pub from: IpAddr,
    /// The destination address.
    pub to: IpAddr,
    /// The interface whose firewall judges the flow (the source's veth); None when the
    /// source enters through no interface of the policy.
    pub ingress: Option<String>,
    /// `tcp`, `udp`, `icmp`...
    pub proto: String,
    /// The destination port (TCP, UDP), or for ICMP type << 8 | code.
    pub port: u16,
    /// The protocol and port (or ICMP type) as people say it: `tcp port 80`.
    pub what: String,
    /// `accept`, `drop`, or `unchecked` (no firewall on the way in).
    pub verdict: String,
    /// The rule that decides (`default` when none does).
    pub rule: String,
    /// The rule's line in the policy file, when it comes from one.
    pub line: Option<usize>,
    /// The groups the source is a member of.
    pub from_groups: Vec<String>,
    /// The groups the destination is a member of.
    pub to_groups: Vec<String>,
    /// Why, in a sentence.
    pub why: String,
}

/// An endpoint of `explain`: an address, or a member or edge interface (its first address
/// that is not the node's own), with the interface it enters the node through: the member
/// or edge whose networks hold it most specifically, else the first edge.
fn endpoint(
    text: &str,
    node: &Node,
    edges: &[(String, usize)],
) -> Result<(IpAddr, Option<String>), PolicyError> {
    if let Ok(address) = text.parse::<IpAddr>() {
        let ingress = node
            .interfaces
            .iter()
            .flat_map(|(iface, nets)| nets.iter().map(move |net| (iface, net)))
            .filter(|(_, net)| net.contains(&address))
            .max_by_key(|(_, net)| net.prefix_len())
            .map(|(iface, _)| iface.clone())
            .or_else(|| edges.first().map(|(iface, _)| iface.clone()));
        return Ok((address, ingress));
    }
    let Some(networks) = node.interfaces.get(text) else {
        return Err(PolicyError::Explain(format!(
            "`{text}` is neither an address nor a member interface of the policy (members: {})",
            node.interfaces
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let address = networks
        .iter()
        .flat_map(|net| net.hosts().take(16))
        .find(|address| !node.local.contains(address))
        .ok_or_else(|| {
            PolicyError::Explain(format!(
                "member interface `{text}` has no routes, so no address stands for it: give an address"
            ))
        })?;
    Ok((address, Some(text.to_string())))
}

/// Explains what the policy does with a new flow from `from` to `to` (addresses or member
/// interfaces) of protocol `protocol` to `port` (for ICMP, echo request when None), from
/// the compiled tables, classified the kernel's way ([`crate::Tables::classify`]).
pub fn explain(
    policy: &GroupPolicy,
    node: &Node,
    from: &str,
    to: &str,
    protocol: u8,
    port: Option<u16>,
) -> Result<Explanation, PolicyError> {
    let (source, ingress) = endpoint(from, node, &policy.edges)?;
    let (destination, _) = endpoint(to, node, &policy.edges)?;
    if source.is_ipv4() != destination.is_ipv4() {
        return Err(PolicyError::Explain(format!(
            "{source} and {destination} are of different IP versions"
        )));
    }
    let groups_of = |address: IpAddr| -> Vec<String> {
        policy
            .groups
            .iter()
            .filter(|group| {
                policy
                    .members(&group.name, node)
                    .networks
                    .iter()
                    .any(|net| net.contains(&address))
            })
            .map(|group| group.name.clone())
            .collect()
    };
    let (from_groups, to_groups) = (groups_of(source), groups_of(destination));
    // For ICMP, the key's port is type << 8 | code; `port` names the type.
    let port = match (protocol, port) {
        (proto::ICMP, None) => 8 << 8,
        (proto::ICMPV6, None) => 128 << 8,
        (proto::ICMP | proto::ICMPV6, Some(kind)) if kind > 255 => {
            return Err(PolicyError::Explain(format!(
                "ICMP type {kind}: types are 0-255"
            )));
        }
        (proto::ICMP | proto::ICMPV6, Some(kind)) => kind << 8,
        (_, port) => port.unwrap_or(0),
    };
    let what = match protocol {
        proto::TCP | proto::UDP => format!("{} port {port}", protocol_name(protocol)),
        proto::ICMP | proto::ICMPV6 => {
            format!("{} type {}", protocol_name(protocol), port >> 8)
        }
        other => protocol_name(other),
    };
    let mut explanation = Explanation {
        from: source,
        to: destination,
        ingress: ingress.clone(),
        proto: protocol_name(protocol),
        port,
        what: what.clone(),
        verdict: "unchecked".into(),
        rule: "none".into(),
        line: None,
        from_groups: from_groups.clone(),
        to_groups: to_groups.clone(),
        why: String::new(),
    };
    let Some(iface) = ingress else {
        explanation.why = format!(
            "{source} enters the node through no interface of the policy, so no firewall \
             judges it: rules run on the ingress of the source's veth"
        );
        return Ok(explanation);
    };
    let compiled = compile(policy, node)?;
    let interface = compiled
        .iter()
        .find(|compiled| compiled.iface == iface)
        .ok_or_else(|| PolicyError::Explain(format!("{iface} is no member interface")))?;
    let tables = crate::compile(&interface.policy, |name| {
        Err(format!("no interface rules in a group policy ({name})"))
    })?;
    let mut key = RuleKey {
        family: if source.is_ipv4() {
            FAMILY_V4
        } else {
            FAMILY_V6
        },
        proto: protocol,
        ct_state: ct_state::NEW,
        src_port: if matches!(protocol, proto::TCP | proto::UDP) {
            40000
        } else {
            0
        },
        dst_port: port,
        ..RuleKey::default()
    };
    let octets = |address: IpAddr| match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    key.src[..octets(source).len()].copy_from_slice(&octets(source));
    key.dst[..octets(destination).len()].copy_from_slice(&octets(destination));
    let (decided, counter) = tables.classify(&key);
    explanation.verdict = if decided == verdict::ACCEPT {
        "accept"
    } else {
        "drop"
    }
    .into();
    let list = |groups: &[String]| {
        if groups.is_empty() {
            "no group".to_string()
        } else {
            groups.join(", ")
        }
    };
    let origin = (counter > 0).then(|| &interface.origins[counter as usize - 1]);
    explanation.rule = origin.map_or("default".into(), Origin::to_string);
    explanation.line = origin.and_then(|origin| match origin {
        Origin::AllowIn { line, .. } | Origin::AllowOut { line, .. } => Some(*line),
        _ => None,
    });
    let allow_of = |group: &str, index: usize, inward: bool| -> Option<&Allow> {
        let group = policy.group(group)?;
        if inward {
            group.allow_in.get(index)
        } else {
            group.allow_out.get(index)
        }
    };
    explanation.why = match origin {
        Some(Origin::AllowIn { group, index, line }) => {
            let peer = allow_of(group, *index, true).map_or(String::new(), |a| a.peer.to_string());
            format!(
                "{destination} is a member of {}; allow_in #{} of `{group}` (line {line}) lets \
                 {what} in from {peer}, which holds {source} ({}); judged on {iface}, where \
                 it enters the node; replies come back as established",
                list(&to_groups),
                index + 1,
                list(&from_groups)
            )
        }
        Some(Origin::AllowOut { group, index, line }) => format!(
            "{destination} is in no group; allow_out #{} of `{group}` (line {line}), a group of \
             {source}, lets {what} out; replies come back as established",
            index + 1
        ),
        Some(Origin::ToMembers) => format!(
            "{destination} is a member of {}, and no allow_in of theirs lets {what} in from \
             {source} ({}): dropped on {iface} and counted",
            list(&to_groups),
            list(&from_groups)
        ),
        Some(Origin::NodeAddress) => format!(
            "{destination} is the node's own address, no member; no allow_out of {} lets {what} \
             out to it: dropped on {iface} and counted",
            list(&from_groups)
        ),
        Some(other) => format!("{other}: a new flow of {what} matched it"),
        None if decided == verdict::ACCEPT => format!(
            "{destination} is no member, and {iface} is an edge: what is not for a member goes on"
        ),
        None => format!(
            "{destination} is in no group, and no allow_out of {source}'s groups ({}) lets \
             {what} out: dropped by the default on {iface} and counted",
            list(&from_groups)
        ),
    };
    Ok(explanation)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const POLICY: &str = r#"
[[group]]
name = "web"
members = ["v-web1", "v-web2"]
allow_in = [ { from = "group:lb", proto = "tcp", port = 80 },
             { from = "0.0.0.0/0", proto = "icmp" } ]
[[group]]
name = "db"
members = ["v-db1"]
allow_in = [ { from = "group:web", proto = "tcp", port = 5432 } ]
[[group]]
name = "lb"
members = ["v-lb1"]
allow_out = [ { to = "192.0.2.0/24", proto = "udp", port = 53 } ]
[[group]]
name = "ops"
members = ["10.9.0.0/16", "group:db"]
allow_in = [ { from = "group:lb", proto = "tcp", port = 22 } ]
"#;

    fn node() -> Node {
        let net = |text: &str| text.parse::<IpNet>().unwrap();
        Node {
            interfaces: [
                ("v-web1", "10.91.1.0/24"),
                ("v-web2", "10.91.2.0/24"),
                ("v-db1", "10.91.3.0/24"),
                ("v-lb1", "10.91.4.0/24"),
            ]
            .into_iter()
            .map(|(iface, network)| (iface.to_string(), vec![net(network)]))
            .collect(),
            local: [
                "10.91.1.1",
                "10.91.2.1",
                "10.91.3.1",
                "10.91.4.1",
                "127.0.0.1",
            ]
            .iter()
            .map(|address| address.parse().unwrap())
            .collect(),
        }
    }

    fn policy() -> GroupPolicy {
        GroupPolicy::parse(Path::new("policy.toml"), POLICY).unwrap()
    }

    fn explain_new(from: &str, to: &str, protocol: u8, port: Option<u16>) -> Explanation {
        explain(&policy(), &node(), from, to, protocol, port).unwrap()
    }

    #[test]
    fn each_member_interface_gets_a_policy_of_its_groups() {
        let compiled = compile(&policy(), &node()).unwrap();
        let names: Vec<&str> = compiled.iter().map(|c| c.iface.as_str()).collect();
        assert_eq!(names, ["v-db1", "v-lb1", "v-web1", "v-web2"]);
        let db = &compiled[0];
        assert_eq!(db.groups, ["db", "ops"], "db is in ops through group:db");
        for interface in &compiled {
            assert_eq!(interface.origins[0], Origin::Replies);
            assert_eq!(interface.policy.default_verdict, verdict::DROP);
            // Every policy compiles within the firewall's limits.
            crate::compile(&interface.policy, |_| Err(String::new())).unwrap();
        }
    }

    #[test]
    fn allowed_paths_accept_and_forbidden_ones_drop() {
        let cases = [
            // lb may reach web on 80, web may reach db on 5432.
            (
                "v-lb1",
                "10.91.1.2",
                proto::TCP,
                Some(80),
                "accept",
                "web allow_in #1 (line 5)",
            ),
            (
                "10.91.4.7",
                "v-web2",
                proto::TCP,
                Some(80),
                "accept",
                "web allow_in #1 (line 5)",
            ),
            (
                "v-web1",
                "v-db1",
                proto::TCP,
                Some(5432),
                "accept",
                "db allow_in #1 (line 10)",
            ),
            // Anyone may ping web.
            (
                "v-db1",
                "v-web1",
                proto::ICMP,
                None,
                "accept",
                "web allow_in #2 (line 6)",
            ),
            // Forbidden: lb to db, db to web on 80, web to web, anyone to lb.
            (
                "v-lb1",
                "v-db1",
                proto::TCP,
                Some(5432),
                "drop",
                "drop: to members, not in their allow_in",
            ),
            (
                "v-db1",
                "v-web1",
                proto::TCP,
                Some(80),
                "drop",
                "drop: to members, not in their allow_in",
            ),
            (
                "v-web1",
                "v-web2",
                proto::TCP,
                Some(80),
                "drop",
                "drop: to members, not in their allow_in",
            ),
            (
                "v-web1",
                "v-lb1",
                proto::ICMP,
                None,
                "drop",
                "drop: to members, not in their allow_in",
            ),
            // ops holds db (nested) and a CIDR: lb may reach both on 22.
            (
                "v-lb1",
                "v-db1",
                proto::TCP,
                Some(22),
                "accept",
                "ops allow_in #1 (line 18)",
            ),
            (
                "v-lb1",
                "10.9.3.3",
                proto::TCP,
                Some(22),
                "accept",
                "ops allow_in #1 (line 18)",
            ),
            // Outside every group: only allow_out lets out.
            (
                "v-lb1",
                "192.0.2.53",
                proto::UDP,
                Some(53),
                "accept",
                "lb allow_out #1 (line 14)",
            ),
            (
                "v-lb1",
                "192.0.2.53",
                proto::UDP,
                Some(54),
                "drop",
                "default",
            ),
            (
                "v-web1",
                "192.0.2.53",
                proto::UDP,
                Some(53),
                "drop",
                "default",
            ),
            // The node's own gateway address is no member of web.
            (
                "v-lb1",
                "10.91.1.1",
                proto::TCP,
                Some(80),
                "drop",
                "drop: the node's own address",
            ),
        ];
        for (from, to, protocol, port, verdict, rule) in cases {
            let explanation = explain_new(from, to, protocol, port);
            assert_eq!(
                (explanation.verdict.as_str(), explanation.rule.as_str()),
                (verdict, rule),
                "{from} -> {to} {protocol}/{port:?}: {explanation:?}"
            );
        }
    }

    #[test]
    fn an_edge_holds_outside_traffic_to_the_members_allow_in_and_lets_the_rest_on() {
        let text = format!("edge = [\"v-up\"]\n{POLICY}");
        let policy = GroupPolicy::parse(Path::new("policy.toml"), &text).unwrap();
        let mut node = node();
        node.interfaces.insert("v-up".into(), Vec::new());
        let compiled = compile(&policy, &node).unwrap();
        let up = compiled.iter().find(|c| c.iface == "v-up").unwrap();
        assert!(up.edge && up.groups.is_empty());
        assert_eq!(up.policy.default_verdict, verdict::ACCEPT);
        let outside = "198.51.100.1";
        let cases = [
            (
                "v-web1",
                proto::TCP,
                Some(80),
                "drop",
                "drop: to members, not in their allow_in",
            ),
            (
                "v-web1",
                proto::ICMP,
                None,
                "accept",
                "web allow_in #2 (line 7)",
            ),
            (
                "v-lb1",
                proto::ICMP,
                None,
                "drop",
                "drop: to members, not in their allow_in",
            ),
            ("203.0.113.9", proto::TCP, Some(443), "accept", "default"),
            (
                "10.91.1.1",
                proto::TCP,
                Some(22),
                "accept",
                "the node's own address (no member)",
            ),
        ];
        for (to, protocol, port, verdict, rule) in cases {
            let explanation = explain(&policy, &node, outside, to, protocol, port).unwrap();
            assert_eq!(explanation.ingress.as_deref(), Some("v-up"));
            assert_eq!(
                (explanation.verdict.as_str(), explanation.rule.as_str()),
                (verdict, rule),
                "{to} {protocol}/{port:?}: {explanation:?}"
            );
        }
        // Members' sources still enter through their own veth, not the edge.
        let from_lb = explain(&policy, &node, "10.91.4.2", "v-web1", proto::TCP, Some(80)).unwrap();
        assert_eq!(from_lb.ingress.as_deref(), Some("v-lb1"));
    }

    #[test]
    fn explain_says_why_and_where() {
        let allowed = explain_new("v-lb1", "v-web1", proto::TCP, Some(80));
        assert_eq!(allowed.from, "10.91.4.2".parse::<IpAddr>().unwrap());
        assert_eq!(allowed.ingress.as_deref(), Some("v-lb1"));
        assert_eq!(allowed.line, Some(5));
        assert_eq!(allowed.to_groups, ["web"]);
        assert!(allowed.why.contains("from group:lb"), "{}", allowed.why);
        let dropped = explain_new("v-lb1", "v-db1", proto::TCP, Some(5432));
        assert!(
            dropped.why.contains("member of db, ops, and no allow_in"),
            "{}",
            dropped.why
        );
        let outside = explain_new("198.51.100.1", "v-web1", proto::TCP, Some(80));
        assert_eq!(outside.verdict, "unchecked");
        assert!(outside.why.contains("no interface of the policy"));
        let unknown = explain(&policy(), &node(), "v-nope", "v-web1", proto::TCP, Some(80));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("`v-nope` is neither an address nor a member interface")
        );
    }
}
