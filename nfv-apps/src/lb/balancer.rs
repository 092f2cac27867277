//! The load balancer as a network function: one instance per worker.

use std::{
    any::Any,
    sync::{Arc, atomic::Ordering},
};

use pipeline::{DropReason, NetworkFunction, Packet, Verdict};

use crate::lb::{
    config::Forwarding,
    conntrack::{ConnTable, Connection},
    fragments::FragmentTable,
    icmp,
    nat::{NatError, NatTable},
    packet::{self, IPV4_LEN, IPV6_LEN, Parsed, stable_hash},
    tables::{Backend, BackendState, Tables},
    tallies::Tallies,
};

/// The function's name in stats and hot swap.
pub const NAME: &str = "lb";

/// Datagrams in flight per worker whose later fragments are still to come.
const FRAGMENTED_DATAGRAMS: usize = 4096;

/// The load balancer of one worker: its connection and fragment tables, its counts per
/// backend, the shared tables and NAT table.
pub struct LoadBalancer {
    tables: Arc<Tables>,
    /// Published at the end of each batch (`process_batch`).
    tallies: Tallies,
    conns: ConnTable,
    fragments: FragmentTable,
    nat: Arc<NatTable>,
}

impl LoadBalancer {
    /// A load balancer over `tables` with a connection table of `connections` entries.
    pub fn new(tables: Arc<Tables>, connections: usize, nat: Arc<NatTable>) -> LoadBalancer {
        LoadBalancer {
            tallies: Tallies::new(&tables),
            tables,
            conns: ConnTable::new(connections),
            fragments: FragmentTable::new(FRAGMENTED_DATAGRAMS),
            nat,
        }
    }

    /// The VIP and backend of an established flow, from its connection entry alone while
    /// the tables it was recorded with are still the current ones: no VIP lookup on the
    /// hit path. A TCP SYN always picks afresh (see `schedule`).
    #[inline]
    fn established(&mut self, parsed: &Parsed) -> Option<(usize, usize)> {
        if parsed.tcp_syn {
            return None;
        }
        let conn = self.conns.get(&parsed.flow)?;
        (conn.generation == self.tables.generation)
            .then_some((conn.vip_index as usize, conn.backend_index as usize))
    }

    /// The backend index for a flow: its connection entry if the backend still takes it,
    /// else a fresh Maglev pick (recorded). A TCP SYN always picks afresh, as Katran does: a
    /// client reusing the 5-tuple of a finished connection starts a new one, which must not
    /// follow the old one to a draining backend.
    fn schedule(&mut self, vip: usize, parsed: &Parsed) -> Option<usize> {
        let tables = &self.tables;
        let backends = &tables.vips[vip].backends;
        let known = if parsed.tcp_syn {
            None
        } else {
            self.conns.get(&parsed.flow)
        };
        if let Some(conn) = known {
            if conn.generation == tables.generation {
                return Some(conn.backend_index as usize);
            }
            // The tables changed since: find the backend by id; drained ones keep their flows.
            let found = backends
                .iter()
                .position(|b| b.id == conn.backend_id && b.state != BackendState::Disabled);
            if let Some(index) = found {
                conn.vip_index = vip as u32;
                conn.backend_index = index as u32;
                conn.generation = tables.generation;
                return Some(index);
            }
        }
        let index = tables.vips[vip].maglev.pick(stable_hash(&parsed.flow))?;
        let backend = &backends[index];
        self.tallies.connection(vip, index);
        let evictions = self.conns.evictions;
        self.conns.insert(
            parsed.flow,
            Connection {
                vip_index: vip as u32,
                backend_id: backend.id,
                backend_index: index as u32,
                generation: tables.generation,
            },
        );
        if self.conns.evictions != evictions {
            tables
                .counters
                .conntrack_evictions
                .fetch_add(1, Ordering::Relaxed);
        }
        Some(index)
    }

    /// Finishes a checksum the sender left partial, before any rewrite (see
    /// `packet::complete_partial_checksum`); only packets the balancer sends on pay for it.
    fn complete_partial_checksum(&mut self, packet: &mut Packet<'_>, parsed: &Parsed) {
        if packet::complete_partial_checksum(packet.data_mut(), parsed) {
            self.tallies.partial_checksum();
        }
    }

