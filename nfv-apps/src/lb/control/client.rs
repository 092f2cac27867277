//! The client side: `fastpath lb status|backend|reload` sends one request and reads the
//! answer.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::lb::control::protocol::{Request, Response};

/// How long the appliance gets to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields: the message names each one
pub enum ClientError {
    /// The socket's mode keeps this user out.
    #[error(
        "connect to {} (the control socket is for root and the appliance's own user: run this as one of them)",
        path.display()
    )]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Nothing answers at the socket's path.
    #[error("connect to {} (is `fastpath lb --config ...` running?)", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The connection would not take a read timeout.
    #[error("set a read timeout on the control connection")]
    Timeout(#[source] io::Error),
    /// The request could not be encoded.
    #[error("encode the request")]
    Encode(#[source] serde_json::Error),
    /// The request could not be sent.
    #[error("send request")]
    Send(#[source] io::Error),
    /// The response could not be read.
    #[error("read response")]
    Read(#[source] io::Error),
    /// The appliance hung up without answering.
    #[error("{} closed the connection without a response", path.display())]
    Closed { path: PathBuf },
    /// The answer is not a response.
    #[error("bad response {line:?}")]
    BadResponse {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends one request to the appliance at `control` and returns its response.
pub fn send(control: &Path, request: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(control).map_err(|source| {
        let path = control.to_path_buf();
        match source.kind() {
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path, source },
            _ => ClientError::Connect { path, source },
        }
    })?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(ClientError::Timeout)?;
    let mut writer = &stream;
    let sent = writeln!(
        writer,
        "{}",
        serde_json::to_string(request).map_err(ClientError::Encode)?
    );
    offload::kill_point::reached("control:request-sent");
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    // An appliance that refuses at once (busy) answers and closes before reading, so a
    // failed send may still have an answer waiting: that says more than the send error.
    if let Err(error) = sent
        && line.is_empty()
    {
        return Err(ClientError::Send(error));
    }
    read.map_err(ClientError::Read)?;
    if line.is_empty() {
        return Err(ClientError::Closed {
            path: control.to_path_buf(),
        });
    }
    serde_json::from_str(&line).map_err(|source| ClientError::BadResponse { line, source })
}
