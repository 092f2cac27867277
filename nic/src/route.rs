//! The namespace's addresses, routes and neighbours through rtnetlink dumps
//! (RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH), and route lookup on the result.

use std::{collections::HashMap, net::IpAddr};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};

use crate::{
    NicError,
    link::ifindex,
    rtnetlink::{self, Scope},
    sys::{Kernel, Netlink},
};

/// A route: destination prefix (None: the default route), its length, and its gateway
/// (None: on-link), with the interface it leaves through and its table and type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix; None for the default route.
    pub prefix: Option<IpAddr>,
    /// The prefix length in bits.
    pub prefix_len: u8,
    /// The next hop; None when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The output interface's index (RTA_OIF), when the route names one.
    pub ifindex: Option<u32>,
    /// The routing table (RTA_TABLE, else the header's): 254 is `main`, 255 `local`.
    pub table: u32,
    /// Whether it is a unicast route (not `local`, `broadcast`, `multicast`...): what
    /// forwarded traffic follows.
    pub unicast: bool,
}

impl Route {
    /// The `main` routing table's number.
    pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;
}

impl Route {
    fn covers(&self, destination: IpAddr) -> bool {
        let len = u32::from(self.prefix_len);
        match (self.prefix, destination) {
            (None, _) => len == 0,
            (Some(IpAddr::V4(p)), IpAddr::V4(d)) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(p) & mask == u32::from(d) & mask
            }
            (Some(IpAddr::V6(p)), IpAddr::V6(d)) => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(p) & mask == u128::from(d) & mask
            }
            _ => false,
        }
    }
}

/// The addresses on `iface`.
pub fn addresses(iface: &str) -> Result<Vec<IpAddr>, NicError> {
    addresses_of(&mut Kernel, ifindex(iface)?)
}

/// The addresses on the link with index `ifindex`, asked through `kernel`.
pub fn addresses_of(kernel: &mut dyn Netlink, ifindex: u32) -> Result<Vec<IpAddr>, NicError> {
    let answers = rtnetlink::request(
        kernel,
        "RTM_GETADDR",
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        Scope::Dump,
    )?;
    // The dump covers every link; the kernel filters by index only under strict checking.
    Ok(answers
        .iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewAddress(message) if message.header.index == ifindex => {
                Some(message)
            }
            _ => None,
        })
        .flat_map(|message| &message.attributes)
        .filter_map(|attribute| match attribute {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

/// The IPv4 and IPv6 routes of this namespace (one dump per family).
pub fn routes() -> Result<Vec<Route>, NicError> {
    routes_of(&mut Kernel)
}

/// The IPv4 and IPv6 routes, asked through `kernel`.
pub fn routes_of(kernel: &mut dyn Netlink) -> Result<Vec<Route>, NicError> {
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut message = RouteMessage::default();
        // The header a route of the main table would have; the kernel ignores it in dumps
        // unless strict checking is on (NETLINK_GET_STRICT_CHK).
        message.header.address_family = family;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        let answers = rtnetlink::request(
            kernel,
            "RTM_GETROUTE",
            RouteNetlinkMessage::GetRoute(message),
            Scope::Dump,
        )?;
        routes.extend(answers.iter().filter_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(message) => Some(parse_route(message)),
            _ => None,
        }));
    }
    Ok(routes)
}

fn parse_route(message: &RouteMessage) -> Route {
    let to_ip = |address: &RouteAddress| match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let mut route = Route {
        prefix: None,
        prefix_len: message.header.destination_prefix_length,
        gateway: None,
        ifindex: None,
        table: u32::from(message.header.table),
        unicast: message.header.kind == RouteType::Unicast,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => route.prefix = to_ip(address),
            RouteAttribute::Gateway(address) => route.gateway = to_ip(address),
            RouteAttribute::Oif(index) => route.ifindex = Some(*index),
            RouteAttribute::Table(table) => route.table = *table,
            _ => {}
        }
    }
    route
}

/// The gateway the longest matching route of `routes` gives `destination`, or None when it
/// is on-link (or unrouted).
pub fn gateway_for(routes: &[Route], destination: IpAddr) -> Option<IpAddr> {
    routes
        .iter()
        .filter(|route| route.covers(destination))
        .max_by_key(|route| route.prefix_len)
        .and_then(|route| route.gateway)
}

/// The usable entries (not incomplete or failed) of the neighbour table: address → MAC.
pub fn neighbours() -> Result<HashMap<IpAddr, [u8; 6]>, NicError> {
    neighbours_of(&mut Kernel)
}

/// The usable neighbour entries, asked through `kernel`.
pub fn neighbours_of(kernel: &mut dyn Netlink) -> Result<HashMap<IpAddr, [u8; 6]>, NicError> {
    let answers = rtnetlink::request(
        kernel,
        "RTM_GETNEIGH",
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        Scope::Dump,
    )?;
    let mut table = HashMap::new();
    for answer in &answers {
        let RouteNetlinkMessage::NewNeighbour(entry) = answer else {
            continue;
        };
        if matches!(
            entry.header.state,
            NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
        ) {
            continue;
        }
        let mut found = (None, None);
        for attribute in &entry.attributes {
            match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    found.0 = Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    found.0 = Some(IpAddr::V6(*v6))
                }
                NeighbourAttribute::LinkLayerAddress(mac) if mac.len() == 6 => {
                    found.1 = Some([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
                }
                _ => {}
            }
        }
        if let (Some(address), Some(mac)) = found {
            table.insert(address, mac);
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests;
