//! The VXLAN lab: three "hosts" (namespaces) on one bridged underlay, each with a kernel
//! `vxlan` device (one VNI) and an inner address behind it; for the tunnel tracer's tests.
//!
//! ```text
//!  <p>-h1  <p>-u  10.81.0.1  fd81::1  --+                     <p>-vx 192.168.81.1 fd81:81::1
//!  <p>-h2  <p>-u  10.81.0.2  fd81::2  --+-- [bridge <p>-br     <p>-vx 192.168.81.2 fd81:81::2
//!  <p>-h3  <p>-u  10.81.0.3  fd81::3  --+    in <p>-ul]        <p>-vx 192.168.81.3 fd81:81::3
//! ```
//!
//! The underlay is IPv4 or IPv6 ([`Underlay`]), the UDP port 4789, 8472 or any. Nothing is
//! left to discovery: every underlay and inner neighbour is static and each VXLAN device
//! has one forwarding entry per peer (its MAC to the peer's VTEP), without learning or
//! flooding, so the only frames crossing the tunnels are the ones a test sends.

use std::net::IpAddr;

use serde::Serialize;

use crate::{Endpoint, LabError, Namespaces, configure, endpoint, netlink, netns};

/// The VNI every host's device uses.
pub const VNI: u32 = 81;

/// The underlay's IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Underlay {
    /// VTEPs on 10.81.0.0/24.
    V4,
    /// VTEPs on fd81::/64.
    V6,
}

/// One host: its underlay interface and its VXLAN device.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// The underlay interface (`<p>-u`): where the tracer goes.
    pub underlay: Endpoint,
    /// The VXLAN device (`<p>-vx`) with the inner addresses.
    pub vxlan: Endpoint,
}

impl Host {
    /// The VTEP address: the underlay address of the lab's family.
    pub fn vtep(&self, underlay: Underlay) -> IpAddr {
        match underlay {
            Underlay::V4 => self.underlay.ipv4,
            Underlay::V6 => self.underlay.ipv6,
        }
    }
}

/// The VXLAN lab described in the module docs: torn down on drop, like [`crate::Lab`].
#[derive(Debug, Serialize)]
pub struct VxlanLab {
    /// The lab's prefix: every namespace is `<prefix>-<role>`.
    pub prefix: String,
    /// The underlay's IP version.
    pub underlay: Underlay,
    /// The UDP port the VXLAN devices use.
    pub port: u16,
    /// The three hosts, in `<prefix>-h1` to `<prefix>-h3`.
    pub hosts: Vec<Host>,
    namespaces: Namespaces,
}

impl VxlanLab {
    /// Builds the lab.
    pub fn up(prefix: &str, underlay: Underlay, port: u16) -> Result<VxlanLab, LabError> {
        let namespaces = Namespaces::create(prefix, &["ul", "h1", "h2", "h3"])?;
        let hosts = (1..=3)
            .map(|n| Host {
                underlay: endpoint(
                    &namespaces.names[n],
                    format!("{prefix}-u"),
                    &format!("10.81.0.{n}"),
                    &format!("fd81::{n}"),
                ),
                vxlan: endpoint(
                    &namespaces.names[n],
                    format!("{prefix}-vx"),
                    &format!("192.168.81.{n}"),
                    &format!("fd81:81::{n}"),
                ),
            })
            .collect();
        let lab = VxlanLab {
            prefix: prefix.to_string(),
            underlay,
            port,
            hosts,
            namespaces,
        };
        lab.build()?;
        Ok(lab)
    }

    /// A VXLAN lab for one test, named like `Lab::for_test` (a leftover of the same name is
    /// removed first; Ctrl-C tears it down).
    pub fn for_test(tag: &str, underlay: Underlay, port: u16) -> VxlanLab {
        assert_eq!(tag.len(), 2, "test tags are two letters");
        crate::Lab::teardown_on_signals();
        let prefix = format!("fp{tag}{:04}", std::process::id() % 10000);
        let _ = crate::Lab::down(&prefix);
        VxlanLab::up(&prefix, underlay, port).expect("vxlan lab up")
    }

    /// The name of this lab's namespace for `role` ("ul", "h1", "h2", "h3").
    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// The bridge's port for host `host` (1-based), in the `ul` namespace: the switch
    /// port that host's underlay interface plugs into. A tracer on every port sees the
    /// whole mesh, each direction once.
    pub fn bridge_port(&self, host: usize) -> String {
        format!("{}-s{host}", self.prefix)
    }

    fn build(&self) -> Result<(), LabError> {
        let segment = self.namespace("ul");
        let bridge = format!("{}-br", self.prefix);
        netns::run_in(&segment, {
            let bridge = bridge.clone();
            move || netlink::add_bridge(&bridge)
        })??;
        for (i, host) in self.hosts.iter().enumerate() {
            let port = self.bridge_port(i + 1);
            let bridge_side = Endpoint {
                namespace: segment.clone(),
                iface: port.clone(),
                ipv4: host.underlay.ipv4,
                ipv6: host.underlay.ipv6,
                mac: String::new(),
            };
            crate::veth_pair(&host.underlay, &bridge_side, 1)?;
            let bridge = bridge.clone();
            netns::run_in(&segment, move || {
                netlink::enslave(&port, &bridge)?;
                netlink::set_up(&port)
            })??;
            configure(&host.underlay)?;
            let (vxlan, local, dev, udp) = (
                host.vxlan.iface.clone(),
                host.vtep(self.underlay),
                host.underlay.iface.clone(),
                self.port,
            );
            netns::run_in(&host.vxlan.namespace, move || {
                netlink::add_vxlan(&vxlan, VNI, local, &dev, udp)
            })??;
            configure(&host.vxlan)?;
        }
        let underlay_macs: Vec<[u8; 6]> = self
            .hosts
            .iter()
            .map(|host| host.underlay.read_mac())
            .collect::<Result<_, _>>()?;
        let vxlan_macs: Vec<[u8; 6]> = self
            .hosts
            .iter()
            .map(|host| host.vxlan.read_mac())
            .collect::<Result<_, _>>()?;
        for (i, host) in self.hosts.iter().enumerate() {
            let peers: Vec<(Host, [u8; 6], [u8; 6])> = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, peer)| (peer.clone(), underlay_macs[j], vxlan_macs[j]))
                .collect();
            let (host, underlay) = (host.clone(), self.underlay);
            netns::run_in(&host.underlay.namespace.clone(), move || {
                for (peer, underlay_mac, vxlan_mac) in peers {
                    netlink::add_neighbour(&host.underlay.iface, peer.underlay.ipv4, underlay_mac)?;
                    netlink::add_neighbour(&host.underlay.iface, peer.underlay.ipv6, underlay_mac)?;
                    netlink::add_neighbour(&host.vxlan.iface, peer.vxlan.ipv4, vxlan_mac)?;
                    netlink::add_neighbour(&host.vxlan.iface, peer.vxlan.ipv6, vxlan_mac)?;
                    netlink::add_vxlan_fdb(&host.vxlan.iface, vxlan_mac, peer.vtep(underlay))?;
                }
                Ok::<(), LabError>(())
            })??;
        }
        Ok(())
    }
}
