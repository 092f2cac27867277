//! Instance programs: which object an instance runs, and loading it with the topology's
//! maps and its own bound to their pins.

use std::path::{Path, PathBuf};

use aya::{
    EbpfLoader,
    maps::{MapInfo, ProgramArray},
    programs::{ProgramFd, Xdp},
};
use offload::modules::{MapShape, ModuleObject, builtin};
use offload_common::module::DIGEST_LEN;
use offload_common::{bridge, topology::maps};
use sha2::{Digest as _, Sha256};

use crate::{Instance, Kind, TopologyError, pins};

/// The object `instance` runs: its `module` file, else its kind's built-in program.
pub fn object_for(instance: &Instance) -> Result<ModuleObject, TopologyError> {
    let error = |reason: String| TopologyError::Instance {
        instance: instance.name.clone(),
        step: "read its program",
        reason,
    };
    let object = match &instance.module {
        Some(path) => match ModuleObject::read(path) {
            Ok(object) => object,
            // An instance program needs no chain metadata: a plain XDP object will do.
            Err(offload::modules::ModuleError::NoMetadata { .. }) => {
                let bytes = std::fs::read(path)
                    .map_err(|source| error(format!("{}: {source}", path.display())))?;
                let name = path
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default();
                plain_object(path, bytes, &name, "").map_err(error)?
            }
            Err(source) => return Err(error(offload::error_chain(&source))),
        },
        None => builtin_object(instance.kind).map_err(error)?,
    };
    if !object.frags {
        return Err(error(format!(
            "{} is not built for multi-buffer frames (`xdp.frags`); every program of a topology is (the kernel requires a program array's programs to agree)",
            object.path.display()
        )));
    }
    if object.tc {
        return Err(error(format!(
            "{} is a TC classifier; a topology runs XDP programs",
            object.path.display()
        )));
    }
    Ok(object)
}

/// The built-in program of `kind` (built without module metadata: it is no chain module;
/// its version is fastpath's).
pub fn builtin_object(kind: Kind) -> Result<ModuleObject, String> {
    let version = env!("CARGO_PKG_VERSION");
    match kind {
        Kind::Bridge => plain_object(
            Path::new("(built-in bridge)"),
            builtin::BRIDGE_PROGRAM_OBJECT.to_vec(),
            "bridge",
            version,
        ),
        Kind::Router => plain_object(
            Path::new("(built-in router)"),
            builtin::ROUTER_PROGRAM_OBJECT.to_vec(),
            "router",
            version,
        ),
        Kind::Firewall => plain_object(
            Path::new("(built-in firewall)"),
            builtin::FIREWALL_TOPOLOGY_OBJECT.to_vec(),
            "firewall",
            version,
        ),
        Kind::Lb => plain_object(
            Path::new("(built-in lb)"),
            builtin::LB_TOPOLOGY_OBJECT.to_vec(),
            "lb",
            version,
        ),
        Kind::Module => Err("a user module names its `module` file".into()),
    }
}

