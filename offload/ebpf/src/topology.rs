//! The topology core every topology program shares (the contract is
//! `offload_common::topology`): the topology's maps, the per-packet [`context`], [`emit`]
//! (a packet leaves an instance on one of its ports) and [`enter`] (the built-in chain
//! module `topology`: a packet from an interface into the instance port it feeds).
//!
//! The maps are declared unpinned, as a module's are: the loader binds each, by name, to
//! the topology's pins (`/sys/fs/bpf/fastpath/topology/<topology>/maps/<NAME>`), so every
//! instance program and every interface's `topology` module share one set.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_check_mtu,
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use offload_common::topology::{
    ALWAYS_FITS, BANKS, Handoff, IfaceKey, LINK_ENTRIES, Link, MAX_HOPS, MAX_IFACES, MAX_INSTANCES,
    PORT_ENTRIES, PortRef, PortStats, TopologyContext, TopologyState, counter, link_index,
    link_kind, port_index,
};

use crate::parse::Frame;

#[map]
pub static TOPO_PROGS: ProgramArray = ProgramArray::with_max_entries(MAX_INSTANCES, 0);
#[map]
pub static TOPO_IFACES: HashMap<IfaceKey, PortRef> =
    HashMap::with_max_entries(BANKS * MAX_IFACES, 0);
#[map]
pub static TOPO_LINKS: Array<Link> = Array::with_max_entries(LINK_ENTRIES, 0);
#[map]
pub static TOPO_STATE: Array<TopologyState> = Array::with_max_entries(1, 0);
#[map]
pub static TOPO_CONTEXT: PerCpuArray<TopologyContext> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static TOPO_TX: DevMapHash = DevMapHash::with_max_entries(MAX_IFACES, 0);
#[map]
pub static TOPO_PORT_STATS: PerCpuArray<PortStats> = PerCpuArray::with_max_entries(PORT_ENTRIES, 0);
#[map]
pub static TOPO_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
#[map]
pub static TOPO_HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

/// The packet's place in the topology: the per-CPU slot the entry filled and each hop
/// updates. `None` only when the map cannot be read (a broken load).
#[inline(always)]
pub fn context() -> Option<&'static mut TopologyContext> {
    // SAFETY: a per-CPU slot: XDP runs with migration disabled and a packet's whole walk
    // through the topology runs in this one program invocation (tail calls), so nothing
    // else touches it meanwhile.
    TOPO_CONTEXT
        .get_ptr_mut(0)
        .map(|slot| unsafe { &mut *slot })
}

/// Adds one to the topology's counter `slot`.
#[inline(always)]
pub fn count(slot: u32) {
    if let Some(counter) = TOPO_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, see `context`.
        unsafe { *counter += 1 };
    }
}

/// Which of a port's counters [`count_port`] adds to.
#[derive(Clone, Copy)]
pub enum PortCount {
    /// A packet came in on the port.
    Rx,
    /// A packet was emitted on the port.
    Tx,
    /// A packet emitted on the port was dropped there.
    Drop,
}

/// Counts a packet of `bytes` on `port` of `instance`.
#[inline(always)]
pub fn count_port(instance: u32, port: u32, what: PortCount, bytes: u64) {
    let Some(index) = port_index(instance, port) else {
        return;
    };
    let Some(stats) = TOPO_PORT_STATS.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: a per-CPU slot, see `context`.
    let stats = unsafe { &mut *stats };
    match what {
        PortCount::Rx => {
            stats.rx_packets += 1;
            stats.rx_bytes += bytes;
        }
        PortCount::Tx => {
            stats.tx_packets += 1;
            stats.tx_bytes += bytes;
        }
        PortCount::Drop => stats.drops += 1,
    }
}

/// Drops the packet where it came into the running instance, counted on that port: what
/// an instance returns for a packet it refuses.
#[inline(always)]
pub fn drop_at_ingress(ctx: &XdpContext, place: &TopologyContext) -> u32 {
    count_port(
        place.instance,
        place.in_port,
        PortCount::Drop,
        packet_bytes(ctx),
    );
    xdp_action::XDP_DROP
}

/// What `port` of `instance` is connected to in `bank`; an unconnected link when out of
/// range.
#[inline(always)]
pub fn link(bank: u32, instance: u32, port: u32) -> Link {
    link_index(bank, instance, port)
        .and_then(|index| TOPO_LINKS.get(index))
        .copied()
        .unwrap_or_default()
}

/// The packet's length, every buffer of a multi-buffer frame included.
#[inline(always)]
pub fn packet_bytes(ctx: &XdpContext) -> u64 {
    ctx.total_len() as u64
}

