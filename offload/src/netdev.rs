//! Interface facts the attach path needs: index and driver name.

use crate::OffloadError;

pub fn ifindex(iface: &str) -> Result<u32, OffloadError> {
    afxdp::netdev::ifindex(iface).ok_or_else(|| OffloadError::UnknownInterface(iface.into()))
}

/// The driver name, e.g. "veth", "mlx5_core" (shared with the AF_XDP crate).
pub use afxdp::netdev::driver;
