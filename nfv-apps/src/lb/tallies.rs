//! A worker's counts per backend. On the packet path they are plain integers the worker
//! owns; once per batch the ones that moved are published to the backends' shared counters,
//! each into this worker's own slot with a Relaxed store (no read-modify-write: the worker
//! is the slot's only writer). `lb status` sums the slots, so its counts are exact as of
//! each worker's last batch. The balancer-wide counts that can move on every packet
//! (partial checksums completed, fragments) are added to the shared `LbCounters` once per
//! batch too.
//!
//! A worker keeps its slots across hot swaps: the new load balancer takes over the old
//! one's slots (and running totals) for the backends both tables share.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use crate::lb::tables::{BackendCounters, CounterSlot, LbCounters, Tables};

/// One backend's running totals on this worker.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    packets: u64,
    bytes: u64,
    connections: u64,
    /// Counted since the last publish.
    touched: bool,
}

/// A worker's counts for every backend of its tables, indexed flat (`first[vip] + index`).
pub(crate) struct Tallies {
    counts: Vec<Tally>,
    /// Per VIP, the flat index of its first backend.
    first: Vec<usize>,
    /// Per backend, the shared slot this worker publishes into; empty until bound (on
    /// adopting a predecessor's, or at the first publish).
    slots: Vec<Arc<CounterSlot>>,
    /// Flat indexes counted since the last publish (its memory reserved up front, so
    /// counting never allocates).
    touched: Vec<usize>,
    /// Partial checksums completed since the last publish.
    partial_checksums: u64,
    /// Fragments resolved since the last publish.
    fragments: u64,
}

impl Tallies {
    /// Zero counts for the backends of `tables`.
    pub fn new(tables: &Tables) -> Tallies {
        let mut first = Vec::with_capacity(tables.vips.len());
        let mut backends = 0;
        for vip in &tables.vips {
            first.push(backends);
            backends += vip.backends.len();
        }
        Tallies {
            counts: vec![Tally::default(); backends],
            first,
            slots: Vec::new(),
            touched: Vec::with_capacity(backends),
            partial_checksums: 0,
            fragments: 0,
        }
    }

    /// A checksum the sender left partial, completed.
    #[inline]
    pub fn partial_checksum(&mut self) {
        self.partial_checksums += 1;
    }

    /// A fragment given its datagram's ports.
    #[inline]
    pub fn fragment(&mut self) {
        self.fragments += 1;
    }

    #[inline]
    fn tally(&mut self, vip: usize, backend: usize) -> &mut Tally {
        let flat = self.first[vip] + backend;
        let tally = &mut self.counts[flat];
        if !tally.touched {
            tally.touched = true;
            self.touched.push(flat);
        }
        tally
    }

    /// A packet of `bytes` bytes sent to `backend` of `vip`.
    #[inline]
    pub fn packet(&mut self, vip: usize, backend: usize, bytes: usize) {
        let tally = self.tally(vip, backend);
        tally.packets += 1;
        tally.bytes += bytes as u64;
    }

    /// A new flow scheduled to `backend` of `vip`.
    #[inline]
    pub fn connection(&mut self, vip: usize, backend: usize) {
        self.tally(vip, backend).connections += 1;
    }

    /// Publishes the counts that moved since the last call (at the end of each batch).
    pub fn publish(&mut self, tables: &Tables) {
        self.publish_events(&tables.counters);
        if self.touched.is_empty() {
            return;
        }
        if self.slots.is_empty() {
            self.bind(tables, HashMap::new());
        }
        for flat in self.touched.drain(..) {
            let tally = &mut self.counts[flat];
            tally.touched = false;
            let slot = &self.slots[flat];
            slot.packets.store(tally.packets, Ordering::Relaxed);
            slot.bytes.store(tally.bytes, Ordering::Relaxed);
            slot.connections.store(tally.connections, Ordering::Relaxed);
        }
    }

    /// Adds the balancer-wide counts of the batch: one shared add per counter that moved,
    /// not one per packet.
    fn publish_events(&mut self, counters: &LbCounters) {
        let events = [
            (&mut self.partial_checksums, &counters.partial_checksums),
            (&mut self.fragments, &counters.fragments),
        ];
        for (pending, counter) in events {
            if *pending != 0 {
                counter.fetch_add(*pending, Ordering::Relaxed);
                *pending = 0;
            }
        }
    }

    /// Hot swap, on the worker at a batch boundary: takes over `old`'s slots and running
    /// totals for the backends `tables` shares with `old_tables` (the same counters).
    pub fn adopt(&mut self, tables: &Tables, old: &mut Tallies, old_tables: &Tables) {
        // Whatever the old one counted in its last batch goes out first.
        old.publish(old_tables);
        if old.slots.is_empty() {
            return;
        }
        let old_counters = old_tables.vips.iter().flat_map(|vip| &vip.backends);
        let inherited = old_counters
            .zip(old.slots.drain(..))
            .map(|(backend, slot)| (counters_key(&backend.counters), slot))
            .collect();
        self.bind(tables, inherited);
    }

