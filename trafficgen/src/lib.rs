//! The traffic generator, in two modes.
//!
//! **Live frames** (the default, the xdp-trafficgen technique): `BPF_PROG_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`, the one program of the generator's own eBPF
//! object ([`GENERATOR_OBJECT`]; loading it creates none of the steering program's maps).
//! User space builds a template frame ([`Template`] into [`GenFrame`]); the kernel runs the
//! program on it `repeat` times per call in batches, and each XDP_TX leaves through the
//! interface named in the context, via the driver's `ndo_xdp_xmit` (on veth: into the
//! peer's XDP path, which therefore needs an XDP program). Per packet the program writes
//! the flow's ports and addresses (flow `n` is the `n`-th point of the 5-tuple ranges,
//! [`FlowSpace`]; the IPv4 header checksum is refreshed) and a [`wire::stamp`] (sequence
//! number and timestamp) into the payload. It also writes back the template's Ethernet
//! header and TTL (or hop limit): the run's pages come back with what the receivers wrote
//! into them in place (a router rewrites the MACs and decrements the TTL), and without
//! this the frames after the first round of pages were addressed to the router's next
//! hop. While it runs, the program is also attached to a spare interface (see
//! `dispatcher_hold.rs` for why).
//!
//! **AF_XDP TX**: one socket per core writes the same frames, flows and stamps from user
//! space and hands them to the driver.
//!
//! One thread per core; a rate limit paces each thread. A mix of frame sizes ([`IMIX`]) is
//! sent in its proportions: per call in live-frames mode, per frame in AF_XDP mode.

#![warn(missing_docs)]

mod dispatcher_hold;
mod error;
mod frame;
mod generator;
mod live;
mod options;
mod pacer;
mod xsk_tx;

pub use error::{GenError, MAX_FRAME_SIZE};
pub use frame::{FCS_LEN, FrameFields, GenFrame, IMIX, L4Checksum, L4Kind, Template};
pub use generator::Generator;
pub use live::GENERATOR_OBJECT;
pub use offload_common::FlowSpace;
pub use options::{GenMode, GenOptions, GenReport};
pub use pacer::monotonic_ns;
