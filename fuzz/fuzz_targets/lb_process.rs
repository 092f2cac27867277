//! A whole `LoadBalancer::process` on any frames: several per input (split at
//! `FRAME_SEPARATOR`), one load balancer, so connection hits, LRU eviction and SNAT port
//! exhaustion are reachable. Every frame is sent twice (a new flow, then a connection hit),
//! and every NAT'd frame gets the backend's reply, which must come back to the client.
//! Checked for each transmitted frame, by forwarding mode:
//! - dsr-l2: only the MACs changed, to the backend's and ours (and a checksum the sender
//!   left partial, completed);
//! - dsr-ipip: a valid outer header to a backend of the VIP, then the frame's IP packet
//!   byte for byte (a partial checksum completed); or, too big to encapsulate, an ICMP
//!   error back to the sender;
//! - nat: the frame parses to SNAT address → backend, the reply to VIP → client, and
//!   checksums valid on the way in are valid on the way out.
//!
//! A later fragment is checked with the ports of its datagram's first fragment.

#![no_main]

use std::{collections::HashMap, sync::Arc};

use afxdp::{Frame, Umem, UmemConfig};
use fastpath_fuzz::{
    OWN_MAC, backend_mac, frames, ipv4_header_valid, load_balancer, outer_len, same_but_completed,
    tables, transport_checksum_valid,
};
use libfuzzer_sys::fuzz_target;
use nfv_apps::lb::{
    balancer::LoadBalancer,
    config::Forwarding,
    packet::{Address, FlowKey, PROTO_IPIP, PROTO_IPV6, Parsed, parse},
    tables::Tables,
};
use pipeline::{NetworkFunction, Packet, Verdict};

/// Few enough flows that a handful of frames evicts some.
const CONNECTIONS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let (umem, mut pool) = Umem::new(UmemConfig {
        frame_count: 1,
        ..UmemConfig::default()
    })
    .unwrap();
    let mut frame = pool.take().unwrap();
    let room = umem.data_room() as usize;
    let tables = tables();
    let mut run = Run {
        umem: &umem,
        frame: &mut frame,
        lb: load_balancer(CONNECTIONS),
        tables,
        client_macs: HashMap::new(),
        first_fragments: HashMap::new(),
    };
    for input in frames(data) {
        let input = &input[..input.len().min(room)];
        for _ in 0..2 {
            run.note_first_fragment(input);
            let (verdict, output) = run.process(input, 0);
            if verdict == (Verdict::Transmit { port: 0 }) {
                run.check_sent(input, &output);
            } else {
                assert!(matches!(verdict, Verdict::Drop(_)), "{verdict:?}");
            }
        }
    }
});

struct Run<'a> {
    umem: &'a Umem,
    frame: &'a mut Frame,
    lb: LoadBalancer,
    tables: Arc<Tables>,
    /// The source MAC of each NAT'd flow's first frame sent: where its replies go.
    client_macs: HashMap<FlowKey, [u8; 6]>,
    /// The ports of each fragmented datagram's first fragment seen.
    first_fragments: HashMap<(Address, Address, u32, u8), (u16, u16)>,
}

