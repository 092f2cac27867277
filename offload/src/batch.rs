//! Batched map updates and deletes (`BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`, Linux
//! 5.6): one `bpf()` call for many entries instead of one each, which is most of what a
//! 64k-rule apply costs (its hash entries and counters). aya has no batch API; the call
//! goes through libc.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;

/// `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries per call: the kernel copies keys and values in; a bounded chunk keeps its
/// allocation small.
const CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn call(command: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` batch member whose pointers point at slices
    // that outlive the call; the kernel reads `size_of` bytes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `values` under `keys` into `map` (created or replaced), in chunks. A per-CPU
/// map takes one value per CPU for each key, the CPUs of one key together (`values` is
/// then `keys.len()` times the CPU count long).
pub fn update<K: Copy, V: Copy>(map: &MapData, keys: &[K], values: &[V]) -> std::io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let per_key = values.len() / keys.len();
    for (index, chunk) in keys.chunks(CHUNK).enumerate() {
        let first = index * CHUNK * per_key;
        let values = &values[first..first + chunk.len() * per_key];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes `keys` from the hash `map`, in chunks.
pub fn delete<K: Copy>(map: &MapData, keys: &[K]) -> std::io::Result<()> {
    for chunk in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_DELETE_BATCH, &mut attr)?;
    }
    Ok(())
}
