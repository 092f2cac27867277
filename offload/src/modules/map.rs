//! Reading and writing a running module's own maps (`fastpath module map`): the pinned
//! maps of the version the chain runs, keys and values as raw bytes.
//!
//! Keys and values are written as space-separated hex bytes, in memory order, as bpftool
//! prints them: `11 00 00 00` is the little-endian `u32` 17. A per-CPU map's value is one
//! value per possible CPU: reads show each, a write puts the same value on every CPU.

use std::{
    ffi::c_void,
    io,
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
};

use serde::Serialize;

use super::{ChainAt, ModuleError, chain::Chain, entry::open_existing, object::c_string};
use crate::sys;

/// What can go wrong reading or writing a module's map.
#[derive(Debug, thiserror::Error)]
pub enum ModuleMapError {
    /// The chain or the module could not be found or opened.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// A map name that is not a plain file name.
    #[error("{0:?} is not a map name: map names have no `/` and are not `.` or `..`")]
    BadMapName(String),
    /// One of the chain's own maps, which only fastpath writes.
    #[error("{0} is the chain's, not the module's; `fastpath module list` shows the chain")]
    ChainMap(String),
    /// The module has no map of that name.
    #[error("module {module} has no map named {map} (maps: {known})")]
    UnknownMap {
        /// The module.
        module: String,
        /// The map asked for.
        map: String,
        /// The maps it has.
        known: String,
    },
    /// A key or value of the wrong size for the map.
    #[error("{field} of {map} is {expected} bytes, got {got}")]
    WrongSize {
        /// The map.
        map: String,
        /// `key` or `value`.
        field: &'static str,
        /// The map's size of that field.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A key or value that is not space-separated hex bytes.
    #[error(
        "{field} {text:?}: {reason} (write bytes as space-separated hex, e.g. \"11 00 00 00\")"
    )]
    BadBytes {
        /// `key` or `value`.
        field: &'static str,
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not in the map.
    #[error("map {map} has no key {key}")]
    NoKey {
        /// The map.
        map: String,
        /// The key, as hex bytes.
        key: String,
    },
    /// Arrays keep every entry: the kernel refuses to delete one.
    #[error("map {map} is an array: its entries cannot be deleted (set them to zeros instead)")]
    DeleteFromArray {
        /// The map.
        map: String,
    },
    /// A system call on the map failed.
    #[error("{call} on map {map} failed")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The map.
        map: String,
        /// Its error.
        #[source]
        source: io::Error,
    },
}

/// A map's value for one key: one value, or one per possible CPU for a per-CPU map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MapValue {
    /// The value of a map shared by the CPUs, as hex bytes.
    One(String),
    /// Each CPU's value of a per-CPU map, CPU 0 first, as hex bytes.
    PerCpu(Vec<String>),
}

/// One entry of a map.
#[derive(Clone, Debug, Serialize)]
pub struct MapEntry {
    /// The key, as hex bytes.
    pub key: String,
    /// Its value.
    pub value: MapValue,
}

/// What a `module map` command read or wrote.
#[derive(Clone, Debug, Serialize)]
pub struct MapReport {
    /// The interface.
    pub iface: String,
    /// The module.
    pub module: String,
    /// The map.
    pub map: String,
    /// Where the map is pinned (the running version's generation).
    pub pin: PathBuf,
    /// The kernel's map type number (`BPF_MAP_TYPE_*`).
    pub map_type: u32,
    /// Bytes per key.
    pub key_size: u32,
    /// Bytes per value (per CPU, for a per-CPU map).
    pub value_size: u32,
    /// Whether each CPU has its own value.
    pub per_cpu: bool,
    /// The entries read (a dump's all, a get's one, a set's as written; none for a delete).
    pub entries: Vec<MapEntry>,
}

/// What to do on a module's map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOperation {
    /// Every entry.
    Dump,
    /// The entry of this key.
    Get(Vec<u8>),
    /// Write this value (on every CPU, for a per-CPU map) at this key.
    Set(Vec<u8>, Vec<u8>),
    /// Remove the entry of this key (refused by the kernel for arrays).
    Delete(Vec<u8>),
}

/// Parses space-separated hex bytes (`11 00 00 00`; one or two digits each, an optional
/// `0x`) for the `field` (`key` or `value`) of an error.
pub fn parse_bytes(field: &'static str, text: &str) -> Result<Vec<u8>, ModuleMapError> {
    let bad = |reason: String| ModuleMapError::BadBytes {
        field,
        text: text.to_string(),
        reason,
    };
    let bytes: Vec<u8> = text
        .split_whitespace()
        .map(|token| {
            let digits = token
                .strip_prefix("0x")
                .or_else(|| token.strip_prefix("0X"))
                .unwrap_or(token);
            if digits.is_empty() || digits.len() > 2 {
                return Err(bad(format!("{token:?} is not one byte")));
            }
            u8::from_str_radix(digits, 16).map_err(|_| bad(format!("{token:?} is not hex")))
        })
        .collect::<Result<_, _>>()?;
    if bytes.is_empty() {
        return Err(bad("no bytes".to_string()));
    }
    Ok(bytes)
}

