//! One error type for the crate. A failing syscall names the call, keeps the `io::Error`
//! (whose text is the errno meaning) and, where we know the likely cause, says what to do.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("{call} failed: {source}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Syscall {
        call: &'static str,
        hint: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("queue {queue} does not exist (device {iface} has {available})")]
    NoSuchQueue {
        iface: String,
        queue: u32,
        available: u32,
    },
    #[error("zero-copy not supported by driver {driver} on {iface}: {source}")]
    ZeroCopyUnsupported {
        iface: String,
        driver: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "no free 2 MiB huge pages for a {bytes}-byte UMEM: {source} (reserve them with \
         `sysctl -w vm.nr_hugepages={pages}` or add hugepages={pages} to the kernel command line)"
    )]
    HugePagesUnavailable {
        bytes: usize,
        pages: usize,
        #[source]
        source: io::Error,
    },
    #[error("the UMEM's first socket is closed, so no further socket can share the UMEM")]
    UmemOwnerClosed,
    #[error("frame belongs to another UMEM")]
    ForeignFrame,
}

impl XskError {
    pub(crate) fn syscall(call: &'static str, source: io::Error) -> XskError {
        XskError::Syscall {
            call,
            hint: None,
            source,
        }
    }

    pub(crate) fn syscall_with_hint(
        call: &'static str,
        source: io::Error,
        hint: impl Into<String>,
    ) -> XskError {
        XskError::Syscall {
            call,
            hint: Some(hint.into()),
            source,
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> XskError {
        XskError::Config {
            field,
            reason: reason.into(),
        }
    }
}
