//! A fake kernel for tests: netlink replies handed out in order, each request kept.

use std::{collections::VecDeque, io};

use crate::{netlink, sys::Netlink};

/// Answers each netlink request with the next recorded reply.
#[derive(Default)]
pub struct FakeNetlink {
    pub replies: VecDeque<io::Result<Vec<u8>>>,
    /// (protocol, request) of every exchange, in order.
    pub requests: Vec<(i32, Vec<u8>)>,
}

impl FakeNetlink {
    pub fn answering(replies: impl IntoIterator<Item = io::Result<Vec<u8>>>) -> FakeNetlink {
        FakeNetlink {
            replies: replies.into_iter().collect(),
            requests: Vec::new(),
        }
    }
}

impl Netlink for FakeNetlink {
    fn exchange(&mut self, protocol: i32, request: &[u8]) -> io::Result<Vec<u8>> {
        self.requests.push((protocol, request.to_vec()));
        self.replies
            .pop_front()
            .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)))
    }
}

/// One netlink message of `kind` with `payload`, padded.
pub fn message(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = netlink::header(netlink::HEADER_LEN + payload.len(), kind, flags).to_vec();
    bytes.extend_from_slice(payload);
    bytes.resize((bytes.len() + 3) & !3, 0);
    bytes
}

/// An NLMSG_ERROR reply carrying `errno`.
pub fn error(errno: i32) -> Vec<u8> {
    let mut payload = (-errno).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; netlink::HEADER_LEN]);
    message(2, 0, &payload)
}
