//! A topology file (`topology::TopologyFile::parse`) on any text, interfaces named `veth*`
//! known, then its plan against nothing running. Checked: an error naming a line names
//! one inside the text; a file that reads has unique instance names, links that name each
//! other both ways, at most one port per interface; planning it never panics and gives
//! every instance a distinct id.

#![no_main]

use std::{collections::HashSet, path::Path};

use libfuzzer_sys::fuzz_target;
use topology::{Peer, TopologyError, TopologyFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1) + 1;
    match TopologyFile::parse(Path::new("topo.toml"), text, |iface| {
        iface.starts_with("veth")
    }) {
        Ok(file) => {
            let names: HashSet<&str> = file.instances.iter().map(|i| i.name.as_str()).collect();
            assert_eq!(names.len(), file.instances.len(), "names are unique");
            let mut ifaces = HashSet::new();
            for instance in &file.instances {
                for port in &instance.ports {
                    match &port.peer {
                        Peer::Iface(iface) => assert!(ifaces.insert(iface.clone()), "{iface} once"),
                        Peer::Instance {
                            instance: other,
                            port: other_port,
                        } => {
                            let back = file
                                .instance(other)
                                .and_then(|peer| peer.port(other_port))
                                .expect("links name known ports");
                            assert_eq!(
                                back.peer,
                                Peer::Instance {
                                    instance: instance.name.clone(),
                                    port: port.name.clone()
                                },
                                "links agree"
                            );
                        }
                    }
                }
            }
            let plan = topology::plan::plan(&file, None, &Default::default(), |iface| {
                Ok(iface.len() as u32)
            })
            .expect("a file that reads plans");
            let ids: HashSet<u32> = plan.instances.iter().map(|i| i.id).collect();
            assert_eq!(ids.len(), plan.instances.len(), "ids are distinct");
        }
        Err(TopologyError::File { line, .. }) => {
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
