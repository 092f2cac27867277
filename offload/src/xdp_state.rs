//! What the kernel says is attached to an interface, read through rtnetlink (IFLA_XDP).

use futures::TryStreamExt;
use rtnetlink::{
    Handle,
    packet_route::link::{LinkAttribute, LinkXdp, XdpAttached},
};

use crate::{OffloadError, mode::XdpMode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpState {
    pub mode: XdpMode,
    pub program_id: u32,
}

/// What the kernel has attached to `iface` in this network namespace, if anything: pins
/// aside, the ground truth of whether a program still runs there.
pub fn attached(iface: &str) -> Result<Option<XdpState>, OffloadError> {
    query(crate::netdev::ifindex(iface)?)
}

/// The XDP program on `ifindex`, if any.
pub fn query(ifindex: u32) -> Result<Option<XdpState>, OffloadError> {
    let mut mode = None;
    let mut program_id = 0;
    for attribute in link_attributes(ifindex)? {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                match item {
                    LinkXdp::Attached(XdpAttached::Driver) => mode = Some(XdpMode::Drv),
                    LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(XdpMode::Skb),
                    LinkXdp::Attached(XdpAttached::Hardware) => mode = Some(XdpMode::Hw),
                    LinkXdp::ProgId(id) => program_id = id,
                    _ => {}
                }
            }
        }
    }
    Ok(mode.map(|mode| XdpState { mode, program_id }))
}

/// Every XDP slot in use on `ifindex`: a NIC can hold a hardware program and a driver (or
/// generic) program at once (IFLA_XDP_ATTACHED = XDP_ATTACHED_MULTI, with one id per slot).
pub fn slots(ifindex: u32) -> Result<Vec<XdpState>, OffloadError> {
    let mut slots = Vec::new();
    for attribute in link_attributes(ifindex)? {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                let (mode, program_id) = match item {
                    LinkXdp::DrvProgId(id) => (XdpMode::Drv, id),
                    LinkXdp::SkbProgId(id) => (XdpMode::Skb, id),
                    LinkXdp::HwProgId(id) => (XdpMode::Hw, id),
                    _ => continue,
                };
                slots.push(XdpState { mode, program_id });
            }
        }
    }
    // Kernels report the per-slot ids only in multi mode; one program comes as ProgId.
    if slots.is_empty() {
        slots.extend(query(ifindex)?);
    }
    Ok(slots)
}

/// The interface's MTU and the largest MTU its driver allows.
pub fn mtus(ifindex: u32) -> Result<(Option<u32>, Option<u32>), OffloadError> {
    let (mut mtu, mut max_mtu) = (None, None);
    for attribute in link_attributes(ifindex)? {
        match attribute {
            LinkAttribute::Mtu(value) => mtu = Some(value),
            LinkAttribute::MaxMtu(value) => max_mtu = Some(value),
            _ => {}
        }
    }
    Ok((mtu, max_mtu))
}

/// The link's attributes, from one RTM_GETLINK.
fn link_attributes(ifindex: u32) -> Result<Vec<LinkAttribute>, OffloadError> {
    netlink("RTM_GETLINK", async move |handle| {
        let mut links = handle.link().get().match_index(ifindex).execute();
        Ok(links.try_next().await?.map(|message| message.attributes))
    })?
    .ok_or(OffloadError::UnknownIfindex(ifindex))
}

/// One rtnetlink exchange on its own socket and small runtime: not a hot path, and this
/// keeps the API synchronous. `what` names the request in the error.
pub(crate) fn netlink<T>(
    what: &'static str,
    work: impl AsyncFnOnce(Handle) -> Result<T, rtnetlink::Error>,
) -> Result<T, OffloadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| OffloadError::syscall("start netlink runtime", error))?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|error| OffloadError::syscall("open rtnetlink socket", error))?;
        tokio::spawn(connection);
        work(handle).await.map_err(|source| OffloadError::Netlink {
            request: what,
            source,
        })
    })
}
