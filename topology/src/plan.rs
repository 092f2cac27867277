//! What an apply does: the topology file against the record of what runs, as instance
//! ids, port numbers, links and interfaces, decided before anything is touched.
//!
//! An instance keeps its id (its slot in `TOPO_PROGS`, its maps, its counters) for as
//! long as a file names it with the same kind; its ports keep their numbers by name. A
//! new instance takes the lowest id no running instance holds, so the running bank never
//! sees a slot change under it.

use std::collections::{BTreeSet, HashMap};

use offload_common::topology::{Link, MAX_INSTANCE_PORTS, MAX_INSTANCES, PortRef, link_kind};
use serde::Serialize;

use crate::{
    Kind, Peer, TopologyError, TopologyFile,
    record::{Record, RecordIface, RecordInstance},
};

/// What happens to an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new instance: its program is loaded, its maps made.
    Added,
    /// Runs on as it is: program, maps and counters kept (its settings rewritten).
    Kept,
    /// Its program is swapped for another build in one update of its slot; its maps are
    /// kept.
    Swapped,
}

/// One instance of the new topology.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedInstance {
    /// Its name.
    pub name: String,
    /// Its slot in `TOPO_PROGS`.
    pub id: u32,
    /// What it runs.
    pub kind: Kind,
    /// Its ports' numbers, in the file's order.
    pub ports: Vec<(String, u32)>,
    /// What happens to it.
    pub change: Change,
    /// The digest of the program it will run.
    pub digest: String,
}

impl PlannedInstance {
    /// The number of the port `name`.
    pub fn port(&self, name: &str) -> Option<u32> {
        self.ports
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, number)| *number)
    }
}

/// An interface of the new topology.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedIface {
    /// Its name.
    pub iface: String,
    /// Its index in the network namespace.
    pub ifindex: u32,
    /// The instance port it feeds.
    #[serde(serialize_with = "port_ref")]
    pub feeds: PortRef,
    /// Whether the topology joins it with this apply (its chain gets the module
    /// `topology`).
    pub added: bool,
}

fn port_ref<S: serde::Serializer>(port: &PortRef, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut value = serializer.serialize_struct("PortRef", 2)?;
    value.serialize_field("instance", &port.instance)?;
    value.serialize_field("port", &port.port)?;
    value.end()
}

/// Everything an apply changes.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The new topology's instances, in the file's order.
    pub instances: Vec<PlannedInstance>,
    /// Running instances the new topology drops (or replaces with one of another kind).
    pub removed: Vec<RecordInstance>,
    /// Every port's connection: (instance id, port number, link).
    #[serde(skip)]
    pub links: Vec<(u32, u32, Link)>,
    /// The interfaces the new topology joins.
    pub ifaces: Vec<PlannedIface>,
    /// Interfaces the running topology joins and the new one does not.
    pub dropped_ifaces: Vec<RecordIface>,
}

impl Plan {
    /// Whether the apply changes nothing but settings.
    pub fn is_unchanged(&self) -> bool {
        self.removed.is_empty()
            && self.dropped_ifaces.is_empty()
            && self.ifaces.iter().all(|iface| !iface.added)
            && self
                .instances
                .iter()
                .all(|instance| instance.change == Change::Kept)
    }

    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&PlannedInstance> {
        self.instances.iter().find(|instance| instance.name == name)
    }
}

