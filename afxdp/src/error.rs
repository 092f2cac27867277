//! One error type for the crate. A failing syscall names the call, keeps the `io::Error`
//! (whose text is the errno meaning) and, where we know the likely cause, says what to do.

use std::io;

/// Everything that can go wrong creating a UMEM or binding and driving a socket.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A system call failed.
    #[error("{call} failed: {source}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Syscall {
        /// The call and, where it has several uses, the operation:
        /// `"setsockopt(XDP_UMEM_REG)"`.
        call: &'static str,
        /// The likely cause and what to do about it, when the errno says enough to guess.
        hint: Option<String>,
        /// The error the call returned (its errno).
        #[source]
        source: io::Error,
    },
    /// A configuration value or argument the kernel would refuse, caught before any syscall.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The field or argument at fault (`"frame_size"`, `"rx_size"`, `"len"`...).
        field: &'static str,
        /// Why it is refused, and what would be accepted.
        reason: String,
    },
    /// No network interface has this name.
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    /// The queue index is not below the interface's queue count.
    #[error("queue {queue} does not exist (device {iface} has {available})")]
    NoSuchQueue {
        /// The interface.
        iface: String,
        /// The queue asked for.
        queue: u32,
        /// Queues an AF_XDP socket can bind to: the larger of the RX and TX channel counts
        /// (ethtool `ETHTOOL_GCHANNELS`, combined channels included).
        available: u32,
    },
    /// [`crate::BindMode::ZeroCopy`] was asked for and the driver refused it (`EOPNOTSUPP`
    /// from `bind`); `BindMode::Auto` would have fallen back to copy mode.
    #[error("zero-copy not supported by driver {driver} on {iface}: {source}")]
    ZeroCopyUnsupported {
        /// The interface.
        iface: String,
        /// The driver, as ethtool names it ("unknown" if it could not be read).
        driver: String,
        /// The error `bind` returned.
        #[source]
        source: io::Error,
    },
    /// `huge_pages` was set and the UMEM could not be mapped with 2 MiB pages.
    #[error(
        "no free 2 MiB huge pages for a {bytes}-byte UMEM: {source} (reserve them with \
         `sysctl -w vm.nr_hugepages={pages}` or add hugepages={pages} to the kernel command line)"
    )]
    HugePagesUnavailable {
        /// The UMEM area's length in bytes (rounded up to whole huge pages).
        bytes: usize,
        /// How many 2 MiB huge pages that takes.
        pages: usize,
        /// The error `mmap` returned.
        #[source]
        source: io::Error,
    },
    /// The socket that registered the UMEM was closed. The kernel shares a UMEM through that
    /// socket's fd, so no further socket can bind to it.
    #[error("the UMEM's first socket is closed, so no further socket can share the UMEM")]
    UmemOwnerClosed,
    /// A frame was used with a UMEM other than its own. Nothing returns it at present: the
    /// [`crate::Umem`] methods panic on a foreign frame, as it is a programming error.
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