    fn forward(&mut self, packet: &mut Packet<'_>, vip_index: usize, parsed: &Parsed) -> Verdict {
        let Some(index) = self.schedule(vip_index, parsed) else {
            return Verdict::Drop(DropReason::NoBackendAvailable);
        };
        self.send(packet, vip_index, index, parsed)
    }

    /// Sends a VIP's packet to backend `index` of the VIP.
    #[inline]
    fn send(
        &mut self,
        packet: &mut Packet<'_>,
        vip_index: usize,
        index: usize,
        parsed: &Parsed,
    ) -> Verdict {
        let tables = &*self.tables;
        let vip = &tables.vips[vip_index];
        let backend: &Backend = &vip.backends[index];
        let Some(mac) = backend.next_hop.get() else {
            backend.next_hop.wanted.store(true, Ordering::Relaxed);
            return Verdict::Drop(DropReason::NeighbourUnresolved);
        };
        self.tallies.packet(vip_index, index, packet.len());
        match vip.forwarding {
            Forwarding::DsrL2 => {}
            Forwarding::DsrIpip => {
                let outer = if parsed.v4 { IPV4_LEN } else { IPV6_LEN };
                if packet.len() + outer > tables.max_frame {
                    return too_big(packet, parsed, tables, outer);
                }
                // The outer header goes after the link header, VLAN tags included.
                let l3 = parsed.l3;
                if !packet.insert(l3, outer as u16) {
                    return Verdict::Drop(DropReason::NoHeadroomToEncapsulate);
                }
                let inner_len = parsed.l3_end - l3;
                packet::write_outer_header(
                    &mut packet.data_mut()[l3..],
                    parsed.v4,
                    &vip.encap_source,
                    &backend.address,
                    inner_len,
                    stable_hash(&parsed.flow) as u32,
                );
            }
            Forwarding::Nat => {
                let snat = vip.snat_address.expect("checked by the config");
                let data = packet.data();
                let client_mac = [data[6], data[7], data[8], data[9], data[10], data[11]];
                let mapping = match self.nat.forward(
                    &parsed.flow,
                    &snat,
                    (&backend.address, backend.port),
                    client_mac,
                    packet.queue,
                    parsed.closing,
                ) {
                    Ok(mapping) => mapping,
                    Err(NatError::PortsExhausted) => {
                        return Verdict::Drop(DropReason::NatPortsExhausted);
                    }
                };
                let data = packet.data_mut();
                packet::rewrite_endpoint(data, parsed, false, &backend.address, backend.port);
                packet::rewrite_endpoint(data, parsed, true, &snat, mapping.snat_port);
            }
        }
        packet::set_macs(packet.data_mut(), mac, tables.own_mac);
        Verdict::Transmit { port: 0 }
    }

    /// A backend's reply to a NAT flow: back to the client, from the VIP.
    fn reverse(&mut self, packet: &mut Packet<'_>, parsed: &Parsed) -> Verdict {
        let flow = &parsed.flow;
        let Some((client, mapping)) =
            self.nat
                .reverse(&flow.dst, flow.dst_port, flow.proto, parsed.closing)
        else {
            return Verdict::Drop(DropReason::NoNatState);
        };
        if flow.src != mapping.backend || flow.src_port != mapping.backend_port {
            return Verdict::Drop(DropReason::NatReplyFromWrongBackend);
        }
        if mapping.queue != packet.queue {
            self.tables
                .counters
                .cross_queue_replies
                .fetch_add(1, Ordering::Relaxed);
        }
        let data = packet.data_mut();
        packet::rewrite_endpoint(data, parsed, true, &client.dst, client.dst_port);
        packet::rewrite_endpoint(data, parsed, false, &client.src, client.src_port);
        packet::set_macs(data, mapping.client_mac, self.tables.own_mac);
        Verdict::Transmit { port: 0 }
    }
}

