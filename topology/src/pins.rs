//! Where a topology lives in bpffs, and opening its maps.
//!
//! ```text
//! /sys/fs/bpf/fastpath/topology/<name>/maps/TOPO_*              the topology's maps
//! /sys/fs/bpf/fastpath/topology/<name>/instances/<instance>/MAP each instance's own maps
//! /sys/fs/bpf/fastpath/topology/<name>/instances/<instance>/prog its program
//! /run/fastpath/topology/<name>/record.json                     what runs (crate::record)
//! ```

use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData};
use offload::bpffs::Bpffs;

use crate::TopologyError;

/// The folder of every topology's pins.
pub fn topologies_dir() -> PathBuf {
    Bpffs::get().fastpath_dir().join("topology")
}

/// The folder of topology `name`'s pins.
pub fn topology_dir(name: &str) -> PathBuf {
    topologies_dir().join(name)
}

/// The folder of the topology's shared maps.
pub fn maps_dir(name: &str) -> PathBuf {
    topology_dir(name).join("maps")
}

/// The pin of the topology's map `map`.
pub fn map_pin(name: &str, map: &str) -> PathBuf {
    maps_dir(name).join(map)
}

/// The folder of an instance's maps and program.
pub fn instance_dir(name: &str, instance: &str) -> PathBuf {
    topology_dir(name).join("instances").join(instance)
}

/// The pin of an instance's program.
pub fn program_pin(name: &str, instance: &str) -> PathBuf {
    instance_dir(name, instance).join("prog")
}

/// Opens the map pinned at `path` (named `map` in errors).
pub fn open(path: &Path, map: &str) -> Result<Map, TopologyError> {
    let data = MapData::from_pin(path).map_err(TopologyError::map("open", map, path))?;
    Map::from_map_data(data).map_err(TopologyError::map("open", map, path))
}

/// Opens the map pinned at `path` as `T` (an aya map type).
pub fn open_as<T>(path: &Path, map: &str) -> Result<T, TopologyError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(open(path, map)?).map_err(TopologyError::map("open", map, path))
}

/// Removes `dir` and everything in it; a missing one is fine.
pub fn remove_dir(dir: &Path) -> Result<(), TopologyError> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(TopologyError::pin("remove", dir)(error))
        }
        _ => Ok(()),
    }
}
