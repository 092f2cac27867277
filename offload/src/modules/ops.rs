//! The module commands: load, swap, unload and list, each under the chain's lock.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    programs::{ProgramError, Xdp, links::FdLink, xdp::XdpMode as AyaMode},
};
use nix::fcntl::{Flock, FlockArg};
use offload_common::module::{
    CHAIN_SLOTS, ChainState, MAX_MODULES, ModuleRecord, NAME_LEN, RECORD_FRAGS, RECORD_IN_USE,
    chain_counter, maps, verdict,
};
use serde::Serialize;

use super::{
    CHAIN_OBJECT, ModuleError, ModuleObject,
    chain::{self, Chain, ChainPins, Member},
    object::c_string,
};
use crate::{bpffs::Bpffs, mode::XdpMode, sys, xdp_state};

/// Where a module joins the running chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Position {
    /// Before every module.
    First,
    /// After every module.
    #[default]
    Last,
    /// Right before the named module.
    Before(String),
    /// Right after the named module.
    After(String),
}

/// What [`load`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Loaded {
    /// The interface.
    pub iface: String,
    /// The module's name in the chain.
    pub module: String,
    /// Its version.
    pub version: String,
    /// Its place in the new revision, from 0.
    pub order: usize,
    /// The kernel's id of its program.
    pub program_id: u32,
    /// The revision switched to.
    pub revision: u32,
    /// The mode the chain's entry was attached in, when this load attached it.
    pub attached: Option<XdpMode>,
}

/// Which maps of the old version the new one took over in a [`swap`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct MapHandover {
    /// Same name, type, key size, value size and max entries: the contents survive.
    pub kept: Vec<String>,
    /// New, or changed in shape: they start empty.
    pub reset: Vec<String>,
    /// Maps of the old version the new one no longer has.
    pub dropped: Vec<String>,
}

/// What [`swap`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Swapped {
    /// The interface.
    pub iface: String,
    /// The module's name.
    pub module: String,
    /// The version that ran before.
    pub old_version: String,
    /// The version that runs now.
    pub new_version: String,
    /// The old program's id.
    pub old_program_id: u32,
    /// The new program's id.
    pub new_program_id: u32,
    /// The revision switched to.
    pub revision: u32,
    /// The maps handed over.
    pub maps: MapHandover,
}

/// What [`unload`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Unloaded {
    /// The interface.
    pub iface: String,
    /// The module removed.
    pub module: String,
    /// The revision switched to.
    pub revision: u32,
    /// The chain held no other module, so its entry was detached too.
    pub chain_detached: bool,
}

/// One module of a [`ChainListing`].
#[derive(Clone, Debug, Serialize)]
pub struct ModuleEntry {
    /// Its place in the chain, from 0.
    pub order: usize,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The kernel's id of its program.
    pub program_id: u32,
    /// Whether it handles multi-buffer frames.
    pub frags: bool,
    /// Packets per verdict (`continue`, `drop`, `pass`, ...), summed over the CPUs.
    pub packets: BTreeMap<String, u64>,
    /// When this version was loaded, UNIX seconds.
    pub loaded_at: u64,
}

/// What [`list`] shows.
#[derive(Clone, Debug, Serialize)]
pub struct ChainListing {
    /// The interface.
    pub iface: String,
    /// The running revision.
    pub revision: u32,
    /// When it was switched to, UNIX seconds.
    pub applied_at: u64,
    /// Whether the chain's programs handle multi-buffer frames.
    pub frags: bool,
    /// The modules in order.
    pub modules: Vec<ModuleEntry>,
    /// Packets passed because the chain was empty.
    pub empty_chain_passes: u64,
    /// Packets passed because the last module continued (or a tail call failed).
    pub chain_end_passes: u64,
}

/// Loads the module in `file` into the chain on `iface` at `position`, attaching the
/// chain's entry first when the interface has no chain. `name` overrides the name in the
/// module's metadata.
pub fn load(
    iface: &str,
    file: &Path,
    name: Option<&str>,
    position: &Position,
) -> Result<Loaded, ModuleError> {
    let object = ModuleObject::read(file)?;
    let name = name.map_or_else(|| object.name.clone(), str::to_string);
    check_name(&name)?;
    let _lock = lock(iface)?;
    let (mut chain, attached) = open_or_attach(iface, object.frags)?;
    let result = load_into(&mut chain, &object, &name, position);
    if result.is_err() && attached.is_some() {
        // The interface had no chain before this command: leave it without one.
        let _ = detach(&chain);
    }
    let (order, program_id, revision) = result?;
    Ok(Loaded {
        iface: iface.to_string(),
        module: name,
        version: object.version,
        order,
        program_id,
        revision,
        attached,
    })
}

