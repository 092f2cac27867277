//! The control protocol: one JSON request per line on the appliance's Unix socket, one JSON
//! response back. `protocol` and `status` are the messages; `server` serves them for the
//! appliance, `client` sends them for `fastpath lb`; `backend_command` is what a `backend`
//! request does to the registry.

mod backend_command;
mod client;
mod protocol;
mod server;
mod status;

pub use backend_command::{BackendCommandError, apply_backend_command};
pub use client::{ClientError, send};
pub use protocol::{BackendAction, Request, Response};
pub use server::{ControlError, ControlServer, Limits, parse_request, peer_allowed};
pub use status::{Status, WorkerEntry};
