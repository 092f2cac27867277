//! The firewall on an interface: its pins, applying a policy (loading the module the first
//! time, then switching banks), its status and its removal.
//!
//! ```text
//! <pins>/conntrack/FW_CT_*, FW_CONNTRACK    the namespace's table, shared by its interfaces
//! <pins>/firewall/<iface>/FW_*              the interface's rule tables
//! <pins>/firewall/<iface>/egress_link       the egress tracker's tcx link
//! <run>/firewall/<iface>/bank-<N>.names     rule names of each bank, for status
//! <run>/firewall/<iface>/bank-<N>.rules     its rules, each with its place (for `rule del`)
//! <run>/firewall/<iface>/bank-<N>.index     offset, length and shape hash of each rule's line
//! ```
//!
//! `<pins>` and `<run>` are the network namespace's folders (`offload::netns`).

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray},
    programs::{LinkOrder, SchedClassifier, TcAttachType, links::FdLink, tc::TcAttachOptions},
};
use offload::{
    bpffs::Bpffs,
    mode::XdpMode,
    modules::{
        ModuleObject, Position,
        builtin::{self, FIREWALL_EGRESS_OBJECT, FIREWALL_MODULE},
    },
};
use offload_common::{
    Counter,
    firewall::{
        COUNTERS_PER_BANK, CtSettings, LOG_SLOT_CONNTRACK_FULL, LogRate, MAX_MASKS, PolicyState,
        RuleKey, RuleValue, maps, verdict,
    },
};
use serde::Serialize;

use crate::{FirewallError, Policy, compile::Tables, conntrack};

/// How long the old bank stays readable after a switch: a packet reads the bank once and
/// probes it for microseconds.
const GRACE: Duration = Duration::from_millis(20);

/// The node-wide conntrack pins' directory.
pub(crate) fn node_dir() -> PathBuf {
    Bpffs::get().fastpath_dir().join("conntrack")
}

fn firewalls_dir() -> PathBuf {
    Bpffs::get().fastpath_dir().join("firewall")
}

fn iface_dir(iface: &str) -> PathBuf {
    firewalls_dir().join(offload::netns::pin_name(iface))
}

/// Holds `<run>/firewall/<iface>.lock` while a command changes the interface's
/// firewall: two applies at once would write the same idle bank.
pub(crate) fn lock(iface: &str) -> Result<nix::fcntl::Flock<fs::File>, FirewallError> {
    Site::iface(iface).lock()
}

/// Takes the lock at `path`, made with its folder when missing.
fn lock_at(path: PathBuf) -> Result<nix::fcntl::Flock<fs::File>, FirewallError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(FirewallError::pin("mkdir", dir))?;
    }
    let file = fs::File::create(&path).map_err(FirewallError::pin("open", &path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        FirewallError::Pin {
            action: "lock",
            path,
            source: errno.into(),
        }
    })
}

pub(crate) fn names_dir(iface: &str) -> PathBuf {
    run_dir().join(iface)
}

/// `/run/fastpath/firewall` of this network namespace.
fn run_dir() -> PathBuf {
    offload::netns::run_dir().join("firewall")
}

/// The pin of the firewall map `name` for `iface`: node-wide maps under the conntrack
/// directory, the others under the interface's.
pub(crate) fn map_pin(iface: &str, name: &str) -> PathBuf {
    Site::iface(iface).map_pin(name)
}

/// Where one firewall's tables are pinned and its run files (the banks' rule names and
/// records) kept: an interface's firewall, or a topology's `firewall` instance.
#[derive(Clone, Debug)]
pub struct Site {
    /// What errors and status call it: the interface, or `TOPOLOGY/INSTANCE`.
    pub name: String,
    /// The folder of its own maps' pins.
    pins: PathBuf,
    /// The folder of its run files.
    run: PathBuf,
}

impl Site {
    /// The firewall of the interface `iface` (the `firewall` chain module's).
    pub fn iface(iface: &str) -> Site {
        Site {
            name: iface.to_string(),
            pins: iface_dir(iface),
            run: names_dir(iface),
        }
    }

    /// The `firewall` instance `instance` of the topology `topology`, whose own maps the
    /// topology pins in `pins` (its program's load makes them).
    pub fn topology_instance(topology: &str, instance: &str, pins: PathBuf) -> Site {
        Site {
            name: format!("{topology}/{instance}"),
            pins,
            run: run_dir().join("topology").join(topology).join(instance),
        }
    }

