//! The TC side of a topology's interfaces: `topology_tc` at the tcx ingress of every
//! interface the topology joins, which sends out the packets the instances decided but
//! XDP could not redirect, being larger than the egress interface's MTU (a socket buffer
//! the sender's TCP built for segmentation offload: `offload_common::topology::Handoff`,
//! passed in the topology's `TOPO_HANDOFF`).
//! Its link is pinned under the topology's folder, so `down` (which removes the folder)
//! detaches it.

use std::path::PathBuf;

use aya::{
    EbpfLoader,
    programs::{LinkOrder, SchedClassifier, TcAttachType, links::FdLink, tc::TcAttachOptions},
};
use offload::modules::builtin::TOPOLOGY_TC_OBJECT;
use offload_common::topology::maps;

use crate::{TopologyError, pins};

/// The pin of the link of `iface`'s TC program.
fn link_pin(topology: &str, iface: &str) -> PathBuf {
    pins::topology_dir(topology).join("tc").join(iface)
}

/// Attaches the TC program to `iface` unless its link is pinned already; true when this
/// call attached it.
pub fn attach(topology: &str, iface: &str) -> Result<bool, TopologyError> {
    let pin = link_pin(topology, iface);
    if pin.exists() {
        return Ok(false);
    }
    let error = |step: &str, reason: String| TopologyError::Iface {
        iface: iface.to_string(),
        reason: format!("the topology's TC program: {step}: {reason}"),
    };
    if let Some(folder) = pin.parent() {
        std::fs::create_dir_all(folder).map_err(TopologyError::pin("mkdir", folder))?;
    }
    let handoff = pins::map_pin(topology, maps::HANDOFF);
    let mut ebpf = EbpfLoader::new()
        .map_pin_path(maps::HANDOFF, &handoff)
        .load(TOPOLOGY_TC_OBJECT)
        .map_err(|source| error("load the object", offload::error_chain(&source)))?;
    let program: &mut SchedClassifier = ebpf
        .program_mut("topology_tc")
        .ok_or_else(|| error("find the program", "no program topology_tc".into()))?
        .try_into()
        .map_err(|source: aya::programs::ProgramError| {
            error("open the program", source.to_string())
        })?;
    program
        .load()
        .map_err(|source| error("load the program", offload::error_chain(&source)))?;
    let link_id = program
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|source| error("attach (tcx ingress)", offload::error_chain(&source)))?;
    let link = program
        .take_link(link_id)
        .map_err(|source| error("take the link", source.to_string()))?;
    let link =
        FdLink::try_from(link).map_err(|source| error("take the link", source.to_string()))?;
    link.pin(&pin)
        .map_err(|source| error("pin the link", source.to_string()))?;
    Ok(true)
}

/// Detaches the TC program from `iface`: its link goes with its pin.
pub fn detach(topology: &str, iface: &str) {
    let _ = std::fs::remove_file(link_pin(topology, iface));
}
