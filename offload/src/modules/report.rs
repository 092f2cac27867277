//! What the module commands report: serialisable, printed by the CLI as tables or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AttachedAs, Hook};

/// What [`load`](super::load) did.
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
    pub attached: Option<AttachedAs>,
    /// What failed after the switch (the change took effect; the next command on the
    /// chain completes the rest).
    pub unfinished: Option<String>,
}

/// Which maps of the old version the new one took over in a [`swap`](super::swap).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MapHandover {
    /// Same name, type, key size, value size, max entries and flags: the contents survive.
    pub kept: Vec<String>,
    /// New, changed in shape, or holding programs or maps: they start empty.
    pub reset: Vec<String>,
    /// Maps of the old version the new one no longer has.
    pub dropped: Vec<String>,
}

/// What [`swap`](super::swap) did.
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
    /// What failed after the switch (the change took effect; the next command on the
    /// chain completes the rest).
    pub unfinished: Option<String>,
}

/// What [`unload`](super::unload) did.
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
    /// What failed after the switch (the change took effect; the next command on the
    /// chain completes the rest).
    pub unfinished: Option<String>,
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
    /// Nanoseconds it ran while the chain was profiled (from being handed a packet to its
    /// verdict, the hop into it included), summed over the CPUs.
    pub run_ns: u64,
    /// `run_ns` per packet it decided on; none before any profiled packet. Packets counted
    /// while profiling was off dilute it: compare two listings to measure a window.
    pub ns_per_packet: Option<f64>,
}

/// What [`list`](super::list) shows.
#[derive(Clone, Debug, Serialize)]
pub struct ChainListing {
    /// The interface.
    pub iface: String,
    /// The hook the chain runs on.
    pub hook: Hook,
    /// The running revision.
    pub revision: u32,
    /// When it was switched to, UNIX seconds.
    pub applied_at: u64,
    /// Whether the chain's programs handle multi-buffer frames.
    pub frags: bool,
    /// Whether each module's run time is being counted (`module profile`).
    pub profiling: bool,
    /// The modules in order.
    pub modules: Vec<ModuleEntry>,
    /// Packets passed because the chain was empty.
    pub empty_chain_passes: u64,
    /// Packets passed because the last module continued (or a tail call failed).
    pub chain_end_passes: u64,
}

/// How a module fares in a change of revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It joins the chain.
    Added,
    /// It leaves the chain.
    Removed,
    /// Another build of it replaces the running one (maps of matching shape kept).
    Swapped,
    /// It runs as it was, at another place.
    Moved,
    /// It runs as it was, where it was.
    Unchanged,
}

impl Change {
    /// The word the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Swapped => "swapped",
            Change::Moved => "moved",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One module of a change of revision.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleChange {
    /// Its name.
    pub name: String,
    /// What happens to it.
    pub change: Change,
    /// Its place in the new revision, from 0 (none when removed).
    pub order: Option<usize>,
    /// Its place in the old revision (none when added).
    pub old_order: Option<usize>,
    /// Its version in the new revision.
    pub version: Option<String>,
    /// Its version in the old revision.
    pub old_version: Option<String>,
    /// For a swap: the maps handed over (known once the change is made, or planned).
    pub maps: Option<MapHandover>,
}

/// What [`apply`](super::apply) and [`rollback`](super::rollback) did, or with `--check`
/// would do.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// The interface.
    pub iface: String,
    /// The revision switched to; none when only checked, or nothing changed.
    pub revision: Option<u32>,
    /// Each module's change, new order first, removed ones last.
    pub changes: Vec<ModuleChange>,
    /// The mode the chain's entry was attached in, when this command attached it.
    pub attached: Option<AttachedAs>,
    /// The new chain holds no module, so its entry was detached.
    pub chain_detached: bool,
    /// What failed after the switch (the change took effect; the next command on the
    /// chain completes the rest).
    pub unfinished: Option<String>,
    /// With `--check`: the candidate chain run on sample packets.
    pub check: Option<super::trial::Trial>,
}

impl Applied {
    /// A report of no change on `iface`, to fill in.
    pub(super) fn nothing(iface: String) -> Applied {
        Applied {
            iface,
            revision: None,
            changes: Vec::new(),
            attached: None,
            chain_detached: false,
            unfinished: None,
            check: None,
        }
    }
}

/// What [`diff`](super::diff) shows.
#[derive(Clone, Debug, Serialize)]
pub struct ChainDiff {
    /// The interface.
    pub iface: String,
    /// What is compared from ("revision 3").
    pub from: String,
    /// What is compared to ("revision 4", or the chain file).
    pub to: String,
    /// Each module's change.
    pub changes: Vec<ModuleChange>,
}

/// What [`show`](super::show) shows: the running chain and its history.
#[derive(Clone, Debug, Serialize)]
pub struct ChainShow {
    /// The running chain.
    pub chain: ChainListing,
    /// The revisions kept, oldest first.
    pub history: Vec<super::history::RevisionRecord>,
}
