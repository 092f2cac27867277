//! Topologies: instances of modules (bridge, router, ...) with named ports, joined to
//! interfaces and to each other inside the kernel. This is the contract between the
//! kernel side (`offload/ebpf/src/topology.rs` and the instance programs) and the loader
//! that compiles a topology file into these maps.
//!
//! How a packet travels:
//! 1. It arrives on an interface of the topology. The chain of that interface runs the
//!    built-in module `topology`, which looks the interface up in [`maps::IFACES`]
//!    (key [`IfaceKey`]: the running bank and the ifindex) to find the instance and port
//!    it feeds, fills [`TopologyContext`] and tail-calls the instance's program in
//!    [`maps::PROGS`].
//! 2. The instance decides where it goes, and *emits* it on one of its ports:
//!    [`maps::LINKS`] (at [`link_index`]) says what the port is connected to.
//!    - An interface: the packet leaves by redirect through [`maps::TX`], a
//!      `DEVMAP_HASH` keyed by ifindex (a per-port egress program could be attached to
//!      an entry; the bridge tags unicast itself before it emits, and its flood's own
//!      devmap entries carry the egress program: `crate::bridge`).
//!    - Another instance's port: the context's instance and port are set, the hop count
//!      grows, and that instance's program is tail-called, in the same XDP run.
//!    - Nothing: the packet is dropped and counted on the port.
//! 3. A packet that would cross more than [`MAX_HOPS`] instances is dropped and counted
//!    ([`counter::LOOP`]), so a loop in a topology cannot circulate packets.
//!
//! Changes are atomic: the loader writes the new links and interfaces into the idle bank
//! and switches [`maps::STATE`] in one update; the entry reads the bank once per packet.
//! An instance keeps its id (its slot in [`maps::PROGS`]) and its maps for as long as it
//! exists, so an unchanged instance keeps its learned state and counters across applies,
//! and swapping an instance's program is one update of its slot.
//!
//! Every topology program is built `xdp.frags` (the kernel requires a prog array's
//! programs to agree on it), so topologies run at any MTU.

use core::mem::size_of;

/// Instances a topology holds (slots of [`maps::PROGS`]).
pub const MAX_INSTANCES: u32 = 64;
/// Ports an instance has at most; ports are numbered from 0 in the order the loader gives.
pub const MAX_INSTANCE_PORTS: u32 = 16;
/// Banks of [`maps::IFACES`] and [`maps::LINKS`]: one running, one being built.
pub const BANKS: u32 = 2;
/// Entries of [`maps::LINKS`].
pub const LINK_ENTRIES: u32 = BANKS * MAX_INSTANCES * MAX_INSTANCE_PORTS;
/// Entries of [`maps::PORT_STATS`] (not banked: counters survive applies).
pub const PORT_ENTRIES: u32 = MAX_INSTANCES * MAX_INSTANCE_PORTS;
/// Interfaces a topology joins, per bank.
pub const MAX_IFACES: u32 = 256;
/// Instances a packet may cross in one run; the kernel allows 33 tail calls in all and
/// the interface's chain uses some.
pub const MAX_HOPS: u32 = 8;

/// The names of the topology's maps, pinned under
/// `/sys/fs/bpf/fastpath/topology/<topology>/maps/`.
pub mod maps {
    /// `PROG_ARRAY` of [`super::MAX_INSTANCES`]: each instance's program.
    pub const PROGS: &str = "TOPO_PROGS";
    /// `HASH` [`super::IfaceKey`] -> [`super::PortRef`]: the instance port an interface
    /// feeds, per bank.
    pub const IFACES: &str = "TOPO_IFACES";
    /// `ARRAY` of [`super::LINK_ENTRIES`] [`super::Link`]s at [`super::link_index`].
    pub const LINKS: &str = "TOPO_LINKS";
    /// `ARRAY` of one [`super::TopologyState`].
    pub const STATE: &str = "TOPO_STATE";
    /// `PERCPU_ARRAY` of one [`super::TopologyContext`]: the packet's place in the
    /// topology, carried across tail calls.
    pub const CONTEXT: &str = "TOPO_CONTEXT";
    /// `DEVMAP_HASH` ifindex -> interface: where emitting to an interface redirects.
    pub const TX: &str = "TOPO_TX";
    /// `PERCPU_ARRAY` of [`super::PORT_ENTRIES`] [`super::PortStats`], at
    /// `instance * MAX_INSTANCE_PORTS + port`.
    pub const PORT_STATS: &str = "TOPO_PORT_STATS";
    /// `PERCPU_ARRAY` of `u64` indexed by [`super::counter`].
    pub const COUNTERS: &str = "TOPO_COUNTERS";
    /// `PERCPU_ARRAY` of one [`super::Handoff`]: a packet too large for XDP's redirect,
    /// from the instance that emitted it to the TC program that sends it.
    pub const HANDOFF: &str = "TOPO_HANDOFF";
    /// Every map above: what the loader binds in each topology program.
    pub const ALL: [&str; 9] = [
        PROGS, IFACES, LINKS, STATE, CONTEXT, TX, PORT_STATS, COUNTERS, HANDOFF,
    ];
}

