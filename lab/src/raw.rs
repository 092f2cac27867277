//! A raw AF_PACKET socket on one interface of a lab namespace: sends frames exactly as
//! given and receives every frame that arrives, for tests that compare bytes.

use std::{
    io,
    mem::{size_of, size_of_val},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::{LabError, netns};

/// An 802.1Q tag the kernel took out of a received frame: TPID and TCI.
type Tag = (u16, u16);

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
    /// or None after `timeout`. An 802.1Q tag the kernel took out of the frame on receive
    /// (it keeps it in the packet's metadata) is left out: see [`RawSocket::receive_wire`].
    pub fn receive(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        Ok(self.receive_tagged(timeout)?.map(|(frame, _)| frame))
    }

    /// The next frame that arrived, as it was on the wire: an 802.1Q tag the kernel took
    /// out on receive (every tagged frame's, before packet sockets see it) is put back
    /// after the MAC addresses.
    pub fn receive_wire(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        Ok(self.receive_tagged(timeout)?.map(|(mut frame, tag)| {
            if let Some((tpid, tci)) = tag
                && frame.len() >= 12
            {
                let mut tag = tpid.to_be_bytes().to_vec();
                tag.extend_from_slice(&tci.to_be_bytes());
                frame.splice(12..12, tag);
            }
            frame
        }))
    }

    /// The next frame and the tag the kernel took out of it, if any.
    fn receive_tagged(&self, timeout: Duration) -> io::Result<Option<(Vec<u8>, Option<Tag>)>> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 65536];
        // Room for one tpacket_auxdata control message, aligned as cmsghdr wants.
        let mut control = [0u64; 16];
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
            let mut io_vector = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            };
            // SAFETY: an all-zero msghdr is valid; its pointers are set below.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            message.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            message.msg_iov = &mut io_vector;
            message.msg_iovlen = 1;
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = size_of_val(&control);
            // SAFETY: every buffer the message points to outlives the call.
            let len =
                unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut message, libc::MSG_DONTWAIT) };
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
            let mut tag = None;
            // SAFETY: the kernel filled the control buffer; CMSG_* walk it within
            // msg_controllen.
            unsafe {
                let mut header = libc::CMSG_FIRSTHDR(&message);
                while !header.is_null() {
                    if (*header).cmsg_level == libc::SOL_PACKET
                        && (*header).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = (libc::CMSG_DATA(header) as *const libc::tpacket_auxdata)
                            .read_unaligned();
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                aux.tp_vlan_tpid
                            } else {
                                0x8100
                            };
                            tag = Some((tpid, aux.tp_vlan_tci));
                        }
                    }
                    header = libc::CMSG_NXTHDR(&message, header);
                }
            }
            return Ok(Some((buffer[..len as usize].to_vec(), tag)));
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
    let on: libc::c_int = 1;
    // SAFETY: an int option of the right size. The tag of a received 802.1Q frame comes
    // in this control message (`receive_wire`).
    if unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } < 0
    {
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
