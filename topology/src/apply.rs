//! `topology apply`: a topology file made the running topology in one switch; and
//! `topology down`.
//!
//! 1. Read every instance's program, plan against the record (ids, port numbers).
//! 2. Stage: the topology's maps made at their pins (the first time); new instances'
//!    programs loaded with their maps pinned, swapped instances' new builds loaded with
//!    the running maps; settings written; each new interface in `TOPO_TX`; the idle bank
//!    of `TOPO_LINKS` and `TOPO_IFACES` filled; the built-in module `topology` put last
//!    on each new interface's chain (it passes packets on until the bank knows the
//!    interface); new instances' programs in their slots.
//! 3. Switch: the journal written (journal.rs), swapped instances' slots updated, then
//!    one update of `TOPO_STATE`.
//! 4. After a grace delay: dropped instances' slots emptied and their pins removed,
//!    dropped interfaces' `topology` modules unloaded, settings the new file dropped
//!    removed, the record written, the journal removed.
//!
//! A failure in 1 or 2 undoes what 2 did and leaves the running topology as it was. A
//! command killed in 3 or 4 leaves the journal, and the next one finishes or takes back
//! its apply.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use aya::maps::{Array, DevMapHash, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use offload::{
    bpffs::Bpffs,
    mode::XdpMode,
    modules::{ModuleError, ModuleObject, Position, builtin},
};
use offload_common::topology::{
    BANKS, IfaceKey, Link, MAX_INSTANCE_PORTS, MAX_INSTANCES, PortRef, PortStats, TopologyState,
    link_index, maps, port_index,
};
use serde::Serialize;

use crate::{
    Kind, Peer, TopologyError, TopologyFile,
    journal::{self, Journal},
    pins,
    plan::{Change, Plan, plan},
    program::{self, LoadedProgram},
    record::{self, Record, RecordIface, RecordInstance},
    settings::{self, Written},
    tc_link,
};

/// How long the old bank stays readable after a switch: a packet reads the bank once at
/// the entry and crosses the topology in microseconds.
const GRACE: Duration = Duration::from_millis(20);

/// What `apply` did (or, checked, would do).
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// The topology's name.
    pub name: String,
    /// The revision now running; None with `--check`.
    pub revision: Option<u32>,
    /// Whether this was a check only.
    pub checked: bool,
    /// The plan.
    pub plan: Plan,
    /// Steps after the switch that failed: the new topology runs, and these are left for
    /// the next apply or `down` to clean.
    pub unfinished: Vec<String>,
}

/// The index of `iface` in the network namespace the process runs in.
pub fn ifindex(iface: &str) -> Result<u32, TopologyError> {
    nix::net::if_::if_nametoindex(iface).map_err(|errno| TopologyError::Iface {
        iface: iface.to_string(),
        reason: format!("no such interface in this network namespace ({errno})"),
    })
}

/// Reads the topology file at `path`, checking its interfaces against this network
/// namespace.
pub fn read(path: &std::path::Path) -> Result<TopologyFile, TopologyError> {
    TopologyFile::read(path, |iface| ifindex(iface).is_ok())
}

