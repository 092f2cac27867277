//! Groups compiled to one firewall policy per member (and edge) interface.
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
    firewall::{ct_state, timeout, verdict},
    proto,
};
use serde::{Deserialize, Serialize};

use super::{
    PolicyError,
    file::{Allow, GroupPolicy, Member, Peer},
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
    /// The rules, ready for [`crate::prepare`].
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
        verdict: action,
        ..Rule::default()
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
                conntrack_tcp: 0,
                timeouts: [0; timeout::COUNT],
            },
            origins: list.origins,
            iface,
        });
    }
    Ok(compiled)
}
