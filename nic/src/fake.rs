//! A fake kernel for tests, here and in the crates that build on this one (feature `fake`):
//! netlink replies handed out in order with each request kept, and NICs whose ethtool
//! replies have the shapes real i40e, mlx5 and nfp devices give.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
};

use crate::{
    ethtool::{self, RXNFC_LEN},
    netlink,
    sys::{Ethtool, Netlink},
    xdp_features,
};

/// Answers each netlink request with the next recorded reply.
#[derive(Debug, Default)]
pub struct FakeNetlink {
    /// The replies still to give; an exchange past the last fails with ECONNREFUSED.
    pub replies: VecDeque<io::Result<Vec<u8>>>,
    /// (protocol, request) of every exchange, in order.
    pub requests: Vec<(i32, Vec<u8>)>,
}

impl FakeNetlink {
    /// A kernel that gives `replies` in order.
    pub fn answering(replies: impl IntoIterator<Item = io::Result<Vec<u8>>>) -> FakeNetlink {
        FakeNetlink {
            replies: replies.into_iter().collect(),
            requests: Vec::new(),
        }
    }
}

impl Netlink for FakeNetlink {
    fn exchange(&mut self, protocol: i32, request: &[u8]) -> io::Result<Vec<u8>> {
        self.requests.push((protocol, request.to_vec()));
        self.replies
            .pop_front()
            .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)))
    }
}

/// One netlink message of `kind` with `payload`, padded.
pub fn message(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = netlink::header(netlink::HEADER_LEN + payload.len(), kind, flags).to_vec();
    bytes.extend_from_slice(payload);
    bytes.resize((bytes.len() + 3) & !3, 0);
    bytes
}

/// An NLMSG_ERROR reply carrying `errno`.
pub fn error(errno: i32) -> Vec<u8> {
    let mut payload = (-errno).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; netlink::HEADER_LEN]);
    message(2, 0, &payload)
}

