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

use crate::lb::{
    appliance::Status,
    config::VipKey,
    registry::{Changes, Registry},
    tables::BackendState,
};

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

/// Applies a `backend` request to the registry; the appliance republishes the tables after.
/// Kept apart from the appliance so the whole decision can be tested (and fuzzed) without
/// sockets or workers. The error is the response's message.
pub fn apply_backend_command(
    registry: &mut Registry,
    action: &str,
    vip: &str,
    backend: IpAddr,
    weight: Option<u32>,
) -> Result<(), String> {
    let vip: VipKey = vip.parse()?;
    let done = match action {
        "add" => registry.add_backend(&vip, backend, weight.unwrap_or(1)),
        "remove" => registry.remove_backend(&vip, backend),
        "drain" => registry.set_operator_state(&vip, backend, BackendState::Draining, weight),
        "disable" => registry.set_operator_state(&vip, backend, BackendState::Disabled, weight),
        "enable" => registry.set_operator_state(&vip, backend, BackendState::Active, weight),
        other => {
            return Err(format!(
                "unknown backend action {other:?}: expected add, remove, drain, disable or enable"
            ));
        }
    };
    done.map_err(|error| error.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::config::Config;

    fn registry() -> Registry {
        let text = "interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.100\"\nport = 80\n\
                    protocol = \"tcp\"\nforwarding = \"dsr-l2\"\n\
                    [[vip.backend]]\naddress = \"10.0.1.11\"\n";
        Registry::new(&Config::parse(text, "lb.toml").unwrap())
    }

    #[test]
    fn backend_commands_change_the_registry_or_say_why_not() {
        let mut registry = registry();
        let vip = "10.0.0.100:80/tcp";
        let new: IpAddr = "10.0.1.12".parse().unwrap();
        apply_backend_command(&mut registry, "add", vip, new, Some(3)).unwrap();
        assert_eq!(registry.vips[0].backends[1].weight, 3);
        apply_backend_command(&mut registry, "drain", vip, new, None).unwrap();
        assert_eq!(
            registry.vips[0].backends[1].operator,
            BackendState::Draining
        );
        let error = apply_backend_command(&mut registry, "restart", vip, new, None).unwrap_err();
        assert!(
            error.contains("unknown backend action \"restart\""),
            "{error}"
        );
        let error =
            apply_backend_command(&mut registry, "add", "10.0.0.100:80", new, None).unwrap_err();
        assert!(error.contains("expected ADDR:PORT/PROTO"), "{error}");
        let error =
            apply_backend_command(&mut registry, "add", vip, "fd00::1".parse().unwrap(), None)
                .unwrap_err();
        assert!(
            error.contains("is IPv6, VIP 10.0.0.100:80/tcp is not"),
            "{error}"
        );
        apply_backend_command(&mut registry, "remove", vip, new, None).unwrap();
        assert_eq!(registry.vips[0].backends.len(), 1);
    }

    #[test]
    fn requests_decode_from_one_json_line() {
        let line = r#"{"command":"backend","action":"add","vip":"[fd00::100]:80/tcp","backend":"fd00:1::11","weight":2}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert!(matches!(
            request,
            Request::Backend {
                weight: Some(2),
                ..
            }
        ));
        assert!(serde_json::from_str::<Request>(r#"{"command":"status"}"#).is_ok());
        assert!(serde_json::from_str::<Request>(r#"{"command":"reboot"}"#).is_err());
    }
}
