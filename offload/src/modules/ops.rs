//! The module commands: load, swap, unload and list, each under the chain's lock, each
//! change one revision switch.

use std::path::{Path, PathBuf};

use crate::mode::XdpMode;
use offload_common::module::{NAME_LEN, RECORD_FRAGS, chain_counter, verdict};

use super::{
    ChainAt, ModuleError, ModuleObject,
    chain::Chain,
    entry::{DEFAULT_MODES, detach, lock, open_existing, open_or_attach},
    object::c_string,
    report::{ChainListing, Loaded, ModuleEntry, Swapped, Unloaded},
    revision::{Committed, Next, commit},
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
pub fn load<'a>(
    at: impl Into<ChainAt<'a>>,
    file: &Path,
    name: Option<&str>,
    position: &Position,
) -> Result<Loaded, ModuleError> {
    let at = at.into();
    let object = ModuleObject::read(file)?;
    load_object(at, object, name, position, &[], &DEFAULT_MODES)
}

/// [`load`] of an object already read, with the module's maps named in `bound` bound to
/// those pins (maps that live outside the chain, e.g. the built-in `steer` module's), and
/// the chain's entry, when this load attaches it, tried in `modes`.
pub(super) fn load_object(
    at: ChainAt<'_>,
    object: ModuleObject,
    name: Option<&str>,
    position: &Position,
    bound: &[(String, PathBuf)],
    modes: &[XdpMode],
) -> Result<Loaded, ModuleError> {
    let name = name.map_or_else(|| object.name.clone(), str::to_string);
    check_name(&name)?;
    let _lock = lock(at)?;
    let (mut chain, attached) = open_or_attach(at, object.frags, modes)?;
    let result = load_into(&mut chain, &object, &name, position, bound);
    if result.is_err() && attached.is_some() {
        // The interface had no chain before this command: leave it without one.
        let _ = detach(&chain);
    }
    let (order, committed) = result?;
    Ok(Loaded {
        iface: at.iface.to_string(),
        module: name,
        version: object.version,
        order,
        program_id: committed.program_ids[order],
        revision: committed.revision,
        attached,
        unfinished: committed.unfinished,
    })
}

fn load_into(
    chain: &mut Chain,
    object: &ModuleObject,
    name: &str,
    position: &Position,
    bound: &[(String, PathBuf)],
) -> Result<(usize, Committed), ModuleError> {
    chain.reconcile()?;
    let running = running_names(chain)?;
    if running.iter().any(|(_, known)| known == name) {
        return Err(ModuleError::DuplicateName {
            iface: chain.name(),
            module: name.to_string(),
        });
    }
    let order = match position {
        Position::First => 0,
        Position::Last => running.len(),
        Position::Before(neighbour) => index_of(chain, &running, neighbour)?,
        Position::After(neighbour) => index_of(chain, &running, neighbour)? + 1,
    };
    let mut next = keep_all(&running);
    next.insert(
        order,
        Next::Add {
            name,
            object,
            bound,
        },
    );
    Ok((order, commit(chain, &next)?))
}

/// Replaces the module `name` on `iface` with the version in `file`, in one revision
/// switch. Maps whose name, type, key size, value size, max entries and flags match are handed
/// over with their contents; the others start empty.
pub fn swap<'a>(
    at: impl Into<ChainAt<'a>>,
    name: &str,
    file: &Path,
) -> Result<Swapped, ModuleError> {
    swap_object(at.into(), name, ModuleObject::read(file)?, &[])
}

