//! The chain's history: a record of each revision (its number, when it was applied, by
//! which command, and its modules) and a copy of every module object those revisions ran,
//! so `chain rollback` can rebuild one and `chain diff` can compare two.
//!
//! It lives beside the chain's lock in `/run/fastpath/chains/<iface>/<chain>/` (bpffs
//! holds no plain files): `revisions/<n>.json` and `objects/<digest>.o`. A record is written before
//! its revision is switched to; records of revisions never switched to (a command that died
//! or failed) are removed by the next command. The last [`KEPT_REVISIONS`] are kept, and
//! the history goes with the chain when its last module is unloaded.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{ChainAt, ModuleError, ModuleObject, object::digest_hex};

/// How many revisions the history keeps, the running one included.
pub const KEPT_REVISIONS: usize = 10;

/// One revision of a chain, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// The revision's number.
    pub revision: u32,
    /// When it was applied, UNIX seconds.
    pub applied_at: u64,
    /// The command line that applied it.
    pub command: String,
    /// Its modules, in chain order.
    pub modules: Vec<RevisionModule>,
}

/// One module of a [`RevisionRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionModule {
    /// Its name in the chain.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The digest of its object (hex), the name of the object's copy in the history.
    pub digest: String,
}

/// The history of the chain on one interface.
pub(super) struct History {
    dir: PathBuf,
}

impl History {
    pub fn for_chain(at: ChainAt<'_>) -> History {
        History {
            dir: crate::run_lock::path("chains")
                .join(at.iface)
                .join(at.hook.dir_name()),
        }
    }

    fn revisions_dir(&self) -> PathBuf {
        self.dir.join("revisions")
    }

    fn objects_dir(&self) -> PathBuf {
        self.dir.join("objects")
    }

    /// Where the copy of the object with digest `digest` (hex) is kept.
    pub fn object_path(&self, digest: &str) -> PathBuf {
        self.objects_dir().join(format!("{digest}.o"))
    }

    /// Keeps a copy of `object` (once per digest).
    pub fn keep_object(&self, object: &ModuleObject) -> Result<(), ModuleError> {
        let path = self.object_path(&digest_hex(&object.digest));
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, &object.bytes)
    }

    /// Writes the record of a revision about to be switched to.
    pub fn record(&self, record: &RevisionRecord) -> Result<(), ModuleError> {
        let path = self
            .revisions_dir()
            .join(format!("{}.json", record.revision));
        let text = serde_json::to_vec_pretty(record).map_err(|error| ModuleError::History {
            action: "encode",
            path: path.clone(),
            source: error.into(),
        })?;
        write_atomically(&path, &text)
    }

    /// The kept revisions, oldest first. A record that cannot be read is skipped: the
    /// history is an aid, the running chain does not depend on it.
    pub fn revisions(&self) -> Vec<RevisionRecord> {
        let mut records: Vec<RevisionRecord> = fs::read_dir(self.revisions_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        records.sort_by_key(|record| record.revision);
        records
    }

    /// The record of `revision`, or an error naming the revisions kept.
    pub fn revision(&self, iface: &str, revision: u32) -> Result<RevisionRecord, ModuleError> {
        let records = self.revisions();
        records
            .iter()
            .find(|record| record.revision == revision)
            .cloned()
            .ok_or_else(|| ModuleError::NoRevision {
                iface: iface.to_string(),
                revision,
                kept: if records.is_empty() {
                    "none".to_string()
                } else {
                    records
                        .iter()
                        .map(|record| record.revision.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Reads the objects of `record` back from the history.
    pub fn objects_of(
        &self,
        iface: &str,
        record: &RevisionRecord,
    ) -> Result<Vec<(String, ModuleObject)>, ModuleError> {
        record
            .modules
            .iter()
            .map(|module| {
                let path = self.object_path(&module.digest);
                if !path.exists() {
                    return Err(ModuleError::HistoryObjectMissing {
                        iface: iface.to_string(),
                        revision: record.revision,
                        module: module.name.clone(),
                        file: path,
                    });
                }
                Ok((module.name.clone(), ModuleObject::read(&path)?))
            })
            .collect()
    }

    /// Removes records of revisions after `running` (never switched to), all but the last
    /// [`KEPT_REVISIONS`], and the objects no kept record names.
    pub fn prune(&self, running: u32) {
        let mut records = self.revisions();
        for record in records.iter().filter(|record| record.revision > running) {
            let _ = fs::remove_file(
                self.revisions_dir()
                    .join(format!("{}.json", record.revision)),
            );
        }
        records.retain(|record| record.revision <= running);
        let old = records.len().saturating_sub(KEPT_REVISIONS);
        for record in records.drain(..old) {
            let _ = fs::remove_file(
                self.revisions_dir()
                    .join(format!("{}.json", record.revision)),
            );
        }
        let named: Vec<PathBuf> = records
            .iter()
            .flat_map(|record| &record.modules)
            .map(|module| self.object_path(&module.digest))
            .collect();
        for entry in fs::read_dir(self.objects_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if !named.contains(&entry.path()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Forgets everything: the chain is gone. The interface's folder goes too when no
    /// other chain of it keeps a history there.
    pub fn clear(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(interface) = self.dir.parent() {
            let _ = fs::remove_dir(interface);
        }
    }

    /// Removes the histories of interfaces that have no chain pinned any more (a lab torn
    /// down, or an interface deleted, under a running chain): nothing reads them again.
    pub fn prune_orphans() {
        let pinned = crate::bpffs::Bpffs::get().fastpath_dir();
        let Ok(entries) = fs::read_dir(crate::run_lock::path("chains")) else {
            return;
        };
        for entry in entries.flatten() {
            let iface = entry.file_name().to_string_lossy().into_owned();
            if !pinned.join(crate::netns::pin_name(&iface)).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The command line of this process, as a revision record names it.
pub(super) fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                format!("{arg:?}")
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a
/// process killed mid-write) never leaves a half-written file under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModuleError> {
    let error = |action| {
        move |source: io::Error| ModuleError::History {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(error("create the folder of"))?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&temporary, bytes).map_err(error("write"))?;
    fs::rename(&temporary, path).map_err(error("rename into"))
}
