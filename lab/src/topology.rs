//! The topology lab: "hosts" (namespaces, like containers) in up to three subnets, each
//! host's veth peer in one "node" namespace where a topology (bridges and a router) or
//! Linux's own forwarding joins them; for the topology tests and benchmarks.
//!
//! ```text
//!  <p>-a1  eth0 10.31.1.11 fd31:1::11 ---- <p>-na1 ┐
//!  <p>-a2  eth0 10.31.1.12 fd31:1::12 ---- <p>-na2 ┤  <p>-node: nothing configured;
//!  <p>-b1  eth0 10.31.2.11 fd31:2::11 ---- <p>-nb1 ┤  the topology (or a test) joins
//!  <p>-b2  eth0 10.31.2.12 fd31:2::12 ---- <p>-nb2 ┤  these interfaces
//!  <p>-c1  eth0 10.31.3.11 fd31:3::11 ---- <p>-nc1 ┘
//! ```
//!
//! Subnet `n` is 10.31.n.0/24 and fd31:n::/64, its gateway .1 (::1); every host routes
//! 10.31.0.0/16 and fd31::/16 through its gateway and nowhere else. The hosts keep the
//! kernel's defaults (offloads, MTU).

use std::net::IpAddr;

use serde::Serialize;

use crate::{Endpoint, LabError, Namespaces, configure, endpoint, netlink, netns};

/// One host of the lab.
#[derive(Clone, Debug, Serialize)]
pub struct TopologyHost {
    /// Its name: the subnet's letter and its number ("a1").
    pub name: String,
    /// Its subnet (1 for a, 2 for b, 3 for c).
    pub subnet: u8,
    /// Its interface, in its namespace.
    pub host: Endpoint,
    /// The veth peer in the node namespace.
    pub node_iface: String,
}

impl TopologyHost {
    /// The subnet's IPv4 gateway.
    pub fn gateway_v4(&self) -> IpAddr {
        format!("10.31.{}.1", self.subnet).parse().unwrap()
    }

    /// The subnet's IPv6 gateway.
    pub fn gateway_v6(&self) -> IpAddr {
        format!("fd31:{}::1", self.subnet).parse().unwrap()
    }
}

/// The lab of the module's doc: torn down on drop, like [`crate::Lab`].
#[derive(Debug, Serialize)]
pub struct TopologyLab {
    /// The lab's prefix: every namespace is `<prefix>-<role>`.
    pub prefix: String,
    /// The node's namespace.
    pub node: String,
    /// The hosts, a1, a2, b1, b2, c1.
    pub hosts: Vec<TopologyHost>,
    namespaces: Namespaces,
}

/// The hosts: (name, subnet, number in the subnet).
const HOSTS: [(&str, u8, u8); 5] = [
    ("a1", 1, 11),
    ("a2", 1, 12),
    ("b1", 2, 11),
    ("b2", 2, 12),
    ("c1", 3, 11),
];

impl TopologyLab {
    /// Builds the lab.
    pub fn up(prefix: &str) -> Result<TopologyLab, LabError> {
        let mut roles = vec!["node"];
        roles.extend(HOSTS.iter().map(|(name, _, _)| *name));
        let namespaces = Namespaces::create(prefix, &roles)?;
        let hosts = HOSTS
            .iter()
            .enumerate()
            .map(|(at, (name, subnet, number))| TopologyHost {
                name: name.to_string(),
                subnet: *subnet,
                host: endpoint(
                    &namespaces.names[at + 1],
                    "eth0".to_string(),
                    &format!("10.31.{subnet}.{number}"),
                    &format!("fd31:{subnet}::{number}"),
                ),
                node_iface: format!("{prefix}-n{name}"),
            })
            .collect();
        let lab = TopologyLab {
            prefix: prefix.to_string(),
            node: namespaces.names[0].clone(),
            hosts,
            namespaces,
        };
        lab.build()?;
        Ok(lab)
    }

    /// A lab for one test, named like `Lab::for_test` (a leftover of the same name is
    /// removed first; Ctrl-C tears it down).
    pub fn for_test(tag: &str) -> TopologyLab {
        assert_eq!(tag.len(), 2, "test tags are two letters");
        crate::Lab::teardown_on_signals();
        let prefix = format!("fp{tag}{:04}", std::process::id() % 10000);
        let _ = crate::Lab::down(&prefix);
        TopologyLab::up(&prefix).expect("topology lab up")
    }

    /// The host named `name` ("a1").
    pub fn host(&self, name: &str) -> &TopologyHost {
        self.hosts
            .iter()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Linux's own forwarding between subnets a and b, the topology benchmarks' peer: the
    /// gateways' IPv4 addresses on a1's and b1's veth peers in the node and `ip_forward=1`.
    /// A topology joined to those interfaces takes their packets at XDP first, so the two
    /// can stay configured side by side and take turns.
    pub fn linux_forwarding(&self) -> Result<(), LabError> {
        let (a1, b1) = (self.host("a1").clone(), self.host("b1").clone());
        netns::run_in(&self.node, move || -> Result<(), LabError> {
            netlink::add_address(&a1.node_iface, a1.gateway_v4(), 24)?;
            netlink::add_address(&b1.node_iface, b1.gateway_v4(), 24)?;
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| LabError::io("enable forwarding in the node", e))
        })?
    }

    /// A Linux bridge `name` of a1's and a2's veth peers in the node, up (the topology
    /// benchmarks' other peer); deleting it lets the ports go.
    pub fn linux_bridge(&self, name: &str) -> Result<(), LabError> {
        let (bridge, a1, a2) = (
            name.to_string(),
            self.host("a1").node_iface.clone(),
            self.host("a2").node_iface.clone(),
        );
        netns::run_in(&self.node, move || -> Result<(), LabError> {
            netlink::add_bridge(&bridge)?;
            netlink::enslave(&a1, &bridge)?;
            netlink::enslave(&a2, &bridge)?;
            netlink::set_up(&bridge)
        })?
    }

    fn build(&self) -> Result<(), LabError> {
        for host in &self.hosts {
            let node_side = Endpoint {
                namespace: self.node.clone(),
                iface: host.node_iface.clone(),
                ipv4: host.host.ipv4,
                ipv6: host.host.ipv6,
                mac: String::new(),
            };
            crate::veth_pair(&node_side, &host.host, 1)?;
            let iface = host.node_iface.clone();
            netns::run_in(&self.node, move || netlink::set_up(&iface))??;
            configure(&host.host)?;
            let (v4, v6) = (host.gateway_v4(), host.gateway_v6());
            netns::run_in(&host.host.namespace, move || {
                netlink::add_route("10.31.0.0".parse().unwrap(), 16, v4)?;
                netlink::add_route("fd31::".parse().unwrap(), 16, v6)
            })??;
        }
        Ok(())
    }
}