    /// The folder of its run files (the banks' rule names).
    pub fn run_dir(&self) -> &std::path::Path {
        &self.run
    }

    /// The pin of the firewall map `name`: node-wide maps under the conntrack directory
    /// (one table for every firewall of the namespace), the others under the site's.
    pub fn map_pin(&self, name: &str) -> PathBuf {
        if maps::NODE.contains(&name) {
            node_dir().join(name)
        } else {
            self.pins.join(name)
        }
    }

    /// Holds the site's lock (beside its run folder) while a command changes it.
    fn lock(&self) -> Result<nix::fcntl::Flock<fs::File>, FirewallError> {
        lock_at(PathBuf::from(format!("{}.lock", self.run.display())))
    }

    /// Removes the site's run files (its tables go with their pins), and the folders
    /// above them that it leaves empty.
    pub fn forget(&self) {
        let _ = fs::remove_dir_all(&self.run);
        let _ = fs::remove_file(format!("{}.lock", self.run.display()));
        let topologies = run_dir().join("topology");
        let mut folder = self.run.parent();
        while let Some(dir) = folder.filter(|dir| dir.starts_with(&topologies)) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            folder = dir.parent();
        }
    }
}

/// Whether a topology's firewall instance runs in this namespace (its run files are
/// there from its first policy until [`Site::forget`]).
fn topology_sites_run() -> bool {
    fs::read_dir(run_dir().join("topology")).is_ok_and(|mut topologies| topologies.next().is_some())
}

/// Removes the namespace's conntrack pins when no firewall uses them any more: no
/// interface runs one and no topology's firewall instance does. A table a running
/// program still holds lives on, unpinned, until that program goes.
pub fn release_node_tables() -> Result<(), FirewallError> {
    let others = fs::read_dir(firewalls_dir()).map_or(0, |entries| entries.count());
    if others != 0 || topology_sites_run() {
        return Ok(());
    }
    let _ = fs::remove_dir(firewalls_dir());
    let node = node_dir();
    match fs::remove_dir_all(&node) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(FirewallError::Pin {
            action: "remove",
            path: node,
            source: error,
        }),
        _ => Ok(()),
    }
}

/// The running policy of an interface, opened under the interface's lock for a change in
/// place (`rule add`, `rule del`).
pub(crate) struct RunningPolicy {
    /// Held until the change is done.
    pub _lock: nix::fcntl::Flock<fs::File>,
    /// When the lock was taken: a change's time is counted from here.
    pub started: Instant,
    /// `FW_POLICY`'s pin, for errors.
    pub path: PathBuf,
    /// `FW_POLICY`, to switch what the running bank says.
    pub states: Array<MapData, PolicyState>,
    /// Its one entry as read.
    pub state: PolicyState,
}

/// Opens the running policy of `iface`: an error if it runs no firewall.
pub(crate) fn running_policy(iface: &str) -> Result<RunningPolicy, FirewallError> {
    let path = map_pin(iface, maps::POLICY);
    if !path.exists() {
        return Err(FirewallError::NotLoaded {
            iface: iface.to_string(),
        });
    }
    let _lock = lock(iface)?;
    let started = Instant::now();
    let states: Array<MapData, PolicyState> = Array::try_from(open_map(&path, maps::POLICY)?)
        .map_err(FirewallError::map("open", maps::POLICY, &path))?;
    let state = states
        .get(&0, 0)
        .map_err(FirewallError::map("read", maps::POLICY, &path))?;
    Ok(RunningPolicy {
        _lock,
        started,
        path,
        states,
        state,
    })
}

/// The interface's rule entries (`FW_RULES`), opened from their pin.
pub(crate) fn rules_map(
    iface: &str,
) -> Result<BpfHashMap<MapData, RuleKey, RuleValue>, FirewallError> {
    let path = map_pin(iface, maps::RULES);
    BpfHashMap::try_from(open_map(&path, maps::RULES)?).map_err(FirewallError::map(
        "open",
        maps::RULES,
        &path,
    ))
}

pub(crate) fn open_map(path: &Path, name: &'static str) -> Result<Map, FirewallError> {
    let data = MapData::from_pin(path).map_err(FirewallError::map("open", name, path))?;
    Map::from_map_data(data).map_err(FirewallError::map("open", name, path))
}

