//! What the appliance reads from the kernel's network state: its interface's MAC address,
//! MTU and addresses, and, to resolve each backend's next hop, the routes and the
//! neighbour table. Every netlink call of the appliance is here.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use nic::{NicError, addresses, format_mac, gateway_for, mac, mtu, neighbours, routes};

use crate::lb::tables::NextHop;

/// What a netlink read fails with.
pub type LinkError = NicError;

/// The appliance's interface as the kernel sees it at start.
#[derive(Clone, Debug)]
pub struct InterfaceFacts {
    /// Its MAC address: the source of every frame the appliance sends.
    pub mac: [u8; 6],
    /// Its MTU: what an encapsulated packet must fit.
    pub mtu: u32,
    /// Its addresses: the default source of IP-in-IP outer headers.
    pub addresses: Vec<IpAddr>,
}

impl InterfaceFacts {
    /// Reads them from the kernel.
    pub fn read(iface: &str) -> Result<InterfaceFacts, LinkError> {
        Ok(InterfaceFacts {
            mac: mac(iface)?,
            mtu: mtu(iface)?,
            addresses: addresses(iface)?,
        })
    }
}

/// A MAC address as `lb status` prints it (`02:00:00:00:00:01`).
pub fn mac_text(mac: [u8; 6]) -> String {
    format_mac(mac)
}

/// Looks the next hops of `backends` (by backend address) up in the kernel's routes and
/// neighbour table; for those missing, makes the kernel resolve them (a datagram to the
/// discard port sends ARP/ND) and waits up to `wait`.
pub fn resolve_next_hops(backends: &BTreeMap<IpAddr, Vec<Arc<NextHop>>>, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        // One dump of each table per round, whatever the number of backends.
        let routes = routes().unwrap_or_default();
        let neighbours = neighbours().unwrap_or_default();
        let mut missing = 0;
        for (&ip, hops) in backends {
            let next_hop = gateway_for(&routes, ip).unwrap_or(ip);
            match neighbours.get(&next_hop) {
                Some(mac) => hops.iter().for_each(|h| {
                    h.set(*mac);
                    h.wanted.store(false, Ordering::Relaxed);
                }),
                None => {
                    missing += 1;
                    let wanted = hops
                        .iter()
                        .any(|h| h.get().is_none() || h.wanted.load(Ordering::Relaxed));
                    if wanted {
                        trigger_resolution(next_hop);
                    }
                }
            }
        }
        if missing == 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn trigger_resolution(next_hop: IpAddr) {
    let bind: SocketAddr = if next_hop.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[], SocketAddr::new(next_hop, 9));
    }
}