/// Bytes as space-separated two-digit hex, the form [`parse_bytes`] reads.
pub fn format_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `operation` on the map `map` of module `module` in the chain on `iface`, on the
/// maps of the version the chain runs.
pub fn module_map<'a>(
    at: impl Into<ChainAt<'a>>,
    module: &str,
    map: &str,
    operation: &MapOperation,
) -> Result<MapReport, ModuleMapError> {
    let chain = open_existing(at.into())?;
    let generation = running_generation(&chain, module)?;
    let dir = chain.pins.generation_dir(module, generation);
    if !super::object::is_pin_name(map) {
        // `..` or a `/` would reach pins outside the module's own (the chain's state, say).
        return Err(ModuleMapError::BadMapName(map.to_string()));
    }
    if super::object::is_chain_map(map) {
        return Err(ModuleMapError::ChainMap(map.to_string()));
    }
    let pin = dir.join(map);
    let fd = sys::obj_get(&pin).map_err(|error| {
        if error.raw_os_error() == Some(libc::ENOENT) {
            let mut known: Vec<String> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .filter(|name| !super::object::is_chain_map(name))
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            ModuleMapError::UnknownMap {
                module: module.to_string(),
                map: map.to_string(),
                known: known.join(", "),
            }
        } else {
            ModuleMapError::Syscall {
                call: "BPF_OBJ_GET",
                map: map.to_string(),
                source: error,
            }
        }
    })?;
    let pinned = PinnedMap::open(fd, map)?;
    let entries = match operation {
        MapOperation::Dump => pinned.dump()?,
        MapOperation::Get(key) => {
            pinned.check_size("key", key.len())?;
            vec![pinned.entry(key)?.ok_or_else(|| ModuleMapError::NoKey {
                map: map.to_string(),
                key: format_bytes(key),
            })?]
        }
        MapOperation::Set(key, value) => {
            pinned.check_size("key", key.len())?;
            pinned.check_size("value", value.len())?;
            pinned.set(key, value)?;
            pinned.entry(key)?.into_iter().collect()
        }
        MapOperation::Delete(key) => {
            pinned.check_size("key", key.len())?;
            pinned.delete(key)?;
            Vec::new()
        }
    };
    Ok(MapReport {
        iface: chain.iface.clone(),
        module: module.to_string(),
        map: map.to_string(),
        pin,
        map_type: pinned.map_type,
        key_size: pinned.key_size,
        value_size: pinned.value_size,
        per_cpu: pinned.cpus.is_some(),
        entries,
    })
}

/// The generation directory number of the running version of `module`.
pub(super) fn running_generation(chain: &Chain, module: &str) -> Result<u32, ModuleError> {
    let mut known = Vec::new();
    for (_, instance, program_id) in chain.running()? {
        let record = chain.record(instance)?;
        let name = c_string(&record.name);
        if name == module {
            return Ok(super::chain::running_generation_of(&record, program_id));
        }
        known.push(name);
    }
    Err(ModuleError::UnknownModule {
        iface: chain.name(),
        module: module.to_string(),
        known: known.join(", "),
    })
}

/// An opened map with the sizes the kernel reports for it.
struct PinnedMap {
    fd: OwnedFd,
    name: String,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// The possible CPUs, for a per-CPU map.
    cpus: Option<usize>,
}

fn is_per_cpu(map_type: u32) -> bool {
    [
        libbpf_sys::BPF_MAP_TYPE_PERCPU_HASH,
        libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY,
        libbpf_sys::BPF_MAP_TYPE_LRU_PERCPU_HASH,
        libbpf_sys::BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    ]
    .contains(&map_type)
}

impl PinnedMap {
    fn open(fd: OwnedFd, name: &str) -> Result<PinnedMap, ModuleMapError> {
        let syscall = |call| {
            let map = name.to_string();
            move |source| ModuleMapError::Syscall { call, map, source }
        };
        let info = sys::map_info(std::os::fd::AsFd::as_fd(&fd))
            .map_err(syscall("BPF_OBJ_GET_INFO_BY_FD"))?;
        let cpus = if is_per_cpu(info.type_) {
            Some(
                aya::util::nr_cpus()
                    .map_err(|(_, error)| error)
                    .map_err(syscall("read the possible CPUs"))?,
            )
        } else {
            None
        };
        Ok(PinnedMap {
            fd,
            name: name.to_string(),
            map_type: info.type_,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            cpus,
        })
    }

    fn check_size(&self, field: &'static str, got: usize) -> Result<(), ModuleMapError> {
        let expected = if field == "key" {
            self.key_size
        } else {
            self.value_size
        } as usize;
        if got != expected {
            return Err(ModuleMapError::WrongSize {
                map: self.name.clone(),
                field,
                expected,
                got,
            });
        }
        Ok(())
    }

    /// The kernel lays a per-CPU value out as one 8-byte-aligned slot per possible CPU.
    fn slot(&self) -> usize {
        (self.value_size as usize).next_multiple_of(8)
    }