/// Emits the packet on `port` of the running instance and returns the XDP action to
/// return: a redirect to the interface the port is connected to, or the tail call into
/// the instance behind it (which does not return), or a drop (counted) when the port
/// leads nowhere, the hop limit is reached or the peer has no program.
#[inline(always)]
pub fn emit(ctx: &XdpContext, place: &mut TopologyContext, port: u32) -> u32 {
    let bytes = packet_bytes(ctx);
    let instance = place.instance;
    let link = link(place.bank, instance, port);
    match link.kind {
        link_kind::IFACE => {
            count_port(instance, port, PortCount::Tx, bytes);
            if bytes > ALWAYS_FITS && !fits(ctx, link.ifindex) {
                if hand_to_tc(ctx, link.ifindex, place.in_ifindex) {
                    return xdp_action::XDP_PASS;
                }
                count_port(instance, port, PortCount::Drop, bytes);
                return xdp_action::XDP_DROP;
            }
            match TOPO_TX.redirect(link.ifindex, 0) {
                Ok(action) => action,
                Err(_) => {
                    count_port(instance, port, PortCount::Drop, bytes);
                    xdp_action::XDP_DROP
                }
            }
        }
        link_kind::INSTANCE => {
            count_port(instance, port, PortCount::Tx, bytes);
            if place.hops >= MAX_HOPS {
                count(counter::LOOP);
                count_port(instance, port, PortCount::Drop, bytes);
                return xdp_action::XDP_DROP;
            }
            place.hops += 1;
            place.instance = link.peer.instance;
            place.in_port = link.peer.port;
            count_port(link.peer.instance, link.peer.port, PortCount::Rx, bytes);
            hand_to_instance(ctx, link.peer.instance)
        }
        _ => {
            count(counter::UNCONNECTED);
            count_port(instance, port, PortCount::Drop, bytes);
            xdp_action::XDP_DROP
        }
    }
}

/// Whether the packet fits the MTU of the interface `ifindex`.
#[inline(always)]
fn fits(ctx: &XdpContext, ifindex: u32) -> bool {
    let mut mtu = 0u32;
    // SAFETY: the program's own context; `mtu` is a stack slot the helper may write.
    let verdict = unsafe { bpf_check_mtu(ctx.ctx.cast(), ifindex, &mut mtu, 0, 0) };
    verdict == 0
}

/// Readies a packet too large for the egress interface `ifindex` for the TC ingress
/// program of `in_ifindex`, the interface it came in on, which sends it out ([`Handoff`]):
/// the caller passes it on. False when the slot or the Ethernet header cannot be read (the
/// caller drops it).
#[inline(always)]
fn hand_to_tc(ctx: &XdpContext, ifindex: u32, in_ifindex: u32) -> bool {
    let (Some(slot), Ok(ethernet)) = (
        TOPO_HANDOFF.get_ptr_mut(0),
        crate::parse::read::<[u8; 14]>(ctx, 0),
    ) else {
        return false;
    };
    // SAFETY: a per-CPU slot, see `context`; the TC program reads it next on this CPU.
    unsafe {
        *slot = Handoff {
            len: ctx.total_len() as u32,
            ifindex,
            in_ifindex,
            ethernet,
            _pad: [0; 2],
        }
    };
    count(counter::HANDED_TO_TC);
    true
}

/// Tail-calls the program of `instance`; when that fails (no program in the slot, or the
/// kernel's 33 tail calls spent) the packet is dropped and counted.
#[inline(always)]
pub fn hand_to_instance(ctx: &XdpContext, instance: u32) -> u32 {
    // SAFETY: on success control never comes back; TOPO_PROGS holds XDP frags programs
    // only (the kernel refuses others in the array).
    let _ = unsafe { TOPO_PROGS.tail_call(ctx, instance) };
    count(counter::NO_PROGRAM);
    xdp_action::XDP_DROP
}

/// Readies a packet that came in on an interface of the topology for the instance port
/// the interface feeds in the running bank: fills the context, counts it in on the port,
/// and returns the instance to hand it to with [`hand_to_instance`]. `None` (counted)
/// when the running bank does not know the interface.
#[inline(always)]
pub fn enter(ctx: &XdpContext) -> Option<u32> {
    let bank = TOPO_STATE.get(0).map_or(0, |state| state.bank) % BANKS;
    // SAFETY: the kernel's xdp_md, valid for the program's run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let key = IfaceKey { bank, ifindex };
    // SAFETY: the value is copied at once.
    let Some(target) = (unsafe { TOPO_IFACES.get(&key) }).copied() else {
        count(counter::UNKNOWN_IFACE);
        return None;
    };
    let place = context()?;
    *place = TopologyContext {
        bank,
        instance: target.instance,
        in_port: target.port,
        hops: 1,
        in_ifindex: ifindex,
        _pad: 0,
    };
    count_port(
        target.instance,
        target.port,
        PortCount::Rx,
        packet_bytes(ctx),
    );
    Some(target.instance)
}