/// What `apply` did (or, checked, would do).
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// The interface.
    pub iface: String,
    /// Rules in the policy.
    pub rules: usize,
    /// Distinct masks (hash probes per packet).
    pub masks: usize,
    /// Hash entries.
    pub entries: usize,
    /// Whether the module was loaded by this apply (else the running one's policy was
    /// switched).
    pub loaded_module: bool,
    /// The bank now running; None with `--check`.
    pub bank: Option<u32>,
    /// Whether this was a check only.
    pub checked: bool,
}

/// Compiles `policy` and makes it the policy of `iface`: [`prepare`] then [`switch`] of
/// this one interface. With `check`, only compiles.
pub fn apply(iface: &str, policy: &Policy, check: bool) -> Result<Applied, FirewallError> {
    let prepared = prepare(iface, policy, check)?;
    let mut switched = switch(vec![prepared])?;
    Ok(switched.applied.remove(0))
}

/// A policy written to the idle bank of an interface, not running yet: [`switch`] makes it
/// run. Dropped without a switch, it leaves the interface on its running policy: the idle
/// bank is emptied, and a module this prepare loaded leaves again.
pub struct Prepared {
    applied: Applied,
    /// None with `check`.
    pending: Option<Pending>,
}

impl Prepared {
    /// What the apply does; `bank` is None until the switch.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }
}

/// What the switch of one prepared interface needs, held open so that the switch itself
/// is one map write.
struct Pending {
    site: Site,
    state_map: Array<MapData, PolicyState>,
    state_path: PathBuf,
    /// The state running now: written back if another interface's switch fails.
    old: PolicyState,
    /// The state that runs the prepared bank.
    new: PolicyState,
    settings: CtSettings,
    rules: BpfHashMap<MapData, RuleKey, RuleValue>,
    rules_path: PathBuf,
    /// Whether this prepare loaded the module (it leaves again if nothing switches).
    loaded_module: bool,
    switched: bool,
    /// The interface's lock, held from prepare to the end of the switch.
    lock: Option<nix::fcntl::Flock<fs::File>>,
}

impl Drop for Pending {
    /// Not switched: the prepared bank is emptied and a module loaded by the prepare
    /// leaves. Best effort: the caller reports the error that stopped the apply, and a
    /// bank left full is emptied by the next apply before it writes there.
    fn drop(&mut self) {
        if self.switched {
            return;
        }
        // The idle bank, from the old state: `new` is the old one until the bank is
        // written.
        let idle = 1 - (self.old.bank & 1);
        let _ = empty_bank(&mut self.rules, idle, &self.rules_path);
        // `remove` takes the interface's lock: let ours go first.
        drop(self.lock.take());
        if self.loaded_module {
            let _ = remove(&self.site.name);
        }
    }
}

/// The first phase of an apply: compiles `policy` and, unless `check`, readies `iface` to
/// switch to it without switching: the maps made, the module loaded first in the chain if
/// it was not (running no policy: every packet accepted, as before it), the egress
/// tracker attached, and the policy written to the idle bank. The running policy is
/// untouched; the interface stays locked until the [`Prepared`] is switched or dropped.
pub fn prepare(iface: &str, policy: &Policy, check: bool) -> Result<Prepared, FirewallError> {
    let tables = compile_here(policy)?;
    let mut applied = Applied::of(iface, policy, &tables, check);
    let module_error = |source| FirewallError::Module {
        iface: iface.to_string(),
        source: Box::new(source),
    };
    let chain = builtin::chain_summary(iface).map_err(module_error)?;
    if check {
        return Ok(Prepared {
            applied,
            pending: None,
        });
    }
    let site = Site::iface(iface);
    let lock = site.lock()?;
    let running = chain
        .as_ref()
        .is_some_and(|chain| chain.program_of(FIREWALL_MODULE).is_some());
    let frags = chain.as_ref().is_none_or(|chain| chain.frags);
    let object = builtin::firewall_module(frags).map_err(module_error)?;
    Bpffs::get()
        .ready_for_pins(true)
        .map_err(|source| FirewallError::Bpffs {
            source: Box::new(source),
        })?;
    for dir in [node_dir(), site.pins.clone()] {
        fs::create_dir_all(&dir).map_err(FirewallError::pin("mkdir", &dir))?;
    }
    let bound = bound_maps(&site, &object);
    create_maps(&site, &object, &bound)?;
    let mut pending = stage_policy(site, lock, policy, &tables, running)?;
    if !running {
        builtin::load_bound(
            iface,
            object,
            &Position::First,
            &bound,
            &[XdpMode::Drv, XdpMode::Skb],
        )
        .map_err(module_error)?;
        pending.loaded_module = true;
        applied.loaded_module = true;
    }
    attach_egress(iface)?;
    Ok(Prepared {
        applied,
        pending: Some(pending),
    })
}

