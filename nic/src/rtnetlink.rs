//! rtnetlink requests through the [`Netlink`] seam: messages are built and parsed with
//! `netlink-packet-route`, so tests answer with messages built the same way.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{
    NicError,
    netlink::{self, NETLINK_ROUTE},
    sys::Netlink,
};

/// Whether a request asks for one object or a dump of every object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    One,
    Dump,
}

/// Sends `message` and returns the kernel's answers. `what` names the request in errors.
pub(crate) fn request(
    kernel: &mut dyn Netlink,
    what: &'static str,
    message: RouteNetlinkMessage,
    scope: Scope,
) -> Result<Vec<RouteNetlinkMessage>, NicError> {
    let mut header = NetlinkHeader::default();
    header.flags = match scope {
        Scope::One => NLM_F_REQUEST,
        Scope::Dump => NLM_F_REQUEST | NLM_F_DUMP,
    };
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut bytes = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut bytes);
    let reply = kernel
        .exchange(NETLINK_ROUTE, &bytes)
        .map_err(|error| NicError::syscall(what, error))?;
    netlink::answers(what, &reply)?
        .into_iter()
        .map(
            |answer| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(answer.bytes) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(inner),
                    ..
                }) => Ok(Some(inner)),
                Ok(_) => Ok(None),
                Err(_) => Err(NicError::Malformed {
                    reply: what,
                    attribute: "route netlink message",
                }),
            },
        )
        .filter_map(Result::transpose)
        .collect()
}

/// Serializes `message` as the kernel would send it (for tests' fake replies).
#[cfg(test)]
pub(crate) fn reply(messages: &[RouteNetlinkMessage], dump: bool) -> Vec<u8> {
    use netlink_packet_core::{DoneMessage, NLM_F_MULTIPART};
    let mut bytes = Vec::new();
    let mut push = |payload: NetlinkPayload<RouteNetlinkMessage>| {
        let mut header = NetlinkHeader::default();
        if dump {
            header.flags = NLM_F_MULTIPART;
        }
        let mut packet = NetlinkMessage::new(header, payload);
        packet.finalize();
        let start = bytes.len();
        bytes.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut bytes[start..]);
        bytes.resize((bytes.len() + 3) & !3, 0);
    };
    for message in messages {
        push(NetlinkPayload::InnerMessage(message.clone()));
    }
    if dump {
        push(NetlinkPayload::Done(DoneMessage::default()));
    }
    bytes
}
