//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4) with weights: each
//! backend walks its own permutation of the table's slots and claims free slots in turns,
//! and a backend of weight w gets w turns for every turn of a weight-1 backend. When one
//! backend of N goes, the other backends keep almost all of their slots.

use crate::lb::packet::mix;

/// The default table size: a prime, so every skip visits every slot (Katran uses 65537).
pub const DEFAULT_SIZE: usize = 65_537;

/// Slot → backend index into the list it was built from.
#[derive(Clone, Debug)]
pub struct MaglevTable {
    slots: Vec<u32>,
}

/// A backend as Maglev sees it: a stable identity (its address and port as bytes, which
/// seeds its permutation) and a weight. Weight 0 gets no slots.
pub struct MaglevEntry<'a> {
    /// The bytes that seed its permutation.
    pub identity: &'a [u8],
    /// Its share of the slots, relative to the others'.
    pub weight: u32,
}

/// The table of `size` slots for backends given as (address, port, weight). Both load
/// balancers (the AF_XDP one and the topology's XDP instance) build theirs here, so one
/// backend takes the same slots in both: its identity is "ip:port" (no brackets for IPv6,
/// the form the AF_XDP balancer always used).
pub fn backend_table(
    backends: impl IntoIterator<Item = (std::net::IpAddr, u16, u32)>,
    size: usize,
) -> MaglevTable {
    let identified: Vec<(Vec<u8>, u32)> = backends
        .into_iter()
        .map(|(ip, port, weight)| (format!("{ip}:{port}").into_bytes(), weight))
        .collect();
    let entries: Vec<MaglevEntry<'_>> = identified
        .iter()
        .map(|(identity, weight)| MaglevEntry {
            identity,
            weight: *weight,
        })
        .collect();
    MaglevTable::build(&entries, size)
}

/// A slot no backend holds (every weight was 0).
pub const EMPTY: u32 = u32::MAX;

/// Whether `n` is prime (a table size must be, for the permutations to cover it).
pub fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn seed(identity: &[u8], salt: u64) -> u64 {
    identity.chunks(8).fold(salt, |hash, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        mix(hash ^ u64::from_le_bytes(word))
    })
}

impl MaglevTable {
    /// Builds the table. `size` must be prime (checked by the config); with no backend of
    /// positive weight, every slot is empty.
    pub fn build(entries: &[MaglevEntry<'_>], size: usize) -> MaglevTable {
        debug_assert!(is_prime(size));
        let mut slots = vec![EMPTY; size];
        let max_weight = entries.iter().map(|e| e.weight).max().unwrap_or(0);
        if max_weight == 0 {
            return MaglevTable { slots };
        }
        let m = size as u64;
        let walks: Vec<(u64, u64)> = entries
            .iter()
            .map(|entry| {
                let offset = seed(entry.identity, 0x6d61_676c_6576_0001) % m;
                let skip = seed(entry.identity, 0x6d61_676c_6576_0002) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; entries.len()];
        // Turn credits: each round a backend earns its weight and takes a slot per
        // `max_weight` earned, so slot counts follow the weights.
        let mut credit = vec![0u64; entries.len()];
        let mut filled = 0;
        'fill: loop {
            for (index, entry) in entries.iter().enumerate() {
                credit[index] += u64::from(entry.weight);
                while credit[index] >= u64::from(max_weight) {
                    credit[index] -= u64::from(max_weight);
                    let (offset, skip) = walks[index];
                    loop {
                        let slot = ((offset + next[index] * skip) % m) as usize;
                        next[index] += 1;
                        if slots[slot] == EMPTY {
                            slots[slot] = index as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable { slots }
    }

    /// The backend index for a flow hash, or None when no backend is eligible.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        let slot = self.slots[(hash % self.slots.len() as u64) as usize];
        (slot != EMPTY).then_some(slot as usize)
    }

    /// Each slot's backend index, or [`EMPTY`].
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| format!("10.0.1.{i}:80").into_bytes())
            .collect()
    }

    fn build(names: &[Vec<u8>], weights: &[u32], size: usize) -> MaglevTable {
        let entries: Vec<MaglevEntry<'_>> = names
            .iter()
            .zip(weights)
            .map(|(identity, &weight)| MaglevEntry { identity, weight })
            .collect();
        MaglevTable::build(&entries, size)
    }

    fn shares(table: &MaglevTable, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for &slot in table.slots() {
            counts[slot as usize] += 1;
        }
        counts
    }

    #[test]
    fn slots_follow_the_weights() {
        let names = names(3);
        let table = build(&names, &[1, 2, 1], DEFAULT_SIZE);
        let counts = shares(&table, 3);
        assert_eq!(counts.iter().sum::<usize>(), DEFAULT_SIZE);
        let quarter = DEFAULT_SIZE as f64 / 4.0;
        for (count, expected) in counts.iter().zip([quarter, 2.0 * quarter, quarter]) {
            assert!(
                (*count as f64 - expected).abs() / expected < 0.01,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn zero_weight_backends_get_nothing_and_all_zero_is_empty() {
        let names = names(3);
        let table = build(&names, &[1, 0, 1], 251);
        assert_eq!(shares(&table, 3)[1], 0);
        let empty = build(&names, &[0, 0, 0], 251);
        assert_eq!(empty.pick(12345), None);
    }

    /// Removing one backend of N moves its own slots, and only a small share of the others'
    /// (the paper's figure 8 shows a few percent for N in the hundreds).
    #[test]
    fn removing_one_backend_disrupts_little() {
        for n in [5usize, 10, 100] {
            let all = names(n);
            let before = build(&all, &vec![1; n], DEFAULT_SIZE);
            let removed = n / 2;
            let mut weights = vec![1; n];
            weights[removed] = 0;
            let after = build(&all, &weights, DEFAULT_SIZE);
            let moved_elsewhere = before
                .slots()
                .iter()
                .zip(after.slots())
                .filter(|(b, a)| **b as usize != removed && b != a)
                .count();
            let share = moved_elsewhere as f64 / DEFAULT_SIZE as f64;
            assert!(
                share < 0.03,
                "n={n}: {:.2}% of the other backends' slots moved",
                share * 100.0
            );
            assert!(after.slots().iter().all(|&s| s as usize != removed));
        }
    }

    /// Changing a backend's identity moves its slots in every deployed table: the form is
    /// "ip:port", IPv6 without brackets, for both balancers.
    #[test]
    fn backends_are_identified_by_ip_colon_port() {
        let ips: [std::net::IpAddr; 3] = [
            "10.2.0.11".parse().unwrap(),
            "fd02::11".parse().unwrap(),
            "fd02::12".parse().unwrap(),
        ];
        let table = backend_table(ips.iter().map(|&ip| (ip, 5353, 1)), 251);
        let names: Vec<Vec<u8>> = ["10.2.0.11:5353", "fd02::11:5353", "fd02::12:5353"]
            .iter()
            .map(|name| name.as_bytes().to_vec())
            .collect();
        assert_eq!(table.slots(), build(&names, &[1, 1, 1], 251).slots());
        let bracketed: Vec<Vec<u8>> = ["10.2.0.11:5353", "[fd02::11]:5353", "[fd02::12]:5353"]
            .iter()
            .map(|name| name.as_bytes().to_vec())
            .collect();
        assert_ne!(table.slots(), build(&bracketed, &[1, 1, 1], 251).slots());
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537) && is_prime(251) && !is_prime(65_536) && !is_prime(1));
    }
}