impl Run<'_> {
    fn process(&mut self, bytes: &[u8], queue: u32) -> (Verdict, Vec<u8>) {
        self.umem.write(self.frame, bytes).unwrap();
        let mut packet = Packet::new(self.umem, self.frame, queue);
        let verdict = self.lb.process(&mut packet);
        (verdict, packet.data().to_vec())
    }

    /// Records a first fragment's ports, as the load balancer does for any it parses.
    fn note_first_fragment(&mut self, input: &[u8]) {
        if let Ok(parsed) = parse(input)
            && let Some(fragment) = parsed.fragment
            && fragment.offset == 0
            && fragment.more
        {
            let flow = parsed.flow;
            let key = (flow.src, flow.dst, fragment.id, flow.proto);
            self.first_fragments
                .insert(key, (flow.src_port, flow.dst_port));
        }
    }

    /// The frame as the load balancer sees it: a later fragment with its first's ports.
    fn parse_with_datagram(&self, input: &[u8]) -> Parsed {
        let mut parsed = parse(input).expect("a transmitted frame parsed");
        if let Some(fragment) = parsed.fragment.filter(|f| f.offset != 0) {
            let flow = parsed.flow;
            let key = (flow.src, flow.dst, fragment.id, flow.proto);
            let ports = self.first_fragments.get(&key);
            (parsed.flow.src_port, parsed.flow.dst_port) =
                *ports.expect("a later fragment sent after its first");
        }
        parsed
    }

    fn check_sent(&mut self, input: &[u8], output: &[u8]) {
        let parsed = self.parse_with_datagram(input);
        let flow = &parsed.flow;
        assert_eq!(output[6..12], OWN_MAC, "sent from our MAC");
        if let Ok(Some(sent)) = wire::parse(output)
            && matches!(sent.protocol, 1 | 58)
        {
            check_too_big(input, &parsed, output);
            return;
        }
        let Some(vip) = self.tables.vip(&flow.dst, flow.dst_port, flow.proto) else {
            assert!(
                self.tables.is_snat_address(&flow.dst),
                "transmitted a frame for no VIP and no SNAT address: {parsed:?}"
            );
            self.check_reply(input, &parsed, output);
            return;
        };
        let tables = self.tables.clone();
        let vip = &tables.vips[vip];
        let backend = vip
            .backends
            .iter()
            .find(|b| output[..6] == backend_mac(b.ip))
            .expect("sent to the MAC of one of the VIP's backends");
        match vip.forwarding {
            Forwarding::DsrL2 => same_but_completed(input, &parsed, output, 12, 0),
            Forwarding::DsrIpip => {
                let outer = outer_len(parsed.v4);
                let l3 = parsed.l3;
                assert_eq!(
                    output[12..l3],
                    input[12..l3],
                    "VLAN tags and ethertype stay"
                );
                same_but_completed(input, &parsed, output, l3, outer);
                let header = &output[l3..l3 + outer];
                let inner_len = parsed.l3_end - l3;
                if parsed.v4 {
                    assert!(ipv4_header_valid(output, l3), "outer IPv4 checksum");
                    assert_eq!(header[9], PROTO_IPIP);
                    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
                    assert_eq!(total, outer + inner_len);
                    assert_eq!(header[12..16], vip.encap_source[12..]);
                    assert_eq!(header[16..20], backend.address[12..]);
                } else {
                    assert_eq!(header[0] >> 4, 6);
                    assert_eq!(header[6], PROTO_IPV6);
                    let payload = usize::from(u16::from_be_bytes([header[4], header[5]]));
                    assert_eq!(payload, inner_len);
                    assert_eq!(header[8..24], vip.encap_source);
                    assert_eq!(header[24..40], backend.address);
                }
            }
            Forwarding::Nat => {
                let out = parse(output).expect("a NAT'd frame parses");
                assert_eq!(out.flow.dst, backend.address);
                if !parsed.later_fragment() {
                    assert_eq!(out.flow.dst_port, backend.port);
                }
                assert_eq!(Some(out.flow.src), vip.snat_address);
                assert_eq!(output.len(), input.len());
                check_checksums_kept(input, &parsed, output, &out);
                let client_mac: [u8; 6] = input[6..12].try_into().unwrap();
                self.client_macs.entry(*flow).or_insert(client_mac);
                if parsed.fragment.is_some() {
                    return; // the replies of fragmented datagrams are not simulated
                }
                // The backend's reply: addresses and ports swapped (every checksum stays).
                let reply = swapped(output, &out);
                let (verdict, back) = self.process(&reply, 1);
                assert_eq!(
                    verdict,
                    Verdict::Transmit { port: 0 },
                    "the reply was dropped"
                );
                let back_parsed = self.check_reply(&reply, &out, &back);
                assert_eq!(
                    (back_parsed.flow.src, back_parsed.flow.src_port),
                    (flow.dst, flow.dst_port),
                    "the reply comes from the VIP"
                );
                assert_eq!(
                    (back_parsed.flow.dst, back_parsed.flow.dst_port),
                    (flow.src, flow.src_port),
                    "the reply goes to the client"
                );
            }
        }
    }

    /// A reply to an SNAT address, sent on: from a NAT VIP to a client it mapped, with the
    /// checksums kept.
    fn check_reply(&self, reply: &[u8], parsed: &Parsed, output: &[u8]) -> Parsed {
        let out = parse(output).expect("a reply sent on parses");
        let flow = &out.flow;
        let vip = self
            .tables
            .vip(&flow.src, flow.src_port, flow.proto)
            .expect("a reply comes from a VIP");
        assert_eq!(self.tables.vips[vip].forwarding, Forwarding::Nat);
        let client = FlowKey {
            src: flow.dst,
            dst: flow.src,
            src_port: flow.dst_port,
            dst_port: flow.src_port,
            proto: flow.proto,
        };
        let mac = self
            .client_macs
            .get(&client)
            .expect("a reply to a mapped client");
        assert_eq!(output[..6], *mac, "the reply goes to the client's MAC");
        check_checksums_kept(reply, parsed, output, &out);
        out
    }
}

