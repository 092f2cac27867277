//! A program's instructions and the maps it uses, read from the compiled object without
//! loading it: what the static offload check inspects and what the hardware offload path
//! creates on the device.

use std::collections::{BTreeSet, HashSet};

use aya_obj::generated::bpf_map_type;

const BPF_LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// Why a program could not be read out of an object.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The bytes are not an eBPF ELF object aya-obj can read.
    #[error("parse the object")]
    Parse(#[source] aya_obj::ParseError),
    /// A map or call relocation of the program failed.
    #[error("relocate the program's {what}")]
    Relocation {
        /// "maps" or "calls".
        what: &'static str,
        /// aya-obj's reason.
        #[source]
        source: aya_obj::relocation::EbpfRelocationError,
    },
    /// The object has no program of that name.
    #[error("no program `{0}` in the object")]
    NoProgram(String),
}

/// A program's instructions and the maps it uses, read from the object without loading it.
pub(crate) struct ProgramImage {
    pub instructions: Vec<aya_obj::generated::bpf_insn>,
    /// Only the maps this program touches, not every map of the object.
    pub maps: Vec<(String, aya_obj::Map)>,
}

/// A program relocated against chosen map descriptors.
pub(crate) struct Relocated {
    /// The program's instructions, map references resolved.
    pub instructions: Vec<aya_obj::generated::bpf_insn>,
    /// The object's license (the kernel checks it for GPL-only helpers).
    pub license: std::ffi::CString,
    /// Every map of the object, sorted by name.
    pub maps: Vec<(String, aya_obj::Map)>,
}

/// A program's instructions relocated against the map descriptor `fd_of` gives each map of
/// the object, by name.
pub(crate) fn relocate(
    object: &[u8],
    program: &str,
    fd_of: impl Fn(&str) -> i32,
) -> Result<Relocated, ImageError> {
    let mut obj = aya_obj::Object::parse(object).map_err(ImageError::Parse)?;
    let mut maps: Vec<(String, aya_obj::Map)> = obj
        .maps
        .iter()
        .map(|(name, map)| (name.clone(), map.clone()))
        .collect();
    maps.sort_by(|a, b| a.0.cmp(&b.0));
    let text: HashSet<usize> = obj.functions.keys().map(|(index, _)| *index).collect();
    let relocation = |what| move |source| ImageError::Relocation { what, source };
    obj.relocate_maps(
        maps.iter()
            .map(|(name, map)| (name.as_str(), fd_of(name), map)),
        &text,
    )
    .map_err(relocation("maps"))?;
    obj.relocate_calls(&text).map_err(relocation("calls"))?;
    let key = obj
        .programs
        .get(program)
        .ok_or_else(|| ImageError::NoProgram(program.to_string()))?
        .function_key();
    Ok(Relocated {
        instructions: obj.functions[&key].instructions.clone(),
        license: obj.license,
        maps,
    })
}

/// The program's instructions and the maps they use: each map gets a stand-in descriptor,
/// so the relocated `LD_IMM64` instructions say which maps the code touches.
pub(crate) fn image(object: &[u8], program: &str) -> Result<ProgramImage, ImageError> {
    const STAND_IN_BASE: i32 = 1000;
    let names: Vec<String> = {
        let obj = aya_obj::Object::parse(object).map_err(ImageError::Parse)?;
        let mut names: Vec<String> = obj.maps.keys().cloned().collect();
        names.sort();
        names
    };
    let stand_in =
        |name: &str| STAND_IN_BASE + names.iter().position(|n| n == name).unwrap_or(0) as i32;
    let relocated = relocate(object, program, stand_in)?;
    let used: BTreeSet<usize> = relocated
        .instructions
        .iter()
        .filter(|insn| insn.code == BPF_LD_IMM64 && insn.src_reg() == PSEUDO_MAP_FD)
        .filter_map(|insn| usize::try_from(insn.imm - STAND_IN_BASE).ok())
        .filter(|index| *index < relocated.maps.len())
        .collect();
    Ok(ProgramImage {
        maps: used
            .into_iter()
            .map(|index| relocated.maps[index].clone())
            .collect(),
        instructions: relocated.instructions,
    })
}

/// A map type's short name, as in bpftool.
pub(crate) fn map_kind(map_type: u32) -> &'static str {
    use bpf_map_type::*;
    match map_type {
        t if t == BPF_MAP_TYPE_ARRAY as u32 => "array",
        t if t == BPF_MAP_TYPE_HASH as u32 => "hash",
        t if t == BPF_MAP_TYPE_LRU_HASH as u32 => "lru_hash",
        t if t == BPF_MAP_TYPE_LPM_TRIE as u32 => "lpm_trie",
        t if t == BPF_MAP_TYPE_PERCPU_ARRAY as u32 => "percpu_array",
        t if t == BPF_MAP_TYPE_PERCPU_HASH as u32 => "percpu_hash",
        t if t == BPF_MAP_TYPE_XSKMAP as u32 => "xskmap",
        t if t == BPF_MAP_TYPE_DEVMAP as u32 => "devmap",
        t if t == BPF_MAP_TYPE_CPUMAP as u32 => "cpumap",
        _ => "other",
    }
}
