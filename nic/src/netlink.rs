//! Netlink framing shared by the rtnetlink and generic-netlink clients: message headers
//! (`struct nlmsghdr`, include/uapi/linux/netlink.h), attributes (`struct nlattr`), and how
//! a reply ends and reports errors.

use crate::NicError;

/// `NETLINK_ROUTE`: links, addresses, routes, neighbours.
pub const NETLINK_ROUTE: i32 = 0;
/// `NETLINK_GENERIC`: families such as `netdev`.
pub const NETLINK_GENERIC: i32 = 16;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_MULTI: u16 = 2;
/// The dump was interrupted by a change of the table (include/uapi/linux/netlink.h).
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `sizeof(struct nlmsghdr)`.
pub const HEADER_LEN: usize = 16;

/// One message of a reply: its type, flags, and the bytes after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// The messages in `bytes`, in order; `None` when a header's length does not fit.
fn split(mut bytes: &[u8]) -> Option<Vec<Message<'_>>> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        if len < HEADER_LEN || len > bytes.len() {
            return None;
        }
        messages.push(Message {
            kind: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            bytes: &bytes[..len],
        });
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    Some(messages)
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Whether a received datagram ends the reply: it holds NLMSG_DONE or NLMSG_ERROR, or its
/// messages are not part of a multi-part dump (or it does not parse, and nothing useful
/// can follow).
pub(crate) fn is_last(datagram: &[u8]) -> bool {
    match split(datagram) {
        Some(messages) => messages
            .iter()
            .any(|m| m.kind == NLMSG_DONE || m.kind == NLMSG_ERROR || m.flags & NLM_F_MULTI == 0),
        None => true,
    }
}

/// The answers in a reply to `request`: every message before NLMSG_DONE, or the kernel's
/// errno when it sent one (`struct nlmsgerr`: a negative errno, then the request's header).
pub fn answers<'a>(request: &'static str, reply: &'a [u8]) -> Result<Vec<Message<'a>>, NicError> {
    let malformed = NicError::Malformed {
        reply: request,
        attribute: "nlmsghdr",
    };
    let mut answers = Vec::new();
    for message in split(reply).ok_or(malformed)? {
        if message.flags & NLM_F_DUMP_INTR != 0 {
            // The table changed during the dump: what came is not a consistent answer.
            return Err(NicError::syscall(
                request,
                std::io::Error::from_raw_os_error(libc::EINTR),
            ));
        }
        match message.kind {
            // A dump that failed part-way says so in its NLMSG_DONE (an errno, since 4.x).
            NLMSG_DONE => {
                error_code(request, &message, true)?;
                break;
            }
            // An acknowledgement (errno 0) is not an answer.
            NLMSG_ERROR => error_code(request, &message, false)?,
            _ => answers.push(message),
        }
    }
    Ok(answers)
}

/// The errno of an NLMSG_ERROR (`struct nlmsgerr`) or NLMSG_DONE message, as an error when
/// it is one. A DONE message may carry no code at all (`optional`).
fn error_code(
    request: &'static str,
    message: &Message<'_>,
    optional: bool,
) -> Result<(), NicError> {
    let Some(code) = message.payload().get(..4) else {
        return if optional {
            Ok(())
        } else {
            Err(NicError::Malformed {
                reply: request,
                attribute: "nlmsgerr",
            })
        };
    };
    let code = i32::from_ne_bytes(code.try_into().expect("4 bytes"));
    match code.checked_neg() {
        Some(0) => Ok(()),
        Some(errno) if errno > 0 => Err(NicError::syscall(
            request,
            std::io::Error::from_raw_os_error(errno),
        )),
        _ => Err(NicError::Malformed {
            reply: request,
            attribute: "nlmsgerr",
        }),
    }
}

