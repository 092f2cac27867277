//! The chain commands: `chain apply` (a whole chain from a file, one revision),
//! `chain diff`, `chain rollback` and `chain show`.

use std::path::Path;

use super::{
    ChainAt, ModuleError, ModuleObject,
    builtin::STEER_MODULE,
    chain::Chain,
    entry::{DEFAULT_MODES, detach, lock, open_existing, open_or_attach},
    history::{History, RevisionModule, RevisionRecord},
    list,
    object::digest_hex,
    report::{Applied, ChainDiff, ChainShow, Change, ModuleChange},
    revision::{Next, changes, commit, running_modules},
    spec::ChainSpec,
    trial::{sample_packets, trial},
    version::plan_handover,
};

/// Makes the chain on `iface` the one the chain file at `file` describes, in one revision
/// switch: modules added, removed, reordered and swapped (a module whose object differs
/// from the running one's is swapped, its maps of matching shape kept). With `check`,
/// changes nothing: runs the candidate chain on sample packets with `BPF_PROG_TEST_RUN`
/// (so the verifier sees every module) and plans the change.
pub fn apply<'a>(
    at: impl Into<ChainAt<'a>>,
    file: &Path,
    check: bool,
) -> Result<Applied, ModuleError> {
    let at = at.into();
    let spec = read_spec(at, file)?;
    let wanted = spec.wanted();
    check_frags_agree(&at.to_string(), &wanted)?;
    if check {
        // The candidate through the kernel (verifier included) on sample packets, in a
        // scratch chain attached nowhere; then the plan against the running chain.
        let named: Vec<ModuleObject> = spec
            .modules
            .iter()
            .map(|module| ModuleObject {
                name: module.name.clone(),
                ..module.object.clone()
            })
            .collect();
        let checked = trial(&named, &sample_packets())?;
        let _lock = lock(at)?;
        check_builtins(at, &wanted)?;
        return Ok(Applied {
            check: Some(checked),
            ..planned(at, &wanted)?
        });
    }
    let _lock = lock(at)?;
    apply_locked(at, &wanted)
}

/// Applies anew revision `to` of the chain on `iface` (by default the one before the
/// running revision) from the chain's history: a new revision with the same modules, in
/// the same order, from the same objects. Maps of matching shape are kept, as in a swap.
pub fn rollback<'a>(at: impl Into<ChainAt<'a>>, to: Option<u32>) -> Result<Applied, ModuleError> {
    let at = at.into();
    let _lock = lock(at)?;
    let chain = open_existing(at)?;
    let running = chain.state()?.revision;
    let history = History::for_chain(at);
    let target = match to {
        Some(revision) => history.revision(&at.to_string(), revision)?,
        None => previous(&history, &at.to_string(), running)?,
    };
    let objects = history.objects_of(&at.to_string(), &target)?;
    drop(chain);
    let wanted: Vec<(&str, &ModuleObject)> = objects
        .iter()
        .map(|(name, object)| (name.as_str(), object))
        .collect();
    check_frags_agree(&at.to_string(), &wanted)?;
    apply_locked(at, &wanted)
}

/// What would change, module by module: from the running chain to the chain file `file`,
/// or without a file, from the revision before the running one to the running one.
pub fn diff<'a>(at: impl Into<ChainAt<'a>>, file: Option<&Path>) -> Result<ChainDiff, ModuleError> {
    let at = at.into();
    match file {
        Some(file) => {
            let spec = read_spec(at, file)?;
            let wanted = spec.wanted();
            let _lock = lock(at)?;
            let plan = planned(at, &wanted)?;
            Ok(ChainDiff {
                iface: at.iface.to_string(),
                from: match plan.revision {
                    Some(revision) => format!("revision {revision}"),
                    None => "no chain".to_string(),
                },
                to: file.display().to_string(),
                changes: plan.changes,
            })
        }
        None => {
            let chain = open_existing(at)?;
            let running = chain.state()?.revision;
            let history = History::for_chain(at);
            let before = previous(&history, &at.to_string(), running)?;
            let now: Vec<RevisionModule> = running_modules(&chain)?
                .into_iter()
                .map(|(_, module)| module)
                .collect();
            Ok(ChainDiff {
                iface: at.iface.to_string(),
                from: format!("revision {}", before.revision),
                to: format!("revision {running}"),
                changes: changes(&before.modules, &now),
            })
        }
    }
}