/// [`prepare`] for the firewall at `site` whose program runs already, its maps pinned (a
/// topology's `firewall` instance): the policy compiled and written to the idle bank,
/// for [`switch`]. Nothing is loaded or attached.
pub fn prepare_at(site: &Site, policy: &Policy) -> Result<Prepared, FirewallError> {
    let tables = compile_here(policy)?;
    let applied = Applied::of(&site.name, policy, &tables, false);
    let lock = site.lock()?;
    let pending = stage_policy(site.clone(), lock, policy, &tables, true)?;
    Ok(Prepared {
        applied,
        pending: Some(pending),
    })
}

/// Compiles `policy`, its interface names resolved in this network namespace.
fn compile_here(policy: &Policy) -> Result<Tables, FirewallError> {
    crate::compile(policy, |name| {
        nix::net::if_::if_nametoindex(name)
            .map_err(|errno| format!("no interface `{name}` in this network namespace ({errno})"))
    })
}

impl Applied {
    fn of(name: &str, policy: &Policy, tables: &Tables, check: bool) -> Applied {
        Applied {
            iface: name.to_string(),
            rules: policy.rules.len(),
            masks: tables.masks.len(),
            entries: tables.entries.len(),
            loaded_module: false,
            bank: None,
            checked: check,
        }
    }
}

/// Writes `tables` to the idle bank of the firewall at `site`, whose maps exist, and
/// records its rules: what [`switch`] needs, held with the site's `lock`. When no program
/// of the site runs (`running` false), its running bank is emptied first: whatever the
/// maps held from before, it runs no policy until the switch, as it ran none before.
fn stage_policy(
    site: Site,
    lock: nix::fcntl::Flock<fs::File>,
    policy: &Policy,
    tables: &Tables,
    running: bool,
) -> Result<Pending, FirewallError> {
    fs::create_dir_all(&site.run).map_err(FirewallError::pin("mkdir", &site.run))?;
    let state_path = site.map_pin(maps::POLICY);
    let mut state_map: Array<_, PolicyState> = Array::try_from(open_map(
        &state_path,
        maps::POLICY,
    )?)
    .map_err(FirewallError::map("open", maps::POLICY, &state_path))?;
    let mut old =
        state_map
            .get(&0, 0)
            .map_err(FirewallError::map("read", maps::POLICY, &state_path))?;
    if !running {
        let bank = (old.bank & 1) as usize;
        old.banks[bank] = offload_common::firewall::BankInfo::default();
        state_map
            .set(0, old, 0)
            .map_err(FirewallError::map("write", maps::POLICY, &state_path))?;
    }
    let rules_path = site.map_pin(maps::RULES);
    let rules = BpfHashMap::try_from(open_map(&rules_path, maps::RULES)?)
        .map_err(FirewallError::map("open", maps::RULES, &rules_path))?;
    let mut pending = Pending {
        site,
        state_map,
        state_path,
        old,
        new: old,
        settings: settings_of(policy),
        rules,
        rules_path,
        loaded_module: false,
        switched: false,
        lock: Some(lock),
    };
    pending.new = write_idle_bank(tables, &mut pending)?;
    crate::del_rule::record_rules(&pending.site.run, pending.new.bank, policy)?;
    Ok(pending)
}

/// What [`switch`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Switched {
    /// Each interface, in the order given, with its bank now running.
    pub applied: Vec<Applied>,
    /// From just before the first interface's switch to just after the last one's: the
    /// most time during which the interfaces ran different policies. None when nothing
    /// switched (`check`).
    pub window: Option<Duration>,
}

