//! What a worker can fail with.

use std::time::Duration;

use afxdp::XskError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Socket(#[from] XskError),
    #[error("cannot pin the worker for queue {queue} to core {core}: no such core, or not allowed")]
    Pin { queue: u32, core: usize },
    #[error("the worker for queue {0} has stopped")]
    Stopped(u32),
    #[error("the worker for queue {0} did not take the new chain within {1:?}")]
    SwapTimeout(u32, Duration),
    #[error("the worker for queue {0} panicked")]
    Panicked(u32),
}
