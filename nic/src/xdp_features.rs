//! The kernel's `netdev` generic-netlink family (Documentation/netlink/specs/netdev.yaml):
//! per device, the XDP features, the zero-copy segment limit, the RX metadata kfuncs and
//! the AF_XDP TX metadata features. The requests go through the [`Netlink`] seam and the
//! reply parser works on bytes, so tests feed replies in the shapes real drivers give.
//!
//! (Named after what it reads: "netdev" alone would say nothing the other modules do not.)

use serde::Serialize;

pub use crate::netlink::{attribute, attributes};
use crate::{
    NicError,
    netlink::{self, HEADER_LEN, NETLINK_GENERIC},
    sys::Netlink,
};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NETDEV_CMD_DEV_GET: u8 = 1;
/// `sizeof(struct genlmsghdr)`: command, version, reserved.
const GENL_HEADER_LEN: usize = 4;
/// `NETDEV_A_DEV_IFINDEX`.
pub const NETDEV_A_DEV_IFINDEX: u16 = 1;
/// `NETDEV_A_DEV_XDP_FEATURES`: a `netdev_xdp_act` bit set.
pub const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_A_DEV_XDP_ZC_MAX_SEGS`.
pub const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
/// `NETDEV_A_DEV_XDP_RX_METADATA_FEATURES`: a `netdev_xdp_rx_metadata` bit set.
pub const NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: u16 = 5;
/// `NETDEV_A_DEV_XSK_FEATURES`: a `netdev_xsk_flags` bit set.
pub const NETDEV_A_DEV_XSK_FEATURES: u16 = 6;

/// `netdev_xdp_act`, bit by bit.
pub const XDP_ACT: [(u64, &str); 7] = [
    (1 << 0, "basic"),
    (1 << 1, "redirect"),
    (1 << 2, "ndo-xmit"),
    (1 << 3, "xsk-zerocopy"),
    (1 << 4, "hw-offload"),
    (1 << 5, "rx-sg"),
    (1 << 6, "ndo-xmit-sg"),
];
/// `netdev_xdp_rx_metadata`.
pub const RX_METADATA: [(u64, &str); 3] = [
    (1 << 0, "timestamp"),
    (1 << 1, "hash"),
    (1 << 2, "vlan-tag"),
];
/// `netdev_xsk_flags`.
pub const XSK_FLAGS: [(u64, &str); 3] = [
    (1 << 0, "tx-timestamp"),
    (1 << 1, "tx-checksum"),
    (1 << 2, "tx-launch-time-fifo"),
];

/// What the netdev family says about one device; empty when it says nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetdevFeatures {
    /// `xdp-features` flag names, e.g. "basic", "redirect", "xsk-zerocopy".
    pub xdp_features: Vec<&'static str>,
    /// The most fragments a zero-copy AF_XDP frame may have.
    pub zc_max_segs: Option<u32>,
    /// The RX metadata kfuncs the driver implements.
    pub rx_metadata: Vec<&'static str>,
    /// The AF_XDP TX metadata features.
    pub xsk_features: Vec<&'static str>,
}

/// The names of the bits set in `value`.
pub fn flag_names(value: u64, names: &[(u64, &'static str)]) -> Vec<&'static str> {
    names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

fn number(payload: &[u8]) -> u64 {
    match payload.len() {
        4 => u32::from_ne_bytes(payload.try_into().unwrap()) as u64,
        8 => u64::from_ne_bytes(payload.try_into().unwrap()),
        _ => 0,
    }
}

/// Parses the attributes of a DEV_GET reply (after the generic-netlink header).
pub fn parse_dev(attrs: &[u8]) -> NetdevFeatures {
    let mut features = NetdevFeatures::default();
    for (kind, payload) in attributes(attrs) {
        match kind {
            NETDEV_A_DEV_XDP_FEATURES => {
                features.xdp_features = flag_names(number(payload), &XDP_ACT)
            }
            NETDEV_A_DEV_XDP_ZC_MAX_SEGS => features.zc_max_segs = Some(number(payload) as u32),
            NETDEV_A_DEV_XDP_RX_METADATA_FEATURES => {
                features.rx_metadata = flag_names(number(payload), &RX_METADATA)
            }
            NETDEV_A_DEV_XSK_FEATURES => {
                features.xsk_features = flag_names(number(payload), &XSK_FLAGS)
            }
            _ => {}
        }
    }
    features
}

/// Asks the kernel for `ifindex`'s features in the caller's network namespace.
pub fn read(kernel: &mut dyn Netlink, ifindex: u32) -> Result<NetdevFeatures, NicError> {
    let family = family_id(kernel, "netdev")?;
    let attrs = attribute(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
    let reply = request(
        kernel,
        "NETDEV_CMD_DEV_GET",
        family,
        NETDEV_CMD_DEV_GET,
        &attrs,
    )?;
    Ok(parse_dev(&reply))
}

/// The id the kernel gave the generic-netlink family `name` (CTRL_CMD_GETFAMILY).
fn family_id(kernel: &mut dyn Netlink, name: &str) -> Result<u16, NicError> {
    const WHAT: &str = "CTRL_CMD_GETFAMILY";
    let mut name = name.as_bytes().to_vec();
    name.push(0);
    let attrs = attribute(CTRL_ATTR_FAMILY_NAME, &name);
    let reply = request(kernel, WHAT, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &attrs)?;
    let (_, payload) = attributes(&reply)
        .into_iter()
        .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
        .ok_or(NicError::MissingAttribute {
            reply: WHAT,
            attribute: "CTRL_ATTR_FAMILY_ID",
        })?;
    match payload {
        [a, b, ..] => Ok(u16::from_ne_bytes([*a, *b])),
        _ => Err(NicError::Malformed {
            reply: WHAT,
            attribute: "CTRL_ATTR_FAMILY_ID",
        }),
    }
}

/// Sends one generic-netlink request and returns the attributes of its answer.
fn request(
    kernel: &mut dyn Netlink,
    what: &'static str,
    family: u16,
    cmd: u8,
    attrs: &[u8],
) -> Result<Vec<u8>, NicError> {
    let len = HEADER_LEN + GENL_HEADER_LEN + attrs.len();
    let mut message = netlink::header(len, family, NLM_F_REQUEST).to_vec();
    message.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version
    message.extend_from_slice(attrs);
    let reply = kernel
        .exchange(NETLINK_GENERIC, &message)
        .map_err(|error| NicError::syscall(what, error))?;
    let answers = netlink::answers(what, &reply)?;
    let answer = answers.first().ok_or(NicError::MissingAttribute {
        reply: what,
        attribute: "answer",
    })?;
    answer
        .payload()
        .get(GENL_HEADER_LEN..)
        .map(<[u8]>::to_vec)
        .ok_or(NicError::Malformed {
            reply: what,
            attribute: "genlmsghdr",
        })
}

#[cfg(test)]
mod tests;
