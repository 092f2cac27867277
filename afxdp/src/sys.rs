//! Thin wrappers over the syscalls AF_XDP needs, each returning `io::Error` from errno.
//! Callers turn them into `XskError`s that name the call.

use std::{
    io,
    mem::{MaybeUninit, size_of},
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr::NonNull,
};

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

pub fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd.
    let fd = check(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-old-data value.
pub fn set_option<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the given size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt` into a zeroed `T`; returns the value and the length the kernel filled in
/// (older kernels fill in less of some structs, e.g. `xdp_statistics`).
pub fn get_option<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zeroed is a valid bit pattern for the plain C structs used here.
    Ok((unsafe { value.assume_init() }, len as usize))
}

pub fn bind_xdp(fd: BorrowedFd<'_>, address: &libc::sockaddr_xdp) -> io::Result<()> {
    // SAFETY: `address` is a valid sockaddr_xdp of the given size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (address as *const libc::sockaddr_xdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Maps `len` bytes of `fd` at page offset `offset` (the AF_XDP ring offsets), shared.
pub fn mmap_ring(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<NonNull<u8>> {
    // SAFETY: a new shared mapping; the kernel validates fd, offset and length.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    mapped(ptr)
}

/// Anonymous private memory for a UMEM, optionally from 2 MiB huge pages.
pub fn mmap_anonymous(len: usize, huge_pages: bool) -> io::Result<NonNull<u8>> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    if huge_pages {
        // MAP_HUGE_2MB is 21 << MAP_HUGE_SHIFT (include/uapi/asm-generic/hugetlb_encode.h).
        flags |= libc::MAP_HUGETLB | (21 << libc::MAP_HUGE_SHIFT);
    }
    // SAFETY: a new anonymous mapping, not aliased by anything.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    mapped(ptr)
}

fn mapped(ptr: *mut libc::c_void) -> io::Result<NonNull<u8>> {
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
}

/// # Safety
/// `ptr`/`len` must be a mapping made by this module that nothing uses any more.
pub unsafe fn munmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller. A failure would mean a bad pointer; nothing to do.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// The wakeup for TX: `sendto(fd, NULL, 0, MSG_DONTWAIT)`. In copy mode this is what
/// transmits (net/xdp/xsk.c: xsk_sendmsg -> xsk_generic_xmit).
pub fn send_wakeup(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer.
    check(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        ) as libc::c_int
    })
    .map(drop)
}

/// The wakeup for RX: `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`, which drives busy polling.
pub fn receive_wakeup(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length receive with no buffer.
    check(unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) as libc::c_int
    })
    .map(drop)
}

/// Waits up to `timeout_ms` for the socket to become readable; returns whether it did.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut entry = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = check(unsafe { libc::poll(&mut entry, 1, timeout_ms) })?;
    Ok(ready > 0)
}