/// A NIC as its ethtool ioctl sees it: fixed facts, and an ntuple table. The fields are
/// the replies, in the structs' order (`channels` is `struct ethtool_channels` whole).
pub struct FakeNic {
    /// Driver, version, firmware, bus (ETHTOOL_GDRVINFO).
    pub drvinfo: [&'static str; 4],
    /// `struct ethtool_channels`, cmd first (ETHTOOL_GCHANNELS).
    pub channels: [u32; 9],
    /// The RSS indirection table's size (ETHTOOL_GRXFHINDIR).
    pub rss: u32,
    /// Mbit/s (ETHTOOL_GSET).
    pub speed: u32,
    /// The ntuple feature flag (ETHTOOL_GFLAGS).
    pub ntuple_on: bool,
    /// None: the driver has no ntuple filters (EOPNOTSUPP).
    pub capacity: Option<u32>,
    /// Installed rules by location, as the request that installed them.
    pub rules: BTreeMap<u32, Vec<u8>>,
}

fn put(buffer: &mut [u8], at: usize, value: u32) {
    buffer[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

impl Ethtool for FakeNic {
    fn request(&mut self, _iface: &str, buffer: &mut [u8]) -> io::Result<()> {
        let unsupported = || Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        match ethtool::u32_at(buffer, 0) {
            ethtool::GDRVINFO => {
                for (i, text) in self.drvinfo.iter().enumerate() {
                    let at = 4 + 32 * i;
                    buffer[at..at + text.len()].copy_from_slice(text.as_bytes());
                }
            }
            ethtool::GCHANNELS => {
                for (i, value) in self.channels.iter().enumerate().skip(1) {
                    put(buffer, 4 * i, *value);
                }
            }
            ethtool::GRXFHINDIR => put(buffer, 4, self.rss),
            ethtool::GSET => {
                buffer[12..14].copy_from_slice(&(self.speed as u16).to_ne_bytes());
                buffer[28..30].copy_from_slice(&((self.speed >> 16) as u16).to_ne_bytes());
            }
            ethtool::GFLAGS => put(buffer, 4, if self.ntuple_on { 1 << 27 } else { 0 }),
            ethtool::GRXCLSRLCNT => {
                let Some(capacity) = self.capacity else {
                    return unsupported();
                };
                buffer[8..16].copy_from_slice(&u64::from(capacity).to_ne_bytes());
                put(buffer, 184, self.rules.len() as u32);
            }
            ethtool::GRXCLSRLALL => {
                for (i, location) in self.rules.keys().enumerate() {
                    put(buffer, RXNFC_LEN + 4 * i, *location);
                }
            }
            ethtool::SRXCLSRLINS => {
                let location = ethtool::u32_at(buffer, 176);
                if self.capacity.is_none_or(|c| location >= c) || self.rules.contains_key(&location)
                {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                self.rules.insert(location, buffer.to_vec());
            }
            ethtool::GRXCLSRULE => {
                let location = ethtool::u32_at(buffer, 176);
                let stored = self
                    .rules
                    .get(&location)
                    .ok_or(io::Error::from_raw_os_error(libc::ENOENT))?;
                if stored.len() == buffer.len() {
                    buffer[4..].copy_from_slice(&stored[4..]);
                }
            }
            ethtool::SRXCLSRLDEL => {
                let location = ethtool::u32_at(buffer, 176);
                self.rules
                    .remove(&location)
                    .ok_or(io::Error::from_raw_os_error(libc::ENOENT))?;
            }
            _ => return unsupported(),
        }
        Ok(())
    }
}

/// An Intel XL710 on i40e, as `ethtool -i/-l/-x/-n` shows it.
pub fn i40e() -> FakeNic {
    FakeNic {
        drvinfo: ["i40e", "6.18.0", "9.20 0x8000d8c5 1.3353.0", "0000:3b:00.0"],
        channels: [0, 0, 0, 1, 64, 0, 0, 1, 16],
        rss: 512,
        speed: 40_000,
        ntuple_on: true,
        capacity: Some(8192),
        rules: BTreeMap::from([(0, vec![]), (2, vec![])]),
    }
}

/// A ConnectX-6 Dx on mlx5_core.
pub fn mlx5() -> FakeNic {
    FakeNic {
        drvinfo: [
            "mlx5_core",
            "6.18.0",
            "22.39.1002 (MT_0000000359)",
            "0000:17:00.0",
        ],
        channels: [0, 0, 0, 0, 63, 0, 0, 0, 63],
        rss: 256,
        speed: 100_000,
        ntuple_on: false,
        capacity: Some(1024),
        rules: BTreeMap::new(),
    }
}

/// An Agilio CX on nfp with the BPF firmware: no ntuple.
pub fn nfp() -> FakeNic {
    FakeNic {
        drvinfo: [
            "nfp",
            "6.18.0",
            "0.0.3.5 0.22 bpf-2.0.6.124 ebpf",
            "0000:04:00.0",
        ],
        channels: [0, 0, 0, 0, 8, 0, 0, 0, 8],
        rss: 128,
        speed: 25_000,
        ntuple_on: false,
        capacity: None,
        rules: BTreeMap::new(),
    }
}

/// A DEV_GET reply's attributes, as the kernel sends them for these flags.
pub fn dev_reply(xdp: u64, zc_segs: u32, metadata: u64, xsk: u64) -> Vec<u8> {
    [
        xdp_features::attribute(xdp_features::NETDEV_A_DEV_IFINDEX, &4u32.to_ne_bytes()),
        xdp_features::attribute(2, &[0; 4]), // pad
        xdp_features::attribute(xdp_features::NETDEV_A_DEV_XDP_FEATURES, &xdp.to_ne_bytes()),
        xdp_features::attribute(
            xdp_features::NETDEV_A_DEV_XDP_ZC_MAX_SEGS,
            &zc_segs.to_ne_bytes(),
        ),
        xdp_features::attribute(
            xdp_features::NETDEV_A_DEV_XDP_RX_METADATA_FEATURES,
            &metadata.to_ne_bytes(),
        ),
        xdp_features::attribute(xdp_features::NETDEV_A_DEV_XSK_FEATURES, &xsk.to_ne_bytes()),
    ]
    .concat()
}
