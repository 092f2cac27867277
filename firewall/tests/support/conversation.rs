//! Random TCP conversations for the stateful differential (kernel_agrees.rs): a client and
//! a server exchanging segments with sequence and acknowledgment numbers a real stack
//! would use (Linux's conntrack checks them against its window), cut short at random, and
//! now and then a segment out of its state (an ACK before the handshake's answer, a
//! second SYN-ACK, data before the SYN...), or a lone segment of no connection at all.

use std::net::IpAddr;

use wire::{
    build::FrameBuilder,
    parse::tcp_flags::{ACK, FIN, RST, SYN},
};

/// TCP's push flag (RFC 9293), set on data segments.
const PSH: u8 = 0x08;

/// One segment of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// TCP flags.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (0 without ACK).
    pub ack: u32,
    /// Payload bytes.
    pub payload: usize,
}

/// A conversation between two endpoints.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// What it does, for a mismatch's report.
    pub script: &'static str,
    /// The client's address and port.
    pub client: (IpAddr, u16),
    /// The server's address and port.
    pub server: (IpAddr, u16),
    /// The segments, in the order they are sent.
    pub segments: Vec<Segment>,
}

/// Where each side is: its next sequence number.
struct Ends {
    client_next: u32,
    server_next: u32,
}

impl Ends {
    /// A segment from one side acknowledging all the other sent; advances the sender.
    fn send(&mut self, from_client: bool, flags: u8, payload: usize) -> Segment {
        let (own, theirs) = if from_client {
            (&mut self.client_next, self.server_next)
        } else {
            (&mut self.server_next, self.client_next)
        };
        let segment = Segment {
            from_client,
            flags,
            seq: *own,
            ack: if flags & ACK != 0 { theirs } else { 0 },
            payload,
        };
        let consumed = payload as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        *own = own.wrapping_add(consumed);
        segment
    }
}

/// The scripts: how a conversation goes before it is cut short or disturbed.
pub const SCRIPTS: [&str; 7] = [
    "handshake, data both ways, FINs both ways",
    "handshake, data, RST from the client",
    "handshake, data, RST from the server",
    "SYN refused with RST-ACK",
    "SYN sent twice, handshake, data",
    "a lone segment of no connection",
    "handshake, RST, SYN again on the same ports",
];

