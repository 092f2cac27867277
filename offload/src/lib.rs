//! Loading, attaching and steering with fastpath's XDP programs: layer 2 of fastpath.
//!
//! This crate puts the steering program (`offload/ebpf`) on an interface and manages it for
//! its whole life: load, attach, replace and detach; the bpffs pins that let any later
//! process find it; its rules and counters; where its stages run; `BPF_PROG_TEST_RUN` on it;
//! and hardware offload. On an interface it runs as the module `steer` of the IO module
//! chain ([`modules`], [`modules::builtin`]), so user modules can run before or after it;
//! the standalone build, [`STEER_OBJECT`], serves test runs, the offload check and the
//! hardware prefilter.
//!
//! Entry points:
//! - [`attach`] (or [`plan_for`] then [`attach_planned`]), [`replace`], [`detach`] and
//!   [`status`]: steer on an interface's module chain, under the mode policy of [`mode`]
//!   (drv, then skb for the chain; hw only for the prefilter, with the reason each mode
//!   failed); [`xdp_attached`] is what the kernel reports, pins aside.
//! - [`Pins`], [`Transient`], [`prune_stale_pins`]: where an attachment lives in bpffs
//!   (`/sys/fs/bpf/fastpath/<iface>/`), and the one place that chooses which bpffs:
//!   [`bpffs`].
//! - [`Steering`]: the rules ([`rules`]), the prefilter, the AF_XDP socket map and the
//!   counters of an attachment, changed at run time through its pinned maps, no reload.
//! - [`placement`]: where the prefilter and the steering program run (hw, drv, skb), decided
//!   from facts alone before anything is loaded.
//! - [`offload_check`]: whether a program fits a NIC's offload limits, read from the object.
//! - [`hw`]: loading a program onto the NIC and attaching it in HW mode.
//! - [`modules`]: IO modules: a chain of XDP programs loaded, swapped and unloaded at run
//!   time, with the SDK's ABI from `offload_common::module`.
//! - [`test_run`]: `BPF_PROG_TEST_RUN` on an unattached copy, for fixtures and timing.
//! - [`OffloadError`]: everything the above can fail with; [`error_chain`] puts an error and
//!   its causes on one line.
//!
//! Where it sits: above `nic` (what the kernel says about an interface: ethtool, rtnetlink,
//! the netdev family), `wire` (packet views, used by the tests here) and `offload-common`
//! (the `#[repr(C)]` types shared with the eBPF programs); below `pipeline`, `probe` and
//! `trafficgen`, and the applications and CLI above them. Only its tests use `lab`. Its build
//! script compiles every eBPF program of `offload/ebpf`, and hands `trafficgen` the folder
//! holding the generator's object (`DEP_FASTPATH_EBPF_OBJECTS`).

#![warn(missing_docs)]

mod attach;
pub mod batch;
pub mod bpffs;
mod error;
mod error_chain;
pub mod hw;
pub mod kill_point;
pub mod mode;
pub mod modules;
pub mod netns;
pub mod offload_check;
mod pins;
pub mod placement;
mod program_image;
pub mod rules;
mod run_lock;
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
pub use program_image::ImageError;
pub use steering::{ActionCounters, HW_PREFILTER, RuleStats, Steering};
pub use xdp_state::{XdpState, attached as xdp_attached};

/// The steering program object of this build (built by build.rs from `offload/ebpf`).
pub static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));
