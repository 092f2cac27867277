//! rtnetlink requests, made from inside the namespace they concern (see `netns::run_in`).
//! Each call opens its own socket on a small single-threaded runtime: lab set-up is not a hot
//! path, and this keeps the API synchronous.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::{
    Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{link::LinkAttribute, neighbour::NeighbourState},
};

use crate::LabError;

fn with_handle<T>(
    what: &'static str,
    work: impl AsyncFnOnce(Handle) -> Result<T, rtnetlink::Error>,
) -> Result<T, LabError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| LabError::io("start netlink runtime", e))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| LabError::io("open rtnetlink socket", e))?;
        tokio::spawn(connection);
        work(handle).await.map_err(|error| LabError::Netlink {
            what,
            message: error.to_string(),
        })
    })
}

pub fn index(iface: &str) -> Result<u32, LabError> {
    let name = iface.to_string();
    with_handle("look up interface", async move |handle| {
        let mut links = handle.link().get().match_name(name).execute();
        Ok(links.try_next().await?.map(|link| link.header.index))
    })?
    .ok_or_else(|| LabError::NoInterface(iface.to_string()))
}

/// The attributes of one link, looked up by name.
fn link_attributes(iface: &str, what: &'static str) -> Result<Vec<LinkAttribute>, LabError> {
    let name = iface.to_string();
    let found = with_handle(what, async move |handle| {
        let mut links = handle.link().get().match_name(name).execute();
        Ok(links.try_next().await?.map(|link| link.attributes))
    })?;
    found.ok_or_else(|| LabError::NoInterface(iface.to_string()))
}

pub fn mac(iface: &str) -> Result<[u8; 6], LabError> {
    link_attributes(iface, "read MAC address")?
        .into_iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                Some([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]])
            }
            _ => None,
        })
        .ok_or_else(|| LabError::NoInterface(iface.to_string()))
}

pub fn set_up(iface: &str) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("set link up", async move |handle| {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
    })
}

/// Deletes a link (for a veth, both ends go).
pub fn delete_link(iface: &str) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("delete link", async move |handle| {
        handle.link().del(index).execute().await
    })
}

pub fn set_mtu(iface: &str, mtu: u32) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("set link MTU", async move |handle| {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
    })
}

/// Creates a veth pair here and moves the peer into the namespace opened as `peer_netns`.
/// Both ends get `queues` RX and TX queues.
pub fn add_veth(
    name: &str,
    peer: &str,
    peer_netns: std::os::fd::RawFd,
    queues: u32,
) -> Result<(), LabError> {
    use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkInfo};
    let (name, peer) = (name.to_string(), peer.to_string());
    let queue_attributes = [
        LinkAttribute::NumTxQueues(queues),
        LinkAttribute::NumRxQueues(queues),
    ];
    let mut message = LinkVeth::new(&name, &peer).build();
    message.attributes.extend(queue_attributes.clone());
    for attribute in &mut message.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))) = info {
                    peer_message.attributes.extend(queue_attributes.clone());
                }
            }
        }
    }
    with_handle("create veth pair", async move |handle| {
        handle.link().add(message).execute().await?;
        let mut links = handle.link().get().match_name(peer.clone()).execute();
        let peer_index = links
            .try_next()
            .await?
            .map(|link| link.header.index)
            .unwrap_or(0);
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(peer_index)
                    .setns_by_fd(peer_netns)
                    .build(),
            )
            .execute()
            .await
    })
}

pub fn add_bridge(name: &str) -> Result<(), LabError> {
    let name = name.to_string();
    with_handle("create bridge", async move |handle| {
        handle
            .link()
            .add(LinkBridge::new(&name).up().build())
            .execute()
            .await
    })
}

pub fn enslave(iface: &str, bridge: &str) -> Result<(), LabError> {
    let (iface, bridge) = (index(iface)?, index(bridge)?);
    with_handle("attach port to bridge", async move |handle| {
        handle
            .link()
            .set(LinkUnspec::new_with_index(iface).controller(bridge).build())
            .execute()
            .await
    })
}

pub fn add_address(iface: &str, address: IpAddr, prefix_len: u8) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("add address", async move |handle| {
        handle
            .address()
            .add(index, address, prefix_len)
            .execute()
            .await
    })
}

pub fn add_route(destination: IpAddr, prefix_len: u8, gateway: IpAddr) -> Result<(), LabError> {
    with_handle("add route", async move |handle| {
        let route = match (destination, gateway) {
            (IpAddr::V4(destination), IpAddr::V4(gateway)) => {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(destination, prefix_len)
                    .gateway(gateway)
                    .build()
            }
            (IpAddr::V6(destination), IpAddr::V6(gateway)) => {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(destination, prefix_len)
                    .gateway(gateway)
                    .build()
            }
            _ => {
                return Err(rtnetlink::Error::RequestFailed);
            }
        };
        handle.route().add(route).execute().await
    })
}

pub fn add_neighbour(iface: &str, address: IpAddr, mac: [u8; 6]) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("add static neighbour", async move |handle| {
        handle
            .neighbours()
            .add(index, address)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
    })
}

/// A route: destination prefix (None: the default route), its length, and its gateway
/// (None: on-link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Option<IpAddr>,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
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

/// The IPv4 and IPv6 routes of this namespace (one dump per family).
pub fn routes() -> Result<Vec<Route>, LabError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let messages = with_handle("dump routes", async move |handle| {
        let mut all = Vec::new();
        for filter in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            all.extend(
                handle
                    .route()
                    .get(filter)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await?,
            );
        }
        Ok(all)
    })?;
    let to_ip = |address: &RouteAddress| match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    Ok(messages
        .iter()
        .map(|message| {
            let mut route = Route {
                prefix: None,
                prefix_len: message.header.destination_prefix_length,
                gateway: None,
            };
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(address) => route.prefix = to_ip(address),
                    RouteAttribute::Gateway(address) => route.gateway = to_ip(address),
                    _ => {}
                }
            }
            route
        })
        .collect())
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
pub fn neighbours() -> Result<std::collections::HashMap<IpAddr, [u8; 6]>, LabError> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    let entries = with_handle("dump neighbours", async move |handle| {
        handle
            .neighbours()
            .get()
            .execute()
            .try_collect::<Vec<_>>()
            .await
    })?;
    let mut table = std::collections::HashMap::new();
    for entry in entries {
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

/// The addresses on an interface.
pub fn addresses(iface: &str) -> Result<Vec<IpAddr>, LabError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let index = index(iface)?;
    let messages = with_handle("dump addresses", async move |handle| {
        handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect::<Vec<_>>()
            .await
    })?;
    Ok(messages
        .iter()
        .flat_map(|message| &message.attributes)
        .filter_map(|attribute| match attribute {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

/// Interface MTU.
pub fn mtu(iface: &str) -> Result<u32, LabError> {
    link_attributes(iface, "read MTU")?
        .into_iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(mtu),
            _ => None,
        })
        .ok_or_else(|| LabError::NoInterface(iface.to_string()))
}
