//! The kernel's `netdev` generic-netlink family (Documentation/netlink/specs/netdev.yaml):
//! per device, the XDP features, the zero-copy segment limit, the RX metadata kfuncs and
//! the AF_XDP TX metadata features. A small raw-netlink client; the reply parser works on
//! bytes so tests can feed replies in the shapes real drivers give.

use std::io;

use serde::Serialize;

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
pub const NETDEV_A_DEV_IFINDEX: u16 = 1;
pub const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
pub const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
pub const NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: u16 = 5;
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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetdevFeatures {
    pub xdp_features: Vec<&'static str>,
    pub zc_max_segs: Option<u32>,
    pub rx_metadata: Vec<&'static str>,
    pub xsk_features: Vec<&'static str>,
}

pub fn flag_names(value: u64, names: &[(u64, &'static str)]) -> Vec<&'static str> {
    names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The attributes of one message, as (type, payload).
pub fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        found.push((kind, &bytes[4..len]));
        bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
    }
    found
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

/// An attribute, padded to 4 bytes.
pub fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut bytes = Vec::with_capacity((len + 3) & !3);
    bytes.extend_from_slice(&(len as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize((len + 3) & !3, 0);
    bytes
}

/// Asks the kernel for `ifindex`'s features in the current network namespace.
pub fn read(ifindex: u32) -> io::Result<NetdevFeatures> {
    let socket = Socket::open()?;
    let family = socket.family_id("netdev")?;
    let attrs = attribute(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
    let reply = socket.request(family, NETDEV_CMD_DEV_GET, &attrs)?;
    Ok(parse_dev(&reply))
}

struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(Socket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn family_id(&self, name: &str) -> io::Result<u16> {
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        let attrs = attribute(CTRL_ATTR_FAMILY_NAME, &name);
        let reply = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &attrs)?;
        attributes(&reply)
            .into_iter()
            .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
            .map(|(_, payload)| u16::from_ne_bytes([payload[0], payload[1]]))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// Sends one request and returns the reply's attributes, or the kernel's error.
    fn request(&self, family: u16, cmd: u8, attrs: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut message = Vec::new();
        message.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&family.to_ne_bytes());
        message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        message.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version
        message.extend_from_slice(attrs);
        // SAFETY: an all-zero sockaddr_nl addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffers outlive the calls; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = vec![0u8; 16384];
        // SAFETY: as above.
        let got = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                0,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let reply = &reply[..got as usize];
        if reply.len() < 20 {
            return Err(io::Error::from_raw_os_error(libc::EPROTO));
        }
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(reply[16..20].try_into().unwrap());
            return Err(io::Error::from_raw_os_error(-code));
        }
        let len = (u32::from_ne_bytes(reply[..4].try_into().unwrap()) as usize).min(reply.len());
        Ok(reply[20..len].to_vec())
    }
}