    fn buffer_len(&self) -> usize {
        match self.cpus {
            Some(cpus) => self.slot() * cpus,
            None => self.value_size as usize,
        }
    }

    fn syscall(&self, call: &'static str, source: io::Error) -> ModuleMapError {
        ModuleMapError::Syscall {
            call,
            map: self.name.clone(),
            source,
        }
    }

    fn entry(&self, key: &[u8]) -> Result<Option<MapEntry>, ModuleMapError> {
        let mut buffer = vec![0u8; self.buffer_len()];
        // SAFETY: key holds key_size bytes (checked or from the kernel), buffer the
        // value's whole layout.
        let result = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                key.as_ptr().cast::<c_void>(),
                buffer.as_mut_ptr().cast::<c_void>(),
            )
        };
        match sys::check(result) {
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(error) => return Err(self.syscall("BPF_MAP_LOOKUP_ELEM", error)),
        }
        let size = self.value_size as usize;
        let value = match self.cpus {
            Some(_) => MapValue::PerCpu(
                buffer
                    .chunks(self.slot())
                    .map(|slot| format_bytes(&slot[..size]))
                    .collect(),
            ),
            None => MapValue::One(format_bytes(&buffer)),
        };
        Ok(Some(MapEntry {
            key: format_bytes(key),
            value,
        }))
    }

    /// Every entry, once. The kernel walks a hash map from its first key again when the
    /// key a walk stands on is deleted meanwhile (an LRU map under traffic evicts all the
    /// time), so a key seen before ends the walk, and it never goes past the map's size: a
    /// dump of a changing map is a snapshot of what the walk met.
    fn dump(&self) -> Result<Vec<MapEntry>, ModuleMapError> {
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut key: Option<Vec<u8>> = None;
        while seen.len() < self.max_entries.max(1) as usize {
            let mut next = vec![0u8; self.key_size as usize];
            let previous = key
                .as_ref()
                .map_or(std::ptr::null(), |key| key.as_ptr().cast::<c_void>());
            // SAFETY: previous is null or key_size bytes; next has key_size bytes.
            let result = unsafe {
                libbpf_sys::bpf_map_get_next_key(
                    self.fd.as_raw_fd(),
                    previous,
                    next.as_mut_ptr().cast::<c_void>(),
                )
            };
            match sys::check(result) {
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => break,
                Err(error) => return Err(self.syscall("BPF_MAP_GET_NEXT_KEY", error)),
            }
            if !seen.insert(next.clone()) {
                break;
            }
            // An entry deleted between the two calls is skipped.
            if let Some(entry) = self.entry(&next)? {
                entries.push(entry);
            }
            key = Some(next);
        }
        Ok(entries)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ModuleMapError> {
        let mut buffer = vec![0u8; self.buffer_len()];
        match self.cpus {
            Some(_) => {
                let slot = self.slot();
                for chunk in buffer.chunks_mut(slot) {
                    chunk[..value.len()].copy_from_slice(value);
                }
            }
            None => buffer.copy_from_slice(value),
        }
        // SAFETY: key and buffer hold the map's key and whole value layout.
        let result = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                key.as_ptr().cast::<c_void>(),
                buffer.as_ptr().cast::<c_void>(),
                u64::from(libbpf_sys::BPF_ANY),
            )
        };
        sys::check(result)
            .map(drop)
            .map_err(|error| self.syscall("BPF_MAP_UPDATE_ELEM", error))
    }

    fn delete(&self, key: &[u8]) -> Result<(), ModuleMapError> {
        if [
            libbpf_sys::BPF_MAP_TYPE_ARRAY,
            libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY,
        ]
        .contains(&self.map_type)
        {
            return Err(ModuleMapError::DeleteFromArray {
                map: self.name.clone(),
            });
        }
        // SAFETY: key holds the map's key size.
        let result = unsafe {
            libbpf_sys::bpf_map_delete_elem(self.fd.as_raw_fd(), key.as_ptr().cast::<c_void>())
        };
        match sys::check(result) {
            Ok(_) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                Err(ModuleMapError::NoKey {
                    map: self.name.clone(),
                    key: format_bytes(key),
                })
            }
            Err(error) => Err(self.syscall("BPF_MAP_DELETE_ELEM", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_hex_and_print_back() {
        assert_eq!(parse_bytes("key", "11 00 00 00").unwrap(), [0x11, 0, 0, 0]);
        assert_eq!(parse_bytes("key", " 0x1 ff\t0A ").unwrap(), [1, 0xff, 0x0a]);
        assert_eq!(format_bytes(&[0x11, 0, 0xab]), "11 00 ab");
        for bad in ["", "  ", "110", "zz", "0x"] {
            assert!(parse_bytes("value", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_wrong_size_names_the_map_the_field_and_both_sizes() {
        let error = ModuleMapError::WrongSize {
            map: "PROTOCOLS".into(),
            field: "value",
            expected: 8,
            got: 4,
        };
        assert_eq!(error.to_string(), "value of PROTOCOLS is 8 bytes, got 4");
    }
}
