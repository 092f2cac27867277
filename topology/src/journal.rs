//! The journal of an apply: `<run>/topology/<name>/apply.json`, the record the apply is
//! about to switch to and the record it switches from, written just before the switch
//! and removed once the new record is written. A command killed in between (Ctrl-C,
//! SIGKILL, a crash) leaves it, and the next command that changes the topology reads the
//! kernel's revision to know which side of the switch it stopped on:
//! - switched: it finishes the apply (what the new file dropped goes) and writes the new
//!   record;
//! - not switched: it takes back what the apply staged (new instances' programs and pins,
//!   new interfaces' chain modules, swapped instances' builds), and the old record stands.
//!
//! Readers (`show`, `route show`, `fdb show`) see the new record as soon as the kernel
//! runs it.

use serde::{Deserialize, Serialize};

use crate::{
    TopologyError, apply, pins, program,
    record::{self, Record},
};

/// What an apply switches from and to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    /// The record of the revision the apply switches to.
    pub next: Record,
    /// The record of the running revision; None for a topology's first apply.
    pub previous: Option<Record>,
}

fn path(name: &str) -> std::path::PathBuf {
    record::run_dir(name).join("apply.json")
}

impl Journal {
    /// Writes it (a new file renamed into place) before the switch.
    pub fn write(&self) -> Result<(), TopologyError> {
        record::write_json(&path(&self.next.name), self)
    }

    /// After its switch: what the new record dropped goes (`apply::finish`), the new
    /// record is written, and the journal goes. Returns the steps that failed.
    pub fn complete(&self) -> Result<Vec<String>, TopologyError> {
        let name = &self.next.name;
        let unfinished = apply::finish(name, self.previous.as_ref(), &self.next);
        self.next.write()?;
        Journal::remove(name)?;
        Ok(unfinished)
    }

    /// The journal a killed apply of topology `name` left, if any.
    pub fn read(name: &str) -> Result<Option<Journal>, TopologyError> {
        record::read_json(&path(name))
    }

    /// Removes it: the record says what runs.
    pub fn remove(name: &str) -> Result<(), TopologyError> {
        match std::fs::remove_file(path(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(TopologyError::pin("remove", &path(name))(error))
            }
            _ => Ok(()),
        }
    }

    /// Whether the kernel runs its new revision (the switch was made).
    pub fn switched(&self) -> bool {
        apply::read_state(&self.next.name).is_ok_and(|state| state.revision == self.next.revision)
    }
}

/// Finishes or takes back the apply a killed command left of topology `name` (see the
/// module's doc); the caller holds the topology's lock. Returns the steps that failed.
pub fn recover(name: &str) -> Result<Vec<String>, TopologyError> {
    let Some(journal) = Journal::read(name)? else {
        return Ok(Vec::new());
    };
    if journal.switched() {
        return journal.complete();
    }
    take_back(name, journal.previous.as_ref(), &journal.next);
    Journal::remove(name)?;
    Ok(Vec::new())
}

/// Undoes what an apply from `previous` to `next` staged before a switch it never made.
fn take_back(name: &str, previous: Option<&Record>, next: &Record) {
    let known = |iface: &record::RecordIface| {
        previous.is_some_and(|previous| previous.ifaces.contains(iface))
    };
    for iface in next.ifaces.iter().filter(|iface| !known(iface)) {
        let _ = apply::leave_iface(name, iface);
    }
    let Some(previous) = previous else {
        // Nothing ran: nothing of this topology stays.
        let _ = pins::remove_dir(&pins::topology_dir(name));
        let _ = std::fs::remove_dir(pins::topologies_dir());
        return;
    };
    for instance in &next.instances {
        match previous.instance(&instance.name) {
            Some(before) if before.id == instance.id => {
                // A swapped build: its staged pin goes, the running build takes its slot
                // back (the switch puts swapped builds in their slots first).
                program::discard_pin(name, &instance.name);
                if let Ok(running) = program::pinned(name, &instance.name) {
                    let _ = program::install(name, instance.id, &running);
                }
            }
            _ => {
                if !previous
                    .instances
                    .iter()
                    .any(|before| before.id == instance.id)
                {
                    let _ = program::uninstall(name, instance.id);
                }
                if previous.instance(&instance.name).is_none() {
                    let _ = pins::remove_dir(&pins::instance_dir(name, &instance.name));
                }
            }
        }
    }
}
