//! A group policy on this network namespace: its member interfaces read from the kernel,
//! each one's firewall applied, the record of what was applied, its counters, its removal.
//!
//! ```text
//! /run/fastpath/netns/<cookie>/policy/policy.json   the applied policy's text, the networks
//!                                                 it was compiled with, its interfaces
//! /run/fastpath/netns/<cookie>/policy/policy.lock   one apply or remove at a time
//! ```

use std::{collections::BTreeSet, fs, path::PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Explanation, GroupPolicy, Member, Node, PolicyError, compile, explain};
use crate::{RuleCounters, conntrack::TableStatus};

/// The networks a member interface stands for: the `main` table's unicast routes through
/// it, without link-local and multicast ones (never forwarded).
fn networks_of(routes: &[nic::Route], ifindex: u32) -> Vec<IpNet> {
    let mut networks: Vec<IpNet> = routes
        .iter()
        .filter(|route| {
            route.table == nic::Route::MAIN_TABLE
                && route.unicast
                && route.ifindex == Some(ifindex)
                && route.prefix_len > 0
        })
        .filter_map(|route| IpNet::new(route.prefix?, route.prefix_len).ok())
        .map(|net| net.trunc())
        .filter(|net| match net {
            IpNet::V4(net) => !net.addr().is_multicast() && !net.addr().is_link_local(),
            IpNet::V6(net) => {
                let first = net.addr().segments()[0];
                first & 0xffc0 != 0xfe80 && first & 0xff00 != 0xff00
            }
        })
        .collect();
    networks.sort();
    networks.dedup();
    networks
}

/// Reads what `policy` needs from this network namespace: each member interface's networks
/// (an unknown interface is an error naming its line) and the node's addresses.
pub fn resolve(policy: &GroupPolicy) -> Result<(Node, Vec<String>), PolicyError> {
    let routes = nic::routes().map_err(|source| PolicyError::Netlink {
        what: "routes",
        source,
    })?;
    let mut node = Node::default();
    let mut warnings = Vec::new();
    for group in &policy.groups {
        for member in &group.members {
            let Member::Interface { name, line } = member else {
                continue;
            };
            if node.interfaces.contains_key(name) {
                continue;
            }
            let ifindex = nix::net::if_::if_nametoindex(name.as_str()).map_err(|errno| {
                PolicyError::Line {
                    file: policy.file.clone(),
                    line: *line,
                    message: format!(
                        "group `{}`: members: no interface `{name}` in this network namespace ({errno})",
                        group.name
                    ),
                }
            })?;
            let networks = networks_of(&routes, ifindex);
            if networks.is_empty() {
                warnings.push(format!(
                    "{}: line {line}: group `{}`: member `{name}` has no routes through it, so \
                     no address stands for it as a destination",
                    policy.file.display(),
                    group.name
                ));
            }
            node.interfaces.insert(name.clone(), networks);
        }
    }
    for (name, line) in &policy.edges {
        let ifindex =
            nix::net::if_::if_nametoindex(name.as_str()).map_err(|errno| PolicyError::Line {
                file: policy.file.clone(),
                line: *line,
                message: format!("edge: no interface `{name}` in this network namespace ({errno})"),
            })?;
        node.interfaces
            .insert(name.clone(), networks_of(&routes, ifindex));
    }
    let mut local = BTreeSet::new();
    for iface in nic::interfaces() {
        let addresses = nic::addresses(&iface).map_err(|source| PolicyError::Netlink {
            what: "addresses",
            source,
        })?;
        local.extend(addresses);
    }
    node.local = local.into_iter().collect();
    Ok((node, warnings))
}

/// What was applied to one member interface.
#[derive(Clone, Debug, Serialize)]
pub struct InterfaceApplied {
    /// The interface.
    pub iface: String,
    /// Whether it is an edge (else a member).
    pub edge: bool,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its networks.
    pub networks: Vec<IpNet>,
    /// Firewall rules compiled for it.
    pub rules: usize,
    /// Distinct masks (hash probes per packet).
    pub masks: usize,
    /// Hash entries.
    pub entries: usize,
    /// Whether the firewall module was loaded by this apply (else its policy switched).
    pub loaded_module: bool,
    /// The bank now running; None with `--check`.
    pub bank: Option<u32>,
}

