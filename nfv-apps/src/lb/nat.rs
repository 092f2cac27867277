//! NAT state for the `nat` forwarding mode: client flow → (SNAT port, backend), and the
//! reverse, shared by every worker, because a backend's reply may arrive on any queue.
//! Ports are allocated per (SNAT address, protocol) from a configured range; idle entries
//! expire (sooner once a TCP flow has closed) and give their port back.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use crate::lb::packet::{Address, FlowKey};

/// How long an idle mapping lives, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeouts {
    /// An open TCP flow.
    pub tcp_secs: u32,
    /// A TCP flow after its FIN or RST.
    pub tcp_closing_secs: u32,
    /// A UDP flow.
    pub udp_secs: u32,
}

impl Default for NatTimeouts {
    fn default() -> Self {
        NatTimeouts {
            tcp_secs: 300,
            tcp_closing_secs: 10,
            udp_secs: 30,
        }
    }
}

/// The translation of one client flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatMapping {
    /// The source address the backend sees.
    pub snat_address: Address,
    /// The source port the backend sees.
    pub snat_port: u16,
    /// The backend's address.
    pub backend: Address,
    /// The backend's port.
    pub backend_port: u16,
    /// The client's next hop, learned from the first packet's source MAC.
    pub client_mac: [u8; 6],
    /// The RX queue the flow was set up on (a reply elsewhere counts as cross-queue).
    pub queue: u32,
}

struct Entry {
    mapping: NatMapping,
    last_seen: u32,
    closing: bool,
}

/// The reverse key: a reply from the backend to (SNAT address, port, protocol).
type ReverseKey = (Address, u16, u8);

#[derive(Default)]
struct Inner {
    forward: HashMap<FlowKey, Entry>,
    reverse: HashMap<ReverseKey, FlowKey>,
    free: HashMap<(Address, u8), VecDeque<u16>>,
}

/// The NAT mappings of every worker (shared: a reply may arrive on any queue), and the free
/// ports of each SNAT address.
pub struct NatTable {
    inner: Mutex<Inner>,
    timeouts: NatTimeouts,
    /// Seconds since start, advanced by `sweep` (the hot path never reads a clock).
    now: AtomicU32,
}

/// Why a flow got no mapping.
#[derive(Debug, PartialEq, Eq)]
pub enum NatError {
    /// Every port of the SNAT address is in use.
    PortsExhausted,
}

impl NatTable {
    /// An empty table; mappings expire after `timeouts`.
    pub fn new(timeouts: NatTimeouts) -> NatTable {
        NatTable {
            inner: Mutex::new(Inner::default()),
            timeouts,
            now: AtomicU32::new(0),
        }
    }

