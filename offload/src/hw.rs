//! Hardware offload: the program and its maps bound to the NIC at load time (`prog_ifindex`,
//! `map_ifindex`), then attached with `XDP_FLAGS_HW_MODE`. aya cannot bind at load yet, so
//! this path parses the object with aya-obj and loads it through libbpf-sys.
//!
//! The kernel offloads only array and hash maps, and only to drivers that register an offload
//! device (nfp); see `bpf_map_offload_map_alloc` and `bpf_prog_dev_bound_init` in
//! kernel/bpf/offload.c. Anything else fails at BPF_MAP_CREATE or BPF_PROG_LOAD, and the
//! error names the map or program and the driver.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya_obj::generated::bpf_map_type;

use crate::{
    program_image::{self, ImageError, map_kind},
    sys,
};

/// Why a hardware attach failed. The messages name the map or program, the driver, and any
/// map kinds no NIC offloads.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// The program could not be read out of the object.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// `BPF_MAP_CREATE` with `map_ifindex` failed for one of the program's maps.
    #[error(
        "BPF_MAP_CREATE of {map} bound to the device failed: {}{}",
        explain(source, driver),
        unsupported_note(unsupported)
    )]
    MapCreate {
        /// The map.
        map: String,
        /// The interface's driver.
        driver: String,
        /// Maps of kinds no NIC offloads (name and kind), if any.
        unsupported: Vec<String>,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_LOAD` with `prog_ifindex` failed.
    #[error(
        "BPF_PROG_LOAD bound to the device failed: {}{}",
        explain(source, driver),
        unsupported_note(unsupported)
    )]
    ProgramLoad {
        /// The interface's driver.
        driver: String,
        /// Maps of kinds no NIC offloads (name and kind), if any.
        unsupported: Vec<String>,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// The netlink attach with `XDP_FLAGS_HW_MODE` failed.
    #[error("netlink XDP attach in HW mode failed")]
    Attach(#[source] io::Error),
    /// The loaded program's id could not be read.
    #[error("read the offloaded program's info")]
    ProgramInfo(#[source] io::Error),
}

fn unsupported_note(unsupported: &[String]) -> String {
    if unsupported.is_empty() {
        String::new()
    } else {
        format!(
            "; besides, NICs offload only array and hash maps and this program uses {}",
            unsupported.join(", ")
        )
    }
}

const OFFLOADABLE_MAPS: [u32; 2] = [
    bpf_map_type::BPF_MAP_TYPE_ARRAY as u32,
    bpf_map_type::BPF_MAP_TYPE_HASH as u32,
];

/// A program loaded onto the NIC and attached in HW mode, with the maps bound with it.
pub struct Offloaded {
    /// The program. Closing it does not detach it: the interface holds it until
    /// [`detach_offloaded`]; pin it to find it again.
    pub program: OwnedFd,
    /// The kernel's id of the program.
    pub id: u32,
    /// The maps created on the device, by their name in the object: only those the program
    /// uses.
    pub maps: Vec<(String, OwnedFd)>,
}

/// Loads `program` from `object` bound to `ifindex` and attaches it in HW mode. Only the
/// maps the program uses are created on the device.
pub fn attach_offloaded(
    object: &[u8],
    program: &str,
    ifindex: u32,
    driver: &str,
) -> Result<Offloaded, HwError> {
    let image = program_image::image(object, program)?;
    let mut used = image.maps;
    // Offloadable kinds first, so that the first failure on a NIC without offload support is
    // about the device, not about a map kind.
    used.sort_by_key(|(_, map)| !OFFLOADABLE_MAPS.contains(&map.map_type()));
    let unsupported: Vec<String> = used
        .iter()
        .filter(|(_, map)| !OFFLOADABLE_MAPS.contains(&map.map_type()))
        .map(|(name, map)| format!("{name} ({})", map_kind(map.map_type())))
        .collect();
    let mut maps = Vec::new();
    for (name, map) in &used {
        let fd = create_bound_map(name, map, ifindex).map_err(|source| HwError::MapCreate {
            map: name.clone(),
            driver: driver.to_string(),
            unsupported: unsupported.clone(),
            source,
        })?;
        maps.push((name.clone(), fd));
    }
    // Maps of the object's other programs get a stand-in descriptor: their code is not loaded.
    let fd_of = |name: &str| {
        maps.iter()
            .find(|(used, _)| used == name)
            .map_or(-1, |(_, fd)| fd.as_raw_fd())
    };
    let relocated = program_image::relocate(object, program, fd_of)?;
    let prog_fd = load_bound_program(
        program,
        &relocated.license,
        &relocated.instructions,
        ifindex,
    )
    .map_err(|source| HwError::ProgramLoad {
        driver: driver.to_string(),
        unsupported,
        source,
    })?;
    // SAFETY: plain FFI call; the fd is valid and owned by `prog_fd`.
    let result = unsafe {
        libbpf_sys::bpf_xdp_attach(
            ifindex as i32,
            prog_fd.as_raw_fd(),
            libbpf_sys::XDP_FLAGS_HW_MODE | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
            std::ptr::null(),
        )
    };
    sys::check(result).map_err(HwError::Attach)?;
    let id = sys::program_id(prog_fd.as_fd()).map_err(HwError::ProgramInfo)?;
    Ok(Offloaded {
        program: prog_fd,
        id,
        maps,
    })
}

/// Removes a HW-mode program from `ifindex`.
pub fn detach_offloaded(ifindex: u32) -> io::Result<()> {
    // SAFETY: plain FFI call with no pointers but a null opts.
    let result = unsafe {
        libbpf_sys::bpf_xdp_detach(
            ifindex as i32,
            libbpf_sys::XDP_FLAGS_HW_MODE,
            std::ptr::null(),
        )
    };
    sys::check(result).map(drop)
}

fn create_bound_map(name: &str, map: &aya_obj::Map, ifindex: u32) -> io::Result<OwnedFd> {
    let c_name = CString::new(name.chars().take(15).collect::<String>()).expect("no NUL");
    // SAFETY: an all-zero opts struct is its documented default; `sz` says which fields exist.
    let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _;
    opts.map_ifindex = ifindex;
    opts.map_flags = map.map_flags();
    // SAFETY: the name and opts outlive the call.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            map.map_type(),
            c_name.as_ptr(),
            map.key_size(),
            map.value_size(),
            map.max_entries(),
            &opts,
        )
    };
    sys::owned_fd(fd)
}

fn load_bound_program(
    name: &str,
    license: &std::ffi::CStr,
    instructions: &[aya_obj::generated::bpf_insn],
    ifindex: u32,
) -> io::Result<OwnedFd> {
    let c_name = CString::new(name).expect("no NUL");
    // SAFETY: as in create_bound_map.
    let mut opts: libbpf_sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _;
    opts.prog_ifindex = ifindex;
    // SAFETY: aya-obj's bpf_insn and libbpf's are both the kernel's 8-byte `struct bpf_insn`;
    // the slice outlives the call.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            c_name.as_ptr(),
            license.as_ptr(),
            instructions.as_ptr().cast(),
            instructions.len() as _,
            &mut opts,
        )
    };
    sys::owned_fd(fd)
}

fn explain(error: &io::Error, driver: &str) -> String {
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            format!("driver {driver} does not support BPF hardware offload")
        }
        Some(libc::ENODEV) => "the interface disappeared".to_string(),
        Some(libc::EPERM) => "permission denied (needs root or CAP_BPF + CAP_NET_ADMIN)".into(),
        _ => "the kernel refused the offload".to_string(),
    }
}
