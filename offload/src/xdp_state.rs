//! What the kernel says is attached to an interface (IFLA_XDP, read through `nic`).

use nic::{
    Kernel, NicError,
    link::{self, Link, XdpProgram, XdpSlot},
};

use crate::{OffloadError, mode::XdpMode};

/// An XDP program the kernel reports on an interface (IFLA_XDP), fastpath's or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpState {
    /// The slot it is in.
    pub mode: XdpMode,
    /// The kernel's id of the program.
    pub program_id: u32,
}

impl From<XdpSlot> for XdpMode {
    fn from(slot: XdpSlot) -> XdpMode {
        match slot {
            XdpSlot::Hardware => XdpMode::Hw,
            XdpSlot::Driver => XdpMode::Drv,
            XdpSlot::Generic => XdpMode::Skb,
        }
    }
}

impl From<XdpProgram> for XdpState {
    fn from(program: XdpProgram) -> XdpState {
        XdpState {
            mode: program.slot.into(),
            program_id: program.program_id,
        }
    }
}

/// The interface's index, or [`OffloadError::UnknownInterface`].
pub(crate) fn ifindex(iface: &str) -> Result<u32, OffloadError> {
    nic::ifindex(iface).map_err(|_| OffloadError::UnknownInterface(iface.into()))
}

/// What the kernel has attached to `iface` in this network namespace, if anything: pins
/// aside, the ground truth of whether a program still runs there.
pub fn attached(iface: &str) -> Result<Option<XdpState>, OffloadError> {
    query(ifindex(iface)?)
}

/// The XDP program on `ifindex`, if any.
pub fn query(ifindex: u32) -> Result<Option<XdpState>, OffloadError> {
    let program = link::xdp_program(&mut Kernel, Link::Index(ifindex))
        .map_err(|error| from_nic(ifindex, error))?;
    Ok(program.map(XdpState::from))
}

/// Every XDP slot in use on `ifindex`: a NIC can hold a hardware program and a driver (or
/// generic) program at once.
pub fn slots(ifindex: u32) -> Result<Vec<XdpState>, OffloadError> {
    let programs = link::xdp_programs(&mut Kernel, Link::Index(ifindex))
        .map_err(|error| from_nic(ifindex, error))?;
    Ok(programs.into_iter().map(XdpState::from).collect())
}

/// A failed link query: an index that vanished is named as such, the rest keeps nic's error.
fn from_nic(ifindex: u32, error: NicError) -> OffloadError {
    match error {
        NicError::NoInterface(_) => OffloadError::UnknownIfindex(ifindex),
        other => OffloadError::Nic(other),
    }
}
