//! The seam between this crate and the kernel: the two requests everything else is made of,
//! an ethtool ioctl and a netlink request with its reply. [`Kernel`] makes them for real;
//! tests answer them from recorded replies instead (see the tests of each module).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::netlink;

/// One ethtool request (SIOCETHTOOL): `buffer` holds the command's struct
/// (include/uapi/linux/ethtool.h), filled in by the driver.
pub trait Ethtool {
    /// Runs the command in `buffer` on `iface`.
    fn request(&mut self, iface: &str, buffer: &mut [u8]) -> io::Result<()>;
}

impl<T: Ethtool + ?Sized> Ethtool for &mut T {
    fn request(&mut self, iface: &str, buffer: &mut [u8]) -> io::Result<()> {
        (**self).request(iface, buffer)
    }
}

/// One netlink request and its whole reply: every message up to the last one (a dump's
/// NLMSG_DONE, an NLMSG_ERROR, or a single answer), concatenated as the kernel sent them.
pub trait Netlink {
    /// Sends `request` (a complete netlink message) on a `protocol` socket
    /// (NETLINK_ROUTE, NETLINK_GENERIC) and returns the reply's bytes.
    fn exchange(&mut self, protocol: i32, request: &[u8]) -> io::Result<Vec<u8>>;
}

impl<T: Netlink + ?Sized> Netlink for &mut T {
    fn exchange(&mut self, protocol: i32, request: &[u8]) -> io::Result<Vec<u8>> {
        (**self).exchange(protocol, request)
    }
}

/// The real kernel of the caller's network namespace: each request on a socket of its own,
/// closed after the reply (none of this is a hot path).
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

impl Ethtool for Kernel {
    fn request(&mut self, iface: &str, buffer: &mut [u8]) -> io::Result<()> {
        #[repr(C)]
        struct IfReq {
            name: [u8; libc::IFNAMSIZ],
            data: *mut libc::c_void,
            _pad: [u8; 16],
        }
        const _: () = assert!(size_of::<IfReq>() == size_of::<libc::ifreq>());
        if iface.len() >= libc::IFNAMSIZ {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        let mut request = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: buffer.as_mut_ptr().cast(),
            _pad: [0; 16],
        };
        request.name[..iface.len()].copy_from_slice(iface.as_bytes());
        let socket = open(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
        // SAFETY: `request` points at `buffer`, which is as large as the command's struct
        // (the callers size it from the uapi header) and outlives the call.
        let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Netlink for Kernel {
    fn exchange(&mut self, protocol: i32, request: &[u8]) -> io::Result<Vec<u8>> {
        let socket = open(libc::AF_NETLINK, libc::SOCK_RAW, protocol)?;
        // SAFETY: an all-zero sockaddr_nl addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffers outlive the call; the lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = Vec::new();
        // A dump's datagrams are at most 32 KiB (netlink_dump in net/netlink/af_netlink.c).
        let mut datagram = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: as above.
            let got = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    datagram.as_mut_ptr().cast(),
                    datagram.len(),
                    0,
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let datagram = &datagram[..got as usize];
            reply.extend_from_slice(datagram);
            if got == 0 || netlink::is_last(datagram) {
                return Ok(reply);
            }
        }
    }
}

/// A socket of the caller's network namespace, closed on drop.
fn open(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
