//! A raw AF_PACKET socket on one interface of a lab namespace: sends frames exactly as
//! given and receives every frame that arrives, for tests that compare bytes.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::{LabError, netns};

/// An AF_PACKET raw socket bound to one interface, receiving every EtherType (`ETH_P_ALL`),
/// with a 32 MiB receive buffer where the kernel allows it.
pub struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    /// Opens the socket inside `namespace`, bound to `iface` (it stays in that namespace).
    pub fn open(namespace: &str, iface: &str) -> Result<RawSocket, LabError> {
        let iface = iface.to_string();
        netns::run_in(namespace, move || open_here(&iface))?
            .map_err(|e| LabError::io("open AF_PACKET socket", e))
    }

    /// Sends `frame` as it is (Ethernet header included, no FCS), waiting while the socket is
    /// out of buffer space (`ENOBUFS`).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: sends `frame.len()` bytes from a live slice.
            let sent =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent >= 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(error);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// The next frame that arrived on the interface (frames it sent itself are skipped),
    /// or None after `timeout`.
    pub fn receive(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut entry = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut entry, 1, left.as_millis().max(1) as i32) } <= 0 {
                continue;
            }
            // SAFETY: an all-zero sockaddr_ll is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: the buffer and address outlive the call, with their sizes given.
            let len = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if len < 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EAGAIN) {
                    continue;
                }
                return Err(error);
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buffer[..len as usize].to_vec()));
        }
    }
}

fn open_here(iface: &str) -> io::Result<RawSocket> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol as i32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = RawSocket {
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
    };
    let name = std::ffi::CString::new(iface).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = index as i32;
    // SAFETY: a valid sockaddr_ll of the given size.
    let bound = unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    let buffer: libc::c_int = 32 << 20;
    // SAFETY: an int option of the right size. Best effort: a small buffer only risks drops.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&buffer as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(socket)
}