    /// Gives every backend a slot: the inherited one for its counters if any (its running
    /// totals resume from the slot), else a fresh one.
    fn bind(&mut self, tables: &Tables, mut inherited: HashMap<usize, Arc<CounterSlot>>) {
        let backends = tables.vips.iter().flat_map(|vip| &vip.backends);
        for (backend, tally) in backends.zip(&mut self.counts) {
            // `remove`: a slot has one writer, even if two entries shared the counters.
            let slot = match inherited.remove(&counters_key(&backend.counters)) {
                Some(slot) => {
                    tally.packets += slot.packets.load(Ordering::Relaxed);
                    tally.bytes += slot.bytes.load(Ordering::Relaxed);
                    tally.connections += slot.connections.load(Ordering::Relaxed);
                    slot
                }
                None => backend.counters.new_slot(),
            };
            self.slots.push(slot);
        }
    }
}

/// The identity of a backend's counters (they outlive table rebuilds).
fn counters_key(counters: &Arc<BackendCounters>) -> usize {
    Arc::as_ptr(counters) as usize
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lb::{
        config::{Forwarding, Protocol, VipKey},
        packet::address,
        tables::{Backend, BackendState, Vip},
    };

    fn backend(id: u32, counters: &Arc<BackendCounters>) -> Backend {
        let ip = format!("10.0.1.{id}").parse().unwrap();
        let next_hop: Arc<crate::lb::tables::NextHop> = Arc::default();
        next_hop.set([2, 0, 0, 0, 1, id as u8]);
        Backend {
            id,
            ip,
            address: address(ip),
            port: 80,
            weight: 1,
            state: BackendState::Active,
            next_hop,
            counters: counters.clone(),
        }
    }

    /// Tables of one dsr-l2 VIP, 10.0.0.100:80/tcp, with a backend per counters given
    /// (10.0.1.1, 10.0.1.2, ..., their next hops resolved).
    pub(crate) fn tables(counters: &[&Arc<BackendCounters>]) -> Tables {
        let backends: Vec<(u32, &Arc<BackendCounters>)> =
            (1..).zip(counters.iter().copied()).collect();
        tables_of(1, &backends)
    }

    /// Tables of `generation` with the one VIP of [`tables`], its backends given by id
    /// (backend `id` is 10.0.1.`id`, next hop 02:00:00:00:01:`id`) and counters.
    pub(crate) fn tables_of(generation: u64, backends: &[(u32, &Arc<BackendCounters>)]) -> Tables {
        let key = VipKey {
            address: "10.0.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let backends = backends
            .iter()
            .map(|&(id, counters)| backend(id, counters))
            .collect();
        let source = "10.0.0.2".parse().unwrap();
        let vip = Vip::new(key, Forwarding::DsrL2, None, source, backends, 7);
        Tables::new(
            generation,
            vec![vip],
            [2, 0, 0, 0, 0, 2],
            1500,
            Arc::default(),
        )
    }

    pub(crate) fn totals(
        packets: u64,
        bytes: u64,
        connections: u64,
    ) -> crate::lb::tables::BackendTotals {
        crate::lb::tables::BackendTotals {
            packets,
            bytes,
            connections,
        }
    }

    #[test]
    fn counts_show_once_published_and_sum_over_workers() {
        let (a, b) = (Arc::default(), Arc::default());
        let shared = tables(&[&a, &b]);
        let (mut one, mut two) = (Tallies::new(&shared), Tallies::new(&shared));
        one.connection(0, 0);
        one.packet(0, 0, 60);
        one.packet(0, 0, 100);
        two.packet(0, 0, 40);
        two.packet(0, 1, 1500);
        assert_eq!(a.totals(), totals(0, 0, 0), "nothing until a batch ends");
        one.publish(&shared);
        two.publish(&shared);
        assert_eq!(a.totals(), totals(3, 200, 1));
        assert_eq!(b.totals(), totals(1, 1500, 0));
        one.packet(0, 1, 10);
        one.publish(&shared);
        assert_eq!(b.totals(), totals(2, 1510, 0));
        assert_eq!(a.totals(), totals(3, 200, 1), "untouched counts stay");
        one.partial_checksum();
        two.partial_checksum();
        two.fragment();
        assert_eq!(shared.counters.partial_checksums.load(Ordering::Relaxed), 0);
        one.publish(&shared);
        two.publish(&shared);
        two.publish(&shared);
        let counters = &shared.counters;
        assert_eq!(counters.partial_checksums.load(Ordering::Relaxed), 2);
        assert_eq!(counters.fragments.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_swapped_in_worker_keeps_counting_where_the_old_one_stopped() {
        let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
        let before = tables(&[&a, &b]);
        let mut old = Tallies::new(&before);
        old.packet(0, 0, 60);
        old.publish(&before);
        old.packet(0, 1, 70);
        // The new tables drop b, keep a (now second) and add c.
        let after = tables(&[&c, &a]);
        let mut new = Tallies::new(&after);
        new.adopt(&after, &mut old, &before);
        assert_eq!(
            b.totals(),
            totals(1, 70, 0),
            "the old one's last batch counts"
        );
        new.packet(0, 1, 60);
        new.packet(0, 0, 10);
        new.publish(&after);
        assert_eq!(
            a.totals(),
            totals(2, 120, 0),
            "one slot per worker, resumed"
        );
        assert_eq!(c.totals(), totals(1, 10, 0));
        assert_eq!(a.slots.lock().unwrap().len(), 1, "the slot was taken over");
    }
}
