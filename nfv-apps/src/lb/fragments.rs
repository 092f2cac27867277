//! Fragments of one datagram follow their first fragment: only the first carries the ports,
//! so the first records them under the datagram's identity (addresses, protocol, IP id) and
//! every later fragment takes them from here, reaching the same VIP, backend and NAT
//! mapping. Cilium's fragment map does the same; Katran drops fragments.
//!
//! One table per worker: NICs hash every fragment of a datagram by its addresses alone
//! (no ports to hash), so a datagram arrives on one queue. A later fragment that arrives
//! before its first (reordering) is dropped and counted; the sender's reassembly timer
//! runs out as it would after any loss.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use pipeline::DropReason;

use crate::lb::packet::{Address, Parsed};

/// How long a first fragment's ports stay for the rest of its datagram. Linux waits 30 s to
/// reassemble (`ipfrag_time`); the fragments of one datagram arrive within microseconds,
/// and an IP id may be reused after this.
const LIFETIME: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: Address,
    dst: Address,
    id: u32,
    proto: u8,
}

/// The ports of fragmented datagrams whose later fragments are still to come, by datagram.
pub struct FragmentTable {
    ports: HashMap<DatagramKey, ((u16, u16), Instant)>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<DatagramKey>,
    capacity: usize,
}

impl FragmentTable {
    /// An empty table that holds `capacity` datagrams (at least one), evicting the oldest.
    pub fn new(capacity: usize) -> FragmentTable {
        FragmentTable {
            ports: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records a first fragment's ports, or fills a later fragment's from its first.
    pub fn resolve(&mut self, parsed: &mut Parsed) -> Result<(), DropReason> {
        let Some(fragment) = parsed.fragment else {
            return Ok(());
        };
        let key = DatagramKey {
            src: parsed.flow.src,
            dst: parsed.flow.dst,
            id: fragment.id,
            proto: parsed.flow.proto,
        };
        let now = Instant::now();
        if fragment.offset == 0 {
            if !fragment.more {
                return Ok(()); // an atomic fragment (IPv6): the whole datagram
            }
            self.insert(key, (parsed.flow.src_port, parsed.flow.dst_port), now);
            return Ok(());
        }
        match self.ports.get(&key) {
            Some(&(ports, seen)) if now.duration_since(seen) < LIFETIME => {
                (parsed.flow.src_port, parsed.flow.dst_port) = ports;
                Ok(())
            }
            _ => Err(DropReason::FragmentBeforeItsFirst),
        }
    }

    fn insert(&mut self, key: DatagramKey, ports: (u16, u16), now: Instant) {
        if self.ports.insert(key, (ports, now)).is_some() {
            return; // a retransmitted first fragment: the entry is refreshed in place
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ports.remove(&oldest);
        }
        self.order.push_back(key);
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::packet::parse;
    use wire::FrameBuilder;

    fn fragments(id: u32) -> Vec<Vec<u8>> {
        FrameBuilder::udp("10.0.0.1".parse().unwrap(), "10.0.0.100".parse().unwrap())
            .ports(4000, 53)
            .payload(vec![9; 3000])
            .fragments(1500, id)
    }

    #[test]
    fn later_fragments_take_the_first_fragments_ports() {
        let mut table = FragmentTable::new(16);
        let frames = fragments(7);
        for frame in &frames {
            let mut parsed = parse(frame).unwrap();
            table.resolve(&mut parsed).unwrap();
            assert_eq!((parsed.flow.src_port, parsed.flow.dst_port), (4000, 53));
        }
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_later_fragment_without_its_first_is_refused_and_the_oldest_is_evicted() {
        let mut table = FragmentTable::new(2);
        let mut later = parse(&fragments(1)[1]).unwrap();
        assert_eq!(
            table.resolve(&mut later),
            Err(DropReason::FragmentBeforeItsFirst)
        );
        for id in 1..=3 {
            table
                .resolve(&mut parse(&fragments(id)[0]).unwrap())
                .unwrap();
        }
        assert_eq!(table.len(), 2);
        assert!(
            table
                .resolve(&mut parse(&fragments(1)[2]).unwrap())
                .is_err()
        );
        assert!(table.resolve(&mut parse(&fragments(3)[2]).unwrap()).is_ok());
    }
}