/// The second phase: switches every prepared interface to its prepared bank, one map
/// write each, back to back; if one write fails, those already switched are switched
/// back. Then, after a grace delay, empties the banks that ran before.
pub fn switch(mut prepared: Vec<Prepared>) -> Result<Switched, FirewallError> {
    for pending in prepared.iter().filter_map(|p| p.pending.as_ref()) {
        write_settings(&pending.settings)?;
    }
    let mut window = None;
    let start = Instant::now();
    for index in 0..prepared.len() {
        let Some(pending) = prepared[index].pending.as_mut() else {
            continue;
        };
        // The switch: one update; a packet reads the state once, so it sees one whole
        // policy.
        let written = pending.state_map.set(0, pending.new, 0);
        if let Err(error) = written {
            let error = FirewallError::map("write", maps::POLICY, &pending.state_path)(error);
            for earlier in prepared[..index]
                .iter_mut()
                .filter_map(|p| p.pending.as_mut())
            {
                if earlier.state_map.set(0, earlier.old, 0).is_ok() {
                    earlier.switched = false;
                }
            }
            return Err(error);
        }
        pending.switched = true;
        window = Some(start.elapsed());
    }
    if window.is_some() {
        std::thread::sleep(GRACE);
    }
    let mut applied = Vec::with_capacity(prepared.len());
    for mut each in prepared.drain(..) {
        if let Some(pending) = each.pending.as_mut() {
            empty_bank(
                &mut pending.rules,
                pending.old.bank & 1,
                &pending.rules_path,
            )?;
            each.applied.bank = Some(pending.new.bank);
        }
        applied.push(each.applied.clone());
    }
    Ok(Switched { applied, window })
}

/// Each of the module's firewall maps, bound to its pin.
fn bound_maps(site: &Site, object: &ModuleObject) -> Vec<(String, PathBuf)> {
    object
        .maps
        .iter()
        .filter(|map| map.name.starts_with("FW_"))
        .map(|map| (map.name.clone(), site.map_pin(&map.name)))
        .collect()
}

/// Makes the maps at their pins (kept when there), so the policy can be written before
/// the module meets a packet.
fn create_maps(
    site: &Site,
    object: &ModuleObject,
    bound: &[(String, PathBuf)],
) -> Result<(), FirewallError> {
    let mut loader = EbpfLoader::new();
    for (name, path) in bound {
        loader.map_pin_path(name.as_str(), path.as_path());
    }
    loader
        .load(&object.bytes)
        .map_err(|error| FirewallError::Map {
            action: "create",
            map: "FW_*",
            path: site.pins.clone(),
            source: Box::new(error),
        })?;
    Ok(())
}

fn settings_of(policy: &Policy) -> CtSettings {
    CtSettings {
        limit: policy.conntrack_limit.unwrap_or(0),
        tcp: policy.conntrack_tcp,
        timeouts: policy.timeouts,
    }
}

fn write_settings(value: &CtSettings) -> Result<(), FirewallError> {
    let path = node_dir().join(maps::CT_SETTINGS);
    let mut settings: Array<_, CtSettings> = Array::try_from(open_map(&path, maps::CT_SETTINGS)?)
        .map_err(FirewallError::map(
        "open",
        maps::CT_SETTINGS,
        &path,
    ))?;
    settings
        .set(0, *value, 0)
        .map_err(FirewallError::map("write", maps::CT_SETTINGS, &path))
}

