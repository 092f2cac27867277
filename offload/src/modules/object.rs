//! A module's ELF object, read and checked without loading it: its metadata (the
//! `.fastpath.module` section), its one XDP program and the shapes of its maps.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    sync::Once,
};

use aya_obj::{EbpfSectionKind, ProgramSection};
use object::{Object as _, ObjectSection as _};
use offload_common::module::{
    ABI_VERSION, DIGEST_LEN, META_FRAGS, META_MAGIC, META_SECTION, ModuleMeta, maps,
};
use sha2::{Digest as _, Sha256};

use super::ModuleError;

/// A module object that passed the checks that need no kernel.
#[derive(Clone, Debug)]
pub struct ModuleObject {
    /// Where it was read from.
    pub path: PathBuf,
    /// The object's bytes, as handed to the loader.
    pub bytes: Vec<u8>,
    /// The name in its metadata.
    pub name: String,
    /// The version in its metadata.
    pub version: String,
    /// Whether it handles multi-buffer frames (metadata and program section agree).
    pub frags: bool,
    /// Whether it is a TC classifier (`SEC("classifier")`), for the tcx hooks, rather
    /// than an XDP program.
    pub tc: bool,
    /// The name of its XDP program (its function name).
    pub program: String,
    /// Its own maps (not the chain's shared ones, nor its `FP_NEXT`, nor global data
    /// sections).
    pub maps: Vec<MapShape>,
    /// Whether it declares `FP_NEXT`, its link to the next module (every module that
    /// continues does).
    pub has_next: bool,
    /// The first bytes of the SHA-256 of `bytes`: the same build gives the same digest.
    pub digest: [u8; DIGEST_LEN],
}

