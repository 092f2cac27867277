//! Loading one version of a module: its own maps pinned in a generation directory of
//! their own (or taken over from the running version), the chain's shared maps bound to
//! the pinned ones, and the verifier's verdict.

use std::{
    fs,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use offload_common::module::maps;

use super::{
    ModuleError, ModuleObject,
    chain::{self, Chain},
    object::is_chain_map,
    report::MapHandover,
};
use crate::sys;

/// Loads one version of a module with its own maps pinned in generation `generation`
/// (those in `kept` reused from where they are pinned) and the chain's shared maps bound
/// to the pinned ones. Returns its program (for the revision) and the program's id.
pub(super) fn load_version(
    chain: &Chain,
    object: &ModuleObject,
    name: &str,
    generation: u32,
    kept: &[(String, PathBuf)],
) -> Result<(OwnedFd, u32), ModuleError> {
    let dir = chain.pins.generation_dir(name, generation);
    chain::remove_dir(&dir);
    fs::create_dir_all(&dir).map_err(ModuleError::syscall("mkdir under bpffs"))?;
    let shared: Vec<(&str, PathBuf)> = maps::ALL
        .iter()
        .map(|map| (*map, chain.pins.map(map)))
        .collect();
    let own: Vec<(&str, PathBuf)> = object
        .maps
        .iter()
        .map(|map| {
            let path = kept
                .iter()
                .find(|(kept, _)| *kept == map.name)
                .map_or_else(|| dir.join(&map.name), |(_, path)| path.clone());
            (map.name.as_str(), path)
        })
        .collect();
    let mut loader = EbpfLoader::new();
    for (map, path) in shared.iter().chain(own.iter()) {
        loader.map_pin_path(map, path.as_path());
    }
    // Its link to the next module: its own, new with each version, wired by the switch.
    let next = dir.join(maps::NEXT);
    if object.has_next {
        loader.map_pin_path(maps::NEXT, next.as_path());
    }
    let mut ebpf = loader
        .load(&object.bytes)
        .map_err(|source| ModuleError::LoadObject {
            module: name.to_string(),
            file: object.path.clone(),
            source: Box::new(source),
        })?;
    let program_error = |step| ModuleError::program(name, &object.program, step);
    let load_error = |error| match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => ModuleError::Verifier {
            module: name.to_string(),
            file: object.path.clone(),
            program: object.program.clone(),
            errno: io_error,
            log: verifier_log.to_string(),
        },
        other => program_error("load")(other),
    };
    let program = ebpf
        .program_mut(&object.program)
        .ok_or_else(|| ModuleError::NoProgram {
            file: object.path.clone(),
        })?;
    // The same steps for either program type; aya has no trait over them.
    macro_rules! load_as {
        ($kind:ty) => {{
            let program: &mut $kind = program.try_into().map_err(program_error("open"))?;
            program.load().map_err(load_error)?;
            let id = program
                .info()
                .map_err(program_error("read the info of"))?
                .id();
            let fd = program
                .fd()
                .map_err(program_error("read the fd of"))?
                .as_fd()
                .try_clone_to_owned()
                .map_err(ModuleError::syscall("dup a program fd"))?;
            (fd, id)
        }};
    }
    let (fd, program_id) = if object.tc {
        load_as!(SchedClassifier)
    } else {
        load_as!(Xdp)
    };
    // Kept maps are pinned in the new generation too, so it holds the version's whole set.
    for (map, _) in kept {
        if let Some(loaded) = ebpf.map(map) {
            let path = dir.join(map);
            loaded
                .pin(&path)
                .map_err(|source| ModuleError::Pin { path, source })?;
        }
    }
    Ok((fd, program_id))
}

/// Which of the old version's maps (pinned in `old_dir`) the new object can take over.
pub(super) fn plan_handover(
    object: &ModuleObject,
    old_dir: &Path,
) -> Result<MapHandover, ModuleError> {
    let mut handover = MapHandover::default();
    for map in &object.maps {
        let old = old_dir.join(&map.name);
        let same = pinned_shape(&old).is_some_and(|shape| {
            shape
                == (
                    map.map_type,
                    map.key_size,
                    map.value_size,
                    map.max_entries,
                    map.flags,
                )
        });
        if same && hands_over(map.map_type) {
            handover.kept.push(map.name.clone());
        } else {
            handover.reset.push(map.name.clone());
        }
    }
    if let Ok(entries) = fs::read_dir(old_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_chain_map(&name) && !object.maps.iter().any(|map| map.name == name) {
                handover.dropped.push(name);
            }
        }
    }
    handover.dropped.sort();
    Ok(handover)
}

/// (type, key size, value size, max entries, flags) of a pinned map.
pub(super) fn pinned_shape(path: &Path) -> Option<(u32, u32, u32, u32, u32)> {
    let fd = sys::obj_get(path).ok()?;
    let info = sys::map_info(std::os::fd::AsFd::as_fd(&fd)).ok()?;
    Some((
        info.type_,
        info.key_size,
        info.value_size,
        info.max_entries,
        info.map_flags,
    ))
}

/// Whether a map of this type can pass to a new version: not one holding programs (the
/// new version would run the old one's) nor maps (their inner maps' shapes are not
/// compared).
fn hands_over(map_type: u32) -> bool {
    ![
        libbpf_sys::BPF_MAP_TYPE_PROG_ARRAY,
        libbpf_sys::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        libbpf_sys::BPF_MAP_TYPE_HASH_OF_MAPS,
    ]
    .contains(&map_type)
}
