//! A bounded LRU table of flows → backend, so established flows keep their backend when the
//! backend set changes. One per worker (flows stay on their RX queue), like Katran's per-CPU
//! LRU map: no locks on the hot path. Slots live in one vector, linked most-recent first.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use crate::lb::packet::{FlowKey, mix};

/// A fast hasher for the hot path's maps: keys hashed already (flows by `stable_hash`, VIPs
/// by `vip_hash`) go straight through; other keys are mixed 8 bytes at a time.
#[derive(Default)]
pub struct FlowHasher(u64);

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = mix(self.0 ^ u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl std::hash::Hash for FlowKeyHash {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(crate::lb::packet::stable_hash(&self.0));
    }
}

/// A flow key hashed once with `FlowKey::hash`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FlowKeyHash(FlowKey);

/// Where a flow goes: a backend's stable id, and its VIP's and its own index as of table
/// `generation` (so a hit costs no VIP lookup and no id search while nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The index of the flow's VIP in the tables of `generation`.
    pub vip_index: u32,
    /// The backend's id, stable across table rebuilds.
    pub backend_id: u32,
    /// Its index in the VIP's backends as of `generation`.
    pub backend_index: u32,
    /// The tables' generation the index is valid for.
    pub generation: u64,
}

const NIL: u32 = u32::MAX;
/// The backend id of a removed flow's slot (unindexed, waiting at the oldest end).
const REMOVED: u32 = u32::MAX;

struct Slot {
    key: FlowKey,
    value: Connection,
    newer: u32,
    older: u32,
}

/// A worker's connection table: flows to backends, evicting the least recently used when
/// full.
pub struct ConnTable {
    index: HashMap<FlowKeyHash, u32, BuildHasherDefault<FlowHasher>>,
    slots: Vec<Slot>,
    newest: u32,
    oldest: u32,
    capacity: usize,
    /// Flows evicted to make room since creation.
    pub evictions: u64,
}