fn check_checksums_kept(before: &[u8], parsed: &Parsed, after: &[u8], after_parsed: &Parsed) {
    if parsed.v4 && ipv4_header_valid(before, parsed.l3) {
        assert!(
            ipv4_header_valid(after, after_parsed.l3),
            "IPv4 header checksum broken"
        );
    }
    match transport_checksum_valid(before, parsed) {
        Some(true) => assert_eq!(transport_checksum_valid(after, after_parsed), Some(true)),
        None => assert_eq!(transport_checksum_valid(after, after_parsed), None),
        Some(false) => {}
    }
}

/// The frame with source and destination swapped: addresses and ports (MACs don't matter).
fn swapped(frame: &[u8], parsed: &Parsed) -> Vec<u8> {
    let mut reply = frame.to_vec();
    let l3 = parsed.l3;
    let (src, dst, len) = if parsed.v4 {
        (l3 + 12, l3 + 16, 4)
    } else {
        (l3 + 8, l3 + 24, 16)
    };
    reply[src..src + len].copy_from_slice(&frame[dst..dst + len]);
    reply[dst..dst + len].copy_from_slice(&frame[src..src + len]);
    let l4 = parsed.l4;
    reply[l4..l4 + 2].copy_from_slice(&frame[l4 + 2..l4 + 4]);
    reply[l4 + 2..l4 + 4].copy_from_slice(&frame[l4..l4 + 2]);
    reply
}

/// A packet too big to encapsulate came back as an ICMP error to its sender, from the
/// address it was sent to, quoting its start.
fn check_too_big(input: &[u8], parsed: &Parsed, output: &[u8]) {
    let headers = wire::parse(output)
        .expect("an icmp error parses")
        .expect("an icmp error is ip");
    let expected = if parsed.v4 { (3, 4) } else { (2, 0) };
    assert_eq!(headers.icmp, Some(expected), "an icmp too-big error");
    assert_eq!(output[..6], input[6..12], "back to the sender's MAC");
    let (src, dst) = headers.addresses(output);
    let (sent_src, sent_dst) = wire::parse(input).unwrap().unwrap().addresses(input);
    assert_eq!(
        (src, dst),
        (sent_dst, sent_src),
        "from the VIP to the sender"
    );
    let quote_at = headers.l4 + 8;
    let quoted = headers.l3_end - quote_at;
    assert_eq!(
        output[quote_at..headers.l3_end],
        input[parsed.l3..parsed.l3 + quoted]
    );
}
