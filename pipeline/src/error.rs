//! What a worker can fail with.

use std::time::Duration;

use afxdp::XskError;

/// What a worker can fail with.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields: the message names each one
pub enum WorkerError {
    /// Its socket failed.
    #[error(transparent)]
    Socket(#[from] XskError),
    /// Its core does not exist or may not be used.
    #[error("cannot pin the worker for queue {queue} to core {core}: no such core, or not allowed")]
    Pin { queue: u32, core: usize },
    /// It has stopped already.
    #[error("the worker for queue {0} has stopped")]
    Stopped(u32),
    /// It did not take a new chain in time.
    #[error("the worker for queue {0} did not take the new chain within {1:?}")]
    SwapTimeout(u32, Duration),
    /// Its thread panicked.
    #[error("the worker for queue {0} panicked")]
    Panicked(u32),
}