/// Plans `file` against `running` (None: nothing runs). `digests` gives the digest of the
/// program each instance of the file will run; `ifindex` an interface's index.
pub fn plan(
    file: &TopologyFile,
    running: Option<&Record>,
    digests: &HashMap<String, String>,
    ifindex: impl Fn(&str) -> Result<u32, TopologyError>,
) -> Result<Plan, TopologyError> {
    let empty = Vec::new();
    let old = running.map_or(&empty, |record| &record.instances);
    let held: BTreeSet<u32> = old.iter().map(|instance| instance.id).collect();
    let mut free = (0..MAX_INSTANCES).filter(|id| !held.contains(id));
    let mut instances = Vec::with_capacity(file.instances.len());
    let mut removed = Vec::new();
    for wanted in &file.instances {
        let digest = digests.get(&wanted.name).cloned().unwrap_or_default();
        let before = old.iter().find(|known| known.name == wanted.name);
        if let Some(before) = before
            && before.kind != wanted.kind
        {
            // Its pins are named after it and the running bank uses them until the switch.
            return Err(TopologyError::File {
                file: file.path.clone(),
                line: wanted.line,
                message: format!(
                    "{}: runs as a {}; an instance changes kind under another name (or after a file without it)",
                    wanted.name,
                    before.kind.name()
                ),
            });
        }
        let (id, change, mut ports) = match before {
            Some(before) => (
                before.id,
                if before.digest == digest {
                    Change::Kept
                } else {
                    Change::Swapped
                },
                before
                    .ports
                    .iter()
                    .filter(|(name, _)| wanted.port(name).is_some())
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            None => {
                let id = free.next().ok_or_else(|| {
                    TopologyError::Request(format!(
                        "{}: line {}: no free instance slot for {}: {} running instances and the new ones exceed {MAX_INSTANCES}; apply a file without it first",
                        file.path.display(),
                        wanted.line,
                        wanted.name,
                        old.len()
                    ))
                })?;
                (id, Change::Added, Vec::new())
            }
        };
        let mut numbers: BTreeSet<u32> = ports.iter().map(|(_, number)| *number).collect();
        for port in &wanted.ports {
            if ports.iter().any(|(name, _)| *name == port.name) {
                continue;
            }
            let number = (0..MAX_INSTANCE_PORTS)
                .find(|number| !numbers.contains(number))
                .expect("the file holds at most MAX_INSTANCE_PORTS ports");
            numbers.insert(number);
            ports.push((port.name.clone(), number));
        }
        // The file's order, for display.
        ports.sort_by_key(|(name, _)| wanted.ports.iter().position(|port| port.name == *name));
        instances.push(PlannedInstance {
            name: wanted.name.clone(),
            id,
            kind: wanted.kind,
            ports,
            change,
            digest,
        });
    }
    for before in old {
        if !instances
            .iter()
            .any(|instance| instance.name == before.name && instance.id == before.id)
        {
            removed.push(before.clone());
        }
    }

    let by_name: HashMap<&str, &PlannedInstance> = instances
        .iter()
        .map(|instance| (instance.name.as_str(), instance))
        .collect();
    let mut links = Vec::new();
    let mut ifaces = Vec::new();
    let running_ifaces = running.map_or(&[][..], |record| &record.ifaces[..]);
    for wanted in &file.instances {
        let planned = by_name[wanted.name.as_str()];
        for port in &wanted.ports {
            let number = planned.port(&port.name).expect("planned above");
            let link = match &port.peer {
                Peer::Iface(iface) => {
                    let index = ifindex(iface)?;
                    ifaces.push(PlannedIface {
                        iface: iface.clone(),
                        ifindex: index,
                        feeds: PortRef {
                            instance: planned.id,
                            port: number,
                        },
                        added: !running_ifaces
                            .iter()
                            .any(|known| known.iface == *iface && known.ifindex == index),
                    });
                    Link {
                        kind: link_kind::IFACE,
                        ifindex: index,
                        peer: PortRef::default(),
                    }
                }
                Peer::Instance { instance, port } => {
                    let peer = by_name[instance.as_str()];
                    Link {
                        kind: link_kind::INSTANCE,
                        ifindex: 0,
                        peer: PortRef {
                            instance: peer.id,
                            port: peer.port(port).expect("checked by the file"),
                        },
                    }
                }
            };
            links.push((planned.id, number, link));
        }
    }
    let dropped_ifaces = running_ifaces
        .iter()
        .filter(|known| {
            !ifaces
                .iter()
                .any(|iface| iface.iface == known.iface && iface.ifindex == known.ifindex)
        })
        .cloned()
        .collect();
    Ok(Plan {
        instances,
        removed,
        links,
        ifaces,
        dropped_ifaces,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(text: &str) -> TopologyFile {
        TopologyFile::parse(Path::new("t.toml"), text, |_| true).unwrap()
    }

    const TWO: &str = r#"
[[instance]]
name = "br-a"
kind = "bridge"
ports = { p1 = "veth-a1", up = "r1:a" }
[[instance]]
name = "r1"
kind = "router"
ports = { a = "br-a:up" }
"#;

    const THREE: &str = r#"
[[instance]]
name = "br-c"
kind = "bridge"
ports = { up = "r1:c", p1 = "veth-c1" }
[[instance]]
name = "br-a"
kind = "bridge"
ports = { p0 = "veth-a0", p1 = "veth-a1", up = "r1:a" }
[[instance]]
name = "r1"
kind = "router"
ports = { c = "br-c:up", a = "br-a:up" }
"#;

    fn index(iface: &str) -> Result<u32, TopologyError> {
        Ok(iface.bytes().map(u32::from).sum())
    }

    fn record(plan: &Plan) -> Record {
        Record {
            name: "default".into(),
            revision: 1,
            instances: plan
                .instances
                .iter()
                .map(|instance| RecordInstance {
                    name: instance.name.clone(),
                    id: instance.id,
                    kind: instance.kind,
                    digest: instance.digest.clone(),
                    ports: instance.ports.clone(),
                    ..Default::default()
                })
                .collect(),
            ifaces: plan
                .ifaces
                .iter()
                .map(|iface| RecordIface {
                    iface: iface.iface.clone(),
                    ifindex: iface.ifindex,
                })
                .collect(),
        }
    }

    fn digests(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, digest)| (name.to_string(), digest.to_string()))
            .collect()
    }

    #[test]
    fn instances_keep_their_ids_and_ports_their_numbers_across_applies() {
        let first = plan(
            &file(TWO),
            None,
            &digests(&[("br-a", "b"), ("r1", "r")]),
            index,
        )
        .unwrap();
        assert_eq!(first.instance("br-a").unwrap().id, 0);
        assert_eq!(first.instance("r1").unwrap().id, 1);
        assert_eq!(
            first.instance("br-a").unwrap().ports,
            [("p1".into(), 0), ("up".into(), 1)]
        );
        assert!(first.ifaces.iter().all(|iface| iface.added));
        let running = record(&first);
        let second = plan(
            &file(THREE),
            Some(&running),
            &digests(&[("br-a", "b"), ("r1", "r2"), ("br-c", "b")]),
            index,
        )
        .unwrap();
        let br_a = second.instance("br-a").unwrap();
        assert_eq!((br_a.id, br_a.change), (0, Change::Kept));
        assert_eq!(
            br_a.ports,
            [("p0".into(), 2), ("p1".into(), 0), ("up".into(), 1)]
        );
        let r1 = second.instance("r1").unwrap();
        assert_eq!((r1.id, r1.change), (1, Change::Swapped));
        assert_eq!(r1.ports, [("c".into(), 1), ("a".into(), 0)]);
        let br_c = second.instance("br-c").unwrap();
        assert_eq!((br_c.id, br_c.change), (2, Change::Added));
        assert!(second.removed.is_empty());
        let added: Vec<&str> = second
            .ifaces
            .iter()
            .filter(|iface| iface.added)
            .map(|iface| iface.iface.as_str())
            .collect();
        assert_eq!(added, ["veth-c1", "veth-a0"]);
        // r1:c -> br-c:up
        let link = second
            .links
            .iter()
            .find(|(id, port, _)| (*id, *port) == (1, 1))
            .unwrap()
            .2;
        assert_eq!(link.kind, link_kind::INSTANCE);
        assert_eq!(
            link.peer,
            PortRef {
                instance: 2,
                port: 0
            }
        );
    }

    #[test]
    fn a_dropped_instance_frees_nothing_the_running_bank_uses() {
        let first = plan(&file(THREE), None, &digests(&[]), index).unwrap();
        let running = record(&first);
        // br-c goes; r2 comes.
        let next = r#"
[[instance]]
name = "br-a"
kind = "bridge"
ports = { p1 = "veth-a1", up = "r2:a" }
[[instance]]
name = "r2"
kind = "router"
ports = { a = "br-a:up" }
"#;
        let second = plan(&file(next), Some(&running), &digests(&[]), index).unwrap();
        let r2 = second.instance("r2").unwrap();
        assert_eq!(r2.change, Change::Added);
        assert_eq!(r2.id, 3, "not 0-2, which the running bank uses");
        let removed: Vec<&str> = second.removed.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(removed, ["br-c", "r1"]);
        let dropped: Vec<&str> = second
            .dropped_ifaces
            .iter()
            .map(|i| i.iface.as_str())
            .collect();
        assert_eq!(dropped, ["veth-c1", "veth-a0"]);
        assert!(!second.is_unchanged());
        let third = plan(&file(next), Some(&record(&second)), &digests(&[]), index).unwrap();
        assert!(third.is_unchanged());
        // r2 as a bridge: another kind under the same name is refused.
        let kind = next.replace(
            "name = \"r2\"\nkind = \"router\"",
            "name = \"r2\"\nkind = \"bridge\"",
        );
        let error = plan(&file(&kind), Some(&record(&second)), &digests(&[]), index).unwrap_err();
        assert!(
            error.to_string().contains("r2: runs as a router"),
            "{error}"
        );
    }
}
