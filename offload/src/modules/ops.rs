//! The module commands: load, swap, unload and list, each under the chain's lock, each
//! change one revision switch.

use std::path::{Path, PathBuf};

use crate::mode::XdpMode;
use offload_common::module::{
    CHAIN_SLOTS, MAX_MODULES, ModuleRecord, NAME_LEN, RECORD_FRAGS, RECORD_IN_USE, chain_counter,
    verdict,
};

use super::{
    ModuleError, ModuleObject,
    chain::{self, Chain, Member},
    entry::{DEFAULT_MODES, detach, lock, open_existing, open_or_attach},
    object::c_string,
    report::{ChainListing, Loaded, ModuleEntry, Swapped, Unloaded},
    version::{load_version, plan_handover},
};

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
    load_object(iface, object, name, position, &[], &DEFAULT_MODES)
}

/// [`load`] of an object already read, with the module's maps named in `bound` bound to
/// those pins (maps that live outside the chain, e.g. the built-in `steer` module's), and
/// the chain's entry, when this load attaches it, tried in `modes`.
pub(super) fn load_object(
    iface: &str,
    object: ModuleObject,
    name: Option<&str>,
    position: &Position,
    bound: &[(String, PathBuf)],
    modes: &[XdpMode],
) -> Result<Loaded, ModuleError> {
    let name = name.map_or_else(|| object.name.clone(), str::to_string);
    check_name(&name)?;
    let _lock = lock(iface)?;
    let (mut chain, attached) = open_or_attach(iface, object.frags, modes)?;
    let result = load_into(&mut chain, &object, &name, position, bound);
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
    bound: &[(String, PathBuf)],
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
    let (program, program_id) = load_version(chain, object, name, generation, bound)?;
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
    swap_object(iface, name, ModuleObject::read(file)?)
}

/// [`swap`] to an object already read.
pub(super) fn swap_object(
    iface: &str,
    name: &str,
    object: ModuleObject,
) -> Result<Swapped, ModuleError> {
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

/// Entry `index` of the module `name`'s per-CPU `u64` array map `map`, summed over the
/// CPUs: a module's counter, read from its pinned maps (the running version's).
pub fn read_counter(iface: &str, name: &str, map: &str, index: u32) -> Result<u64, ModuleError> {
    let chain = open_existing(iface)?;
    let running = running_names(&chain)?;
    let instance = running[index_of(&chain, &running, name)?].0;
    let record = chain.record(instance)?;
    let program_id = chain
        .running()?
        .into_iter()
        .find(|(_, member, _)| *member == instance)
        .map_or(0, |(_, _, program_id)| program_id);
    let generation = super::chain::running_generation_of(&record, program_id);
    let path = chain.pins.generation_dir(name, generation).join(map);
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