impl ConnTable {
    /// An empty table that holds `capacity` flows (at least one).
    pub fn new(capacity: usize) -> ConnTable {
        let capacity = capacity.max(1);
        ConnTable {
            index: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            slots: Vec::with_capacity(capacity),
            newest: NIL,
            oldest: NIL,
            capacity,
            evictions: 0,
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most flows it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The flow's entry, now the most recently used.
    ///
    /// The most recently used flow is compared first, without hashing: packets come in
    /// bursts of one flow (a batch of a bulk transfer), and then the lookup is one key
    /// compare (docs/performance.md has the numbers, with flows taking turns too).
    #[inline]
    pub fn get(&mut self, key: &FlowKey) -> Option<&mut Connection> {
        let newest = self.newest as usize;
        if self
            .slots
            .get(newest)
            .is_some_and(|slot| slot.key == *key && slot.value.backend_id != REMOVED)
        {
            return Some(&mut self.slots[newest].value);
        }
        let slot = *self.index.get(&FlowKeyHash(*key))?;
        self.touch(slot);
        Some(&mut self.slots[slot as usize].value)
    }

    /// Adds or replaces a flow's entry; when full, the least recently used flow goes.
    pub fn insert(&mut self, key: FlowKey, value: Connection) {
        if let Some(&slot) = self.index.get(&FlowKeyHash(key)) {
            self.slots[slot as usize].value = value;
            self.touch(slot);
            return;
        }
        let slot = if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                key,
                value,
                newer: NIL,
                older: NIL,
            });
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.oldest;
            self.unlink(victim);
            let old_key = FlowKeyHash(self.slots[victim as usize].key);
            // A removed flow's slot is no longer indexed (and its key may be in use again).
            if self.index.get(&old_key) == Some(&victim) {
                self.index.remove(&old_key);
            }
            self.evictions += 1;
            let entry = &mut self.slots[victim as usize];
            entry.key = key;
            entry.value = value;
            victim
        };
        self.index.insert(FlowKeyHash(key), slot);
        self.push_newest(slot);
    }

    /// Forgets a flow (it closed): its slot becomes the oldest, the first to be reused.
    pub fn remove(&mut self, key: &FlowKey) {
        if let Some(&slot) = self.index.get(&FlowKeyHash(*key)) {
            // Make it the oldest, so it is the next to be evicted, and drop its index entry.
            self.unlink(slot);
            self.push_oldest(slot);
            self.index.remove(&FlowKeyHash(*key));
            self.slots[slot as usize].value.backend_id = REMOVED;
        }
    }

    /// Flows in the index (equal to `len` when consistent).
    pub fn active(&self) -> usize {
        self.index.len()
    }

    fn touch(&mut self, slot: u32) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let entry = &self.slots[slot as usize];
            (entry.newer, entry.older)
        };
        match newer {
            NIL => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.newer = NIL;
        entry.older = self.newest;
        match self.newest {
            NIL => self.oldest = slot,
            n => self.slots[n as usize].newer = slot,
        }
        self.newest = slot;
    }

    fn push_oldest(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.older = NIL;
        entry.newer = self.oldest;
        match self.oldest {
            NIL => self.newest = slot,
            o => self.slots[o as usize].older = slot,
        }
        self.oldest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> FlowKey {
        FlowKey {
            src: [1; 16],
            dst: [2; 16],
            src_port: n,
            dst_port: 80,
            proto: 6,
        }
    }

    fn conn(id: u32) -> Connection {
        Connection {
            vip_index: 0,
            backend_id: id,
            backend_index: id,
            generation: 0,
        }
    }

    #[test]
    fn the_least_recently_used_flow_is_evicted() {
        let mut table = ConnTable::new(3);
        for n in 0..3 {
            table.insert(key(n), conn(n.into()));
        }
        // Use flow 0, so flow 1 is now the oldest.
        assert_eq!(table.get(&key(0)).unwrap().backend_id, 0);
        table.insert(key(3), conn(3));
        assert!(
            table.get(&key(1)).is_none(),
            "flow 1 should have been evicted"
        );
        for n in [0, 2, 3] {
            assert_eq!(table.get(&key(n)).unwrap().backend_id, u32::from(n));
        }
        assert_eq!((table.len(), table.evictions), (3, 1));
    }

    #[test]
    fn it_never_grows_past_capacity() {
        let mut table = ConnTable::new(100);
        for n in 0..10_000 {
            table.insert(key(n), conn(1));
        }
        assert_eq!((table.len(), table.active()), (100, 100));
        assert_eq!(table.evictions, 9_900);
        // The newest 100 are the ones kept.
        assert!(table.get(&key(9_999)).is_some() && table.get(&key(9_899)).is_none());
    }

    #[test]
    fn the_newest_flow_is_found_until_it_is_removed() {
        let mut table = ConnTable::new(4);
        table.insert(key(1), conn(1));
        assert_eq!(table.get(&key(1)).unwrap().backend_id, 1);
        assert!(table.get(&key(2)).is_none());
        // The only flow removed stays the newest slot, unindexed: not found.
        table.remove(&key(1));
        assert!(table.get(&key(1)).is_none());
        table.insert(key(2), conn(2));
        table.insert(key(1), conn(3));
        assert_eq!(table.get(&key(1)).unwrap().backend_id, 3);
        assert_eq!(table.get(&key(2)).unwrap().backend_id, 2);
    }

    #[test]
    fn removed_flows_go_first() {
        let mut table = ConnTable::new(2);
        table.insert(key(1), conn(1));
        table.insert(key(2), conn(2));
        table.remove(&key(2));
        assert!(table.get(&key(2)).is_none());
        table.insert(key(3), conn(3));
        assert!(
            table.get(&key(1)).is_some(),
            "the live flow stays, the removed one's slot is reused"
        );
        assert_eq!(table.active(), 2);
    }
}
