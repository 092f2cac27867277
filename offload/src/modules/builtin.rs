//! Modules built into fastpath, and what the steering layer needs to run one on a chain:
//! load and swap a module from an object already in memory with some of its maps bound to
//! pins that live outside the chain, and read what a chain runs.
//!
//! The built-in module is the steering program as the module `steer` (`offload/ebpf`,
//! `steer_module*.rs`), built once per frags flavour like the chain's entry. Its maps stay
//! where [`crate::Pins`] puts them, so the rules, `fastpath xdp status`, the load balancer's
//! rule sync and the AF_XDP users reach them as they always did; `crate::attach` puts it
//! on the chain.

use std::path::{Path, PathBuf};

use super::{
    ChainAt, Hook, ModuleError, ModuleObject, Position,
    entry::{DEFAULT_MODES, open_existing},
    object::c_string,
    ops::{load_object, swap_object},
    report::{Loaded, Swapped},
    version::pinned_shape,
};
use crate::{mode::XdpMode, xdp_state};

/// The name the steering program runs under in a chain.
pub const STEER_MODULE: &str = "steer";

/// The `steer` module for chains whose programs are not multi-buffer (`chain_entry`).
pub static STEER_MODULE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer_module"));
/// The `steer` module for multi-buffer chains (`chain_entry_frags`), the flavour a chain
/// that steer starts gets: it runs at any MTU.
pub static STEER_MODULE_FRAGS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer_module_frags"));

/// The built-in `steer` module for a chain of the given frags flavour, read and checked as
/// any module object is.
pub fn steer_module(frags: bool) -> Result<ModuleObject, ModuleError> {
    let (bytes, shown) = if frags {
        (STEER_MODULE_FRAGS_OBJECT, "(built-in steer_module_frags)")
    } else {
        (STEER_MODULE_OBJECT, "(built-in steer_module)")
    };
    ModuleObject::parse(Path::new(shown), bytes.to_vec())
}

/// The name the tunnel tracer runs under in a chain (`fastpath trace vxlan`).
pub const VXLAN_TRACE_MODULE: &str = "vxlan-trace";

/// The `vxlan-trace` module for XDP chains whose programs are not multi-buffer.
pub static VXLAN_TRACE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan_trace_module"));
/// The `vxlan-trace` module for multi-buffer XDP chains.
pub static VXLAN_TRACE_FRAGS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan_trace_module_frags"));
/// The `vxlan-trace` module for chains on the tcx hooks (a TC classifier).
pub static VXLAN_TRACE_TC_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan_trace_module_tc"));

/// The built-in `vxlan-trace` module for a chain on `hook` (of the given frags flavour,
/// for XDP), read and checked as any module object is.
pub fn vxlan_trace_module(hook: Hook, frags: bool) -> Result<ModuleObject, ModuleError> {
    let (bytes, shown) = match (hook, frags) {
        (Hook::Xdp, false) => (VXLAN_TRACE_OBJECT, "(built-in vxlan_trace_module)"),
        (Hook::Xdp, true) => (
            VXLAN_TRACE_FRAGS_OBJECT,
            "(built-in vxlan_trace_module_frags)",
        ),
        _ => (VXLAN_TRACE_TC_OBJECT, "(built-in vxlan_trace_module_tc)"),
    };
    ModuleObject::parse(Path::new(shown), bytes.to_vec())
}

/// The name the built-in stateful firewall runs under in a chain.
pub const FIREWALL_MODULE: &str = "firewall";

/// The `firewall` module for chains whose programs are not multi-buffer.
pub static FIREWALL_MODULE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall_module"));
/// The `firewall` module for multi-buffer chains, the flavour a chain it starts gets.
pub static FIREWALL_MODULE_FRAGS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall_module_frags"));
/// The firewall's egress tracker: a tcx classifier (`firewall_egress`) that records what
/// the node sends in the node's conntrack table. Not a module: loaded by the firewall.
pub static FIREWALL_EGRESS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall_egress"));

/// The built-in `firewall` module for a chain of the given frags flavour, read and checked
/// as any module object is.
pub fn firewall_module(frags: bool) -> Result<ModuleObject, ModuleError> {
    let (bytes, shown) = if frags {
        (
            FIREWALL_MODULE_FRAGS_OBJECT,
            "(built-in firewall_module_frags)",
        )
    } else {
        (FIREWALL_MODULE_OBJECT, "(built-in firewall_module)")
    };
    ModuleObject::parse(Path::new(shown), bytes.to_vec())
}

/// The name the topology's entry runs under in an interface's chain.
pub const TOPOLOGY_MODULE: &str = "topology";

