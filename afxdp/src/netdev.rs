//! Interface facts through ioctls on the caller's network namespace: index, driver name,
//! and queue count. (sysfs would show the namespace it was mounted in, not the caller's.)

use std::{ffi::CString, io, mem::size_of};

/// The interface index, or `None` when no such interface exists.
pub fn ifindex(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: plain FFI call with a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_drvinfo` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Clone, Copy)]
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
const _: () = assert!(size_of::<DriverInfo>() == 196);

/// `struct ethtool_channels` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}
const _: () = assert!(size_of::<Channels>() == 36);

/// Runs one SIOCETHTOOL request whose first field is the command.
fn ethtool<T: Copy>(iface: &str, mut request: T) -> io::Result<T> {
    // SAFETY: an all-zero ifreq is valid.
    let mut ifreq: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in ifreq.ifr_name.iter_mut().zip(iface.bytes().take(15)) {
        *slot = byte as libc::c_char;
    }
    ifreq.ifr_ifru.ifru_data = (&mut request as *mut T).cast();
    // SAFETY: a datagram socket for the ioctl, closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ifreq` points at `request`; both live across the call.
    let result = unsafe { libc::ioctl(socket, libc::SIOCETHTOOL, &mut ifreq) };
    let error = io::Error::last_os_error();
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(socket) };
    if result < 0 { Err(error) } else { Ok(request) }
}

/// The driver name through ETHTOOL_GDRVINFO, e.g. "veth", "mlx5_core".
pub fn driver(iface: &str) -> io::Result<String> {
    let info = ethtool(
        iface,
        DriverInfo {
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
        },
    )?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// How many queues an AF_XDP socket can bind to: the larger of the RX and TX channel
/// counts, as the kernel checks it (net/xdp/xsk.c: xsk_reg_pool_at_qid).
pub fn queue_count(iface: &str) -> io::Result<u32> {
    let channels = ethtool(
        iface,
        Channels {
            cmd: ETHTOOL_GCHANNELS,
            ..Channels::default()
        },
    )?;
    let rx = channels.rx_count + channels.combined_count;
    let tx = channels.tx_count + channels.combined_count;
    Ok(rx.max(tx))
}
