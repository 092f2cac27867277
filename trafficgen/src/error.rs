//! What the generator can fail with.

use std::io;

use afxdp::XskError;
use aya::{EbpfError, maps::MapError, programs::ProgramError};
use offload_common::GEN_OFFSET_MASK;

/// Everything the generator can fail with: its options, its frames, loading and running its
/// program, and the AF_XDP sockets. Causes are kept as sources.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("load the generator's eBPF object")]
    Load(#[source] EbpfError),
    #[error("the generator's eBPF object has no XDP program gen_tx")]
    NoProgram,
    #[error("the generator's eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error("{what}")]
    Program {
        what: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("{what}")]
    Map {
        what: &'static str,
        #[source]
        source: MapError,
    },
    #[error("{call} failed")]
    Syscall {
        call: &'static str,
        #[source]
        io_error: io::Error,
    },
    #[error("{what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0:?} not found in this network namespace")]
    UnknownInterface(String),
    #[error("AF_XDP TX: {what}")]
    Xsk {
        what: &'static str,
        #[source]
        source: XskError,
    },
    #[error(
        "AF_XDP TX: {cores} cores but {iface} has {queues} queue(s): each core binds its own queue"
    )]
    MoreCoresThanQueues {
        cores: usize,
        iface: String,
        queues: u32,
    },
    #[error("generator frames: no frame to send")]
    NoFrames,
    #[error("generator frames: the {wire_size}-byte frame has a share of 0")]
    ZeroShare { wire_size: usize },
    #[error("generator frames: the frames of a mix must share their headers")]
    MixedHeaders,
    #[error("generator frames: write offset {0} beyond {GEN_OFFSET_MASK}")]
    OffsetTooFar(u16),
    #[error(
        "generator flows: {flows} flows, but the address and port ranges hold only {distinct} distinct 5-tuples"
    )]
    TooManyFlows { flows: u32, distinct: u64 },
    #[error("source and destination are of different IP families")]
    MixedFamilies,
    #[error(
        "frame size {size} out of range: {min} to {MAX_FRAME_SIZE} bytes for this header stack"
    )]
    FrameSize { size: usize, min: usize },
}

/// The largest frame the generator sends, on the wire with the FCS (no jumbo frames).
pub const MAX_FRAME_SIZE: usize = 1518;

impl GenError {
    pub(crate) fn syscall(call: &'static str, io_error: io::Error) -> GenError {
        GenError::Syscall { call, io_error }
    }
}