/// The `topology` module (multi-buffer only: every program of a topology's program array
/// is). Its `TOPO_*` maps are bound to the topology's pins by the loader.
pub static TOPOLOGY_MODULE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/topology_module_frags"));

/// The built-in `topology` module, read and checked as any module object is: the last
/// module of the chain of every interface a topology joins (`offload/ebpf/src/topology.rs`).
pub fn topology_module() -> Result<ModuleObject, ModuleError> {
    ModuleObject::parse(
        Path::new("(built-in topology_module_frags)"),
        TOPOLOGY_MODULE_OBJECT.to_vec(),
    )
}

/// The program of a topology's `bridge` instances (`bridge`, XDP frags), tail-called
/// through `TOPO_PROGS`; its own maps are `offload_common::bridge::maps`.
pub static BRIDGE_PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bridge"));
/// The egress program of a VLAN-aware bridge's flood entries (`bridge_egress`, an XDP
/// devmap program, frags): drops each port's copy outside the frame's VLAN and pops the
/// tag where the port carries the VLAN untagged. Its map is `offload_common::bridge::maps::EGRESS`.
pub static BRIDGE_EGRESS_PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bridge_egress"));
/// The program of a topology's `router` instances (`router`, XDP frags), tail-called
/// through `TOPO_PROGS`; its own maps are `offload_common::router::maps`.
pub static ROUTER_PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/router"));
/// The TC ingress program (`topology_tc`, tcx) of every interface a topology joins: it
/// sends out what the topology could not redirect at XDP for the egress MTU
/// (`offload_common::topology::Handoff`).
pub static TOPOLOGY_TC_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/topology_tc"));
/// The program of a topology's `firewall` instances (`firewall`, XDP frags): the
/// `firewall` module's judgement between two ports. Its own maps are the firewall's
/// (`offload_common::firewall::maps`, the node-wide ones shared with every firewall of
/// the namespace) and `FW_OTHER_PORT`.
pub static FIREWALL_TOPOLOGY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall_topology"));
/// The program of a topology's `lb` instances (`lb`, XDP frags): VIPs translated to their
/// backends between two ports. Its maps are `offload_common::lb::maps`.
pub static LB_TOPOLOGY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb_topology"));
/// A two-port instance program that only forwards (`wire`, XDP frags; no kind of the
/// topology file): the benchmarks run it as a user module to measure the topology's own
/// cost.
pub static TOPOLOGY_WIRE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/topology_wire"));

/// Loads a built-in module's `object` into the chain `at`, as [`load`](super::load) does
/// a file (the entry, when this attaches it, in drv mode, else skb).
pub fn load_builtin(
    at: ChainAt<'_>,
    object: ModuleObject,
    position: &Position,
) -> Result<Loaded, ModuleError> {
    load_object(at, object, None, position, &[], &DEFAULT_MODES)
}

/// The pin of the map `map` of the version of module `module` the chain `at` runs: for
/// readers of a module's own maps (the tracer's statistics).
pub fn running_map_pin(at: ChainAt<'_>, module: &str, map: &str) -> Result<PathBuf, ModuleError> {
    let chain = open_existing(at)?;
    let generation = super::map::running_generation(&chain, module)?;
    Ok(chain.pins.generation_dir(module, generation).join(map))
}

/// What a chain runs, in the order packets meet its modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// Whether its programs are multi-buffer (`xdp.frags`).
    pub frags: bool,
    /// The slot its entry runs in, as the kernel reports it.
    pub mode: Option<XdpMode>,
    /// (name, program id) of each module of the running revision.
    pub modules: Vec<(String, u32)>,
}

impl ChainSummary {
    /// The program id of the module `name`, when the chain runs it.
    pub fn program_of(&self, name: &str) -> Option<u32> {
        self.modules
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, id)| *id)
    }
}