/// Slots of [`maps::COUNTERS`] (per CPU, summed by user space): packets the topology
/// itself ended, not an instance.
pub mod counter {
    /// Dropped after [`super::MAX_HOPS`] instances: a loop.
    pub const LOOP: u32 = 0;
    /// Came in on an interface the running bank does not know (passed to the stack).
    pub const UNKNOWN_IFACE: u32 = 1;
    /// The instance's program was missing, or the kernel's limit of 33 tail calls per
    /// packet (the interface's chain and the topology share it) was reached: dropped.
    pub const NO_PROGRAM: u32 = 2;
    /// Emitted on a port connected to nothing: dropped.
    pub const UNCONNECTED: u32 = 3;
    /// Larger than the egress interface's MTU, so handed to its TC ingress program to
    /// leave ([`super::Handoff`]): a socket buffer that carries many segments (GSO).
    pub const HANDED_TO_TC: u32 = 4;
    /// Number of slots.
    pub const COUNT: u32 = 5;
    /// Display names, indexed by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "loop",
        "unknown_iface",
        "no_program",
        "unconnected",
        "handed_to_tc",
    ];
}

/// What an instance leaves in this CPU's [`maps::HANDOFF`] slot when it emits a packet
/// larger than the egress interface's MTU, and passes it on: the topology's TC ingress
/// program on the interface the packet came in on (`topology_tc`), which runs next for
/// that packet on this CPU, takes it and redirects the packet.
///
/// XDP's redirect refuses such packets (the kernel checks the length against the MTU),
/// but on a veth in generic (skb) mode a packet is a socket buffer that the sender's TCP
/// built as one large segment for the NIC (GSO, on by default) to cut: dropped there,
/// every bulk TCP transfer would stall. TC's redirect takes it whole, as Linux's bridge
/// and forwarding do. The slot, not the packet's XDP metadata: for such a packet the
/// kernel's generic XDP copies the socket buffer and the copy reaches TC with its data at
/// the IP header and no MAC header length, so TC sees neither the metadata nor the
/// Ethernet header; the slot carries the header to put back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The packet's length, Ethernet header included; 0: the slot is empty.
    pub len: u32,
    /// The interface to send the packet out of.
    pub ifindex: u32,
    /// The interface it came in on.
    pub in_ifindex: u32,
    /// Its Ethernet header as the instances left it.
    pub ethernet: [u8; 14],
    /// Padding.
    pub _pad: [u8; 2],
}

/// Packets up to this many bytes fit every interface (IPv6's minimum MTU, 1280, and an
/// Ethernet header): the MTU is checked only above it.
pub const ALWAYS_FITS: u64 = 1294;

/// What a port is connected to, [`Link::kind`].
pub mod link_kind {
    /// Nothing (an unused slot).
    pub const NONE: u32 = 0;
    /// An interface: [`super::Link::ifindex`].
    pub const IFACE: u32 = 1;
    /// Another instance's port: [`super::Link::peer`].
    pub const INSTANCE: u32 = 2;
}

/// An instance and one of its ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortRef {
    /// The instance's slot in [`maps::PROGS`].
    pub instance: u32,
    /// The port's number within the instance.
    pub port: u32,
}

/// Key of [`maps::IFACES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    /// The bank the entry belongs to.
    pub bank: u32,
    /// The interface.
    pub ifindex: u32,
}

/// One port's connection in [`maps::LINKS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// [`link_kind`].
    pub kind: u32,
    /// The interface, for [`link_kind::IFACE`].
    pub ifindex: u32,
    /// The instance port, for [`link_kind::INSTANCE`].
    pub peer: PortRef,
}

/// Slot 0 of [`maps::STATE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopologyState {
    /// The running bank (0 or 1).
    pub bank: u32,
    /// The running revision (bank = revision % [`BANKS`]).
    pub revision: u32,
}

/// The packet's place in the topology (slot 0 of [`maps::CONTEXT`], per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopologyContext {
    /// The bank read at the entry: the whole run uses it.
    pub bank: u32,
    /// The instance running now.
    pub instance: u32,
    /// The port of that instance the packet came in on.
    pub in_port: u32,
    /// Instances crossed so far (1 in the first).
    pub hops: u32,
    /// The interface the packet came in on.
    pub in_ifindex: u32,
    /// Zero padding.
    pub _pad: u32,
}

/// A port's counters, per CPU in [`maps::PORT_STATS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets that came in on the port.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Packets emitted on the port.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Packets emitted on the port and dropped there (unconnected, a failed redirect).
    pub drops: u64,
}

/// Index in [`maps::LINKS`] of `port` of `instance` in `bank`; `None` when out of range.
#[inline(always)]
pub fn link_index(bank: u32, instance: u32, port: u32) -> Option<u32> {
    if bank >= BANKS || instance >= MAX_INSTANCES || port >= MAX_INSTANCE_PORTS {
        return None;
    }
    Some((bank * MAX_INSTANCES + instance) * MAX_INSTANCE_PORTS + port)
}

/// Index in [`maps::PORT_STATS`] of `port` of `instance`; `None` when out of range.
#[inline(always)]
pub fn port_index(instance: u32, port: u32) -> Option<u32> {
    if instance >= MAX_INSTANCES || port >= MAX_INSTANCE_PORTS {
        return None;
    }
    Some(instance * MAX_INSTANCE_PORTS + port)
}

const _: () = assert!(size_of::<PortRef>() == 8);
const _: () = assert!(size_of::<IfaceKey>() == 8);
const _: () = assert!(size_of::<Link>() == 16);
const _: () = assert!(size_of::<TopologyState>() == 8);
const _: () = assert!(size_of::<TopologyContext>() == 24);
const _: () = assert!(size_of::<PortStats>() == 40);
