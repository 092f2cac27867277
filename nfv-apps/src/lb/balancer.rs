//! The load balancer as a network function: one instance per worker.

use std::{
    any::Any,
    sync::{Arc, atomic::Ordering},
};

use pipeline::{NetworkFunction, Packet, Verdict};

use crate::lb::{
    config::Forwarding,
    conntrack::{ConnTable, Connection},
    nat::{NatError, NatTable},
    packet::{self, ETH_LEN, IPV4_LEN, IPV6_LEN, Parsed},
    tables::{Backend, BackendState, Tables},
};

pub const NAME: &str = "lb";

pub struct LoadBalancer {
    tables: Arc<Tables>,
    conns: ConnTable,
    nat: Arc<NatTable>,
}

impl LoadBalancer {
    pub fn new(tables: Arc<Tables>, connections: usize, nat: Arc<NatTable>) -> LoadBalancer {
        LoadBalancer {
            tables,
            conns: ConnTable::new(connections),
            nat,
        }
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
                conn.backend_index = index as u32;
                conn.generation = tables.generation;
                return Some(index);
            }
        }
        let index = tables.vips[vip].maglev.pick(parsed.flow.hash())?;
        let backend = &backends[index];
        backend.counters.connections.fetch_add(1, Ordering::Relaxed);
        let evictions = self.conns.evictions;
        self.conns.insert(
            parsed.flow,
            Connection {
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

    fn forward(&mut self, packet: &mut Packet<'_>, vip: usize, parsed: &Parsed) -> Verdict {
        let Some(index) = self.schedule(vip, parsed) else {
            return Verdict::Drop("no backend available");
        };
        let tables = &*self.tables;
        let vip = &tables.vips[vip];
        let backend: &Backend = &vip.backends[index];
        let Some(mac) = backend.next_hop.get() else {
            backend.next_hop.wanted.store(true, Ordering::Relaxed);
            return Verdict::Drop("neighbour unresolved");
        };
        backend.counters.packets.fetch_add(1, Ordering::Relaxed);
        backend
            .counters
            .bytes
            .fetch_add(packet.len() as u64, Ordering::Relaxed);
        match vip.forwarding {
            Forwarding::DsrL2 => {}
            Forwarding::DsrIpip => {
                let outer = if parsed.v4 { IPV4_LEN } else { IPV6_LEN };
                if packet.len() + outer > tables.max_frame {
                    return Verdict::Drop("too big to encapsulate");
                }
                if !packet.insert(ETH_LEN, outer as u16) {
                    return Verdict::Drop("no headroom to encapsulate");
                }
                let inner_len = packet.len() - ETH_LEN - outer;
                packet::write_outer_header(
                    &mut packet.data_mut()[ETH_LEN..],
                    parsed.v4,
                    &vip.encap_source,
                    &backend.address,
                    inner_len,
                    parsed.flow.hash() as u32,
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
                    Err(NatError::PortsExhausted) => return Verdict::Drop("nat ports exhausted"),
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
            return Verdict::Drop("no nat state");
        };
        if flow.src != mapping.backend || flow.src_port != mapping.backend_port {
            return Verdict::Drop("nat reply from the wrong backend");
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

impl NetworkFunction for LoadBalancer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn process(&mut self, packet: &mut Packet<'_>) -> Verdict {
        let parsed = match packet::parse(packet.data()) {
            Ok(parsed) => parsed,
            Err(reason) => return Verdict::Drop(reason),
        };
        let flow = &parsed.flow;
        if let Some(vip) = self.tables.vip(&flow.dst, flow.dst_port, flow.proto) {
            return self.forward(packet, vip, &parsed);
        }
        if self.tables.is_snat_address(&flow.dst) {
            return self.reverse(packet, &parsed);
        }
        Verdict::Drop("not for a vip")
    }

    /// A new version takes over the connection table (flows keep their backends) and the
    /// NAT table (mappings keep their ports).
    fn adopt(&mut self, previous: &mut dyn NetworkFunction) {
        if let Some(old) = previous.as_any_mut().downcast_mut::<LoadBalancer>() {
            std::mem::swap(&mut self.conns, &mut old.conns);
            self.nat = old.nat.clone();
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