/// An object with one XDP program and no module metadata, read as a [`ModuleObject`]
/// (its name and version given): what a topology needs of it is its program, its frags
/// flag, its maps' shapes and its digest.
fn plain_object(
    path: &Path,
    bytes: Vec<u8>,
    name: &str,
    version: &str,
) -> Result<ModuleObject, String> {
    let object =
        aya_obj::Object::parse(&bytes).map_err(|source| format!("{}: {source}", path.display()))?;
    let mut programs = object.programs.iter();
    let (program, frags) = match (programs.next(), programs.next()) {
        (Some((program, details)), None) => match details.section {
            aya_obj::ProgramSection::Xdp { frags, .. } => (program.clone(), frags),
            ref other => {
                return Err(format!(
                    "{}: {program} is a {other:?} program, not XDP",
                    path.display()
                ));
            }
        },
        _ => {
            return Err(format!(
                "{}: an instance object holds exactly one XDP program (it holds {})",
                path.display(),
                object.programs.len()
            ));
        }
    };
    let mut maps: Vec<MapShape> = object
        .maps
        .iter()
        .filter(|(_, map)| {
            matches!(
                map.section_kind(),
                aya_obj::EbpfSectionKind::Maps | aya_obj::EbpfSectionKind::BtfMaps
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
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    let full = Sha256::digest(&bytes);
    let mut digest = [0u8; DIGEST_LEN];
    digest.copy_from_slice(&full[..DIGEST_LEN]);
    Ok(ModuleObject {
        path: path.to_path_buf(),
        bytes,
        name: name.to_string(),
        version: if version.is_empty() {
            format!("sha256:{}", hex(&digest))
        } else {
            version.to_string()
        },
        frags,
        tc: false,
        program,
        maps,
        has_next: false,
        digest,
    })
}

/// A digest as lowercase hex.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An instance program loaded, not yet in its slot nor pinned.
pub struct LoadedProgram {
    /// The program.
    pub program: ProgramFd,
    /// The kernel's id of it.
    pub id: u32,
}

/// Makes the program [`load`] pinned beside the running one the instance's own.
pub fn commit_pin(topology: &str, instance: &str) -> Result<(), TopologyError> {
    let staged = staged_pin(topology, instance);
    let pin = pins::program_pin(topology, instance);
    std::fs::rename(&staged, &pin).map_err(TopologyError::pin("rename", &staged))
}

/// Whether a build [`load`] staged waits for [`commit_pin`].
pub fn has_staged_pin(topology: &str, instance: &str) -> bool {
    staged_pin(topology, instance).exists()
}

/// Removes the pin of a program [`load`] staged and no switch took.
pub fn discard_pin(topology: &str, instance: &str) {
    let _ = std::fs::remove_file(staged_pin(topology, instance));
}

fn staged_pin(topology: &str, instance: &str) -> PathBuf {
    pins::instance_dir(topology, instance).join("prog_staged")
}

/// Loads `object` as the program of instance `instance` of topology `topology`: the
/// topology's maps and the instance's own maps are bound to their pins (made when
/// missing, kept when there: a swap keeps the instance's state). The program is pinned
/// beside the running one's ([`commit_pin`] makes it the instance's).
pub fn load(
    topology: &str,
    instance: &str,
    object: &ModuleObject,
) -> Result<LoadedProgram, TopologyError> {
    let error = |step: &'static str| {
        move |reason: String| TopologyError::Instance {
            instance: instance.to_string(),
            step,
            reason,
        }
    };
    let dir = pins::instance_dir(topology, instance);
    std::fs::create_dir_all(&dir).map_err(TopologyError::pin("mkdir", &dir))?;
    check_shapes(topology, instance, object)?;
    let mut loader = EbpfLoader::new();
    let bound: Vec<(String, PathBuf)> = object
        .maps
        .iter()
        .map(|map| (map.name.clone(), map_pin(topology, instance, &map.name)))
        .collect();
    for (name, pin) in &bound {
        if let Some(folder) = pin.parent() {
            std::fs::create_dir_all(folder).map_err(TopologyError::pin("mkdir", folder))?;
        }
        loader.map_pin_path(name.as_str(), pin.as_path());
    }
    let mut ebpf = loader
        .load(&object.bytes)
        .map_err(|source| error("load its object")(offload::error_chain(&source)))?;
    let program: &mut Xdp = ebpf
        .program_mut(&object.program)
        .ok_or_else(|| error("find its program")(format!("no program {}", object.program)))?
        .try_into()
        .map_err(|source: aya::programs::ProgramError| {
            error("open its program")(source.to_string())
        })?;
    program.load().map_err(|source| {
        error("load its program (the verifier's log follows)")(offload::error_chain(&source))
    })?;
    let staged = staged_pin(topology, instance);
    let _ = std::fs::remove_file(&staged);
    program.pin(&staged).map_err(|source| {
        error("pin its program")(format!(
            "{}: {}",
            staged.display(),
            offload::error_chain(&source)
        ))
    })?;
    let fd = program
        .fd()
        .map_err(|source| error("open its program")(source.to_string()))?
        .try_clone()
        .map_err(|source| error("open its program")(source.to_string()))?;
    let id = program
        .info()
        .map(|info| info.id())
        .map_err(|source| error("read its program's id")(source.to_string()))?;
    Ok(LoadedProgram { program: fd, id })
}

/// Refuses a build whose maps have other shapes than the instance's pinned ones (a swap
/// keeps the maps; the new build must read them as the old one wrote them).
fn check_shapes(
    topology: &str,
    instance: &str,
    object: &ModuleObject,
) -> Result<(), TopologyError> {
    for map in &object.maps {
        if maps::ALL.contains(&map.name.as_str()) {
            continue;
        }
        let pin = map_pin(topology, instance, &map.name);
        let Ok(info) = MapInfo::from_pin(&pin) else {
            continue;
        };
        let pinned = (
            info.key_size(),
            info.value_size(),
            info.max_entries(),
            info.map_flags(),
        );
        let wanted = (map.key_size, map.value_size, map.max_entries, map.flags);
        if pinned != wanted {
            return Err(TopologyError::Instance {
                instance: instance.to_string(),
                step: "keep its maps",
                reason: format!(
                    "{}: the map {} has another shape than the running one's (key, value, entries, flags: {wanted:?} against {pinned:?}); a swap keeps the instance's maps, so its new build must declare them alike (or give the instance another name)",
                    object.path.display(),
                    map.name
                ),
            });
        }
    }
    Ok(())
}

/// Where the map `name` of an instance program is pinned: the topology's maps under the
/// topology, the firewall's node-wide maps (its conntrack table) where every firewall of
/// the namespace shares them, the others in the instance's folder.
fn map_pin(topology: &str, instance: &str, name: &str) -> PathBuf {
    if maps::ALL.contains(&name) {
        pins::map_pin(topology, name)
    } else {
        firewall_site(topology, instance).map_pin(name)
    }
}

/// The firewall site of an instance: its own maps in the instance's folder.
pub fn firewall_site(topology: &str, instance: &str) -> firewall::Site {
    firewall::Site::topology_instance(topology, instance, pins::instance_dir(topology, instance))
}

/// Puts `program` in slot `id` of the topology's program array.
pub fn install(topology: &str, id: u32, program: &ProgramFd) -> Result<(), TopologyError> {
    let path = pins::map_pin(topology, maps::PROGS);
    let mut progs: ProgramArray<_> = pins::open_as(&path, maps::PROGS)?;
    progs
        .set(id, program, 0)
        .map_err(TopologyError::map("write", maps::PROGS, &path))
}

/// Empties slot `id` of the topology's program array.
pub fn uninstall(topology: &str, id: u32) -> Result<(), TopologyError> {
    let path = pins::map_pin(topology, maps::PROGS);
    let mut progs: ProgramArray<_> = pins::open_as(&path, maps::PROGS)?;
    match progs.clear_index(&id) {
        Ok(()) => Ok(()),
        Err(aya::maps::MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(error) => Err(TopologyError::map("clear", maps::PROGS, &path)(error)),
    }
}

/// The running program of an instance (its pin), for swaps that must put it back.
pub fn pinned(topology: &str, instance: &str) -> Result<ProgramFd, TopologyError> {
    let pin = pins::program_pin(topology, instance);
    let program =
        Xdp::from_pin(&pin, aya_obj::programs::XdpAttachType::Interface).map_err(|source| {
            TopologyError::Instance {
                instance: instance.to_string(),
                step: "open its running program",
                reason: format!("{}: {source}", pin.display()),
            }
        })?;
    program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|source| TopologyError::Instance {
            instance: instance.to_string(),
            step: "open its running program",
            reason: source.to_string(),
        })
}

/// Loads the egress program of a VLAN-aware bridge's flood entries (`bridge_egress`, a
/// devmap program) with its map bound to the instance's pin of
/// [`bridge::maps::EGRESS`] (made when missing). Not pinned: the flood map's entries
/// hold it.
pub fn load_bridge_egress(topology: &str, instance: &str) -> Result<ProgramFd, TopologyError> {
    let error = |step: &'static str| {
        move |reason: String| TopologyError::Instance {
            instance: instance.to_string(),
            step,
            reason,
        }
    };
    let pin = pins::instance_dir(topology, instance).join(bridge::maps::EGRESS);
    let mut ebpf = EbpfLoader::new()
        .map_pin_path(bridge::maps::EGRESS, pin.as_path())
        .load(builtin::BRIDGE_EGRESS_PROGRAM_OBJECT)
        .map_err(|source| error("load its flood's egress object")(offload::error_chain(&source)))?;
    let program: &mut Xdp = ebpf
        .program_mut("bridge_egress")
        .ok_or_else(|| error("find its flood's egress program")("no program bridge_egress".into()))?
        .try_into()
        .map_err(|source: aya::programs::ProgramError| {
            error("open its flood's egress program")(source.to_string())
        })?;
    program.load().map_err(|source| {
        error("load its flood's egress program (the verifier's log follows)")(offload::error_chain(
            &source,
        ))
    })?;
    program
        .fd()
        .map_err(|source| error("open its flood's egress program")(source.to_string()))?
        .try_clone()
        .map_err(|source| error("open its flood's egress program")(source.to_string()))
}
