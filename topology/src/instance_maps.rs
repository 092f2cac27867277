//! A running instance's own maps, found by topology and instance name: what `fastpath
//! bridge fdb`, `fastpath router route` and `fastpath firewall status|log` read and
//! change while traffic flows.

use crate::{Kind, TopologyError, record::Record, record::RecordInstance};

/// The running instance `instance` of topology `topology`, which must be of `kind`; its
/// record (id, ports).
pub(crate) fn running(
    topology: &str,
    instance: &str,
    kind: Kind,
) -> Result<RecordInstance, TopologyError> {
    let record = Record::read(topology)?.ok_or_else(|| TopologyError::NotRunning {
        name: topology.to_string(),
    })?;
    let Some(found) = record.instance(instance) else {
        let known: Vec<&str> = record
            .instances
            .iter()
            .filter(|known| known.kind == kind)
            .map(|known| known.name.as_str())
            .collect();
        return Err(TopologyError::Request(format!(
            "topology {topology} has no instance {instance}; its {}s: {}",
            kind.name(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if found.kind != kind {
        return Err(TopologyError::Request(format!(
            "instance {instance} of topology {topology} is a {}, not a {}",
            found.kind.name(),
            kind.name()
        )));
    }
    Ok(found.clone())
}

/// Where the running `firewall` instance `instance` of topology `topology` keeps its
/// tables: what `firewall status` and `firewall log` read for it.
pub fn firewall_site(topology: &str, instance: &str) -> Result<firewall::Site, TopologyError> {
    running(topology, instance, Kind::Firewall)?;
    Ok(crate::program::firewall_site(topology, instance))
}

/// The number of the port named `port` of `instance`.
pub(crate) fn port_number(instance: &RecordInstance, port: &str) -> Result<u32, TopologyError> {
    instance
        .ports
        .iter()
        .find(|(name, _)| name == port)
        .map(|(_, number)| *number)
        .ok_or_else(|| {
            let names: Vec<&str> = instance
                .ports
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            TopologyError::Request(format!(
                "instance {} has no port {port}; its ports: {}",
                instance.name,
                names.join(", ")
            ))
        })
}

/// The name of port `number` of `instance` (its number when it has none any more).
pub(crate) fn port_name(instance: &RecordInstance, number: u32) -> String {
    instance
        .ports
        .iter()
        .find(|(_, known)| *known == number)
        .map_or_else(|| format!("#{number}"), |(name, _)| name.clone())
}