/// The chain on `iface`; `None` when no chain's entry runs there. Reads only.
pub fn chain_summary(iface: &str) -> Result<Option<ChainSummary>, ModuleError> {
    let chain = match open_existing(iface.into()) {
        Ok(chain) => chain,
        Err(ModuleError::NoChain { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let state = chain.state()?;
    let mut modules = Vec::new();
    for (_, instance, program_id) in chain.running()? {
        let record = chain.record(instance)?;
        modules.push((c_string(&record.name), program_id));
    }
    let ifindex = xdp_state::ifindex(iface)?;
    let mode = xdp_state::slots(ifindex)?
        .into_iter()
        .map(|slot| slot.mode)
        .find(|mode| *mode != XdpMode::Hw);
    Ok(Some(ChainSummary {
        frags: state.frags != 0,
        mode,
        modules,
    }))
}

/// Loads `object` into the chain on `iface` at `position` under the name in its metadata,
/// as [`load`](super::load) does a file, with its maps named in `bound` taken from those
/// pins instead of made anew (they must exist or are created there). When the interface
/// has no chain, its entry is attached in the first of `modes` the kernel accepts.
pub fn load_bound(
    iface: &str,
    object: ModuleObject,
    position: &Position,
    bound: &[(String, PathBuf)],
    modes: &[XdpMode],
) -> Result<Loaded, ModuleError> {
    load_object(iface.into(), object, None, position, bound, modes)
}

/// Swaps the module `name` on `iface` to `object`, as [`swap`](super::swap) does a file.
/// The maps named in `bound` must keep their shape: they live outside the chain, where
/// other readers find them, so the new version takes them over (the swap hands over
/// maps of matching shape) and a changed one is refused before anything is loaded. A map
/// the running version lacks is bound to its pin in `bound` when that pin exists (made and
/// filled before the swap, as `offload::replace` does for `EXACT_V4`).
pub fn swap_bound(
    iface: &str,
    name: &str,
    object: ModuleObject,
    bound: &[(String, PathBuf)],
) -> Result<Swapped, ModuleError> {
    for (map, pin) in bound {
        let Some(shape) = object.maps.iter().find(|shape| shape.name == *map) else {
            continue;
        };
        let wanted = (
            shape.map_type,
            shape.key_size,
            shape.value_size,
            shape.max_entries,
            shape.flags,
        );
        if pinned_shape(pin).is_some_and(|pinned| pinned != wanted) {
            return Err(ModuleError::BoundMapChanged {
                module: name.to_string(),
                file: object.path.clone(),
                map: map.clone(),
            });
        }
    }
    swap_object(iface.into(), name, object, bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steer_modules_are_modules_named_steer_in_both_flavours() {
        for frags in [false, true] {
            let object = steer_module(frags).unwrap();
            assert_eq!(object.name, STEER_MODULE);
            assert_eq!(object.version, env!("CARGO_PKG_VERSION"));
            assert_eq!(object.frags, frags);
            assert_eq!(object.program, "steer");
        }
    }

    #[test]
    fn the_vxlan_trace_modules_fit_their_hooks() {
        for (hook, frags) in [
            (Hook::Xdp, false),
            (Hook::Xdp, true),
            (Hook::TcEgress, false),
        ] {
            let object = vxlan_trace_module(hook, frags).unwrap();
            assert_eq!(object.name, VXLAN_TRACE_MODULE);
            assert_eq!(object.frags, frags);
            assert_eq!(object.program, "vxlan_trace");
        }
    }

    #[test]
    fn the_firewall_modules_are_modules_named_firewall_in_both_flavours() {
        for frags in [false, true] {
            let object = firewall_module(frags).unwrap();
            assert_eq!(object.name, FIREWALL_MODULE);
            assert_eq!(object.frags, frags);
            assert_eq!(object.program, "firewall");
        }
    }

    #[test]
    fn the_topology_module_is_a_frags_module_named_topology() {
        let object = topology_module().unwrap();
        assert_eq!(object.name, TOPOLOGY_MODULE);
        assert!(object.frags);
        assert_eq!(object.program, "topology");
        for map in offload_common::topology::maps::ALL {
            assert!(
                object.maps.iter().any(|shape| shape.name == *map),
                "{map} is declared"
            );
        }
    }

    #[test]
    fn the_steer_module_has_every_map_of_the_steering_object() {
        // attach binds each of the module's maps to the pin the steering layer made from
        // the standalone object: the two must declare the same maps, in the same shapes.
        let standalone = aya_obj::Object::parse(crate::STEER_OBJECT).unwrap();
        let mut expected: Vec<(String, u32, u32, u32, u32)> = standalone
            .maps
            .iter()
            .filter(|(name, _)| !name.starts_with('.'))
            .map(|(name, map)| {
                let shape = (map.map_type(), map.key_size(), map.value_size());
                (name.clone(), shape.0, shape.1, shape.2, map.max_entries())
            })
            .collect();
        expected.sort();
        for frags in [false, true] {
            let module: Vec<(String, u32, u32, u32, u32)> = steer_module(frags)
                .unwrap()
                .maps
                .into_iter()
                .map(|map| {
                    let shape = (map.map_type, map.key_size, map.value_size);
                    (map.name, shape.0, shape.1, shape.2, map.max_entries)
                })
                .collect();
            assert_eq!(module, expected, "frags {frags}");
        }
    }
}
