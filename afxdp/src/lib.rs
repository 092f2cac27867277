//! AF_XDP sockets in pure Rust on `libc`: UMEM, the fill/completion/RX/TX rings, binding in
//! copy or zero-copy mode, wakeups, busy polling, multi-buffer and statistics.
//!
//! Layer 2 of the workspace (see docs/architecture.md): it makes its socket calls through `libc`
//! itself, and `pipeline`, the network functions, the benchmarks and `fastpath xsk` drive
//! sockets through it. Steering packets to a socket (an
//! XDP program with an XSKMAP) is `offload`'s job, not this crate's.
//!
//! Entry points: [`Umem::new`] maps the frame area and returns a [`FramePool`] holding
//! every [`Frame`]; [`Socket::bind`] binds a socket to one queue with a [`SocketConfig`];
//! then [`Socket::fill`], [`Socket::receive`] ([`RxBatch`]), [`Socket::transmit`]
//! ([`TxBatch`]), [`Socket::complete`] and the wakeup calls move frames through the rings.
//! Errors are [`XskError`].
//!
//! Ownership model: every UMEM frame is represented by one `Frame` token. A token lives in
//! a `FramePool`, in user code, or is moved into a ring (and then the kernel owns the
//! bytes until the frame comes back on the RX or completion ring as a new token). Only a
//! token holder can read or write a frame's bytes, so user code never sees a frame while
//! the kernel may write it, and a frame cannot sit in two rings at once.
//!
//! ```no_run
//! use afxdp::{Socket, SocketConfig, Umem, UmemConfig};
//! let (umem, mut pool) = Umem::new(UmemConfig::default())?;
//! let mut socket = Socket::bind(&umem, "eth0", 0, &SocketConfig::default())?;
//! socket.fill(&mut pool, 2048);
//! for frame in socket.receive(64) {
//!     println!("{} bytes", umem.data(&frame).len());
//!     pool.put(frame, &umem);
//! }
//! # Ok::<(), afxdp::XskError>(())
//! ```
#![warn(missing_docs)]

mod batch;
mod error;
mod ring;
#[cfg(any(test, feature = "bench-rings"))]
pub mod ring_loop;
mod socket;
mod sys;
mod umem;

pub use batch::{RxBatch, TxBatch};
pub use error::XskError;
pub use socket::{BindMode, BusyPoll, Socket, SocketConfig, Statistics};
pub use umem::{Frame, FramePool, Umem, UmemConfig, XDP_PACKET_HEADROOM};
