//! A program's instructions and the maps it uses, read from the compiled object without
//! loading it: what the static offload check inspects and what the hardware offload path
//! creates on the device.

use std::collections::{BTreeSet, HashSet};

use aya_obj::generated::bpf_map_type;

const BPF_LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// A program's instructions and the maps it uses, read from the object without loading it.
pub(crate) struct ProgramImage {
    pub instructions: Vec<aya_obj::generated::bpf_insn>,
    /// Only the maps this program touches, not every map of the object.
    pub maps: Vec<(String, aya_obj::Map)>,
}

pub(crate) fn image(object: &[u8], program: &str) -> Result<ProgramImage, String> {
    let mut obj = aya_obj::Object::parse(object).map_err(|e| format!("parse object: {e}"))?;
    // Stand-in descriptors let the relocations mark each map use in the code.
    let names: Vec<String> = obj.maps.keys().cloned().collect();
    let maps: Vec<(String, i32, aya_obj::Map)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), 1000 + i as i32, obj.maps[name].clone()))
        .collect();
    let text: HashSet<usize> = obj.functions.keys().map(|(index, _)| *index).collect();
    obj.relocate_maps(maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)), &text)
        .map_err(|e| format!("map relocation: {e}"))?;
    obj.relocate_calls(&text)
        .map_err(|e| format!("call relocation: {e}"))?;
    let key = obj
        .programs
        .get(program)
        .ok_or_else(|| format!("program {program} not in the object"))?
        .function_key();
    let instructions = obj.functions[&key].instructions.clone();
    let used: BTreeSet<usize> = instructions
        .iter()
        .filter(|insn| insn.code == BPF_LD_IMM64 && insn.src_reg() == PSEUDO_MAP_FD)
        .filter_map(|insn| maps.iter().position(|(_, fd, _)| *fd == insn.imm))
        .collect();
    Ok(ProgramImage {
        instructions,
        maps: used
            .into_iter()
            .map(|i| (maps[i].0.clone(), maps[i].2.clone()))
            .collect(),
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
