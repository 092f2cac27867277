//! Interface facts the attach path needs: index and driver name.

use std::ffi::CString;

use crate::OffloadError;

pub fn ifindex(iface: &str) -> Result<u32, OffloadError> {
    let name = CString::new(iface).map_err(|_| OffloadError::UnknownInterface(iface.into()))?;
    // SAFETY: plain FFI call with a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(OffloadError::UnknownInterface(iface.to_string()));
    }
    Ok(index)
}

/// The driver name, e.g. "veth", "mlx5_core" (shared with the AF_XDP crate).
pub use afxdp::netdev::driver;