/// What `apply` did (or, checked, would do).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyApplied {
    /// The policy file.
    pub file: PathBuf,
    /// Whether this was a check only (nothing changed).
    pub checked: bool,
    /// Each member interface.
    pub interfaces: Vec<InterfaceApplied>,
    /// Nanoseconds from just before the first interface's switch to just after the last
    /// one's: the most time the interfaces ran different policies. None with `--check`.
    pub switch_window_ns: Option<u64>,
    /// Interfaces of the previous policy whose firewall was removed (with `--check`: would
    /// be).
    pub removed: Vec<String>,
    /// Shadowed rules and members without routes.
    pub warnings: Vec<String>,
}

/// The record of the policy applied in a namespace.
#[derive(Serialize, Deserialize)]
struct Record {
    file: PathBuf,
    source: String,
    node: Node,
    interfaces: Vec<String>,
}

/// The namespace's policy folder (`offload::netns`: one per network namespace).
fn state_dir() -> PathBuf {
    offload::netns::run_dir().join("policy")
}

/// The record's path.
fn record_path() -> Result<PathBuf, PolicyError> {
    Ok(state_dir().join("policy.json"))
}

/// Holds the namespace's policy lock while a command changes its policy: two applies at
/// once would interleave their interfaces and records.
fn lock() -> Result<nix::fcntl::Flock<fs::File>, PolicyError> {
    let path = record_path()?.with_extension("lock");
    let dir = state_dir();
    fs::create_dir_all(&dir).map_err(|source| PolicyError::State {
        action: "mkdir",
        path: dir,
        source,
    })?;
    let file = fs::File::create(&path).map_err(|source| PolicyError::State {
        action: "open",
        path: path.clone(),
        source,
    })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        PolicyError::State {
            action: "lock",
            path,
            source: errno.into(),
        }
    })
}

fn read_record() -> Result<Option<Record>, PolicyError> {
    let path = record_path()?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PolicyError::State {
                action: "read",
                path,
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| PolicyError::State {
            action: "parse",
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        })
}

fn write_record(record: &Record) -> Result<(), PolicyError> {
    let path = record_path()?;
    let dir = state_dir();
    fs::create_dir_all(&dir).map_err(|source| PolicyError::State {
        action: "mkdir",
        path: dir,
        source,
    })?;
    let text = serde_json::to_string_pretty(record).expect("a record serializes");
    // Written beside, then renamed: a reader never sees half a record.
    let partial = path.with_extension("json.partial");
    fs::write(&partial, text)
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(|source| PolicyError::State {
            action: "write",
            path,
            source,
        })
}