/// The running chain on `iface` and the revisions its history keeps.
pub fn show<'a>(at: impl Into<ChainAt<'a>>) -> Result<ChainShow, ModuleError> {
    let at = at.into();
    Ok(ChainShow {
        chain: list(at)?,
        history: History::for_chain(at).revisions(),
    })
}

/// Reads the chain file at `file` for the chain `at`: built-in modules come in the running
/// chain's frags flavour.
fn read_spec(at: ChainAt<'_>, file: &Path) -> Result<ChainSpec, ModuleError> {
    let frags = match open_existing(at) {
        Ok(chain) => chain.state()?.frags != 0,
        Err(_) => true,
    };
    ChainSpec::read(file, frags)
}

/// The latest revision of the history before `running`.
fn previous(history: &History, iface: &str, running: u32) -> Result<RevisionRecord, ModuleError> {
    let records = history.revisions();
    let before = records
        .iter()
        .rev()
        .find(|record| record.revision < running);
    match before {
        Some(record) => Ok(record.clone()),
        None => history.revision(iface, running.saturating_sub(1)),
    }
}

/// The modules of one chain must agree on `xdp.frags`: they share one program array.
fn check_frags_agree(chain: &str, wanted: &[(&str, &ModuleObject)]) -> Result<(), ModuleError> {
    let Some((_, first)) = wanted.first() else {
        return Ok(());
    };
    match wanted
        .iter()
        .find(|(_, object)| object.frags != first.frags)
    {
        Some((name, object)) => Err(ModuleError::FragsMismatch {
            module: name.to_string(),
            iface: chain.to_string(),
            module_frags: object.frags,
            chain_frags: first.frags,
        }),
        None => Ok(()),
    }
}

/// The plan of a change to `wanted`, made of nothing but reads: the changes, and for each
/// swap, the maps that would be kept. `revision` is the running one (none without a chain).
fn planned(at: ChainAt<'_>, wanted: &[(&str, &ModuleObject)]) -> Result<Applied, ModuleError> {
    let chain = match open_existing(at) {
        Ok(chain) => Some(chain),
        Err(ModuleError::NoChain { .. }) => None,
        Err(error) => return Err(error),
    };
    let running = match &chain {
        Some(chain) => running_modules(chain)?,
        None => Vec::new(),
    };
    let old: Vec<RevisionModule> = running.iter().map(|(_, module)| module.clone()).collect();
    let mut plan = changes(&old, &as_revision_modules(wanted));
    if let Some(chain) = &chain {
        fill_handovers(chain, &running, wanted, &mut plan)?;
    }
    Ok(Applied {
        revision: match &chain {
            Some(chain) => Some(chain.state()?.revision),
            None => None,
        },
        changes: plan,
        ..Applied::nothing(at.iface.to_string())
    })
}

/// A built-in module (`steer`, which `xdp attach` and the load balancer load with maps of
/// their own) can be kept and moved by a chain file, not added nor dropped unnoticed.
fn check_builtins(at: ChainAt<'_>, wanted: &[(&str, &ModuleObject)]) -> Result<(), ModuleError> {
    let running: Vec<String> = match open_existing(at) {
        Ok(chain) => running_modules(&chain)?
            .into_iter()
            .map(|(_, module)| module.name)
            .collect(),
        Err(ModuleError::NoChain { .. }) => Vec::new(),
        Err(error) => return Err(error),
    };
    let module = STEER_MODULE.to_string();
    let wanted_steer = wanted.iter().any(|(name, _)| *name == STEER_MODULE);
    match (running.contains(&module), wanted_steer) {
        (true, false) => Err(ModuleError::BuiltinOmitted {
            chain: at.to_string(),
            module,
        }),
        (false, true) => Err(ModuleError::BuiltinNotRunning {
            chain: at.to_string(),
            module,
        }),
        _ => Ok(()),
    }
}