/// A packet that does not fit the link once encapsulated: tell a sender that set DF (or
/// any IPv6 sender) the MTU that fits, so its path MTU discovery shrinks what it sends;
/// drop a packet routers may fragment, as that would take a second frame.
fn too_big(packet: &mut Packet<'_>, parsed: &Parsed, tables: &Tables, outer: usize) -> Verdict {
    if !icmp::dont_fragment(packet.data(), parsed) {
        return Verdict::Drop(DropReason::TooBigToEncapsulate);
    }
    let mtu = (tables.max_frame - parsed.l3 - outer) as u16;
    if !icmp::too_big_reply(packet, parsed, mtu, tables.own_mac) {
        return Verdict::Drop(DropReason::NoHeadroomForIcmpError);
    }
    tables
        .counters
        .too_big_replies
        .fetch_add(1, Ordering::Relaxed);
    Verdict::Transmit { port: 0 }
}

impl NetworkFunction for LoadBalancer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn process(&mut self, packet: &mut Packet<'_>) -> Verdict {
        let mut parsed = match packet::parse(packet.data()) {
            Ok(parsed) => parsed,
            Err(reason) => return Verdict::Drop(reason),
        };
        if parsed.fragment.is_some() {
            if let Err(reason) = self.fragments.resolve(&mut parsed) {
                return Verdict::Drop(reason);
            }
            self.tallies.fragment();
        }
        // Most packets belong to an established flow: its entry names its VIP and backend.
        if let Some((vip, backend)) = self.established(&parsed) {
            self.complete_partial_checksum(packet, &parsed);
            return self.send(packet, vip, backend, &parsed);
        }
        let flow = &parsed.flow;
        if let Some(vip) = self.tables.vip(&flow.dst, flow.dst_port, flow.proto) {
            self.complete_partial_checksum(packet, &parsed);
            return self.forward(packet, vip, &parsed);
        }
        if self.tables.is_snat_address(&flow.dst) {
            self.complete_partial_checksum(packet, &parsed);
            return self.reverse(packet, &parsed);
        }
        Verdict::Drop(DropReason::NotForVip)
    }

    /// Runs `process` over the undecided packets, then publishes the batch's counts: one
    /// store per backend counter that moved and one add per balancer-wide counter, not a
    /// shared atomic add per packet.
    fn process_batch(&mut self, packets: &mut [Packet<'_>], verdicts: &mut [Verdict]) {
        for (packet, verdict) in packets.iter_mut().zip(verdicts.iter_mut()) {
            if *verdict == Verdict::Next {
                *verdict = self.process(packet);
            }
        }
        self.tallies.publish(&self.tables);
    }

    /// A new version takes over the connection table (flows keep their backends), the
    /// NAT table (mappings keep their ports) and the worker's backend counts.
    fn adopt(&mut self, previous: &mut dyn NetworkFunction) {
        if let Some(old) = previous.as_any_mut().downcast_mut::<LoadBalancer>() {
            self.tallies
                .adopt(&self.tables, &mut old.tallies, &old.tables);
            std::mem::swap(&mut self.conns, &mut old.conns);
            std::mem::swap(&mut self.fragments, &mut old.fragments);
            self.nat = old.nat.clone();
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use afxdp::{Umem, UmemConfig};
    use pipeline::Chain;
    use wire::{FrameBuilder, parse::tcp_flags};

    use super::*;
    use crate::lb::{
        nat::NatTimeouts,
        tables::{BackendCounters, BackendTotals},
        tallies::tests::{tables, tables_of},
    };

    /// Runs `chain` over one batch: a TCP ACK to the VIP from each client port given.
    fn run(chain: &mut Chain, ports: &[u16]) -> Vec<Verdict> {
        run_to(chain, ports)
            .into_iter()
            .map(|(verdict, _)| verdict)
            .collect()
    }

    /// As `run`, with the destination MAC each packet left with (its backend's next hop).
    fn run_to(chain: &mut Chain, ports: &[u16]) -> Vec<(Verdict, [u8; 6])> {
        let (umem, mut pool) = Umem::new(UmemConfig::default()).unwrap();
        let mut frames: Vec<_> = ports
            .iter()
            .map(|&port| {
                let mut frame = pool.take().unwrap();
                let bytes = FrameBuilder::tcp(
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.100".parse().unwrap(),
                    tcp_flags::ACK,
                )
                .ports(port, 80)
                .payload(vec![0x61; 6])
                .build();
                umem.write(&mut frame, &bytes).unwrap();
                frame
            })
            .collect();
        let mut packets: Vec<Packet<'_>> = frames
            .iter_mut()
            .map(|frame| Packet::new(&umem, frame, 0))
            .collect();
        let mut verdicts = vec![Verdict::Next; ports.len()];
        chain.run(&mut packets, &mut verdicts);
        let macs = packets.iter().map(|p| p.data()[..6].try_into().unwrap());
        verdicts.into_iter().zip(macs).collect()
    }

    fn sum(counters: &[Arc<BackendCounters>]) -> BackendTotals {
        counters.iter().map(|counters| counters.totals()).fold(
            BackendTotals::default(),
            |sum, one| BackendTotals {
                packets: sum.packets + one.packets,
                bytes: sum.bytes + one.bytes,
                connections: sum.connections + one.connections,
            },
        )
    }

    #[test]
    fn each_batch_publishes_exact_backend_counts_which_survive_a_swap() {
        let counters: Vec<Arc<BackendCounters>> = (0..3).map(|_| Arc::default()).collect();
        let shared = Arc::new(tables(&counters.iter().collect::<Vec<_>>()));
        let nat = Arc::new(NatTable::new(NatTimeouts::default()));
        let balancer = || Box::new(LoadBalancer::new(shared.clone(), 1024, nat.clone()));
        let mut chain = Chain::new(vec![balancer()]);
        // Three packets of one flow, two of another: 60-byte frames.
        let verdicts = run(&mut chain, &[1000, 1000, 2000, 1000, 2000]);
        assert!(verdicts.iter().all(|v| *v == Verdict::Transmit { port: 0 }));
        let expected = BackendTotals {
            packets: 5,
            bytes: 300,
            connections: 2,
        };
        assert_eq!(sum(&counters), expected, "published at the batch's end");
        // A hot swap: the new balancer keeps the flows and counts on from the old totals.
        let mut swapped = Chain::new(vec![balancer()]);
        swapped.adopt(&mut chain);
        run(&mut swapped, &[1000, 2000, 3000]);
        let expected = BackendTotals {
            packets: 8,
            bytes: 480,
            connections: 3,
        };
        assert_eq!(sum(&counters), expected);
        let slots: usize = counters.iter().map(|c| c.slots.lock().unwrap().len()).sum();
        assert_eq!(
            slots, 3,
            "one slot per backend for this worker, kept across the swap"
        );
    }

    /// Established flows skip the VIP lookup only while their entry's tables are current:
    /// after a rebuild that moves the backends around they still reach their backend (found
    /// by id), and after one without their VIP they are dropped.
    #[test]
    fn established_flows_follow_their_backend_across_rebuilds() {
        let counters: Vec<Arc<BackendCounters>> = (0..3).map(|_| Arc::default()).collect();
        let nat = Arc::new(NatTable::new(NatTimeouts::default()));
        let before = tables_of(
            1,
            &[(1, &counters[0]), (2, &counters[1]), (3, &counters[2])],
        );
        let mut chain = Chain::new(vec![Box::new(LoadBalancer::new(
            Arc::new(before),
            1024,
            nat.clone(),
        ))]);
        let ports: Vec<u16> = (1000..1032).collect();
        let first = run_to(&mut chain, &ports);
        // The same backends, listed in another order: every index differs from before.
        let after = tables_of(
            2,
            &[(3, &counters[2]), (1, &counters[0]), (2, &counters[1])],
        );
        let mut rebuilt = Chain::new(vec![Box::new(LoadBalancer::new(
            Arc::new(after),
            1024,
            nat.clone(),
        ))]);
        rebuilt.adopt(&mut chain);
        assert_eq!(
            run_to(&mut rebuilt, &ports),
            first,
            "each flow keeps its backend"
        );
        let mut emptied = Chain::new(vec![Box::new(LoadBalancer::new(
            Arc::new(Tables::new(
                3,
                Vec::new(),
                [2, 0, 0, 0, 0, 2],
                1500,
                Arc::default(),
            )),
            1024,
            nat,
        ))]);
        emptied.adopt(&mut rebuilt);
        let verdicts = run(&mut emptied, &ports);
        assert!(
            verdicts
                .iter()
                .all(|v| *v == Verdict::Drop(DropReason::NotForVip)),
            "{verdicts:?}"
        );
    }
}
