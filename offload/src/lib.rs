//! Loading, attaching and steering with fastpath's XDP programs.
//!
//! - [`attach`], [`replace`], [`detach`], [`status`]: the program on an interface, with the
//!   mode policy of [`mode`] and the pins of [`pins`].
//! - [`Steering`]: rules and counters, changed at run time through the pinned maps.
//! - [`test_run`]: `BPF_PROG_TEST_RUN` for fixtures and timing.
//! - [`placement`]: where the prefilter and the steering program run (hw, drv, skb).
//! - [`probe`]: what an interface can do (`fastpath probe`), and ntuple flow steering.

mod attach;
pub mod bpffs;
mod error;
mod hw;
pub mod kill_point;
pub mod mode;
pub mod netdev;
mod pins;
pub mod placement;
pub mod probe;
pub mod rules;
mod steering;
mod sys;
pub mod test_run;
mod xdp_state;

pub use attach::{
    AttachOptions, Attachment, Placed, PrefilterEntry, Replacement, Status, attach, attach_planned,
    detach, forget_vanished, plan_for, replace, status,
};
pub use error::OffloadError;
pub use pins::{Pins, TRANSIENT, Transient, prune_stale as prune_stale_pins};
pub use steering::{ActionCounters, HW_PREFILTER, RuleStats, Steering};
pub use xdp_state::{XdpState, attached as xdp_attached};

/// The steering program object of this build (built by build.rs from `offload/ebpf`).
pub static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));