/// Writes `tables` to the idle bank of `pending`'s site (emptied first) and returns the
/// state that runs it; nothing runs it yet.
fn write_idle_bank(tables: &Tables, pending: &mut Pending) -> Result<PolicyState, FirewallError> {
    let site = pending.site.clone();
    let mut state = pending.old;
    let running = state.bank & 1;
    let idle = 1 - running;
    let rules_path = pending.rules_path.clone();
    empty_bank(&mut pending.rules, idle, &rules_path)?;

    let masks_path = site.map_pin(maps::MASKS);
    let mut masks: Array<_, RuleKey> = Array::try_from(open_map(&masks_path, maps::MASKS)?)
        .map_err(FirewallError::map("open", maps::MASKS, &masks_path))?;
    for (index, mask) in tables.masks.iter().enumerate() {
        masks
            .set(idle * MAX_MASKS + index as u32, mask, 0)
            .map_err(FirewallError::map("write", maps::MASKS, &masks_path))?;
    }

    let counters_path = site.map_pin(maps::COUNTERS);
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| FirewallError::Pin {
        action: "count the CPUs in",
        path: "/sys/devices/system/cpu/possible".into(),
        source: error,
    })?;
    // The bank's counters from 0, in batches (each slot one value per CPU).
    let slots: Vec<u32> = (0..=tables.rule_names.len() as u32)
        .map(|slot| idle * COUNTERS_PER_BANK + slot)
        .collect();
    let zeros = vec![Counter::default(); slots.len() * cpus];
    let counters_data = MapData::from_pin(&counters_path).map_err(FirewallError::map(
        "open",
        maps::COUNTERS,
        &counters_path,
    ))?;
    offload::batch::update(&counters_data, &slots, &zeros).map_err(FirewallError::map(
        "zero (batched)",
        maps::COUNTERS,
        &counters_path,
    ))?;

    let rates_path = site.map_pin(maps::LOG_RATES);
    let mut rates: Array<_, LogRate> = Array::try_from(open_map(&rates_path, maps::LOG_RATES)?)
        .map_err(FirewallError::map("open", maps::LOG_RATES, &rates_path))?;
    let conntrack_full = std::iter::once((LOG_SLOT_CONNTRACK_FULL, 1));
    let log_rules = tables
        .log_rates
        .iter()
        .map(|&(slot, per_second)| (idle * COUNTERS_PER_BANK + slot, per_second));
    for (slot, per_second) in log_rules.chain(conntrack_full) {
        let rate = LogRate {
            per_second,
            ..LogRate::default()
        };
        rates.set(slot, rate, 0).map_err(FirewallError::map(
            "write",
            maps::LOG_RATES,
            &rates_path,
        ))?;
    }

    let keys: Vec<RuleKey> = tables
        .entries
        .iter()
        .map(|(key, _)| RuleKey {
            bank: idle as u8,
            ..*key
        })
        .collect();
    let values: Vec<RuleValue> = tables.entries.iter().map(|(_, value)| *value).collect();
    let rules_data = MapData::from_pin(&rules_path).map_err(FirewallError::map(
        "open",
        maps::RULES,
        &rules_path,
    ))?;
    offload::batch::update(&rules_data, &keys, &values).map_err(FirewallError::map(
        "write (batched)",
        maps::RULES,
        &rules_path,
    ))?;
    let names = site.run.join(format!("bank-{idle}.names"));
    fs::write(&names, tables.rule_names.join("\n")).map_err(FirewallError::pin("write", &names))?;

    state.bank = idle;
    state.banks[idle as usize].masks = tables.masks.len() as u32;
    state.banks[idle as usize].default_verdict = tables.default_verdict;
    state.banks[idle as usize].first_rule_accepts = tables.first_rule_accepts;
    Ok(state)
}

fn empty_bank(
    rules: &mut BpfHashMap<MapData, RuleKey, RuleValue>,
    bank: u32,
    path: &Path,
) -> Result<(), FirewallError> {
    let stale: Vec<RuleKey> = rules
        .keys()
        .filter_map(Result::ok)
        .filter(|key| u32::from(key.bank) == bank)
        .collect();
    let data = MapData::from_pin(path).map_err(FirewallError::map("open", maps::RULES, path))?;
    offload::batch::delete(&data, &stale).map_err(FirewallError::map(
        "delete from (batched)",
        maps::RULES,
        path,
    ))
}

/// Attaches the egress tracker to `iface` unless its link is pinned already.
fn attach_egress(iface: &str) -> Result<(), FirewallError> {
    let link_pin = iface_dir(iface).join("egress_link");
    if link_pin.exists() {
        return Ok(());
    }
    let egress_error = |step| {
        move |error: &dyn std::fmt::Display| FirewallError::Egress {
            iface: iface.to_string(),
            step,
            reason: error.to_string(),
        }
    };
    let mut loader = EbpfLoader::new();
    let pins: Vec<(&str, PathBuf)> = maps::NODE
        .iter()
        .map(|name| (*name, node_dir().join(name)))
        .collect();
    for (name, path) in &pins {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(FIREWALL_EGRESS_OBJECT)
        .map_err(|error| egress_error("load the object")(&offload::error_chain(&error)))?;
    let program: &mut SchedClassifier = ebpf
        .program_mut("firewall_egress")
        .ok_or_else(|| egress_error("find the program")(&"no program firewall_egress"))?
        .try_into()
        .map_err(|error| egress_error("open the program")(&error))?;
    program
        .load()
        .map_err(|error| egress_error("load the program")(&offload::error_chain(&error)))?;
    let link_id = program
        .attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|error| egress_error("attach (tcx egress)")(&offload::error_chain(&error)))?;
    let link = program
        .take_link(link_id)
        .map_err(|error| egress_error("take the link")(&error))?;
    let link = FdLink::try_from(link).map_err(|error| egress_error("take the link")(&error))?;
    link.pin(&link_pin)
        .map_err(|error| egress_error("pin the link")(&error))?;
    Ok(())
}