fn load_into(
    chain: &mut Chain,
    object: &ModuleObject,
    name: &str,
    position: &Position,
) -> Result<(usize, u32, u32), ModuleError> {
    chain.reconcile()?;
    check_frags(chain, object, name)?;
    let running = running_names(chain)?;
    if running.iter().any(|(_, known)| known == name) {
        return Err(ModuleError::DuplicateName {
            iface: chain.iface.clone(),
            module: name.to_string(),
        });
    }
    if running.len() as u32 >= CHAIN_SLOTS {
        return Err(ModuleError::ChainFull {
            iface: chain.iface.clone(),
            max: CHAIN_SLOTS,
        });
    }
    let order = match position {
        Position::First => 0,
        Position::Last => running.len(),
        Position::Before(neighbour) => index_of(chain, &running, neighbour)?,
        Position::After(neighbour) => index_of(chain, &running, neighbour)? + 1,
    };
    let instance = chain.free_instance()?.ok_or(ModuleError::ChainFull {
        iface: chain.iface.clone(),
        max: MAX_MODULES,
    })?;
    let generation = 1;
    let (program, program_id) = load_version(chain, object, name, generation, &[])?;
    let mut record = ModuleRecord {
        flags: RECORD_IN_USE | if object.frags { RECORD_FRAGS } else { 0 },
        next_program_id: program_id,
        next_generation: generation,
        name: fixed(name),
        next_version: fixed(&object.version),
        ..ModuleRecord::default()
    };
    chain.set_record(instance, &record)?;
    let mut members = chain.running_members()?;
    members.insert(order, Member { instance, program });
    let revision = chain.switch(&members)?;
    chain::promote(&mut record);
    chain.set_record(instance, &record)?;
    chain.retire_old_bank()?;
    Ok((order, program_id, revision))
}

/// Replaces the module `name` on `iface` with the version in `file`, in one revision
/// switch. Maps whose name, type, key size, value size and max entries match are handed
/// over with their contents; the others start empty.
pub fn swap(iface: &str, name: &str, file: &Path) -> Result<Swapped, ModuleError> {
    let object = ModuleObject::read(file)?;
    let _lock = lock(iface)?;
    let mut chain = open_existing(iface)?;
    chain.reconcile()?;
    check_frags(&chain, &object, name)?;
    let running = running_names(&chain)?;
    let index = index_of(&chain, &running, name)?;
    let instance = running[index].0;
    let mut record = chain.record(instance)?;
    let old_generation_dir = chain.pins.generation_dir(name, record.generation);
    let handover = plan_handover(&object, &old_generation_dir)?;
    let generation = record.generation + 1;
    let kept: Vec<(String, PathBuf)> = handover
        .kept
        .iter()
        .map(|map| (map.clone(), old_generation_dir.join(map)))
        .collect();
    let (program, new_program_id) = load_version(&chain, &object, name, generation, &kept)?;
    let old_program_id = record.program_id;
    let old_version = c_string(&record.version);
    record.next_program_id = new_program_id;
    record.next_generation = generation;
    record.next_version = fixed(&object.version);
    chain.set_record(instance, &record)?;
    let mut members = chain.running_members()?;
    members[index] = Member { instance, program };
    let revision = chain.switch(&members)?;
    chain::promote(&mut record);
    chain.set_record(instance, &record)?;
    chain.prune_generations(name, generation);
    chain.retire_old_bank()?;
    Ok(Swapped {
        iface: iface.to_string(),
        module: name.to_string(),
        old_version,
        new_version: object.version,
        old_program_id,
        new_program_id,
        revision,
        maps: handover,
    })
}

