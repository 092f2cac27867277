//! rtnetlink requests that build the lab (links, bridges, addresses, routes, neighbours),
//! made from inside the namespace they concern (see `netns::run_in`). Each call opens its
//! own socket on a small single-threaded runtime: lab set-up is not a hot path, and this
//! keeps the API synchronous. Questions about what exists (MAC, MTU, addresses, routes,
//! neighbours) are the `nic` crate's, re-exported here.

use std::net::IpAddr;

use futures::TryStreamExt;
pub use nic::{Route, addresses, gateway_for, mac, mtu, neighbours, routes};
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

/// The interface's index.
pub fn index(iface: &str) -> Result<u32, LabError> {
    Ok(nic::ifindex(iface)?)
}

/// Sets the link up.
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

/// Sets the link's MTU.
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

/// Creates a bridge, up.
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

/// Makes `iface` a port of `bridge`.
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

/// Adds `address/prefix_len` to `iface`.
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

/// Adds a route to `destination/prefix_len` via `gateway` (both of one family).
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

/// Adds (or replaces) a permanent neighbour entry: `address` is at `mac` on `iface`.
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

/// Creates a VXLAN device `name` with VNI `vni` sending from `local` over `dev` to UDP port
/// `port`, without learning: the lab writes its forwarding entries ([`add_vxlan_fdb`]).
pub fn add_vxlan(
    name: &str,
    vni: u32,
    local: IpAddr,
    dev: &str,
    port: u16,
) -> Result<(), LabError> {
    let dev = index(dev)?;
    let name = name.to_string();
    with_handle("create vxlan device", async move |handle| {
        let builder = rtnetlink::LinkVxlan::new(&name, vni)
            .dev(dev)
            .port(port)
            .learning(false);
        let builder = match local {
            IpAddr::V4(local) => builder.local(local),
            IpAddr::V6(local) => builder.local6(local),
        };
        handle.link().add(builder.build()).execute().await
    })
}

/// Adds a permanent forwarding entry to the VXLAN device `iface`: frames to `mac` go to the
/// VTEP at `remote`.
pub fn add_vxlan_fdb(iface: &str, mac: [u8; 6], remote: IpAddr) -> Result<(), LabError> {
    let index = index(iface)?;
    with_handle("add vxlan forwarding entry", async move |handle| {
        handle
            .neighbours()
            .add_bridge(index, &mac)
            // NTF_SELF: the device's own table (it is no bridge port).
            .flags(rtnetlink::packet_route::neighbour::NeighbourFlags::Own)
            .destination(remote)
            .execute()
            .await
    })
}
