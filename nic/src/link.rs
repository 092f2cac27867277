//! What rtnetlink says about one link (RTM_GETLINK): index, MAC address, MTU, and the XDP
//! programs attached to it.

use std::ffi::CString;

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};

use crate::{
    NicError,
    rtnetlink::{self, Scope},
    sys::{Kernel, Netlink},
};

/// The interface's index in the caller's network namespace (if_nametoindex).
pub fn ifindex(iface: &str) -> Result<u32, NicError> {
    let missing = || NicError::NoInterface(iface.to_string());
    let name = CString::new(iface).map_err(|_| missing())?;
    // SAFETY: plain FFI call with a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(missing())
    } else {
        Ok(index)
    }
}

/// Which link a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link<'a> {
    /// By name, e.g. "eth0".
    Name(&'a str),
    /// By index.
    Index(u32),
}

impl Link<'_> {
    fn missing(&self) -> NicError {
        NicError::NoInterface(match self {
            Link::Name(name) => name.to_string(),
            Link::Index(index) => format!("#{index}"),
        })
    }
}

/// The link's attributes, from one RTM_GETLINK.
pub fn attributes(kernel: &mut dyn Netlink, link: Link) -> Result<Vec<LinkAttribute>, NicError> {
    const WHAT: &str = "RTM_GETLINK";
    let mut message = LinkMessage::default();
    match link {
        Link::Name(name) => message
            .attributes
            .push(LinkAttribute::IfName(name.to_string())),
        Link::Index(index) => message.header.index = index,
    }
    let answers = match rtnetlink::request(
        kernel,
        WHAT,
        RouteNetlinkMessage::GetLink(message),
        Scope::One,
    ) {
        Err(error) if error.raw_os_error() == Some(libc::ENODEV) => return Err(link.missing()),
        other => other?,
    };
    answers
        .into_iter()
        .find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(message) => Some(message.attributes),
            _ => None,
        })
        .ok_or_else(|| link.missing())
}

/// The MAC address of `iface`.
pub fn mac(iface: &str) -> Result<[u8; 6], NicError> {
    mac_of(&mut Kernel, iface)
}

/// The MAC address of `iface`, asked through `kernel`.
pub fn mac_of(kernel: &mut dyn Netlink, iface: &str) -> Result<[u8; 6], NicError> {
    let attributes = attributes(kernel, Link::Name(iface))?;
    let address = attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) => Some(bytes),
            _ => None,
        })
        .ok_or(NicError::MissingAttribute {
            reply: "RTM_GETLINK",
            attribute: "IFLA_ADDRESS",
        })?;
    <[u8; 6]>::try_from(address.as_slice()).map_err(|_| NicError::Malformed {
        reply: "RTM_GETLINK",
        attribute: "IFLA_ADDRESS",
    })
}

/// The MTU of `iface`.
pub fn mtu(iface: &str) -> Result<u32, NicError> {
    let (mtu, _) = mtus(&mut Kernel, Link::Name(iface))?;
    mtu.ok_or(NicError::MissingAttribute {
        reply: "RTM_GETLINK",
        attribute: "IFLA_MTU",
    })
}

/// The link's MTU and the largest MTU its driver allows, when the kernel says.
pub fn mtus(kernel: &mut dyn Netlink, link: Link) -> Result<(Option<u32>, Option<u32>), NicError> {
    let (mut mtu, mut max_mtu) = (None, None);
    for attribute in attributes(kernel, link)? {
        match attribute {
            LinkAttribute::Mtu(value) => mtu = Some(value),
            LinkAttribute::MaxMtu(value) => max_mtu = Some(value),
            _ => {}
        }
    }
    Ok((mtu, max_mtu))
}

/// An XDP slot of a link: the kernel holds one program in hardware and one in the driver or
/// generic (skb) slot (`dev_xdp_attach`, net/core/dev.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpSlot {
    /// Generic XDP, in the network stack (XDP_ATTACHED_SKB).
    Generic,
    /// Native XDP, in the driver (XDP_ATTACHED_DRV).
    Driver,
    /// Offloaded to the NIC (XDP_ATTACHED_HW).
    Hardware,
}

/// An XDP program attached to a link, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProgram {
    /// The slot it runs in.
    pub slot: XdpSlot,
    /// The kernel's id of the program.
    pub program_id: u32,
}

/// The XDP program the kernel reports for the link (IFLA_XDP_ATTACHED and
/// IFLA_XDP_PROG_ID), if any. With programs in two slots this is the one
/// IFLA_XDP_PROG_ID names; [`xdp_programs`] lists them all.
pub fn xdp_program(kernel: &mut dyn Netlink, link: Link) -> Result<Option<XdpProgram>, NicError> {
    Ok(parse_xdp_program(&attributes(kernel, link)?))
}

fn parse_xdp_program(attributes: &[LinkAttribute]) -> Option<XdpProgram> {
    let mut slot = None;
    let mut program_id = 0;
    for attribute in attributes {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                match item {
                    LinkXdp::Attached(XdpAttached::Driver) => slot = Some(XdpSlot::Driver),
                    LinkXdp::Attached(XdpAttached::SocketBuffer) => slot = Some(XdpSlot::Generic),
                    LinkXdp::Attached(XdpAttached::Hardware) => slot = Some(XdpSlot::Hardware),
                    LinkXdp::ProgId(id) => program_id = *id,
                    _ => {}
                }
            }
        }
    }
    slot.map(|slot| XdpProgram { slot, program_id })
}

/// Every XDP slot in use on the link: a NIC can hold a hardware program and a driver (or
/// generic) program at once (IFLA_XDP_ATTACHED = XDP_ATTACHED_MULTI, with one id per slot).
pub fn xdp_programs(kernel: &mut dyn Netlink, link: Link) -> Result<Vec<XdpProgram>, NicError> {
    let attributes = attributes(kernel, link)?;
    let mut programs = Vec::new();
    for attribute in &attributes {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                let (slot, program_id) = match item {
                    LinkXdp::DrvProgId(id) => (XdpSlot::Driver, *id),
                    LinkXdp::SkbProgId(id) => (XdpSlot::Generic, *id),
                    LinkXdp::HwProgId(id) => (XdpSlot::Hardware, *id),
                    _ => continue,
                };
                programs.push(XdpProgram { slot, program_id });
            }
        }
    }
    // Kernels report the per-slot ids only in multi mode; one program comes as ProgId.
    if programs.is_empty() {
        programs.extend(parse_xdp_program(&attributes));
    }
    Ok(programs)
}

/// A MAC address as text, e.g. "02:00:00:ab:cd:01".
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