/// Compiles `policy` (read from `source`) for this namespace and makes it every member
/// interface's firewall policy in two phases: every interface is prepared (module loaded,
/// policy written to its idle bank) and only if all were, all are switched back to back,
/// one map write each ([`crate::switch`]); a failure to prepare one leaves every interface
/// on its running policy. Then the firewall of interfaces of the previous policy that are
/// no member any more is removed. With `check`, reads and compiles everything and changes
/// nothing.
pub fn apply(
    policy: &GroupPolicy,
    source: &str,
    check: bool,
) -> Result<PolicyApplied, PolicyError> {
    let (node, mut warnings) = resolve(policy)?;
    warnings.splice(0..0, policy.warnings.iter().cloned());
    let compiled = compile(policy, &node)?;
    let _lock = if check { None } else { Some(lock()?) };
    let previous = read_record()?;
    let members: BTreeSet<String> = compiled.iter().map(|c| c.iface.clone()).collect();
    let leaving: Vec<String> = previous
        .iter()
        .flat_map(|record| &record.interfaces)
        .filter(|iface| !members.contains(*iface))
        .cloned()
        .collect();
    if !check {
        // Recorded first with every interface it may touch: a failure half way leaves a
        // record that the next apply or `policy remove` cleans up from. It keeps the
        // running policy's text while nothing has switched.
        let (file, source, node) = match &previous {
            Some(record) => (
                record.file.clone(),
                record.source.clone(),
                record.node.clone(),
            ),
            None => (policy.file.clone(), source.to_string(), node.clone()),
        };
        let mut interfaces: BTreeSet<String> = members.iter().chain(&leaving).cloned().collect();
        interfaces.extend(previous.iter().flat_map(|record| record.interfaces.clone()));
        write_record(&Record {
            file,
            source,
            node,
            interfaces: interfaces.into_iter().collect(),
        })?;
    }
    // Phase one: every interface readied, none switched. A failure drops what was
    // prepared, which leaves every interface on the policy it runs.
    let mut prepared = Vec::with_capacity(compiled.len());
    for interface in &compiled {
        match crate::prepare(&interface.iface, &interface.policy, check) {
            Ok(ready) => prepared.push(ready),
            Err(source) => {
                drop(prepared);
                if !check {
                    restore_record(previous.as_ref())?;
                }
                return Err(PolicyError::Prepare {
                    iface: interface.iface.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
    // Phase two: every interface switched, one map write each, back to back.
    let switched = crate::switch(prepared)?;
    let interfaces = compiled
        .iter()
        .zip(&switched.applied)
        .map(|(interface, applied)| InterfaceApplied {
            iface: interface.iface.clone(),
            edge: interface.edge,
            groups: interface.groups.clone(),
            networks: interface.networks.clone(),
            rules: applied.rules,
            masks: applied.masks,
            entries: applied.entries,
            loaded_module: applied.loaded_module,
            bank: applied.bank,
        })
        .collect();
    if !check {
        for iface in &leaving {
            remove_firewall(iface)?;
        }
        write_record(&Record {
            file: policy.file.clone(),
            source: source.to_string(),
            node,
            interfaces: members.into_iter().collect(),
        })?;
    }
    Ok(PolicyApplied {
        file: policy.file.clone(),
        checked: check,
        interfaces,
        switch_window_ns: switched
            .window
            .map(|window| u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)),
        removed: leaving,
        warnings,
    })
}

/// Puts back the record of the policy that runs after an apply that switched nothing.
fn restore_record(previous: Option<&Record>) -> Result<(), PolicyError> {
    match previous {
        Some(record) => write_record(record),
        None => {
            let path = record_path()?;
            match fs::remove_file(&path) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    Err(PolicyError::State {
                        action: "remove",
                        path,
                        source,
                    })
                }
                _ => Ok(()),
            }
        }
    }
}

/// Removes the firewall of `iface`, unless the interface is gone (its pins went with it
/// when its chain was pruned) or has none.
fn remove_firewall(iface: &str) -> Result<(), PolicyError> {
    if nix::net::if_::if_nametoindex(iface).is_err() {
        return Ok(());
    }
    crate::remove(iface)?;
    Ok(())
}

/// Removes the applied policy: every member interface's firewall and the record. Returns
/// the interfaces.
pub fn remove() -> Result<Vec<String>, PolicyError> {
    let _lock = lock()?;
    let record = read_record()?.ok_or(PolicyError::NotApplied)?;
    for iface in &record.interfaces {
        remove_firewall(iface)?;
    }
    let path = record_path()?;
    fs::remove_file(&path).map_err(|source| PolicyError::State {
        action: "remove",
        path,
        source,
    })?;
    Ok(record.interfaces)
}

fn applied_policy() -> Result<(GroupPolicy, Node), PolicyError> {
    let record = read_record()?.ok_or(PolicyError::NotApplied)?;
    let policy = GroupPolicy::parse(&record.file, &record.source)?;
    Ok((policy, record.node))
}

/// Explains the applied policy's verdict on a new flow ([`explain`]).
pub fn explain_applied(
    from: &str,
    to: &str,
    protocol: u8,
    port: Option<u16>,
) -> Result<Explanation, PolicyError> {
    let (policy, node) = applied_policy()?;
    explain(&policy, &node, from, to, protocol, port)
}

/// One group as applied.
#[derive(Clone, Debug, Serialize)]
pub struct GroupShown {
    /// Its name.
    pub name: String,
    /// Its members as written.
    pub members: Vec<String>,
    /// Every member interface, nested groups included.
    pub interfaces: Vec<String>,
    /// Every member network, nested groups included.
    pub networks: Vec<IpNet>,
    /// `allow_in` rules.
    pub allow_in: usize,
    /// `allow_out` rules.
    pub allow_out: usize,
}

/// One member interface's firewall.
#[derive(Clone, Debug, Serialize)]
pub struct InterfaceShown {
    /// The interface.
    pub iface: String,
    /// Whether it is an edge (else a member).
    pub edge: bool,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its networks.
    pub networks: Vec<IpNet>,
    /// Firewall rules compiled for it.
    pub rules: usize,
    /// Packets its accept rules let on.
    pub accepted: u64,
    /// Packets its drop rules and default dropped.
    pub dropped: u64,
    /// Per origin (a group's rule, replies, the drops), summed over the firewall rules it
    /// compiled to, in policy order; the default last.
    pub counters: Vec<RuleCounters>,
}

/// The applied policy.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyShown {
    /// The policy file it was read from.
    pub file: PathBuf,
    /// The groups.
    pub groups: Vec<GroupShown>,
    /// The member interfaces.
    pub interfaces: Vec<InterfaceShown>,
    /// The node's conntrack table.
    pub conntrack: Option<TableStatus>,
}

/// The applied policy: groups, members, and each member interface's counters.
pub fn show() -> Result<PolicyShown, PolicyError> {
    let (policy, node) = applied_policy()?;
    let compiled = compile(&policy, &node)?;
    let groups = policy
        .groups
        .iter()
        .map(|group| {
            let members = policy.members(&group.name, &node);
            GroupShown {
                name: group.name.clone(),
                members: group
                    .members
                    .iter()
                    .map(|member| match member {
                        Member::Interface { name, .. } => name.clone(),
                        Member::Network(net) => net.to_string(),
                        Member::Group(name) => format!("group:{name}"),
                    })
                    .collect(),
                interfaces: members.interfaces.into_iter().collect(),
                networks: members.networks,
                allow_in: group.allow_in.len(),
                allow_out: group.allow_out.len(),
            }
        })
        .collect();
    let mut interfaces = Vec::with_capacity(compiled.len());
    let mut conntrack = None;
    for interface in &compiled {
        let status = crate::status(&interface.iface)?;
        let mut counters: Vec<RuleCounters> = Vec::new();
        let (mut accepted, mut dropped) = (0, status.default.packets);
        for (index, rule) in status.rules.iter().enumerate() {
            match interface.policy.rules.get(index) {
                Some(compiled) if compiled.verdict == offload_common::firewall::verdict::ACCEPT => {
                    accepted += rule.packets
                }
                _ => dropped += rule.packets,
            }
            match counters.iter_mut().find(|seen| seen.name == rule.name) {
                Some(seen) => {
                    seen.packets += rule.packets;
                    seen.bytes += rule.bytes;
                }
                None => counters.push(rule.clone()),
            }
        }
        counters.push(status.default.clone());
        conntrack = Some(status.conntrack);
        interfaces.push(InterfaceShown {
            iface: interface.iface.clone(),
            edge: interface.edge,
            groups: interface.groups.clone(),
            networks: interface.networks.clone(),
            rules: interface.policy.rules.len(),
            accepted,
            dropped,
            counters,
        });
    }
    Ok(PolicyShown {
        file: policy.file.clone(),
        groups,
        interfaces,
        conntrack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_interface_stands_for_the_main_tables_unicast_routes_through_it() {
        let route = |prefix: &str, len: u8, ifindex: u32, table: u32, unicast: bool| nic::Route {
            prefix: Some(prefix.parse().unwrap()),
            prefix_len: len,
            gateway: None,
            ifindex: Some(ifindex),
            table,
            unicast,
        };
        let main = nic::Route::MAIN_TABLE;
        let routes = [
            route("10.91.1.0", 24, 5, main, true),
            route("10.91.9.7", 32, 5, main, true),
            route("10.91.1.1", 32, 5, 255, false), // local
            route("10.91.2.0", 24, 6, main, true), // another interface
            route("fe80::", 64, 5, main, true),    // link-local
            route("fd91:1::", 64, 5, main, true),
            route("ff00::", 8, 5, 255, false),
        ];
        let networks: Vec<String> = networks_of(&routes, 5)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(networks, ["10.91.1.0/24", "10.91.9.7/32", "fd91:1::/64"]);
    }
}