    /// Sets the inclusive port range of an SNAT address and protocol; a range already set
    /// stays (with its mappings).
    pub fn add_range(&self, snat_address: Address, proto: u8, ports: (u16, u16)) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .free
            .entry((snat_address, proto))
            .or_insert_with(|| (ports.0..=ports.1).collect());
    }

    /// The mapping for a client flow, made on first sight. `backend` is where the load
    /// balancer sends the flow now; an existing mapping follows it if it changed.
    pub fn forward(
        &self,
        flow: &FlowKey,
        snat_address: &Address,
        backend: (&Address, u16),
        client_mac: [u8; 6],
        queue: u32,
        closing: bool,
    ) -> Result<NatMapping, NatError> {
        let now = self.now.load(Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap();
        if let Some(entry) = inner.forward.get_mut(flow) {
            entry.last_seen = now;
            entry.closing |= closing;
            entry.mapping.backend = *backend.0;
            entry.mapping.backend_port = backend.1;
            return Ok(entry.mapping);
        }
        let port = inner
            .free
            .get_mut(&(*snat_address, flow.proto))
            .and_then(VecDeque::pop_front)
            .ok_or(NatError::PortsExhausted)?;
        let mapping = NatMapping {
            snat_address: *snat_address,
            snat_port: port,
            backend: *backend.0,
            backend_port: backend.1,
            client_mac,
            queue,
        };
        inner
            .reverse
            .insert((*snat_address, port, flow.proto), *flow);
        inner.forward.insert(
            *flow,
            Entry {
                mapping,
                last_seen: now,
                closing,
            },
        );
        Ok(mapping)
    }

    /// For a reply to (SNAT address, port): the client flow and its mapping.
    pub fn reverse(
        &self,
        snat_address: &Address,
        port: u16,
        proto: u8,
        closing: bool,
    ) -> Option<(FlowKey, NatMapping)> {
        let now = self.now.load(Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap();
        let flow = *inner.reverse.get(&(*snat_address, port, proto))?;
        let entry = inner.forward.get_mut(&flow)?;
        entry.last_seen = now;
        entry.closing |= closing;
        Some((flow, entry.mapping))
    }

    /// Advances the clock to `now` (seconds) and expires idle entries; returns how many.
    pub fn sweep(&self, now: u32) -> usize {
        self.now.store(now, Ordering::Relaxed);
        let timeouts = self.timeouts;
        let mut inner = self.inner.lock().unwrap();
        let expired: Vec<FlowKey> = inner
            .forward
            .iter()
            .filter(|(flow, entry)| {
                let limit = match (flow.proto, entry.closing) {
                    (crate::lb::packet::PROTO_TCP, false) => timeouts.tcp_secs,
                    (crate::lb::packet::PROTO_TCP, true) => timeouts.tcp_closing_secs,
                    _ => timeouts.udp_secs,
                };
                now.saturating_sub(entry.last_seen) > limit
            })
            .map(|(flow, _)| *flow)
            .collect();
        for flow in &expired {
            let entry = inner.forward.remove(flow).expect("listed above");
            let mapping = entry.mapping;
            inner
                .reverse
                .remove(&(mapping.snat_address, mapping.snat_port, flow.proto));
            if let Some(free) = inner.free.get_mut(&(mapping.snat_address, flow.proto)) {
                free.push_back(mapping.snat_port);
            }
        }
        expired.len()
    }

    /// Mappings in use.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().forward.len()
    }

    /// Whether no mapping is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: [1; 16],
            dst: [2; 16],
            src_port: port,
            dst_port: 80,
            proto,
        }
    }

    const SNAT: Address = [9; 16];
    const BACKEND: Address = [7; 16];

    fn table(ports: (u16, u16)) -> NatTable {
        let table = NatTable::new(NatTimeouts::default());
        table.add_range(SNAT, 6, ports);
        table.add_range(SNAT, 17, ports);
        table
    }

    fn map(table: &NatTable, port: u16, proto: u8) -> Result<NatMapping, NatError> {
        table.forward(
            &flow(port, proto),
            &SNAT,
            (&BACKEND, 8080),
            [0; 6],
            0,
            false,
        )
    }

    #[test]
    fn ports_are_unique_and_replies_find_their_flow() {
        let table = table((1000, 1009));
        let a = map(&table, 1, 6).unwrap();
        let b = map(&table, 2, 6).unwrap();
        assert_ne!(a.snat_port, b.snat_port);
        assert_eq!(
            map(&table, 1, 6).unwrap(),
            a,
            "the same flow keeps its port"
        );
        let (client, mapping) = table.reverse(&SNAT, b.snat_port, 6, false).unwrap();
        assert_eq!((client, mapping), (flow(2, 6), b));
        assert!(
            table.reverse(&SNAT, b.snat_port, 17, false).is_none(),
            "per protocol"
        );
    }

    #[test]
    fn running_out_of_ports_is_an_error_until_entries_expire() {
        let table = table((1000, 1003));
        for port in 0..4 {
            map(&table, port, 17).unwrap();
        }
        assert_eq!(map(&table, 99, 17), Err(NatError::PortsExhausted));
        // TCP has its own ports.
        assert!(map(&table, 99, 6).is_ok());
        // Keep UDP flow 0 alive, let the rest idle past the UDP timeout.
        table.sweep(20);
        map(&table, 0, 17).unwrap();
        assert_eq!(table.sweep(40), 3);
        let reused = map(&table, 99, 17).unwrap();
        assert!((1000..=1003).contains(&reused.snat_port));
        assert_eq!(table.len(), 3); // udp flows 0 and 99, tcp flow 99
    }

    #[test]
    fn closed_tcp_flows_expire_sooner() {
        let table = table((1000, 1003));
        let open = map(&table, 1, 6).unwrap();
        let closing = map(&table, 2, 6).unwrap();
        table.reverse(&SNAT, closing.snat_port, 6, true).unwrap();
        assert_eq!(table.sweep(60), 1);
        assert!(table.reverse(&SNAT, open.snat_port, 6, false).is_some());
        assert!(table.reverse(&SNAT, closing.snat_port, 6, false).is_none());
    }
}
