//! Interface facts the attach path needs: index and driver name.

use std::{ffi::CString, io};

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

const ETHTOOL_GDRVINFO: u32 = 0x3;

/// `struct ethtool_drvinfo` (include/uapi/linux/ethtool.h).
#[repr(C)]
struct DriverInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}
const _: () = assert!(std::mem::size_of::<DriverInfo>() == 196);

/// The driver name through the ETHTOOL_GDRVINFO ioctl, e.g. "veth", "mlx5_core".
pub fn driver(iface: &str) -> io::Result<String> {
    let mut info = DriverInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: an all-zero ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(iface.bytes().take(15)) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut info as *mut DriverInfo).cast();
    // SAFETY: a datagram socket for the ioctl, closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `request` points at `info`, both live across the call.
    let result = unsafe { libc::ioctl(socket, libc::SIOCETHTOOL, &mut request) };
    let error = io::Error::last_os_error();
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(socket) };
    if result < 0 {
        return Err(error);
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}