/// Removes the module `name` from the chain on `iface`; the chain's entry goes with the
/// last module.
pub fn unload(iface: &str, name: &str) -> Result<Unloaded, ModuleError> {
    let _lock = lock(iface)?;
    let mut chain = open_existing(iface)?;
    chain.reconcile()?;
    let running = running_names(&chain)?;
    let index = index_of(&chain, &running, name)?;
    let instance = running[index].0;
    let mut members = chain.running_members()?;
    members.remove(index);
    let empty = members.is_empty();
    let revision = chain.switch(&members)?;
    chain.set_record(instance, &ModuleRecord::default())?;
    chain::remove_dir(&chain.pins.module_dir(name));
    chain.retire_old_bank()?;
    if empty {
        detach(&chain)?;
    }
    Ok(Unloaded {
        iface: iface.to_string(),
        module: name.to_string(),
        revision,
        chain_detached: empty,
    })
}

/// The chain on `iface`: its revision and its modules in order, with their counters.
pub fn list(iface: &str) -> Result<ChainListing, ModuleError> {
    let chain = open_existing(iface)?;
    let state = chain.state()?;
    let mut modules = Vec::new();
    for (order, (_, instance, program_id)) in chain.running()?.into_iter().enumerate() {
        let record = chain.record(instance)?;
        let counts = chain.verdicts(instance)?;
        modules.push(ModuleEntry {
            order,
            name: c_string(&record.name),
            version: if record.next_program_id == program_id && program_id != 0 {
                c_string(&record.next_version)
            } else {
                c_string(&record.version)
            },
            program_id,
            frags: record.flags & RECORD_FRAGS != 0,
            packets: verdict::NAMES
                .iter()
                .zip(counts)
                .map(|(name, count)| (name.to_string(), count))
                .collect(),
            loaded_at: record.loaded_at,
        });
    }
    let counters = chain.chain_counters()?;
    Ok(ChainListing {
        iface: iface.to_string(),
        revision: state.revision,
        applied_at: state.applied_at,
        frags: state.frags != 0,
        modules,
        empty_chain_passes: counters[chain_counter::EMPTY as usize],
        chain_end_passes: counters[chain_counter::END as usize],
    })
}

/// Loads one version of a module with its own maps pinned in generation `generation`
/// (those in `kept` reused from where they are pinned) and the chain's shared maps bound
/// to the pinned ones. Returns its program (for the revision) and the program's id.
fn load_version(
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
    let mut ebpf = loader
        .load(&object.bytes)
        .map_err(|source| ModuleError::LoadObject {
            module: name.to_string(),
            file: object.path.clone(),
            source: Box::new(source),
        })?;
    let program_error = |step| ModuleError::program(name, &object.program, step);
    let program: &mut Xdp = ebpf
        .program_mut(&object.program)
        .ok_or_else(|| ModuleError::NoProgram {
            file: object.path.clone(),
        })?
        .try_into()
        .map_err(program_error("open"))?;
    program.load().map_err(|error| match error {
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
    })?;
    let program_id = program
        .info()
        .map_err(program_error("read the info of"))?
        .id();
    let fd = program
        .fd()
        .map_err(program_error("read the fd of"))?
        .as_fd()
        .try_clone_to_owned()
        .map_err(ModuleError::syscall("dup a program fd"))?;
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
fn plan_handover(object: &ModuleObject, old_dir: &Path) -> Result<MapHandover, ModuleError> {
    let mut handover = MapHandover::default();
    for map in &object.maps {
        let old = old_dir.join(&map.name);
        match pinned_shape(&old) {
            Some(shape)
                if shape == (map.map_type, map.key_size, map.value_size, map.max_entries) =>
            {
                handover.kept.push(map.name.clone())
            }
            _ => handover.reset.push(map.name.clone()),
        }
    }
    if let Ok(entries) = fs::read_dir(old_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !object.maps.iter().any(|map| map.name == name) {
                handover.dropped.push(name);
            }
        }
    }
    handover.dropped.sort();
    Ok(handover)
}

/// (type, key size, value size, max entries) of a pinned map.
fn pinned_shape(path: &Path) -> Option<(u32, u32, u32, u32)> {
    let fd = sys::obj_get(path).ok()?;
    // SAFETY: all-zero is a valid bpf_map_info; the kernel fills up to `length` bytes.
    let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut length = size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: info and length are live and sized as announced.
    let result = unsafe {
        libbpf_sys::bpf_map_get_info_by_fd(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
            &mut length,
        )
    };
    sys::check(result).ok()?;
    Some((info.type_, info.key_size, info.value_size, info.max_entries))
}

