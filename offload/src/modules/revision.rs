//! Building and switching to a new revision of a chain: the one way every change (load,
//! swap, unload, `chain apply`, `chain rollback`) reaches the running chain.
//!
//! The new revision's modules are staged first (new versions loaded, their records marked
//! as staged), its record written to the history, then one update of `FP_STATE` switches
//! to it; after that the staged records are promoted and what the old revision alone held
//! is removed. A failure before the switch leaves the running chain as it was and removes
//! what was staged; a process killed anywhere leaves it to the next command's reconcile.

use std::path::PathBuf;

use offload_common::module::{CHAIN_SLOTS, MAX_MODULES, ModuleRecord, RECORD_FRAGS, RECORD_IN_USE};

use super::{
    ModuleError, ModuleObject,
    chain::{self, Chain, Member},
    entry::detach,
    history::{History, RevisionModule, RevisionRecord, command_line},
    object::{c_string, digest_hex},
    report::{Change, MapHandover, ModuleChange},
    version::{load_version, plan_handover},
};

/// One module of the next revision.
pub(super) enum Next<'a> {
    /// A running instance, as it runs.
    Keep { instance: u32 },
    /// A running instance, replaced by a new version of it (maps of matching shape kept).
    /// A map the old version lacks that is named in `bound` is bound to that pin: a map
    /// that lives outside the chain and that a new version of the built-in `steer` module
    /// adds, made and filled before the swap.
    Replace {
        instance: u32,
        object: &'a ModuleObject,
        bound: &'a [(String, PathBuf)],
    },
    /// A new instance; its maps named in `bound` bound to those pins (maps that live
    /// outside the chain, e.g. the built-in `steer` module's).
    Add {
        name: &'a str,
        object: &'a ModuleObject,
        bound: &'a [(String, PathBuf)],
    },
}

/// What [`commit`] did.
pub(super) struct Committed {
    /// The revision switched to.
    pub revision: u32,
    /// Per module of the next revision, in order: the program id it runs.
    pub program_ids: Vec<u32>,
    /// Per replaced module: the maps handed over.
    pub handovers: Vec<(String, MapHandover)>,
    /// The revision holds no module, so the chain's entry goes too.
    pub chain_detached: bool,
    /// What failed after the switch, which the next command completes.
    pub unfinished: Option<String>,
}