/// Makes `file` the running topology (see the module's doc); with `check`, plans only.
pub fn apply(file: &TopologyFile, check: bool) -> Result<Applied, TopologyError> {
    let mut objects: HashMap<String, ModuleObject> = HashMap::new();
    for instance in &file.instances {
        objects.insert(instance.name.clone(), program::object_for(instance)?);
    }
    let digests: HashMap<String, String> = objects
        .iter()
        .map(|(name, object)| (name.clone(), program::hex(&object.digest)))
        .collect();
    let _lock = if check {
        None
    } else {
        Some(record::lock(&file.name)?)
    };
    let mut firewall_rules: HashMap<String, settings::FirewallRules> = HashMap::new();
    for instance in &file.instances {
        if let Some(rules) = settings::read_firewall_rules(instance)? {
            firewall_rules.insert(instance.name.clone(), rules);
        }
    }
    // An apply a killed command left is finished or taken back first.
    let recovered = if check {
        Vec::new()
    } else {
        journal::recover(&file.name)?
    };
    let running = Record::read(&file.name)?;
    let plan = plan(file, running.as_ref(), &digests, ifindex)?;
    refuse_shared_ifaces(file)?;
    let mut applied = Applied {
        name: file.name.clone(),
        revision: None,
        checked: check,
        plan,
        unfinished: recovered,
    };
    if check {
        return Ok(applied);
    }
    Bpffs::get()
        .ready_for_pins(true)
        .map_err(|source| TopologyError::Bpffs {
            source: Box::new(source),
        })?;
    let maps_dir = pins::maps_dir(&file.name);
    std::fs::create_dir_all(&maps_dir).map_err(TopologyError::pin("mkdir", &maps_dir))?;
    create_maps(&file.name)?;

    let mut staged = Staged::default();
    let result = stage(
        file,
        &applied.plan,
        running.as_ref(),
        &objects,
        &firewall_rules,
        &mut staged,
    );
    let undo = |staged: &Staged| {
        staged.undo(&file.name);
        if running.is_none() {
            // Nothing ran: nothing of this topology stays.
            let _ = pins::remove_dir(&pins::topology_dir(&file.name));
            let _ = std::fs::remove_dir(pins::topologies_dir());
        }
    };
    let written = match result {
        Ok(written) => written,
        Err(error) => {
            undo(&staged);
            return Err(error);
        }
    };
    let revision = match read_state(&file.name) {
        Ok(state) => state.revision + 1,
        Err(error) => {
            undo(&staged);
            return Err(error);
        }
    };
    let next = Record {
        name: file.name.clone(),
        revision,
        instances: applied
            .plan
            .instances
            .iter()
            .map(|planned| {
                let instance = file.instance(&planned.name).expect("planned from the file");
                let object = &objects[&planned.name];
                let written = written.get(&planned.name).cloned().unwrap_or_default();
                RecordInstance {
                    name: planned.name.clone(),
                    id: planned.id,
                    kind: planned.kind,
                    module: instance.module.clone(),
                    version: object.version.clone(),
                    digest: planned.digest.clone(),
                    ports: planned.ports.clone(),
                    peers: instance
                        .ports
                        .iter()
                        .map(|port| (port.name.clone(), port.peer.to_string()))
                        .collect(),
                    routes: written.routes,
                    fdb: written.fdb,
                    addresses: written.addresses,
                    rules_digest: written.rules_digest,
                }
            })
            .collect(),
        ifaces: applied
            .plan
            .ifaces
            .iter()
            .map(|iface| RecordIface {
                iface: iface.iface.clone(),
                ifindex: iface.ifindex,
            })
            .collect(),
    };
    // The journal first: a command killed from here on is finished or taken back by the
    // next one (journal.rs).
    let journal = Journal {
        next,
        previous: running.clone(),
    };
    if let Err(error) = journal.write() {
        undo(&staged);
        return Err(error);
    }
    offload::kill_point::reached("topology:before-switch");
    if let Err(error) = switch(&file.name, &staged, revision) {
        undo(&staged);
        let _ = Journal::remove(&file.name);
        return Err(error);
    }
    offload::kill_point::reached("topology:after-switch");
    applied.revision = Some(revision);
    std::thread::sleep(GRACE);
    applied.unfinished.extend(journal.complete()?);
    Ok(applied)
}