/// A request header for `len` bytes of message in all (header included).
pub fn header(len: usize, kind: u16, flags: u16) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&(len as u32).to_ne_bytes());
    header[4..6].copy_from_slice(&kind.to_ne_bytes());
    header[6..8].copy_from_slice(&flags.to_ne_bytes());
    header[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    // Port 0 addresses the kernel.
    header
}

/// The attributes of one message, as (type, payload); parsing stops at the first one whose
/// length does not fit.
pub fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        // The top two bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        found.push((kind, &bytes[4..len]));
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    found
}

/// An attribute, padded to 4 bytes.
pub fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut bytes = Vec::with_capacity(align(len));
    bytes.extend_from_slice(&(len as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize(align(len), 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(HEADER_LEN + payload.len(), kind, flags).to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(align(bytes.len()), 0);
        bytes
    }

    #[test]
    fn a_dump_ends_at_done_and_single_answers_end_at_once() {
        let mut dump = message(16, NLM_F_MULTI, &[1, 2, 3]);
        assert!(!is_last(&dump));
        dump.extend(message(16, NLM_F_MULTI, &[4; 8]));
        dump.extend(message(NLMSG_DONE, NLM_F_MULTI, &[0; 4]));
        assert!(is_last(&dump));
        let answers = answers("RTM_GETROUTE", &dump).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(&answers[0].payload()[..3], &[1, 2, 3]);
        assert!(is_last(&message(16, 0, &[])));
    }

    #[test]
    fn an_error_reply_keeps_the_errno_and_names_the_request() {
        let reply = message(NLMSG_ERROR, 0, &(-libc::ENODEV).to_ne_bytes());
        let error = answers("RTM_GETLINK", &reply).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV));
        assert!(
            error.to_string().starts_with("RTM_GETLINK failed"),
            "{error}"
        );
        let ack = message(NLMSG_ERROR, 0, &0i32.to_ne_bytes());
        assert!(answers("RTM_GETLINK", &ack).unwrap().is_empty());
        let impossible = message(NLMSG_ERROR, 0, &i32::MIN.to_ne_bytes());
        assert!(matches!(
            answers("RTM_GETLINK", &impossible),
            Err(NicError::Malformed { .. })
        ));
    }

    #[test]
    fn a_dump_that_failed_or_was_interrupted_is_an_error_not_a_short_answer() {
        let mut failed = message(16, NLM_F_MULTI, &[1; 8]);
        failed.extend(message(
            NLMSG_DONE,
            NLM_F_MULTI,
            &(-libc::ENOBUFS).to_ne_bytes(),
        ));
        let error = answers("RTM_GETROUTE", &failed).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOBUFS));
        let interrupted = message(16, NLM_F_MULTI | NLM_F_DUMP_INTR, &[1; 8]);
        let error = answers("RTM_GETNEIGH", &interrupted).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINTR));
    }

    #[test]
    fn truncated_replies_are_malformed_not_a_panic() {
        let reply = message(16, 0, &[0; 8]);
        for cut in [3, HEADER_LEN - 1, reply.len() - 4] {
            assert!(matches!(
                answers("RTM_GETLINK", &reply[..cut]),
                Err(NicError::Malformed {
                    attribute: "nlmsghdr",
                    ..
                })
            ));
        }
        let short_error = message(NLMSG_ERROR, 0, &[]);
        assert!(matches!(
            answers("RTM_GETLINK", &short_error),
            Err(NicError::Malformed {
                attribute: "nlmsgerr",
                ..
            })
        ));
    }

    #[test]
    fn attributes_round_trip_and_stop_at_a_bad_length() {
        let mut bytes = attribute(1, &7u32.to_ne_bytes());
        bytes.extend(attribute(2, b"ab"));
        assert_eq!(
            attributes(&bytes),
            vec![(1, &7u32.to_ne_bytes()[..]), (2, &b"ab"[..])]
        );
        assert_eq!(attributes(&bytes[..bytes.len() - 3]).len(), 1);
    }
}
