//! IO modules: load, chain, swap and unload XDP modules on an interface at run time.
//!
//! A module is one XDP program in an ELF object carrying fastpath module metadata, built
//! against the SDK (`sdk/rust`, `sdk/c/module.h`; the ABI is `offload_common::module`).
//! The chain's entry program ([`CHAIN_OBJECT`]) is attached to the interface with the
//! first module and detached with the last; it parses each packet once, fills the context
//! and tail-calls the modules of the running revision in order (freplace, the mechanism of
//! libxdp's dispatcher, is refused on these kernels; see docs/modules.md).
//!
//! Every change builds a whole new revision beside the running one and switches to it
//! with one map update, so no packet sees a half-built chain, and a command that dies
//! leaves the running chain intact; the next command removes what it left. [`swap`]
//! hands the old version's maps to the new one where their shapes match. [`scaffold`]
//! writes new module projects; [`map`] reads and writes a running module's maps. [`apply`]
//! makes a whole chain from a chain file ([`spec`]) in one revision; [`history`] keeps the
//! revisions [`rollback`] and [`diff`] work on; [`trial`] runs packets through a candidate
//! chain with `BPF_PROG_TEST_RUN`, attaching nothing.
//! docs/modules.md tells the whole design.

mod apply;
pub mod builtin;
mod chain;
mod entry;
mod error;
pub mod history;
mod hook;
pub mod map;
mod object;
mod ops;
mod report;
mod revision;
pub mod scaffold;
pub mod spec;
pub mod trial;
mod version;

pub use apply::{apply, diff, rollback, show};
pub use error::ModuleError;
pub use hook::{AttachedAs, ChainAt, Hook};
pub use object::{MapShape, ModuleObject};
pub use offload_common::module::ABI_VERSION;
pub use ops::{Position, list, load, profile, read_counter, swap, unload};
pub use report::{
    Applied, ChainDiff, ChainListing, ChainShow, Change, Loaded, MapHandover, ModuleChange,
    ModuleEntry, Swapped, Unloaded,
};

/// The chain's entry object of this build (built by build.rs from `offload/ebpf`).
pub static CHAIN_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chain"));
