//! Errnos in words, for reports that a person reads.

use std::io;

/// An errno's name and meaning, e.g. "EOPNOTSUPP: operation not supported by the driver".
pub fn explain_errno(error: &io::Error) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    let meaning = match code {
        libc::EOPNOTSUPP => "EOPNOTSUPP: the driver does not support it",
        libc::EINVAL => "EINVAL: the driver or kernel refused the arguments",
        libc::EBUSY => "EBUSY: already in use",
        libc::EPERM => "EPERM: needs root (CAP_NET_ADMIN, CAP_BPF)",
        libc::ENODEV => "ENODEV: no such device",
        libc::ENOENT => "ENOENT: not found",
        libc::ENOMEM => "ENOMEM: out of memory (or locked-memory limit)",
        libc::EEXIST => "EEXIST: a program is already attached in this mode",
        _ => return error.to_string(),
    };
    meaning.to_string()
}
