//! The messages of the control socket: a [`Request`] line in, a [`Response`] line out.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::lb::{control::status::Status, registry::Changes};

/// One request line, e.g. `{"command":"backend","action":"drain","vip":"10.0.0.100:80/tcp",
/// "backend":"10.0.1.11"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Everything `fastpath lb status` shows.
    Status,
    /// Re-read the config file and apply the difference.
    Reload,
    /// Change one backend of one VIP.
    Backend {
        /// What to do to it.
        action: BackendAction,
        /// `ADDR:PORT/PROTO`, checked when the command is applied.
        vip: String,
        /// The backend's address.
        backend: IpAddr,
        /// Its new weight, if it changes (for `add`, 1 when not given).
        weight: Option<u32>,
    },
}

/// What a `backend` request does to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum BackendAction {
    /// Adds it to the VIP (weight 1 unless given).
    Add,
    /// Removes it; its flows move.
    Remove,
    /// Keeps its flows, sends it no new ones.
    Drain,
    /// Takes it out: its flows move too.
    Disable,
    /// Takes it back in.
    Enable,
}

impl BackendAction {
    /// The action as the protocol and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            BackendAction::Add => "add",
            BackendAction::Remove => "remove",
            BackendAction::Drain => "drain",
            BackendAction::Disable => "disable",
            BackendAction::Enable => "enable",
        }
    }
}

impl fmt::Display for BackendAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendAction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "add" => BackendAction::Add,
            "remove" => BackendAction::Remove,
            "drain" => BackendAction::Drain,
            "disable" => BackendAction::Disable,
            "enable" => BackendAction::Enable,
            other => {
                return Err(format!(
                    "unknown backend action {other:?}: expected add, remove, drain, disable or enable"
                ));
            }
        })
    }
}

impl TryFrom<String> for BackendAction {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// One response line: `ok`, and an error, a status or the changes made.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to `status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What `reload` or `backend` changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

impl Response {
    /// A refusal, saying why.
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            error: Some(message.into()),
            ..Response::default()
        }
    }
    /// The answer to `status`.
    pub fn status(status: Status) -> Response {
        Response {
            ok: true,
            status: Some(status),
            ..Response::default()
        }
    }
    /// Done, with what changed.
    pub fn changes(changes: Changes) -> Response {
        Response {
            ok: true,
            changes: Some(changes),
            ..Response::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_from_one_json_line() {
        let line = r#"{"command":"backend","action":"add","vip":"[fd00::100]:80/tcp","backend":"fd00:1::11","weight":2}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert!(matches!(
            request,
            Request::Backend {
                action: BackendAction::Add,
                weight: Some(2),
                ..
            }
        ));
        assert_eq!(serde_json::to_string(&request).unwrap(), line);
        assert!(serde_json::from_str::<Request>(r#"{"command":"status"}"#).is_ok());
        assert!(serde_json::from_str::<Request>(r#"{"command":"reboot"}"#).is_err());
    }

    #[test]
    fn an_unknown_action_is_refused_with_the_actions_there_are() {
        let line = r#"{"command":"backend","action":"restart","vip":"10.0.0.100:80/tcp","backend":"10.0.1.11"}"#;
        let error = serde_json::from_str::<Request>(line)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "unknown backend action \"restart\": expected add, remove, drain, disable or enable"
            ),
            "{error}"
        );
    }
}
