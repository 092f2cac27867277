//! Loading, attaching and steering with fastpath's XDP programs.
//!
//! - [`attach`], [`replace`], [`detach`], [`status`]: the program on an interface, with the
//!   mode policy of [`mode`] and the pins of [`pins`].
//! - [`Steering`]: rules and counters, changed at run time through the pinned maps.
//! - [`test_run`]: `BPF_PROG_TEST_RUN` for fixtures and timing.
//! - [`placement`]: where the prefilter and the steering program run (hw, drv, skb).
//! - [`offload_check`]: whether a program fits a NIC's offload limits, before loading it.
//! - [`hw`]: loading a program onto the NIC and attaching it in HW mode.
//! - [`modules`]: IO modules: a chain of XDP programs loaded, swapped and unloaded at run
//!   time, with the SDK's ABI from `offload_common::module`.
//!
//! What the kernel says about an interface (ethtool, rtnetlink, the netdev family) comes
//! from the `nic` crate.

mod attach;
pub mod bpffs;
mod error;
mod error_chain;
pub mod hw;
pub mod kill_point;
pub mod mode;
pub mod modules;
pub mod offload_check;
mod pins;
pub mod placement;
mod program_image;
pub mod rules;
mod steering;
mod sys;
pub mod test_run;
mod xdp_state;

pub use attach::{
    AttachOptions, Attachment, Placed, PrefilterEntry, Replacement, Status, attach, attach_planned,
    detach, forget_vanished, plan_for, replace, status,
};
pub use error::{MapAction, OffloadError, ProgramAction};
pub use error_chain::error_chain;
pub use pins::{Pins, TRANSIENT, Transient, prune_stale as prune_stale_pins};
pub use steering::{ActionCounters, HW_PREFILTER, RuleStats, Steering};
pub use xdp_state::{XdpState, attached as xdp_attached};

/// The steering program object of this build (built by build.rs from `offload/ebpf`).
pub static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));