/// A random conversation between `client` and `server`; `below(n)` draws from 0..n.
pub fn random(
    below: &mut impl FnMut(u64) -> u64,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
) -> Conversation {
    let script_index = below(SCRIPTS.len() as u64) as usize;
    let mut ends = Ends {
        client_next: below(u64::from(u32::MAX)) as u32,
        server_next: below(u64::from(u32::MAX)) as u32,
    };
    let mut segments = Vec::new();
    let handshake = |ends: &mut Ends, segments: &mut Vec<Segment>| {
        segments.push(ends.send(true, SYN, 0));
        segments.push(ends.send(false, SYN | ACK, 0));
        segments.push(ends.send(true, ACK, 0));
    };
    let data = |ends: &mut Ends, segments: &mut Vec<Segment>, below: &mut dyn FnMut(u64) -> u64| {
        for _ in 0..=below(3) {
            let from_client = below(2) == 0;
            segments.push(ends.send(from_client, PSH | ACK, 1 + below(200) as usize));
            segments.push(ends.send(!from_client, ACK, 0));
        }
    };
    match script_index {
        0 => {
            handshake(&mut ends, &mut segments);
            data(&mut ends, &mut segments, below);
            let first = below(2) == 0;
            segments.push(ends.send(first, FIN | ACK, 0));
            segments.push(ends.send(!first, ACK, 0));
            segments.push(ends.send(!first, FIN | ACK, 0));
            segments.push(ends.send(first, ACK, 0));
        }
        1 | 2 => {
            handshake(&mut ends, &mut segments);
            data(&mut ends, &mut segments, below);
            let flags = if below(2) == 0 { RST } else { RST | ACK };
            segments.push(ends.send(script_index == 1, flags, 0));
        }
        3 => {
            segments.push(ends.send(true, SYN, 0));
            // A refusal carries no sequence of its own: it acknowledges the SYN (RFC 9293
            // 3.10.7.1), sequence 0.
            ends.server_next = 0;
            segments.push(ends.send(false, RST | ACK, 0));
        }
        4 => {
            segments.push(ends.send(true, SYN, 0));
            ends.client_next = ends.client_next.wrapping_sub(1);
            handshake(&mut ends, &mut segments);
            data(&mut ends, &mut segments, below);
        }
        5 => {
            // Numbers as if a connection were there.
            ends.send(true, SYN, 0);
            ends.send(false, SYN, 0);
            let flags = [ACK, PSH | ACK, SYN | ACK, FIN | ACK, RST, RST | ACK, FIN];
            let flags = flags[below(flags.len() as u64) as usize];
            let payload = if flags & PSH != 0 { 10 } else { 0 };
            segments.push(ends.send(below(2) == 0, flags, payload));
        }
        _ => {
            handshake(&mut ends, &mut segments);
            segments.push(ends.send(below(2) == 0, RST, 0));
            ends.client_next = ends.client_next.wrapping_add(100_000);
            handshake(&mut ends, &mut segments);
            data(&mut ends, &mut segments, below);
        }
    }
    // Cut short at random (lost or not yet sent), never before the first segment.
    if segments.len() > 1 && below(4) == 0 {
        segments.truncate(1 + below(segments.len() as u64 - 1) as usize);
    }
    // A segment out of its state, now and then: replayed from the conversation at a
    // random later place (a stale retransmission: a SYN after the handshake, a SYN-ACK
    // again...), or an ACK from the client right after its SYN, before any answer.
    if script_index != 5 && below(4) == 0 {
        if below(2) == 0 {
            let from = below(segments.len() as u64) as usize;
            let at = from + 1 + below((segments.len() - from) as u64) as usize;
            segments.insert(at, segments[from].clone());
        } else {
            let syn = &segments[0];
            let early_ack = Segment {
                from_client: true,
                flags: ACK,
                seq: syn.seq.wrapping_add(1),
                ack: 0,
                payload: 0,
            };
            segments.insert(1, early_ack);
        }
    }
    Conversation {
        script: SCRIPTS[script_index],
        client,
        server,
        segments,
    }
}

impl Conversation {
    /// The conversation of `steps` (sender: the client when true, flags), without
    /// payload, numbered as a real stack would (from sequence numbers 1000 and 5000).
    pub fn scripted(client: (IpAddr, u16), server: (IpAddr, u16), steps: &[(bool, u8)]) -> Self {
        let mut ends = Ends {
            client_next: 1000,
            server_next: 5000,
        };
        Conversation {
            script: "scripted",
            client,
            server,
            segments: steps
                .iter()
                .map(|&(from_client, flags)| ends.send(from_client, flags, 0))
                .collect(),
        }
    }

    /// Its segments in short: `>S` a client's SYN, `<SA` a server's SYN-ACK, `>PA10` data.
    pub fn brief(&self) -> String {
        let names = [(SYN, 'S'), (FIN, 'F'), (RST, 'R'), (PSH, 'P'), (ACK, 'A')];
        let words: Vec<String> = self
            .segments
            .iter()
            .map(|segment| {
                let mut word = String::from(if segment.from_client { ">" } else { "<" });
                for (bit, name) in names {
                    if segment.flags & bit != 0 {
                        word.push(name);
                    }
                }
                if segment.payload != 0 {
                    word.push_str(&segment.payload.to_string());
                }
                word
            })
            .collect();
        words.join(" ")
    }

    /// The frames of its segments, in order (MACs left for the sender to set).
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.segments
            .iter()
            .map(|segment| {
                let ((src, src_port), (dst, dst_port)) = if segment.from_client {
                    (self.client, self.server)
                } else {
                    (self.server, self.client)
                };
                FrameBuilder {
                    tcp_sequence: segment.seq,
                    tcp_ack: segment.ack,
                    ..FrameBuilder::tcp(src, dst, segment.flags)
                }
                .ports(src_port, dst_port)
                .payload(vec![0x5a; segment.payload])
                .build()
            })
            .collect()
    }
}
