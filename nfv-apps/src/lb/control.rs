//! The control protocol: one JSON request per line on the appliance's Unix socket, one JSON
//! response back.

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::lb::{appliance::Status, registry::Changes};

mod server;

pub use server::{ControlError, ControlServer, Limits, parse_request, peer_allowed};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
    Backend {
        action: String,
        vip: String,
        backend: IpAddr,
        weight: Option<u32>,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            error: Some(message.into()),
            ..Response::default()
        }
    }
    pub fn status(status: Status) -> Response {
        Response {
            ok: true,
            status: Some(status),
            ..Response::default()
        }
    }
    pub fn changes(changes: Changes) -> Response {
        Response {
            ok: true,
            changes: Some(changes),
            ..Response::default()
        }
    }
}

/// Sends one request to the appliance at `control` and returns its response.
pub fn send(control: &Path, request: &Request) -> Result<Response, String> {
    let stream = UnixStream::connect(control).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "connect to {}: {e} (the control socket is for root and the appliance's own user: run this as one of them)",
            control.display()
        ),
        _ => format!(
            "connect to {}: {e} (is `fastpath lb --config ...` running?)",
            control.display()
        ),
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = &stream;
    let sent = writeln!(
        writer,
        "{}",
        serde_json::to_string(request).map_err(|e| e.to_string())?
    );
    offload::kill_point::reached("control:request-sent");
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    // An appliance that refuses at once (busy) answers and closes before reading, so a
    // failed send may still have an answer waiting: that says more than the send error.
    if let Err(error) = sent
        && line.is_empty()
    {
        return Err(format!("send request: {error}"));
    }
    read.map_err(|e| format!("read response: {e}"))?;
    if line.is_empty() {
        return Err(format!(
            "{} closed the connection without a response",
            control.display()
        ));
    }
    serde_json::from_str(&line).map_err(|e| format!("bad response {line:?}: {e}"))
}