/// What decides whether a map of a new version can take over the old one's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapShape {
    /// The map's name in the object (and its pin's file name).
    pub name: String,
    /// The kernel's `bpf_map_type`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// `max_entries` (0 where the kernel decides, e.g. per-CPU sized maps).
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_NO_PREALLOC`, `BPF_F_RDONLY_PROG`, ...).
    pub flags: u32,
}

impl ModuleObject {
    /// Reads and checks `path`: an ELF object with fastpath module metadata for this ABI,
    /// holding exactly one XDP program whose `xdp.frags` matches the metadata.
    pub fn read(path: &Path) -> Result<ModuleObject, ModuleError> {
        let read_error = |source| ModuleError::ReadFile {
            file: path.to_path_buf(),
            source,
        };
        // A FIFO would block and /dev/zero would never end: only regular files, and no
        // larger than any module could be.
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        let not_a_module = |reason: String| ModuleError::NotAModuleFile {
            file: path.to_path_buf(),
            reason,
        };
        if !metadata.is_file() {
            return Err(not_a_module("not a regular file".into()));
        }
        if metadata.len() > MAX_OBJECT_BYTES {
            return Err(not_a_module(format!(
                "{} bytes; a module object is at most {MAX_OBJECT_BYTES}",
                metadata.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        Self::parse(path, bytes)
    }

    /// As [`ModuleObject::read`], for bytes already read (`path` names them in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<ModuleObject, ModuleError> {
        let file = path.to_path_buf();
        if !bytes.starts_with(b"\x7fELF") {
            return Err(ModuleError::NotElf { file });
        }
        let meta = read_meta(&file, &bytes)?;
        if meta.abi_version != ABI_VERSION {
            return Err(ModuleError::AbiMismatch {
                file,
                built_for: meta.abi_version,
            });
        }
        let name = c_string(&meta.name);
        let version = c_string(&meta.version);
        if name.is_empty() {
            return Err(ModuleError::BadMetadata {
                file,
                reason: "the module name is empty".into(),
            });
        }
        let parsed = parse_quietly(&bytes)
            .ok_or_else(|| ModuleError::ParserPanicked { file: file.clone() })?;
        let object = parsed.map_err(|source| ModuleError::ParseObject {
            file: file.clone(),
            source: Box::new(source),
        })?;
        let mut programs = object.programs.iter();
        let (program, section) = match (programs.next(), programs.next()) {
            (Some((program, details)), None) => (program.clone(), details.section.clone()),
            (None, _) => return Err(ModuleError::NoProgram { file }),
            (Some(_), Some(_)) => {
                return Err(ModuleError::SeveralPrograms {
                    file,
                    programs: object
                        .programs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        let (frags, tc) = match section {
            ProgramSection::Xdp { frags, .. } => (frags, false),
            ProgramSection::SchedClassifier => (false, true),
            _ => {
                return Err(ModuleError::NotXdp {
                    file,
                    program,
                    section: format!("{section:?}"),
                });
            }
        };
        let declared = meta.flags & META_FRAGS != 0;
        if frags != declared {
            return Err(ModuleError::FragsDisagree {
                file,
                program,
                metadata: declared,
                section: frags,
            });
        }
        for (name, map) in &object.maps {
            let Some(expected) = shared_map_shape(name) else {
                continue;
            };
            let found = (
                map.map_type(),
                map.key_size(),
                map.value_size(),
                map.max_entries(),
            );
            if found != expected {
                return Err(ModuleError::SharedMapShape {
                    file,
                    map: name.clone(),
                    expected: shape_text(expected),
                    found: shape_text(found),
                });
            }
        }
        let mut own_maps: Vec<MapShape> = object
            .maps
            .iter()
            .filter(|(name, map)| {
                !is_chain_map(name)
                    && matches!(
                        map.section_kind(),
                        EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps
                    )
            })
            .map(|(name, map)| MapShape {
                name: name.clone(),
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: map.max_entries(),
                flags: map.map_flags(),
            })
            .collect();
        own_maps.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(bad) = own_maps.iter().find(|map| !is_pin_name(&map.name)) {
            return Err(ModuleError::BadMapName {
                file: file.clone(),
                map: bad.name.clone(),
            });
        }
        let digest = digest_of(&bytes);
        let has_next = object.maps.contains_key(maps::NEXT);
        Ok(ModuleObject {
            has_next,
            tc,
            path: file,
            bytes,
            digest,
            name,
            version,
            frags,
            program,
            maps: own_maps,
        })
    }
}

/// Whether `name` is one of the chain's maps (shared, or a module's `FP_NEXT`) rather than
/// a module's own: not handed over, listed or written as module state.
pub(super) fn is_chain_map(name: &str) -> bool {
    maps::ALL.contains(&name) || name == maps::NEXT
}

/// (type, key size, value size, max entries) of the chain's map `name` (a shared one, as
/// the chain's entry creates it, or a module's `FP_NEXT`); a module declaring it otherwise
/// was built against another SDK.
fn shared_map_shape(name: &str) -> Option<(u32, u32, u32, u32)> {
    use libbpf_sys::{
        BPF_MAP_TYPE_ARRAY as ARRAY, BPF_MAP_TYPE_DEVMAP as DEVMAP,
        BPF_MAP_TYPE_PERCPU_ARRAY as PERCPU_ARRAY, BPF_MAP_TYPE_PROG_ARRAY as PROG_ARRAY,
        BPF_MAP_TYPE_XSKMAP as XSKMAP,
    };
    use offload_common::module::{
        CHAIN_ARRAY_SLOTS, ChainState, MAX_MODULES, MAX_PORTS, MAX_XSK_QUEUES, ModuleContext,
        ModuleRecord, ModuleRuntime, REVISION_BANKS, chain_counter, verdict,
    };
    let size = |bytes: usize| bytes as u32;
    Some(match name {
        maps::CHAIN => (PROG_ARRAY, 4, 4, CHAIN_ARRAY_SLOTS),
        maps::CONTEXT => (PERCPU_ARRAY, 4, size(size_of::<ModuleContext>()), 1),
        maps::STATE => (ARRAY, 4, size(size_of::<ChainState>()), 1),
        maps::SLOT_INSTANCE => (ARRAY, 4, 4, CHAIN_ARRAY_SLOTS),
        maps::VERDICTS => (PERCPU_ARRAY, 4, 8, MAX_MODULES * verdict::COUNT),
        maps::CHAIN_COUNTERS => (PERCPU_ARRAY, 4, 8, chain_counter::COUNT),
        // The kernel's struct bpf_devmap_val: an ifindex and a program.
        maps::PORTS => (DEVMAP, 4, 8, MAX_PORTS),
        maps::XSKS => (XSKMAP, 4, 4, MAX_XSK_QUEUES),
        maps::MODULES => (ARRAY, 4, size(size_of::<ModuleRecord>()), MAX_MODULES),
        maps::RUNTIME => (
            PERCPU_ARRAY,
            4,
            size(size_of::<ModuleRuntime>()),
            MAX_MODULES,
        ),
        // The module's own, but its shape is the ABI's too.
        maps::NEXT => (PROG_ARRAY, 4, 4, REVISION_BANKS),
        _ => return None,
    })
}

fn shape_text((map_type, key, value, max): (u32, u32, u32, u32)) -> String {
    format!("type {map_type}, key {key} bytes, value {value} bytes, {max} entries")
}

fn digest_of(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    let full = Sha256::digest(bytes);
    let mut digest = [0u8; DIGEST_LEN];
    digest.copy_from_slice(&full[..DIGEST_LEN]);
    digest
}

/// A digest as lowercase hex, as `chain show` prints it.
pub fn digest_hex(digest: &[u8; DIGEST_LEN]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// aya-obj 0.3 panics on some malformed BTF.ext sections (an unwrap on a string offset in
/// `BtfExt::parse`); a bad file must be an error, never a crash. `None` when it panicked;
/// that panic is not printed (every other panic still reaches the previous hook).
fn parse_quietly(bytes: &[u8]) -> Option<Result<aya_obj::Object, aya_obj::ParseError>> {
    thread_local! {
        static PARSING: Cell<bool> = const { Cell::new(false) };
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PARSING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    PARSING.with(|parsing| parsing.set(true));
    let parsed = std::panic::catch_unwind(|| aya_obj::Object::parse(bytes)).ok();
    PARSING.with(|parsing| parsing.set(false));
    parsed
}

fn read_meta(file: &Path, bytes: &[u8]) -> Result<ModuleMeta, ModuleError> {
    let elf = object::File::parse(bytes).map_err(|source| ModuleError::BadElf {
        file: file.to_path_buf(),
        source,
    })?;
    let no_meta = || ModuleError::NoMetadata {
        file: file.to_path_buf(),
    };
    let section = elf.section_by_name(META_SECTION).ok_or_else(no_meta)?;
    let data = section.data().map_err(|source| ModuleError::BadElf {
        file: file.to_path_buf(),
        source,
    })?;
    if data.len() < size_of::<ModuleMeta>() {
        return Err(ModuleError::BadMetadata {
            file: file.to_path_buf(),
            reason: format!(
                "section {META_SECTION} holds {} bytes, a ModuleMeta takes {}",
                data.len(),
                size_of::<ModuleMeta>()
            ),
        });
    }
    // SAFETY: ModuleMeta is plain old data and `data` holds enough bytes; unaligned read.
    let meta = unsafe { data.as_ptr().cast::<ModuleMeta>().read_unaligned() };
    if meta.magic != META_MAGIC {
        return Err(no_meta());
    }
    Ok(meta)
}

/// The text before the first NUL.
pub(crate) fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The largest file read as a module object: far beyond any program the verifier accepts
/// (1 million instructions) with its maps and BTF and debug info, so that what is refused
/// is clearly not a module rather than merely large.
const MAX_OBJECT_BYTES: u64 = 512 << 20;

/// Whether `name` can be a pin's file name under a module's directory: not empty, `.` or
/// `..`, no `/`, and within bpffs's name length.
pub(crate) fn is_pin_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<ModuleObject, ModuleError> {
        ModuleObject::parse(Path::new("m.o"), bytes.to_vec())
    }

    #[test]
    fn a_file_that_is_not_elf_is_named() {
        let error = parse(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(matches!(error, ModuleError::NotElf { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with("m.o is not an ELF object"),
            "{error}"
        );
        let error = parse(b"").unwrap_err();
        assert!(matches!(error, ModuleError::NotElf { .. }), "{error:?}");
    }

    #[test]
    fn an_elf_without_module_metadata_is_refused() {
        // The chain's own entry object: a valid BPF object, but no module.
        let error = parse(super::super::CHAIN_OBJECT).unwrap_err();
        assert!(matches!(error, ModuleError::NoMetadata { .. }), "{error:?}");
        assert!(error.to_string().contains(".fastpath.module"), "{error}");
        // A truncated ELF header is a damaged object, not a panic.
        let error = parse(b"\x7fELF\x02\x01\x01").unwrap_err();
        assert!(matches!(error, ModuleError::BadElf { .. }), "{error:?}");
    }

    #[test]
    fn a_btf_that_makes_the_parser_panic_is_an_error() {
        // Found by the module_object fuzz target: aya-obj unwraps a bad string offset.
        let bytes = include_bytes!("../../../fuzz/corpus/module_object/bad_btf_ext_name_offset.o");
        let error = parse(bytes).unwrap_err();
        assert!(
            matches!(error, ModuleError::ParserPanicked { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn the_abi_mismatch_message_says_both_versions() {
        let error = ModuleError::AbiMismatch {
            file: "m.o".into(),
            built_for: 2,
        };
        assert!(
            error
                .to_string()
                .contains("m.o: built for ABI 2; this fastpath speaks 1"),
            "{error}"
        );
    }

    #[test]
    fn names_end_at_the_first_nul() {
        assert_eq!(c_string(b"counter\0\0\0"), "counter");
        assert_eq!(c_string(b"full"), "full");
        assert_eq!(c_string(b"\0x"), "");
    }
}