pub(super) fn check_name(name: &str) -> Result<(), ModuleError> {
    let bad = |reason| {
        Err(ModuleError::BadName {
            module: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() >= NAME_LEN {
        return bad("longer than 31 bytes");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'.')
        || name.starts_with('.')
    {
        return bad("only letters, digits, '_', '-' and '.' (not first) are allowed");
    }
    Ok(())
}

fn check_frags(chain: &Chain, object: &ModuleObject, name: &str) -> Result<(), ModuleError> {
    let chain_frags = chain.state()?.frags != 0;
    if chain_frags != object.frags {
        return Err(ModuleError::FragsMismatch {
            module: name.to_string(),
            iface: chain.iface.clone(),
            module_frags: object.frags,
            chain_frags,
        });
    }
    Ok(())
}

/// (instance, name) of the running revision's modules, in order.
fn running_names(chain: &Chain) -> Result<Vec<(u32, String)>, ModuleError> {
    chain
        .running()?
        .into_iter()
        .map(|(_, instance, _)| Ok((instance, c_string(&chain.record(instance)?.name))))
        .collect()
}

fn index_of(chain: &Chain, running: &[(u32, String)], name: &str) -> Result<usize, ModuleError> {
    running
        .iter()
        .position(|(_, known)| known == name)
        .ok_or_else(|| ModuleError::UnknownModule {
            iface: chain.iface.clone(),
            module: name.to_string(),
            known: running
                .iter()
                .map(|(_, known)| known.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn fixed(text: &str) -> [u8; NAME_LEN] {
    let mut bytes = [0u8; NAME_LEN];
    let len = text.len().min(NAME_LEN - 1);
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    bytes
}

/// One command at a time per chain.
fn lock(iface: &str) -> Result<Flock<File>, ModuleError> {
    let dir = Path::new("/run/fastpath");
    fs::create_dir_all(dir).map_err(ModuleError::syscall("mkdir /run/fastpath"))?;
    let file = File::create(dir.join(format!("{iface}.chain.lock")))
        .map_err(ModuleError::syscall("open the chain lock"))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| ModuleError::Syscall {
        call: "flock the chain lock",
        source: errno.into(),
    })
}

/// The chain on `iface` when its entry still runs there.
fn open_existing(iface: &str) -> Result<Chain, ModuleError> {
    let ifindex = xdp_state::ifindex(iface)?;
    let pins = ChainPins::for_iface(iface);
    if !link_runs_on(&pins, ifindex) {
        return Err(ModuleError::NoChain {
            iface: iface.to_string(),
            dir: pins.shown(),
        });
    }
    Chain::open(iface, pins)
}

fn link_runs_on(pins: &ChainPins, ifindex: u32) -> bool {
    sys::obj_get(&pins.link())
        .and_then(|link| sys::xdp_link_ifindex(link.as_fd()))
        .is_ok_and(|linked| linked == Some(ifindex))
}

/// The chain on `iface`, attaching an empty one (entry in the given frags flavour) when
/// there is none; the mode it was attached in when it was.
fn open_or_attach(iface: &str, frags: bool) -> Result<(Chain, Option<XdpMode>), ModuleError> {
    crate::pins::prune_stale();
    let ifindex = xdp_state::ifindex(iface)?;
    let pins = ChainPins::for_iface(iface);
    if link_runs_on(&pins, ifindex) {
        return Ok((Chain::open(iface, pins)?, None));
    }
    // Pins of a chain whose link is gone (the interface was re-created, or an attach died).
    chain::remove_dir(&pins.dir);
    if let Some(state) = xdp_state::query(ifindex)? {
        return Err(ModuleError::InterfaceBusy {
            iface: iface.to_string(),
            program_id: state.program_id,
        });
    }
    Bpffs::get().ready_for_pins(true)?;
    fs::create_dir_all(pins.maps_dir()).map_err(ModuleError::syscall("mkdir under bpffs"))?;
    match attach_entry(iface, ifindex, &pins, frags) {
        Ok(mode) => Ok((Chain::open(iface, pins)?, Some(mode))),
        Err(error) => {
            chain::remove_dir(&pins.dir);
            Err(error)
        }
    }
}

fn attach_entry(
    iface: &str,
    ifindex: u32,
    pins: &ChainPins,
    frags: bool,
) -> Result<XdpMode, ModuleError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(CHAIN_OBJECT)
        .map_err(|source| ModuleError::LoadChain(Box::new(source)))?;
    let entry_name = if frags {
        "chain_entry_frags"
    } else {
        "chain_entry"
    };
    {
        let mut state: aya::maps::Array<_, ChainState> = ebpf
            .map_mut(maps::STATE)
            .ok_or_else(|| ModuleError::NoChain {
                iface: iface.to_string(),
                dir: pins.shown(),
            })?
            .try_into()
            .map_err(ModuleError::map("open", maps::STATE))?;
        let initial = ChainState {
            frags: frags as u32,
            applied_at: chain::now(),
            ..ChainState::default()
        };
        state
            .set(0, initial, 0)
            .map_err(ModuleError::map("write", maps::STATE))?;
    }
    let program_error = |step| ModuleError::program("(chain entry)", entry_name, step);
    let program: &mut Xdp = ebpf
        .program_mut(entry_name)
        .ok_or_else(|| ModuleError::NoChain {
            iface: iface.to_string(),
            dir: pins.shown(),
        })?
        .try_into()
        .map_err(program_error("open"))?;
    program.load().map_err(program_error("load"))?;
    let mut reasons = Vec::new();
    for (mode, aya_mode) in [
        (XdpMode::Drv, AyaMode::Driver),
        (XdpMode::Skb, AyaMode::Skb),
    ] {
        let link_id = match program.attach_to_if_index(ifindex, aya_mode) {
            Ok(link_id) => link_id,
            Err(error) => {
                reasons.push(format!("{mode}: {}", crate::error_chain(&error)));
                continue;
            }
        };
        let link = program
            .take_link(link_id)
            .map_err(program_error("attach"))?;
        let link = FdLink::try_from(link).map_err(|error| ModuleError::Attach {
            iface: iface.to_string(),
            reasons: format!("not a bpf_link: {error}"),
        })?;
        let path = pins.link();
        link.pin(&path)
            .map_err(|source| ModuleError::Pin { path, source })?;
        let path = pins.entry();
        program
            .pin(&path)
            .map_err(|source| ModuleError::Pin { path, source })?;
        return Ok(mode);
    }
    Err(ModuleError::Attach {
        iface: iface.to_string(),
        reasons: reasons.join("; "),
    })
}

/// Detaches the chain's entry and removes the chain's pins.
fn detach(chain: &Chain) -> Result<(), ModuleError> {
    if let Ok(link) = sys::obj_get(&chain.pins.link()) {
        sys::link_detach(link.as_fd())
            .map_err(ModuleError::syscall("BPF_LINK_DETACH of the chain entry"))?;
    }
    chain::remove_dir(&chain.pins.dir);
    // The interface's directory, when the chain was all it held.
    if let Some(parent) = chain.pins.dir.parent() {
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

/// Entry `index` of the module `name`'s per-CPU `u64` array map `map`, summed over the
/// CPUs: a module's counter, read from its pinned maps (the running version's).
pub fn read_counter(iface: &str, name: &str, map: &str, index: u32) -> Result<u64, ModuleError> {
    let chain = open_existing(iface)?;
    let running = running_names(&chain)?;
    let instance = running[index_of(&chain, &running, name)?].0;
    let record = chain.record(instance)?;
    let path = chain.pins.generation_dir(name, record.generation).join(map);
    let data = aya::maps::MapData::from_pin(&path)
        .map_err(ModuleError::map("open", path.display().to_string()))?;
    let array: aya::maps::PerCpuArray<_, u64> = aya::maps::Map::from_map_data(data)
        .and_then(aya::maps::PerCpuArray::try_from)
        .map_err(ModuleError::map("open", map))?;
    let values = array
        .get(&index, 0)
        .map_err(ModuleError::map("read", map))?;
    Ok(values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_fit_the_records_and_the_pin_directory() {
        for good in ["counter", "ddos-filter", "v1.2", "a_b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "with space", &"x".repeat(32)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(31)).is_ok());
    }

    #[test]
    fn names_are_nul_padded_and_cut_to_fit() {
        let field = fixed("counter");
        assert_eq!(&field[..8], b"counter\0");
        assert_eq!(c_string(&fixed(&"y".repeat(40))).len(), NAME_LEN - 1);
    }
}