/// Stages `next`, switches to it and retires what the old revision alone held.
pub(super) fn commit(chain: &mut Chain, next: &[Next<'_>]) -> Result<Committed, ModuleError> {
    if next.len() > CHAIN_SLOTS as usize {
        return Err(ModuleError::ChainFull {
            iface: chain.name(),
            max: CHAIN_SLOTS,
        });
    }
    let mut staged = Vec::new();
    let built = stage(chain, next, &mut staged);
    let (members, program_ids, handovers, record) = match built {
        Ok(built) => built,
        Err(error) => {
            // Records and pins of what was staged; the running chain was not touched.
            let _ = chain.reconcile();
            return Err(error);
        }
    };
    let history = History::for_chain(chain.at());
    let switched = history
        .record(&record)
        .and_then(|()| chain.switch(&members));
    let revision = match switched {
        Ok(revision) => revision,
        Err(error) => {
            let _ = chain.reconcile();
            return Err(error);
        }
    };
    // The change took effect: what is left is bookkeeping, which the next command's
    // reconcile also does. A failure here is reported beside the success, not as a failure.
    let chain_detached = members.is_empty();
    let unfinished = finish(chain, staged, &members)
        .and_then(|()| {
            history.prune(revision);
            if chain_detached {
                detach(chain)?;
            }
            Ok(())
        })
        .err()
        .map(|error| crate::error_chain(&error));
    Ok(Committed {
        revision,
        program_ids,
        handovers,
        chain_detached,
        unfinished,
    })
}

/// After a switch: promotes the staged records, frees those the new revision does not
/// hold, and empties the old bank after the grace delay.
fn finish(
    chain: &mut Chain,
    staged: Vec<(u32, ModuleRecord)>,
    members: &[Member],
) -> Result<(), ModuleError> {
    for (instance, mut record) in staged {
        chain::promote(&mut record);
        chain.set_record(instance, &record)?;
        chain.prune_generations(&c_string(&record.name), record.generation);
    }
    let running: Vec<u32> = members.iter().map(|member| member.instance).collect();
    for instance in 0..MAX_MODULES {
        let record = chain.record(instance)?;
        if record.flags & RECORD_IN_USE != 0 && !running.contains(&instance) {
            chain.set_record(instance, &ModuleRecord::default())?;
            chain::remove_dir(&chain.pins.module_dir(&c_string(&record.name)));
        }
    }
    chain.retire_old_bank()
}

type Staged = (
    Vec<Member>,
    Vec<u32>,
    Vec<(String, MapHandover)>,
    RevisionRecord,
);

/// Loads the new versions and writes their staged records; the members of the next
/// revision, their program ids, the map handovers and the revision's history record.
fn stage(
    chain: &mut Chain,
    next: &[Next<'_>],
    staged: &mut Vec<(u32, ModuleRecord)>,
) -> Result<Staged, ModuleError> {
    let frags = chain.state()?.frags != 0;
    let running = chain.running_members()?;
    let ids = chain.running()?;
    let history = History::for_chain(chain.at());
    let mut members = Vec::new();
    let mut program_ids = Vec::new();
    let mut handovers = Vec::new();
    let mut modules = Vec::new();
    for step in next {
        match *step {
            Next::Keep { instance } => {
                let position = running
                    .iter()
                    .position(|member| member.instance == instance)
                    .expect("Keep names a running instance");
                let program = running[position]
                    .program
                    .try_clone()
                    .map_err(ModuleError::syscall("dup a program fd"))?;
                let record = chain.record(instance)?;
                modules.push(RevisionModule {
                    name: c_string(&record.name),
                    version: c_string(&record.version),
                    digest: digest_hex(&record.digest),
                });
                let next = match &running[position].next {
                    Some(next) => Some(
                        next.try_clone()
                            .map_err(ModuleError::syscall("dup a map fd"))?,
                    ),
                    None => None,
                };
                program_ids.push(ids[position].2);
                members.push(Member {
                    instance,
                    program,
                    next,
                });
            }
            Next::Replace {
                instance,
                object,
                bound,
            } => {
                let mut record = chain.record(instance)?;
                let name = c_string(&record.name);
                check_frags(chain, object, &name, frags)?;
                let old_dir = chain.pins.generation_dir(&name, record.generation);
                let mut handover = plan_handover(object, &old_dir)?;
                let mut kept: Vec<_> = handover
                    .kept
                    .iter()
                    .map(|map| (map.clone(), old_dir.join(map)))
                    .collect();
                let new_and_bound: Vec<(String, PathBuf)> = bound
                    .iter()
                    .filter(|(map, pin)| {
                        pin.exists() && !old_dir.join(map).exists() && handover.reset.contains(map)
                    })
                    .cloned()
                    .collect();
                for (map, pin) in new_and_bound {
                    handover.reset.retain(|reset| *reset != map);
                    handover.kept.push(map.clone());
                    kept.push((map, pin));
                }
                let generation = record.generation + 1;
                let (program, program_id) = load_version(chain, object, &name, generation, &kept)?;
                history.keep_object(object)?;
                record.next_program_id = program_id;
                record.next_generation = generation;
                record.next_version = fixed(&object.version);
                record.next_digest = object.digest;
                chain.set_record(instance, &record)?;
                staged.push((instance, record));
                modules.push(revision_module(&name, object));
                program_ids.push(program_id);
                members.push(Member {
                    instance,
                    program,
                    next: chain.next_map(&name, generation),
                });
                handovers.push((name, handover));
            }
            Next::Add {
                name,
                object,
                bound,
            } => {
                check_frags(chain, object, name, frags)?;
                let instance = chain.free_instance()?.ok_or(ModuleError::ChainFull {
                    iface: chain.name(),
                    max: MAX_MODULES,
                })?;
                let generation = 1;
                let (program, program_id) = load_version(chain, object, name, generation, bound)?;
                history.keep_object(object)?;
                let record = ModuleRecord {
                    flags: RECORD_IN_USE | if object.frags { RECORD_FRAGS } else { 0 },
                    next_program_id: program_id,
                    next_generation: generation,
                    name: fixed(name),
                    next_version: fixed(&object.version),
                    next_digest: object.digest,
                    ..ModuleRecord::default()
                };
                chain.set_record(instance, &record)?;
                staged.push((instance, record));
                modules.push(revision_module(name, object));
                program_ids.push(program_id);
                members.push(Member {
                    instance,
                    program,
                    next: chain.next_map(name, generation),
                });
            }
        }
    }
    let record = RevisionRecord {
        revision: chain.state()?.revision + 1,
        applied_at: chain::now(),
        command: command_line(),
        modules,
    };
    Ok((members, program_ids, handovers, record))
}

fn revision_module(name: &str, object: &ModuleObject) -> RevisionModule {
    RevisionModule {
        name: name.to_string(),
        version: object.version.clone(),
        digest: digest_hex(&object.digest),
    }
}

/// Every program of the chain's array must be of the hook's program type, and agree on
/// `xdp.frags` with its entry.
pub(super) fn check_frags(
    chain: &Chain,
    object: &ModuleObject,
    name: &str,
    chain_frags: bool,
) -> Result<(), ModuleError> {
    if object.tc != chain.hook.is_tc() {
        let (kind, hint) = if object.tc {
            ("a TC classifier", "--hook tc-ingress or --hook tc-egress")
        } else {
            ("an XDP program", "--hook xdp (the default)")
        };
        return Err(ModuleError::WrongHook {
            module: name.to_string(),
            file: object.path.clone(),
            kind,
            chain: chain.name(),
            wanted: if chain.hook.is_tc() {
                "TC classifiers"
            } else {
                "XDP programs"
            },
            hint,
        });
    }
    if chain_frags != object.frags {
        return Err(ModuleError::FragsMismatch {
            module: name.to_string(),
            iface: chain.name(),
            module_frags: object.frags,
            chain_frags,
        });
    }
    Ok(())
}

/// The running revision's modules, as a history record lists them.
pub(super) fn running_modules(chain: &Chain) -> Result<Vec<(u32, RevisionModule)>, ModuleError> {
    chain
        .running()?
        .into_iter()
        .map(|(_, instance, _)| {
            let record = chain.record(instance)?;
            Ok((
                instance,
                RevisionModule {
                    name: c_string(&record.name),
                    version: c_string(&record.version),
                    digest: digest_hex(&record.digest),
                },
            ))
        })
        .collect()
}

/// What changes from the chain `old` to the chain `new`, module by module: new modules
/// first in their order, then the removed ones. A module is the same when its name and
/// digest are; same name and another digest is a swap.
pub(super) fn changes(old: &[RevisionModule], new: &[RevisionModule]) -> Vec<ModuleChange> {
    let mut changes: Vec<ModuleChange> = new
        .iter()
        .enumerate()
        .map(|(order, module)| {
            let before = old.iter().position(|previous| previous.name == module.name);
            let change = match before {
                None => Change::Added,
                Some(index) if old[index].digest != module.digest => Change::Swapped,
                Some(index) if index != order => Change::Moved,
                Some(_) => Change::Unchanged,
            };
            ModuleChange {
                name: module.name.clone(),
                change,
                order: Some(order),
                old_order: before,
                version: Some(module.version.clone()),
                old_version: before.map(|index| old[index].version.clone()),
                maps: None,
            }
        })
        .collect();
    for (order, module) in old.iter().enumerate() {
        if !new.iter().any(|kept| kept.name == module.name) {
            changes.push(ModuleChange {
                name: module.name.clone(),
                change: Change::Removed,
                order: None,
                old_order: Some(order),
                version: None,
                old_version: Some(module.version.clone()),
                maps: None,
            });
        }
    }
    changes
}

/// A name or version string as a record's NUL-padded field, cut to fit.
pub(super) fn fixed(text: &str) -> [u8; offload_common::module::NAME_LEN] {
    let mut bytes = [0u8; offload_common::module::NAME_LEN];
    let len = text.len().min(offload_common::module::NAME_LEN - 1);
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, digest: &str) -> RevisionModule {
        RevisionModule {
            name: name.to_string(),
            version: "1".to_string(),
            digest: digest.to_string(),
        }
    }

    fn kinds(changes: &[ModuleChange]) -> Vec<(String, Change)> {
        changes
            .iter()
            .map(|change| (change.name.clone(), change.change))
            .collect()
    }

    #[test]
    fn a_change_names_each_module_added_swapped_moved_kept_and_removed() {
        let old = [module("a", "1"), module("b", "2"), module("c", "3")];
        let new = [module("b", "2"), module("a", "9"), module("d", "4")];
        assert_eq!(
            kinds(&changes(&old, &new)),
            [
                ("b".to_string(), Change::Moved),
                ("a".to_string(), Change::Swapped),
                ("d".to_string(), Change::Added),
                ("c".to_string(), Change::Removed),
            ]
        );
        assert_eq!(
            kinds(&changes(&old, &old)),
            [
                ("a".to_string(), Change::Unchanged),
                ("b".to_string(), Change::Unchanged),
                ("c".to_string(), Change::Unchanged),
            ]
        );
    }

    #[test]
    fn names_are_nul_padded_and_cut_to_fit() {
        let field = fixed("counter");
        assert_eq!(&field[..8], b"counter\0");
        assert_eq!(
            c_string(&fixed(&"y".repeat(40))).len(),
            offload_common::module::NAME_LEN - 1
        );
    }
}