/// Applies `wanted` under the chain's lock, taken by the caller.
fn apply_locked(at: ChainAt<'_>, wanted: &[(&str, &ModuleObject)]) -> Result<Applied, ModuleError> {
    check_builtins(at, wanted)?;
    let Some((_, first)) = wanted.first() else {
        // An empty chain file: every module goes, and the chain's entry with the last.
        return match open_existing(at) {
            Ok(mut chain) => {
                chain.reconcile()?;
                apply_to(&mut chain, &[])
            }
            Err(ModuleError::NoChain { .. }) => Ok(Applied::nothing(at.iface.to_string())),
            Err(error) => Err(error),
        };
    };
    let (mut chain, attached) = open_or_attach(at, first.frags, &DEFAULT_MODES)?;
    let result = apply_to(&mut chain, wanted);
    if result.is_err() && attached.is_some() {
        // The interface had no chain before this command: leave it without one.
        let _ = detach(&chain);
    }
    Ok(Applied {
        attached,
        ..result?
    })
}

fn apply_to(chain: &mut Chain, wanted: &[(&str, &ModuleObject)]) -> Result<Applied, ModuleError> {
    let running = running_modules(chain)?;
    let old: Vec<RevisionModule> = running.iter().map(|(_, module)| module.clone()).collect();
    let mut plan = changes(&old, &as_revision_modules(wanted));
    let mut applied = Applied::nothing(chain.name());
    if plan.iter().all(|change| change.change == Change::Unchanged) {
        applied.changes = plan;
        return Ok(applied);
    }
    let next: Vec<Next<'_>> = wanted
        .iter()
        .map(
            |(name, object)| match running.iter().find(|(_, module)| module.name == *name) {
                Some((instance, module)) if module.digest == digest_hex(&object.digest) => {
                    Next::Keep {
                        instance: *instance,
                    }
                }
                Some((instance, _)) => Next::Replace {
                    instance: *instance,
                    object,
                    bound: &[],
                },
                None => Next::Add {
                    name,
                    object,
                    bound: &[],
                },
            },
        )
        .collect();
    let committed = commit(chain, &next)?;
    for (name, handover) in committed.handovers {
        if let Some(change) = plan.iter_mut().find(|change| change.name == name) {
            change.maps = Some(handover);
        }
    }
    applied.revision = Some(committed.revision);
    applied.changes = plan;
    applied.chain_detached = committed.chain_detached;
    applied.unfinished = committed.unfinished;
    Ok(applied)
}

fn as_revision_modules(wanted: &[(&str, &ModuleObject)]) -> Vec<RevisionModule> {
    wanted
        .iter()
        .map(|(name, object)| RevisionModule {
            name: name.to_string(),
            version: object.version.clone(),
            digest: digest_hex(&object.digest),
        })
        .collect()
}

/// The maps each planned swap would keep, from the running versions' pins.
fn fill_handovers(
    chain: &Chain,
    running: &[(u32, RevisionModule)],
    wanted: &[(&str, &ModuleObject)],
    plan: &mut [ModuleChange],
) -> Result<(), ModuleError> {
    for change in plan
        .iter_mut()
        .filter(|change| change.change == Change::Swapped)
    {
        let Some((_, object)) = wanted.iter().find(|(name, _)| *name == change.name) else {
            continue;
        };
        let Some((instance, _)) = running
            .iter()
            .find(|(_, module)| module.name == change.name)
        else {
            continue;
        };
        let generation = chain.record(*instance)?.generation;
        let old_dir = chain.pins.generation_dir(&change.name, generation);
        change.maps = Some(plan_handover(object, &old_dir)?);
    }
    Ok(())
}