/// Refuses an interface another topology runs on: its chain's `topology` module is bound
/// to that topology's maps.
fn refuse_shared_ifaces(file: &TopologyFile) -> Result<(), TopologyError> {
    for other in record::names() {
        if other == file.name {
            continue;
        }
        let Some(record) = Record::read(&other)? else {
            continue;
        };
        for (iface, instance, port) in file.ifaces() {
            if record
                .ifaces
                .iter()
                .any(|known| known.iface == iface && ifindex(iface).ok() == Some(known.ifindex))
            {
                return Err(TopologyError::File {
                    file: file.path.clone(),
                    line: port.line,
                    message: format!(
                        "{}:{}: the interface {iface} is in the running topology {other}; an interface belongs to one topology (`fastpath topology down --name {other}` frees it)",
                        instance.name, port.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Makes the topology's maps at their pins (kept when there) from the `topology`
/// module's object, which declares them all.
fn create_maps(topology: &str) -> Result<(), TopologyError> {
    let object = builtin::topology_module().map_err(|source| TopologyError::Chain {
        iface: "(none)".into(),
        source: Box::new(source),
    })?;
    let mut loader = aya::EbpfLoader::new();
    let bound: Vec<(&str, PathBuf)> = maps::ALL
        .iter()
        .map(|map| (*map, pins::map_pin(topology, map)))
        .collect();
    for (map, pin) in &bound {
        loader.map_pin_path(map, pin.as_path());
    }
    loader
        .load(&object.bytes)
        .map_err(|error| TopologyError::Map {
            action: "create",
            map: "TOPO_*".into(),
            path: pins::maps_dir(topology),
            reason: offload::error_chain(&error),
        })?;
    Ok(())
}

/// What staging did, to undo it or to finish it.
#[derive(Default)]
struct Staged {
    /// Programs loaded for new instances: (name, id, program).
    added: Vec<(String, u32, LoadedProgram)>,
    /// New builds of swapped instances: (name, id, program).
    swapped: Vec<(String, u32, LoadedProgram)>,
    /// Interfaces whose chain got the `topology` module.
    chains: Vec<String>,
    /// Interfaces whose TC program this apply attached.
    tc: Vec<String>,
    /// Interfaces put in `TOPO_TX`.
    tx: Vec<u32>,
}

impl Staged {
    /// Undoes staging; best effort (the running topology never used any of it).
    fn undo(&self, topology: &str) {
        for iface in &self.chains {
            let _ = offload::modules::unload(iface.as_str(), builtin::TOPOLOGY_MODULE);
        }
        for iface in &self.tc {
            tc_link::detach(topology, iface);
        }
        if let Ok(mut tx) =
            pins::open_as::<DevMapHash<MapData>>(&pins::map_pin(topology, maps::TX), maps::TX)
        {
            for ifindex in &self.tx {
                let _ = tx.remove(*ifindex);
            }
        }
        for (name, id, _) in &self.added {
            let _ = program::uninstall(topology, *id);
            let _ = pins::remove_dir(&pins::instance_dir(topology, name));
        }
        for (name, _, _) in &self.swapped {
            program::discard_pin(topology, name);
        }
    }
}

/// Step 2 of the module's doc. Returns what settings each instance got.
fn stage(
    file: &TopologyFile,
    plan: &Plan,
    running: Option<&Record>,
    objects: &HashMap<String, ModuleObject>,
    firewall_rules: &HashMap<String, settings::FirewallRules>,
    staged: &mut Staged,
) -> Result<HashMap<String, Written>, TopologyError> {
    let topology = &file.name;
    for planned in &plan.instances {
        let object = &objects[&planned.name];
        match planned.change {
            Change::Added => {
                // Leftovers of an instance of this name that a crash left: not running.
                pins::remove_dir(&pins::instance_dir(topology, &planned.name))?;
                let loaded = program::load(topology, &planned.name, object).inspect_err(|_| {
                    let _ = pins::remove_dir(&pins::instance_dir(topology, &planned.name));
                })?;
                staged
                    .added
                    .push((planned.name.clone(), planned.id, loaded));
            }
            Change::Swapped => {
                let loaded = program::load(topology, &planned.name, object)?;
                staged
                    .swapped
                    .push((planned.name.clone(), planned.id, loaded));
            }
            Change::Kept => {}
        }
    }
    // Counters of ports new to their slot start at zero.
    zero_new_ports(topology, plan, running)?;

    let mut written = HashMap::new();
    for planned in &plan.instances {
        let instance = file.instance(&planned.name).expect("planned from the file");
        let before = running.and_then(|record| record.instance(&planned.name));
        let settings = match instance.kind {
            Kind::Router => settings::write_router(
                file,
                topology,
                instance,
                planned,
                before,
                |port, number| match &instance.port(port).expect("planned from the file").peer {
                    Peer::Iface(iface) => {
                        nic::link::mac(iface).map_err(|error| TopologyError::Iface {
                            iface: iface.clone(),
                            reason: format!("read its MAC: {error}"),
                        })
                    }
                    Peer::Instance { .. } => {
                        Ok(settings::instance_port_mac(topology, planned.id, number))
                    }
                },
            )?,
            Kind::Bridge => {
                settings::write_bridge(file, topology, instance, planned, plan, ifindex)?
            }
            Kind::Firewall => match firewall_rules.get(&planned.name) {
                Some(rules) => settings::write_firewall(topology, planned, rules, before)?,
                None => Written::default(),
            },
            Kind::Lb => crate::lb::write_lb(topology, planned, &instance.lb, before)?,
            Kind::Module => Written::default(),
        };
        written.insert(planned.name.clone(), settings);
    }

    let tx_path = pins::map_pin(topology, maps::TX);
    let mut tx: DevMapHash<MapData> = pins::open_as(&tx_path, maps::TX)?;
    for iface in &plan.ifaces {
        if tx.get(iface.ifindex, 0).is_err() {
            tx.insert(iface.ifindex, iface.ifindex, None, 0)
                .map_err(TopologyError::map("write", maps::TX, &tx_path))?;
            staged.tx.push(iface.ifindex);
        }
    }

    let state = read_state(topology)?;
    let idle = (state.revision + 1) % BANKS;
    fill_bank(topology, plan, idle)?;

    for iface in plan.ifaces.iter() {
        if tc_link::attach(topology, &iface.iface)? {
            staged.tc.push(iface.iface.clone());
        }
        let chain =
            builtin::chain_summary(&iface.iface).map_err(|source| TopologyError::Chain {
                iface: iface.iface.clone(),
                source: Box::new(source),
            })?;
        if chain
            .as_ref()
            .is_some_and(|chain| chain.program_of(builtin::TOPOLOGY_MODULE).is_some())
        {
            continue;
        }
        let object = builtin::topology_module().map_err(|source| TopologyError::Chain {
            iface: iface.iface.clone(),
            source: Box::new(source),
        })?;
        let bound: Vec<(String, PathBuf)> = maps::ALL
            .iter()
            .map(|map| (map.to_string(), pins::map_pin(topology, map)))
            .collect();
        builtin::load_bound(
            &iface.iface,
            object,
            &Position::Last,
            &bound,
            chain_modes(&iface.iface),
        )
        .map_err(|source| chain_error(&iface.iface, source))?;
        staged.chains.push(iface.iface.clone());
    }

    for (_, id, loaded) in &staged.added {
        program::install(topology, *id, &loaded.program)?;
    }
    Ok(written)
}

/// The XDP modes a topology's chain is attached in on `iface` when it starts the chain.
///
/// On a veth, generic (skb) mode: a frame redirected in native mode into a veth leaves as
/// an `xdp_frame`, which reaches the peer only when the peer runs NAPI (an XDP program
/// or GRO on the container's side, which the topology does not own), and loses the
/// socket buffer's checksum state, so a host's TCP with checksum offload (the default)
/// would see bad checksums. Generic mode redirects the socket buffer itself
/// (`dev_queue_xmit`), as Linux's own bridge and forwarding do. Elsewhere native first.
fn chain_modes(iface: &str) -> &'static [XdpMode] {
    match nic::ethtool::driver(iface) {
        Ok(driver) if driver == "veth" => &[XdpMode::Skb],
        _ => &[XdpMode::Drv, XdpMode::Skb],
    }
}

fn chain_error(iface: &str, source: ModuleError) -> TopologyError {
    TopologyError::Chain {
        iface: iface.to_string(),
        source: Box::new(source),
    }
}

pub(crate) fn read_state(topology: &str) -> Result<TopologyState, TopologyError> {
    let path = pins::map_pin(topology, maps::STATE);
    let state: Array<MapData, TopologyState> = pins::open_as(&path, maps::STATE)?;
    state
        .get(&0, 0)
        .map_err(TopologyError::map("read", maps::STATE, &path))
}

/// Writes every link and interface of `plan` into `bank`, and nothing else there.
fn fill_bank(topology: &str, plan: &Plan, bank: u32) -> Result<(), TopologyError> {
    let links_path = pins::map_pin(topology, maps::LINKS);
    let mut links: Array<MapData, Link> = pins::open_as(&links_path, maps::LINKS)?;
    let wanted: HashMap<(u32, u32), Link> = plan
        .links
        .iter()
        .map(|(id, port, link)| ((*id, *port), *link))
        .collect();
    for instance in 0..MAX_INSTANCES {
        for port in 0..MAX_INSTANCE_PORTS {
            let index = link_index(bank, instance, port).expect("in range");
            let link = wanted.get(&(instance, port)).copied().unwrap_or_default();
            links.set(index, link, 0).map_err(TopologyError::map(
                "write",
                maps::LINKS,
                &links_path,
            ))?;
        }
    }
    let ifaces_path = pins::map_pin(topology, maps::IFACES);
    let mut ifaces: BpfHashMap<MapData, IfaceKey, PortRef> =
        pins::open_as(&ifaces_path, maps::IFACES)?;
    let stale: Vec<IfaceKey> = ifaces
        .keys()
        .filter_map(Result::ok)
        .filter(|key| key.bank == bank)
        .collect();
    for key in stale {
        ifaces.remove(&key).map_err(TopologyError::map(
            "delete from",
            maps::IFACES,
            &ifaces_path,
        ))?;
    }
    for iface in &plan.ifaces {
        ifaces
            .insert(
                IfaceKey {
                    bank,
                    ifindex: iface.ifindex,
                },
                iface.feeds,
                0,
            )
            .map_err(TopologyError::map("write", maps::IFACES, &ifaces_path))?;
    }
    Ok(())
}

fn zero_new_ports(
    topology: &str,
    plan: &Plan,
    running: Option<&Record>,
) -> Result<(), TopologyError> {
    let path = pins::map_pin(topology, maps::PORT_STATS);
    let mut stats: PerCpuArray<MapData, PortStats> = pins::open_as(&path, maps::PORT_STATS)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| TopologyError::Pin {
        action: "count the CPUs in",
        path: "/sys/devices/system/cpu/possible".into(),
        source: error,
    })?;
    for planned in &plan.instances {
        let before = running.and_then(|record| record.instance(&planned.name));
        for (name, number) in &planned.ports {
            let kept = planned.change != Change::Added
                && before.is_some_and(|before| {
                    before
                        .ports
                        .iter()
                        .any(|(known, n)| known == name && n == number)
                });
            if kept {
                continue;
            }
            let index = port_index(planned.id, *number).expect("in range");
            let zero = PerCpuValues::try_from(vec![PortStats::default(); cpus])
                .map_err(TopologyError::map("zero", maps::PORT_STATS, &path))?;
            stats.set(index, zero, 0).map_err(TopologyError::map(
                "zero",
                maps::PORT_STATS,
                &path,
            ))?;
        }
    }
    Ok(())
}

/// Step 3: swapped instances' slots, then the one update that switches banks to
/// `revision`.
fn switch(topology: &str, staged: &Staged, revision: u32) -> Result<(), TopologyError> {
    let mut previous = Vec::new();
    for (name, id, loaded) in &staged.swapped {
        let old = program::pinned(topology, name)?;
        program::install(topology, *id, &loaded.program)?;
        previous.push((*id, old));
    }
    let path = pins::map_pin(topology, maps::STATE);
    let mut state: Array<MapData, TopologyState> = pins::open_as(&path, maps::STATE)?;
    let next = TopologyState {
        bank: revision % BANKS,
        revision,
    };
    // The switch: one update; the entry reads the state once per packet.
    if let Err(error) = state.set(0, next, 0) {
        for (id, old) in &previous {
            let _ = program::install(topology, *id, old);
        }
        return Err(TopologyError::map("write", maps::STATE, &path)(error));
    }
    Ok(())
}

/// Step 4: what the new topology (`next`) dropped of the one before it (`previous`) goes,
/// and the builds it staged become its instances' pins. Returns the steps that failed.
/// Every step is safe to run again: the journal's recovery runs it after a killed apply.
pub(crate) fn finish(topology: &str, previous: Option<&Record>, next: &Record) -> Vec<String> {
    let mut unfinished = Vec::new();
    let mut note = |result: Result<(), TopologyError>| {
        if let Err(error) = result {
            unfinished.push(error.to_string());
        }
    };
    for instance in &next.instances {
        if program::has_staged_pin(topology, &instance.name) {
            note(program::commit_pin(topology, &instance.name));
        }
    }
    let Some(previous) = previous else {
        return unfinished;
    };
    for before in &previous.instances {
        let now = next
            .instance(&before.name)
            .filter(|now| now.id == before.id);
        let Some(now) = now else {
            // Dropped (or its name taken by a new instance of another slot).
            program::firewall_site(topology, &before.name).forget();
            if !next.instances.iter().any(|now| now.id == before.id) {
                note(program::uninstall(topology, before.id));
            }
            if next.instance(&before.name).is_none() {
                note(pins::remove_dir(&pins::instance_dir(
                    topology,
                    &before.name,
                )));
            }
            continue;
        };
        let written = Written::from(now);
        match before.kind {
            Kind::Router => note(settings::clean_router(topology, before, &written)),
            Kind::Bridge => note(settings::clean_bridge(topology, before, &written)),
            _ => {}
        }
    }
    for dropped in previous
        .ifaces
        .iter()
        .filter(|iface| !next.ifaces.contains(iface))
    {
        note(leave_iface(topology, dropped));
    }
    // The old bank's interfaces: the next apply refills that bank whole anyway.
    note(clear_bank_ifaces(topology, (next.revision + 1) % BANKS));
    unfinished
}

/// Takes the topology off an interface: its chain's `topology` module, its `TOPO_TX`
/// entry. An interface that is gone needs neither.
pub(crate) fn leave_iface(topology: &str, iface: &RecordIface) -> Result<(), TopologyError> {
    tc_link::detach(topology, &iface.iface);
    let path = pins::map_pin(topology, maps::TX);
    if let Ok(mut tx) = pins::open_as::<DevMapHash<MapData>>(&path, maps::TX) {
        let _ = tx.remove(iface.ifindex);
    }
    if ifindex(&iface.iface).ok() != Some(iface.ifindex) {
        return Ok(());
    }
    let chain =
        builtin::chain_summary(&iface.iface).map_err(|source| chain_error(&iface.iface, source))?;
    if chain.is_some_and(|chain| chain.program_of(builtin::TOPOLOGY_MODULE).is_some()) {
        offload::modules::unload(iface.iface.as_str(), builtin::TOPOLOGY_MODULE)
            .map_err(|source| chain_error(&iface.iface, source))?;
    }
    Ok(())
}

fn clear_bank_ifaces(topology: &str, bank: u32) -> Result<(), TopologyError> {
    let path = pins::map_pin(topology, maps::IFACES);
    let mut ifaces: BpfHashMap<MapData, IfaceKey, PortRef> = pins::open_as(&path, maps::IFACES)?;
    let stale: Vec<IfaceKey> = ifaces
        .keys()
        .filter_map(Result::ok)
        .filter(|key| key.bank == bank)
        .collect();
    for key in stale {
        let _ = ifaces.remove(&key);
    }
    Ok(())
}

/// What `down` removed.
#[derive(Clone, Debug, Serialize)]
pub struct Down {
    /// The topology's name.
    pub name: String,
    /// The instances it ran.
    pub instances: Vec<String>,
    /// The interfaces it left.
    pub ifaces: Vec<String>,
}

/// Takes topology `name` down: every interface's `topology` module unloaded (the chain
/// goes with its last module), every pin and the record removed.
pub fn down(name: &str) -> Result<Down, TopologyError> {
    let _lock = record::lock(name)?;
    // A killed apply first, so that what it staged or switched to is taken down too; what
    // fails of that goes with the rest.
    if journal::recover(name).is_err() {
        let _ = Journal::remove(name);
    }
    let running = Record::read(name)?;
    let dir = pins::topology_dir(name);
    if running.is_none() && !dir.exists() {
        return Err(TopologyError::NotRunning {
            name: name.to_string(),
        });
    }
    let running = running.unwrap_or_default();
    for iface in &running.ifaces {
        leave_iface(name, iface)?;
    }
    pins::remove_dir(&dir)?;
    for instance in &running.instances {
        program::firewall_site(name, &instance.name).forget();
    }
    firewall::release_node_tables().map_err(|source| TopologyError::Firewall {
        instance: "(every firewall instance)".to_string(),
        source: Box::new(source),
    })?;
    // The parent folder goes with the last topology.
    let _ = std::fs::remove_dir(pins::topologies_dir());
    Record::remove(name)?;
    let _ = std::fs::remove_file(record::run_dir(name).with_extension("lock"));
    Ok(Down {
        name: name.to_string(),
        instances: running
            .instances
            .iter()
            .map(|instance| instance.name.clone())
            .collect(),
        ifaces: running
            .ifaces
            .iter()
            .map(|iface| iface.iface.clone())
            .collect(),
    })
}

/// What `swap` did.
#[derive(Clone, Debug, Serialize)]
pub struct SwappedInstance {
    /// The topology's name.
    pub name: String,
    /// The instance.
    pub instance: String,
    /// The version it ran.
    pub old_version: String,
    /// The version it runs now.
    pub new_version: String,
    /// The kernel's id of its new program.
    pub program_id: u32,
}

/// Swaps the program of `instance` of the running topology `name` for the build in
/// `path`, in one update of its slot; its maps (learned MACs, neighbours, routes,
/// counters) are kept, and a build whose maps have other shapes is refused before
/// anything changes. A later `apply` of a file naming the built-in program swaps back.
pub fn swap(
    name: &str,
    instance: &str,
    path: &std::path::Path,
) -> Result<SwappedInstance, TopologyError> {
    let _lock = record::lock(name)?;
    journal::recover(name)?;
    let mut record = Record::read(name)?.ok_or_else(|| TopologyError::NotRunning {
        name: name.to_string(),
    })?;
    let running = record.instance(instance).cloned().ok_or_else(|| {
        TopologyError::Request(format!(
            "topology {name} runs no instance {instance} (it runs: {})",
            record
                .instances
                .iter()
                .map(|known| known.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let spec = crate::Instance {
        name: instance.to_string(),
        line: 0,
        kind: running.kind,
        module: Some(path.to_path_buf()),
        ports: Vec::new(),
        router: Default::default(),
        bridge: Default::default(),
        rules: None,
        lb: Default::default(),
    };
    let object = program::object_for(&spec)?;
    let loaded = program::load(name, instance, &object)?;
    if let Err(error) = program::install(name, running.id, &loaded.program) {
        program::discard_pin(name, instance);
        return Err(error);
    }
    program::commit_pin(name, instance)?;
    let entry = record
        .instances
        .iter_mut()
        .find(|known| known.name == instance)
        .expect("found above");
    entry.module = Some(path.to_path_buf());
    entry.version = object.version.clone();
    entry.digest = program::hex(&object.digest);
    record.write()?;
    Ok(SwappedInstance {
        name: name.to_string(),
        instance: instance.to_string(),
        old_version: running.version,
        new_version: object.version,
        program_id: loaded.id,
    })
}
