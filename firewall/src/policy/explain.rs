//! `policy explain`: which rule decides a new flow and why, from the compiled tables,
//! classified the kernel's way.

use std::net::IpAddr;

use offload_common::{
    FAMILY_V4, FAMILY_V6,
    firewall::{RuleKey, ct_state, verdict},
    proto,
};
use serde::Serialize;

use super::{
    Node, Origin, PolicyError, compile,
    file::{Allow, GroupPolicy, protocol_name},
};

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
