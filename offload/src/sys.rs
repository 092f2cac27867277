//! The libbpf-sys calls this crate makes beside aya, in one place: a negative result becomes
//! the `io::Error` of its errno, a fresh fd becomes an `OwnedFd`.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// libbpf returns `-errno` on failure (libbpf 1.0 convention).
pub fn check(result: i32) -> io::Result<i32> {
    if result < 0 {
        return Err(io::Error::from_raw_os_error(-result));
    }
    Ok(result)
}

pub fn owned_fd(result: i32) -> io::Result<OwnedFd> {
    let fd = check(result)?;
    // SAFETY: libbpf returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// BPF_OBJ_GET: opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    // SAFETY: plain FFI call with a valid C string.
    owned_fd(unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) })
}

/// BPF_OBJ_PIN: pins `fd` at `path` on bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: plain FFI call with a valid fd and C string.
    check(unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), path.as_ptr()) }).map(drop)
}

/// BPF_LINK_DETACH: detaches even if another process still holds the link.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain FFI call on a valid fd.
    check(unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) }).map(drop)
}

/// The interface of an XDP link: `Some(0)` once its device is gone, `None` for other links.
pub fn xdp_link_ifindex(link: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    let info = link_info(link)?;
    if info.type_ != libbpf_sys::BPF_LINK_TYPE_XDP {
        return Ok(None);
    }
    // SAFETY: the xdp member is the one the kernel fills for BPF_LINK_TYPE_XDP.
    Ok(Some(unsafe { info.__bindgen_anon_1.xdp.ifindex }))
}

/// The interface and attach type (`BPF_TCX_INGRESS`, `BPF_TCX_EGRESS`) of a tcx link;
/// None for a link of another type.
pub fn tcx_link_target(link: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
    let info = link_info(link)?;
    if info.type_ != libbpf_sys::BPF_LINK_TYPE_TCX {
        return Ok(None);
    }
    // SAFETY: the tcx member is the one the kernel fills for BPF_LINK_TYPE_TCX.
    let tcx = unsafe { info.__bindgen_anon_1.tcx };
    Ok(Some((tcx.ifindex, tcx.attach_type)))
}

fn link_info(link: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_link_info> {
    // SAFETY: all-zero is a valid bpf_link_info; the kernel fills up to `length` bytes.
    let mut info: libbpf_sys::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
    // SAFETY: `info` and `length` outlive the call.
    check(unsafe {
        libbpf_sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut length)
    })?;
    Ok(info)
}

/// The kernel's id of a loaded program.
pub fn program_id(program: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: all-zero is a valid bpf_prog_info; the kernel fills up to `length` bytes.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` and `length` outlive the call.
    check(unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(program.as_raw_fd(), &mut info, &mut length)
    })?;
    Ok(info.id)
}

/// What the kernel says of a map: its type, key and value sizes, and size limit.
pub fn map_info(map: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_map_info> {
    // SAFETY: all-zero is a valid bpf_map_info; the kernel fills up to `length` bytes.
    let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: `info` and `length` outlive the call and `length` is `info`'s size.
    check(unsafe {
        libbpf_sys::bpf_map_get_info_by_fd(
            map.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
            &mut length,
        )
    })?;
    Ok(info)
}

/// Returns once every BPF program that was running when it was called has finished: a
/// grace period. After it, no program still reads a map value it looked up before the
/// call. The kernel waits for one (`synchronize_rcu`) in every update of a map-in-map
/// (kernel/bpf/syscall.c, `maybe_wait_bpf_programs`, there so that user space knows the
/// programs use the new value), so this updates a throwaway array of maps.
pub fn wait_for_running_programs() -> io::Result<()> {
    let create = |map_type, value_size, opts: &libbpf_sys::bpf_map_create_opts| {
        // SAFETY: plain FFI call; the name is a static C string, `opts` is valid.
        owned_fd(unsafe {
            libbpf_sys::bpf_map_create(map_type, c"fp_grace".as_ptr(), 4, value_size, 1, opts)
        })
    };
    let plain = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let inner = create(libbpf_sys::BPF_MAP_TYPE_ARRAY, 4, &plain)?;
    let outer = create(
        libbpf_sys::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        4,
        &libbpf_sys::bpf_map_create_opts {
            inner_map_fd: inner.as_raw_fd() as u32,
            ..plain
        },
    )?;
    let (key, value) = (0u32, inner.as_raw_fd() as u32);
    // SAFETY: plain FFI call; key and value point at live 4-byte values.
    check(unsafe {
        libbpf_sys::bpf_map_update_elem(
            outer.as_raw_fd(),
            (&key as *const u32).cast(),
            (&value as *const u32).cast(),
            0,
        )
    })
    .map(drop)
}