/// Packets and bytes one rule (or the default policy) decided.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleCounters {
    /// The rule's name; `default` for the default policy.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes (first buffer of each packet).
    pub bytes: u64,
}

/// The firewall on an interface.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The interface.
    pub iface: String,
    /// The running bank.
    pub bank: u32,
    /// Masks of the running policy (hash probes per packet).
    pub masks: u32,
    /// The default policy's verdict: `accept` or `drop`.
    pub default_verdict: &'static str,
    /// The default policy's counters.
    pub default: RuleCounters,
    /// Each rule's counters, in priority order.
    pub rules: Vec<RuleCounters>,
    /// The node's conntrack table.
    pub conntrack: conntrack::TableStatus,
}

/// The status of the firewall on `iface`; removes expired conntrack entries on the way.
pub fn status(iface: &str) -> Result<Status, FirewallError> {
    status_at(&Site::iface(iface))
}

/// The status of the firewall at `site`, as [`status`].
pub fn status_at(site: &Site) -> Result<Status, FirewallError> {
    let policy_path = site.map_pin(maps::POLICY);
    if !policy_path.exists() {
        return Err(FirewallError::NotLoaded {
            iface: site.name.clone(),
        });
    }
    let policy: Array<_, PolicyState> = Array::try_from(open_map(&policy_path, maps::POLICY)?)
        .map_err(FirewallError::map("open", maps::POLICY, &policy_path))?;
    let state =
        policy
            .get(&0, 0)
            .map_err(FirewallError::map("read", maps::POLICY, &policy_path))?;
    let bank = state.bank & 1;
    let names_file = site.run.join(format!("bank-{bank}.names"));
    let names: Vec<String> = fs::read_to_string(&names_file)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let counters_path = site.map_pin(maps::COUNTERS);
    let counters: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(open_map(&counters_path, maps::COUNTERS)?)
            .map_err(FirewallError::map("open", maps::COUNTERS, &counters_path))?;
    let read = |slot: u32, name: String| -> Result<RuleCounters, FirewallError> {
        let per_cpu = counters
            .get(&(bank * COUNTERS_PER_BANK + slot), 0)
            .map_err(FirewallError::map("read", maps::COUNTERS, &counters_path))?;
        Ok(RuleCounters {
            name,
            packets: per_cpu.iter().map(|counter| counter.packets).sum(),
            bytes: per_cpu.iter().map(|counter| counter.bytes).sum(),
        })
    };
    let default = read(0, "default".to_string())?;
    let mut rules = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        // An empty name: a rule `rule del` took out.
        if !name.is_empty() {
            rules.push(read(index as u32 + 1, name)?);
        }
    }
    let info = state.banks[bank as usize];
    Ok(Status {
        iface: site.name.clone(),
        bank,
        masks: info.masks,
        default_verdict: if info.default_verdict == verdict::DROP {
            "drop"
        } else {
            "accept"
        },
        default,
        rules,
        conntrack: conntrack::table_status()?,
    })
}

/// Removes the firewall from `iface`: the module leaves the chain, the egress tracker is
/// detached, the pins go; the node's conntrack table goes with the last firewall
/// ([`release_node_tables`]).
pub fn remove(iface: &str) -> Result<(), FirewallError> {
    let site = Site::iface(iface);
    let _lock = site.lock()?;
    if let Some(chain) = builtin::chain_summary(iface).map_err(|source| FirewallError::Module {
        iface: iface.to_string(),
        source: Box::new(source),
    })? && chain.program_of(FIREWALL_MODULE).is_some()
    {
        offload::modules::unload(iface, FIREWALL_MODULE).map_err(|source| {
            FirewallError::Module {
                iface: iface.to_string(),
                source: Box::new(source),
            }
        })?;
    }
    for dir in [site.pins, site.run] {
        match fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(FirewallError::Pin {
                    action: "remove",
                    path: dir,
                    source: error,
                });
            }
            _ => {}
        }
    }
    release_node_tables()
}