/// [`swap`] to an object already read; `bound` as in `Next::Replace`.
pub(super) fn swap_object(
    at: ChainAt<'_>,
    name: &str,
    object: ModuleObject,
    bound: &[(String, PathBuf)],
) -> Result<Swapped, ModuleError> {
    let _lock = lock(at)?;
    let mut chain = open_existing(at)?;
    chain.reconcile()?;
    let running = running_names(&chain)?;
    let index = index_of(&chain, &running, name)?;
    let instance = running[index].0;
    let record = chain.record(instance)?;
    let mut next = keep_all(&running);
    next[index] = Next::Replace {
        instance,
        object: &object,
        bound,
    };
    let mut committed = commit(&mut chain, &next)?;
    Ok(Swapped {
        iface: at.iface.to_string(),
        module: name.to_string(),
        old_version: c_string(&record.version),
        new_version: object.version,
        old_program_id: record.program_id,
        new_program_id: committed.program_ids[index],
        revision: committed.revision,
        maps: committed
            .handovers
            .pop()
            .map(|(_, handover)| handover)
            .unwrap_or_default(),
        unfinished: committed.unfinished,
    })
}

/// Removes the module `name` from the chain on `iface`; the chain's entry goes with the
/// last module.
pub fn unload<'a>(at: impl Into<ChainAt<'a>>, name: &str) -> Result<Unloaded, ModuleError> {
    let at = at.into();
    let _lock = lock(at)?;
    let mut chain = open_existing(at)?;
    chain.reconcile()?;
    let running = running_names(&chain)?;
    let index = index_of(&chain, &running, name)?;
    let mut next = keep_all(&running);
    next.remove(index);
    let committed = commit(&mut chain, &next)?;
    Ok(Unloaded {
        iface: at.iface.to_string(),
        module: name.to_string(),
        revision: committed.revision,
        chain_detached: committed.chain_detached,
        unfinished: committed.unfinished,
    })
}

/// The running modules, each kept as it runs.
fn keep_all(running: &[(u32, String)]) -> Vec<Next<'static>> {
    running
        .iter()
        .map(|(instance, _)| Next::Keep {
            instance: *instance,
        })
        .collect()
}

/// The chain on `iface`: its revision and its modules in order, with their counters.
pub fn list<'a>(at: impl Into<ChainAt<'a>>) -> Result<ChainListing, ModuleError> {
    let at = at.into();
    let chain = open_existing(at)?;
    let state = chain.state()?;
    let mut modules = Vec::new();
    for (order, (_, instance, program_id)) in chain.running()?.into_iter().enumerate() {
        let record = chain.record(instance)?;
        let counts = chain.verdicts(instance)?;
        let runtime = chain.runtime(instance)?;
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
            run_ns: runtime.ns,
            ns_per_packet: (runtime.packets > 0)
                .then(|| runtime.ns as f64 / runtime.packets as f64),
        });
    }
    let counters = chain.chain_counters()?;
    Ok(ChainListing {
        iface: at.iface.to_string(),
        hook: at.hook,
        revision: state.revision,
        applied_at: state.applied_at,
        frags: state.frags != 0,
        profiling: state.profile != 0,
        modules,
        empty_chain_passes: counters[chain_counter::EMPTY as usize],
        chain_end_passes: counters[chain_counter::END as usize],
    })
}

/// Turns the timing of each module on `iface` on or off (a clock read per verdict while
/// on); `list` then shows each module's nanoseconds per packet.
pub fn profile<'a>(at: impl Into<ChainAt<'a>>, on: bool) -> Result<ChainListing, ModuleError> {
    let at = at.into();
    {
        let _lock = lock(at)?;
        open_existing(at)?.set_profile(on)?;
    }
    list(at)
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
            iface: chain.name(),
            module: name.to_string(),
            known: running
                .iter()
                .map(|(_, known)| known.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Entry `index` of the module `name`'s per-CPU `u64` array map `map`, summed over the
/// CPUs: a module's counter, read from its pinned maps (the running version's).
pub fn read_counter<'a>(
    at: impl Into<ChainAt<'a>>,
    name: &str,
    map: &str,
    index: u32,
) -> Result<u64, ModuleError> {
    let at = at.into();
    let chain = open_existing(at)?;
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
}
