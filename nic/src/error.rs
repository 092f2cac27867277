use std::io;

/// Everything a question to the kernel about an interface can fail with. Syscall failures
/// and the kernel's refusals name the call and keep the `io::Error`; a reply that does not
/// parse names the reply and the attribute.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// No interface of that name (or index) in the caller's network namespace.
    #[error("interface {0:?} not found in this network namespace")]
    NoInterface(String),
    /// A syscall failed, or the kernel answered a request with an errno.
    #[error("{call} failed")]
    Syscall {
        /// The syscall or request, e.g. "SIOCETHTOOL ETHTOOL_GDRVINFO", "RTM_GETLINK".
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The kernel's reply lacks an attribute the request is for.
    #[error("{reply} reply has no {attribute}")]
    MissingAttribute {
        /// The request whose reply it is.
        reply: &'static str,
        /// The attribute that is missing.
        attribute: &'static str,
    },
    /// A reply (or one of its attributes) is shorter or longer than its type says.
    #[error("{reply} reply: malformed {attribute}")]
    Malformed {
        /// The request whose reply it is.
        reply: &'static str,
        /// The header or attribute that does not parse.
        attribute: &'static str,
    },
}

impl NicError {
    pub(crate) fn syscall(call: &'static str, source: io::Error) -> NicError {
        NicError::Syscall { call, source }
    }

    /// The errno behind the failure, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NicError::Syscall { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
