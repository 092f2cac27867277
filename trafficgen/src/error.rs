//! What the generator can fail with.

use std::io;

use afxdp::XskError;
use aya::{EbpfError, maps::MapError, programs::ProgramError};
use offload_common::GEN_OFFSET_MASK;

/// Everything the generator can fail with: its options, its frames, loading and running its
/// program, and the AF_XDP sockets. Causes are kept as sources.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The kernel or aya refused the generator's eBPF object.
    #[error("load the generator's eBPF object")]
    Load(#[source] EbpfError),
    /// The object lacks `gen_tx` (a build of the eBPF crate gone wrong).
    #[error("the generator's eBPF object has no XDP program gen_tx")]
    NoProgram,
    /// The object lacks the named map.
    #[error("the generator's eBPF object has no map {0}")]
    NoMap(&'static str),
    /// A step on `gen_tx` failed (verifying, attaching, taking its fd).
    #[error("{what}")]
    Program {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// Reading or writing a map of the program failed.
    #[error("{what}")]
    Map {
        /// The map and the step.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A system call failed.
    #[error("{call} failed")]
    Syscall {
        /// The call, with what it needs when that is the usual cause.
        call: &'static str,
        /// The kernel's answer.
        #[source]
        io_error: io::Error,
    },
    /// An rtnetlink request failed.
    #[error("{what}")]
    Netlink {
        /// The request.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// An interface the generator made vanished before it could use it.
    #[error("interface {0:?} not found in this network namespace")]
    UnknownInterface(String),
    /// A step of an AF_XDP sender failed.
    #[error("AF_XDP TX: {what}")]
    Xsk {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: XskError,
    },
    /// AF_XDP TX binds one queue per core, and the interface has fewer queues.
    #[error(
        "AF_XDP TX: {cores} cores but {iface} has {queues} queue(s): each core binds its own queue"
    )]
    MoreCoresThanQueues {
        /// Cores asked for.
        cores: usize,
        /// The interface.
        iface: String,
        /// Its queues.
        queues: u32,
    },
    /// The options hold no frame.
    #[error("generator frames: no frame to send")]
    NoFrames,
    /// A frame of a mix has a share of 0.
    #[error("generator frames: the {wire_size}-byte frame has a share of 0")]
    ZeroShare {
        /// The frame's size on the wire.
        wire_size: usize,
    },
    /// The frames of a mix differ in their headers (the program has one set of offsets).
    #[error("generator frames: the frames of a mix must share their headers")]
    MixedHeaders,
    /// A write offset lies beyond what the program can reach.
    #[error("generator frames: write offset {0} beyond {GEN_OFFSET_MASK}")]
    OffsetTooFar(u16),
    /// More flows asked for than the address and port ranges hold.
    #[error(
        "generator flows: {flows} flows, but the address and port ranges hold only {distinct} distinct 5-tuples"
    )]
    TooManyFlows {
        /// Flows asked for.
        flows: u32,
        /// Distinct 5-tuples in the ranges.
        distinct: u64,
    },
    /// A template's source and destination are of different IP families.
    #[error("source and destination are of different IP families")]
    MixedFamilies,
    /// A template's size is too small for its headers and the stamp, or above 1518.
    #[error(
        "frame size {size} out of range: {min} to {MAX_FRAME_SIZE} bytes for this header stack"
    )]
    FrameSize {
        /// The size asked for.
        size: usize,
        /// The smallest this header stack allows.
        min: usize,
    },
}

/// The largest frame the generator sends, on the wire with the FCS (no jumbo frames).
pub const MAX_FRAME_SIZE: usize = 1518;

impl GenError {
    pub(crate) fn syscall(call: &'static str, io_error: io::Error) -> GenError {
        GenError::Syscall { call, io_error }
    }
}
