//! The load-balancer lab: one L2 segment (a bridge) joining a client, a one-armed load
//! balancer and three backends, each in its own namespace.
//!
//! ```text
//!  <p>-client  <p>-c0  10.79.0.1   fd79::1  --+
//!  <p>-lb      <p>-lb0 10.79.0.2   fd79::2  --+-- [bridge <p>-br in <p>-seg]
//!  <p>-b1..b3  <p>-bNe 10.79.0.1N  fd79::1N --+
//! ```
//!
//! The client routes the VIP ranges (10.79.100.0/24, fd79:100::/64) via the load balancer;
//! nothing routes anywhere else. Kernel defaults stay on, TX checksum offload included: the
//! client and the backends send TCP and UDP with checksums left partial, as on any container
//! or VM host, and the load balancer must complete them.
//! [`LbLab::set_tx_checksum_offload`] turns it off for the tests of that case.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use serde::Serialize;

use crate::{Endpoint, LabError, Namespaces, configure, endpoint, netlink, netns, veth_pair};

/// The IPv4 virtual address the load balancer serves, inside the routed 10.79.100.0/24.
pub const VIP4: &str = "10.79.100.1";
/// The IPv6 virtual address the load balancer serves, inside the routed fd79:100::/64.
pub const VIP6: &str = "fd79:100::1";

/// The load-balancer lab described in the module docs: torn down on drop, like [`crate::Lab`].
#[derive(Debug, Serialize)]
pub struct LbLab {
    /// The lab's prefix: every namespace is `<prefix>-<role>`.
    pub prefix: String,
    /// The client's interface, in `<prefix>-client`.
    pub client: Endpoint,
    /// The load balancer's one interface.
    pub lb: Endpoint,
    /// The three backends' interfaces, in `<prefix>-b1` to `<prefix>-b3`.
    pub backends: Vec<Endpoint>,
    namespaces: Namespaces,
}

impl LbLab {
    /// Builds the segment; the load balancer's interface gets `lb_queues` queues.
    pub fn up(prefix: &str, lb_queues: u32) -> Result<LbLab, LabError> {
        let namespaces = Namespaces::create(prefix, &["client", "lb", "seg", "b1", "b2", "b3"])?;
        let names = &namespaces.names;
        let lab = LbLab {
            prefix: prefix.to_string(),
            client: endpoint(&names[0], format!("{prefix}-c0"), "10.79.0.1", "fd79::1"),
            lb: endpoint(&names[1], format!("{prefix}-lb0"), "10.79.0.2", "fd79::2"),
            backends: (1..=3)
                .map(|n| {
                    endpoint(
                        &names[2 + n],
                        format!("{prefix}-b{n}e"),
                        &format!("10.79.0.1{n}"),
                        &format!("fd79::1{n}"),
                    )
                })
                .collect(),
            namespaces,
        };
        lab.build(lb_queues)?;
        Ok(lab)
    }

    fn build(&self, lb_queues: u32) -> Result<(), LabError> {
        let segment = self.namespace("seg");
        let bridge = format!("{}-br", self.prefix);
        netns::run_in(&segment, {
            let bridge = bridge.clone();
            move || netlink::add_bridge(&bridge)
        })??;
        let ends: Vec<&Endpoint> = [&self.client, &self.lb]
            .into_iter()
            .chain(&self.backends)
            .collect();
        for (i, end) in ends.iter().enumerate() {
            let port = format!("{}-s{i}", self.prefix);
            let bridge_side = Endpoint {
                namespace: segment.clone(),
                iface: port.clone(),
                ipv4: end.ipv4,
                ipv6: end.ipv6,
                mac: String::new(),
            };
            let queues = if end.iface == self.lb.iface {
                lb_queues
            } else {
                1
            };
            veth_pair(end, &bridge_side, queues)?;
            let bridge = bridge.clone();
            netns::run_in(&segment, move || {
                netlink::enslave(&port, &bridge)?;
                netlink::set_up(&port)
            })??;
            configure(end)?;
        }
        let via = (self.lb.ipv4, self.lb.ipv6);
        netns::run_in(&self.client.namespace, move || {
            netlink::add_route("10.79.100.0".parse().unwrap(), 24, via.0)?;
            netlink::add_route("fd79:100::".parse().unwrap(), 64, via.1)
        })??;
        Ok(())
    }

    /// A segment lab for one test, named like `Lab::for_test` (a leftover of the same name
    /// is removed first; Ctrl-C tears it down).
    pub fn for_test(tag: &str, lb_queues: u32) -> LbLab {
        assert_eq!(tag.len(), 2, "test tags are two letters");
        crate::Lab::teardown_on_signals();
        let prefix = format!("fp{tag}{:04}", std::process::id() % 10000);
        let _ = crate::Lab::down(&prefix);
        LbLab::up(&prefix, lb_queues).expect("lb lab up")
    }

    /// The virtual address of one family: [`VIP4`] when `v4`, else [`VIP6`].
    pub fn vip(&self, v4: bool) -> IpAddr {
        if v4 {
            VIP4.parse().unwrap()
        } else {
            VIP6.parse().unwrap()
        }
    }

    /// For direct server return: every backend holds the VIPs on its loopback, so it
    /// accepts packets addressed to them and answers from them.
    pub fn hold_vips_on_backends(&self) -> Result<(), LabError> {
        for backend in &self.backends {
            netns::run_in(&backend.namespace, || {
                netlink::add_address("lo", VIP4.parse().unwrap(), 32)?;
                netlink::add_address("lo", VIP6.parse().unwrap(), 128)
            })??;
        }
        Ok(())
    }

    /// Turns TX checksum offload on or off on the client and the backends (it is on by
    /// default): off, they send complete checksums.
    pub fn set_tx_checksum_offload(&self, on: bool) -> Result<(), LabError> {
        for end in std::iter::once(&self.client).chain(&self.backends) {
            let iface = end.iface.clone();
            netns::run_in(&end.namespace, move || set_tx_checksum(&iface, on))?
                .map_err(|e| LabError::io("set TX checksum offload", e))?;
        }
        Ok(())
    }

    /// Sets the MTU of the load balancer's and the backends' links, bridge ports included,
    /// leaving the client's: IP-in-IP needs that path 20 or 40 bytes wider than the client's.
    pub fn set_backend_path_mtu(&self, mtu: u32) -> Result<(), LabError> {
        let segment = self.namespace("seg");
        // Bridge ports are numbered like `build` made them: client 0, lb 1, backends 2...
        for (index, end) in std::iter::once(&self.lb).chain(&self.backends).enumerate() {
            let iface = end.iface.clone();
            netns::run_in(&end.namespace, move || netlink::set_mtu(&iface, mtu))??;
            let port = format!("{}-s{}", self.prefix, index + 1);
            netns::run_in(&segment, move || netlink::set_mtu(&port, mtu))??;
        }
        Ok(())
    }

    /// The name of this lab's namespace for `role` ("client", "lb", "seg", "b1".."b3").
    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
}

/// ETHTOOL_STXCSUM (include/uapi/linux/ethtool.h): turns TX checksum offload on or off.
pub fn set_tx_checksum(iface: &str, on: bool) -> std::io::Result<()> {
    /// `struct ethtool_value` (include/uapi/linux/ethtool.h).
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    // SAFETY: an all-zero ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(iface.bytes().take(15)) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: plain socket call.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `socket` is a fresh descriptor this function owns.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    // SAFETY: `request` points at `value`; both outlive the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
