//! The record of what a topology runs: `<run>/topology/<name>/record.json` (`<run>` is the
//! network namespace's run folder, `offload::netns::run_dir`),
//! written after each switch. bpffs holds no plain files, and the instance ids, port
//! numbers and the settings a file wrote are facts no map keeps whole.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Kind, TopologyError};

/// Where this network namespace's topologies keep their records and locks.
pub fn records_dir() -> PathBuf {
    offload::netns::run_dir().join("topology")
}

/// What a topology runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The topology's name.
    pub name: String,
    /// The running revision (its bank is revision % 2).
    pub revision: u32,
    /// Its instances.
    pub instances: Vec<RecordInstance>,
    /// The interfaces it joins.
    pub ifaces: Vec<RecordIface>,
}

/// A running instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordInstance {
    /// Its name.
    pub name: String,
    /// Its slot in `TOPO_PROGS`.
    pub id: u32,
    /// What it runs.
    pub kind: Kind,
    /// The object it runs when not its kind's built-in program.
    pub module: Option<PathBuf>,
    /// The version in the program's metadata.
    pub version: String,
    /// The digest of its program's object.
    pub digest: String,
    /// Its ports and their numbers.
    pub ports: Vec<(String, u32)>,
    /// What each port is connected to: (port, "iface" or "instance:port").
    #[serde(default)]
    pub peers: Vec<(String, String)>,
    /// The routes the file gave it (a router), "prefix#id": to remove those a later
    /// file drops while keeping the ones added by `fastpath router route add`, and to
    /// keep each one's id (its counters).
    #[serde(default)]
    pub routes: Vec<String>,
    /// The static FDB entries the file gave it (a bridge): "vlan/mac".
    #[serde(default)]
    pub fdb: Vec<String>,
    /// The addresses it answers for (a router): to clean its local table.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The digest of the rules it runs (a firewall) or of its VIPs and backends (a load
    /// balancer): a file that changes neither keeps what runs (the rules' counters, the
    /// running bank).
    #[serde(default)]
    pub rules_digest: Option<String>,
}

impl Default for RecordInstance {
    fn default() -> Self {
        RecordInstance {
            name: String::new(),
            id: 0,
            kind: Kind::Module,
            module: None,
            version: String::new(),
            digest: String::new(),
            ports: Vec::new(),
            peers: Vec::new(),
            routes: Vec::new(),
            fdb: Vec::new(),
            addresses: Vec::new(),
            rules_digest: None,
        }
    }
}

/// An interface a topology joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordIface {
    /// Its name.
    pub iface: String,
    /// Its index when the topology joined it.
    pub ifindex: u32,
}

/// The folder of topology `name`'s record and lock.
pub fn run_dir(name: &str) -> PathBuf {
    records_dir().join(name)
}

fn path(name: &str) -> PathBuf {
    run_dir(name).join("record.json")
}

impl Record {
    /// The record of topology `name`; None when it does not run. While an apply's journal
    /// is there and the kernel runs its new revision, the journal's new record (the file
    /// is written after the switch).
    pub fn read(name: &str) -> Result<Option<Record>, TopologyError> {
        if let Some(journal) = crate::journal::Journal::read(name)?
            && journal.switched()
        {
            return Ok(Some(journal.next));
        }
        read_json(&path(name))
    }

    /// Writes the record (a reader sees one whole: [`write_json`]).
    pub fn write(&self) -> Result<(), TopologyError> {
        write_json(&path(&self.name), self)
    }

    /// Removes the record and its folder.
    pub fn remove(name: &str) -> Result<(), TopologyError> {
        let dir = run_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(TopologyError::pin("remove", &dir)(error))
            }
            _ => Ok(()),
        }
    }

    /// The running instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&RecordInstance> {
        self.instances.iter().find(|instance| instance.name == name)
    }
}

/// Writes `value` as JSON at `path`: a new file in the same folder (made if missing),
/// renamed over the old, so a reader sees the old file or the new one, whole.
pub(crate) fn write_json<T: Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), TopologyError> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).map_err(TopologyError::pin("mkdir", dir))?;
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    let text = serde_json::to_string_pretty(value).expect("serializable");
    std::fs::write(&staged, text).map_err(TopologyError::pin("write", &staged))?;
    std::fs::rename(&staged, path).map_err(TopologyError::pin("rename", path))
}

/// The JSON file at `path`, parsed; None when there is none.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<Option<T>, TopologyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(TopologyError::pin("read", path)(error)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| TopologyError::Pin {
            action: "parse",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        })
}

/// The names of every topology with a record.
pub fn names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(records_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("record.json").exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Holds `<run>/topology/<name>.lock` while a command changes the topology.
pub fn lock(name: &str) -> Result<nix::fcntl::Flock<std::fs::File>, TopologyError> {
    let dir = records_dir();
    std::fs::create_dir_all(&dir).map_err(TopologyError::pin("mkdir", &dir))?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::File::create(&path).map_err(TopologyError::pin("open", &path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        TopologyError::Pin {
            action: "lock",
            path,
            source: errno.into(),
        }
    })
}
