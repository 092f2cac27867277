//! Why packets are dropped: one enum for every function of the pipeline and the worker
//! itself, counted in a fixed array so the hot path never hashes or allocates.

use std::{collections::BTreeMap, fmt, ops::Index};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wire::Malformed;

/// Why a packet was dropped. Stats and logs print [`DropReason::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame did not pass the data path's parse policy ([`wire::parse`]).
    Malformed(Malformed),
    /// The worker's own: the TX ring had no room for a forwarded frame.
    TxRingFull,
    /// The worker's own: a packet spanning several frames (this pipeline takes one).
    MultiBufferPacket,
    /// The worker's own: a `Transmit` verdict to a port the worker does not have.
    NoSuchPort,
    /// The worker's own, pipelined mode: the stage's queue and its waiting batch were full.
    StageQueueFull,
    /// Not IPv4 or IPv6.
    NotIp,
    /// IP, but neither TCP nor UDP.
    NotTcpOrUdp,
    /// Load balancer: no VIP and no SNAT address matches the destination.
    NotForVip,
    /// Load balancer: the VIP has no backend that takes new flows.
    NoBackendAvailable,
    /// Load balancer: the backend's next hop has no MAC address yet.
    NeighbourUnresolved,
    /// Load balancer: the frame's headroom cannot take an IP-in-IP header.
    NoHeadroomToEncapsulate,
    /// Load balancer: the encapsulated packet would not fit the link, and the sender
    /// allows routers to fragment it, so no ICMP error is due.
    TooBigToEncapsulate,
    /// Load balancer: the frame's headroom cannot take an ICMP "too big" error.
    NoHeadroomForIcmpError,
    /// Load balancer, NAT: every port of the SNAT address is in use.
    NatPortsExhausted,
    /// Load balancer, NAT: a packet to the SNAT address that no mapping knows.
    NoNatState,
    /// Load balancer, NAT: a reply whose source is not the mapping's backend.
    NatReplyFromWrongBackend,
    /// Load balancer: a later fragment that came before its datagram's first fragment.
    FragmentBeforeItsFirst,
}

/// The reasons after the malformed ones, in index order.
const OTHERS: [DropReason; 16] = [
    DropReason::TxRingFull,
    DropReason::MultiBufferPacket,
    DropReason::NoSuchPort,
    DropReason::StageQueueFull,
    DropReason::NotIp,
    DropReason::NotTcpOrUdp,
    DropReason::NotForVip,
    DropReason::NoBackendAvailable,
    DropReason::NeighbourUnresolved,
    DropReason::NoHeadroomToEncapsulate,
    DropReason::TooBigToEncapsulate,
    DropReason::NoHeadroomForIcmpError,
    DropReason::NatPortsExhausted,
    DropReason::NoNatState,
    DropReason::NatReplyFromWrongBackend,
    DropReason::FragmentBeforeItsFirst,
];

const MALFORMED: usize = Malformed::ALL.len();

impl DropReason {
    /// How many reasons there are.
    pub const COUNT: usize = MALFORMED + OTHERS.len();

    /// Every reason, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = {
        let mut all = [DropReason::TxRingFull; DropReason::COUNT];
        let mut i = 0;
        while i < MALFORMED {
            all[i] = DropReason::Malformed(Malformed::ALL[i]);
            i += 1;
        }
        while i < DropReason::COUNT {
            all[i] = OTHERS[i - MALFORMED];
            i += 1;
        }
        all
    };

    /// Where the reason is counted in [`DropCounts`]: the malformed reasons first, by
    /// their order in [`Malformed`], then the others as in `OTHERS`.
    pub const fn index(self) -> usize {
        match self {
            DropReason::Malformed(malformed) => malformed as usize,
            DropReason::TxRingFull => MALFORMED,
            DropReason::MultiBufferPacket => MALFORMED + 1,
            DropReason::NoSuchPort => MALFORMED + 2,
            DropReason::StageQueueFull => MALFORMED + 3,
            DropReason::NotIp => MALFORMED + 4,
            DropReason::NotTcpOrUdp => MALFORMED + 5,
            DropReason::NotForVip => MALFORMED + 6,
            DropReason::NoBackendAvailable => MALFORMED + 7,
            DropReason::NeighbourUnresolved => MALFORMED + 8,
            DropReason::NoHeadroomToEncapsulate => MALFORMED + 9,
            DropReason::TooBigToEncapsulate => MALFORMED + 10,
            DropReason::NoHeadroomForIcmpError => MALFORMED + 11,
            DropReason::NatPortsExhausted => MALFORMED + 12,
            DropReason::NoNatState => MALFORMED + 13,
            DropReason::NatReplyFromWrongBackend => MALFORMED + 14,
            DropReason::FragmentBeforeItsFirst => MALFORMED + 15,
        }
    }

    /// The name stats print, e.g. `tx ring full` or `malformed: short tcp header`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed(malformed) => malformed.name(),
            DropReason::TxRingFull => "tx ring full",
            DropReason::MultiBufferPacket => "multi-buffer packet",
            DropReason::NoSuchPort => "no such port",
            DropReason::StageQueueFull => "stage queue full",
            DropReason::NotIp => "not ip",
            DropReason::NotTcpOrUdp => "not tcp or udp",
            DropReason::NotForVip => "not for a vip",
            DropReason::NoBackendAvailable => "no backend available",
            DropReason::NeighbourUnresolved => "neighbour unresolved",
            DropReason::NoHeadroomToEncapsulate => "no headroom to encapsulate",
            DropReason::TooBigToEncapsulate => "too big to encapsulate",
            DropReason::NoHeadroomForIcmpError => "no headroom for an icmp error",
            DropReason::NatPortsExhausted => "nat ports exhausted",
            DropReason::NoNatState => "no nat state",
            DropReason::NatReplyFromWrongBackend => "nat reply from the wrong backend",
            DropReason::FragmentBeforeItsFirst => "fragment before its first fragment",
        }
    }

    /// The reason named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<DropReason> {
        DropReason::ALL
            .into_iter()
            .find(|reason| reason.name() == name)
    }
}

impl From<Malformed> for DropReason {
    fn from(malformed: Malformed) -> DropReason {
        DropReason::Malformed(malformed)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Drops counted by reason. Serialized as a map from each reason's name to its count,
/// reasons that never happened left out, in name order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::COUNT]);

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts([0; DropReason::COUNT])
    }
}

impl DropCounts {
    /// Counts one drop.
    #[inline]
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    /// Adds every count of `other`.
    pub fn add_all(&mut self, other: &DropCounts) {
        for (sum, count) in self.0.iter_mut().zip(other.0) {
            *sum += count;
        }
    }

    /// The reasons that happened, with their counts, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .zip(self.0)
            .filter(|&(_, count)| count > 0)
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// By name, as serialized.
    fn by_name(&self) -> BTreeMap<&'static str, u64> {
        self.iter()
            .map(|(reason, count)| (reason.name(), count))
            .collect()
    }
}

impl Index<DropReason> for DropCounts {
    type Output = u64;

    fn index(&self, reason: DropReason) -> &u64 {
        &self.0[reason.index()]
    }
}

impl fmt::Debug for DropCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.by_name()).finish()
    }
}

impl Serialize for DropCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.by_name().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DropCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let named = BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut counts = DropCounts::default();
        // A reason this build does not know (an appliance of another version) is left out,
        // so its status still reads.
        for (name, count) in named {
            if let Some(reason) = DropReason::from_name(&name) {
                counts.0[reason.index()] += count;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_index_and_name() {
        for (at, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), at, "{reason:?}");
            assert_eq!(DropReason::from_name(reason.name()), Some(reason));
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counts_serialize_as_a_map_by_name_and_read_back() {
        let mut counts = DropCounts::default();
        counts.add(DropReason::NotForVip);
        counts.add(DropReason::NotForVip);
        counts.add(DropReason::Malformed(Malformed::ShortTcpHeader));
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(
            json,
            r#"{"malformed: short tcp header":1,"not for a vip":2}"#
        );
        let back: DropCounts = serde_json::from_str(&json).unwrap();
        assert!(back == counts);
        assert_eq!(back[DropReason::NotForVip], 2);
        // A reason from another version of the appliance is left out, not an error.
        let other_version: DropCounts =
            serde_json::from_str(r#"{"gremlins":1,"not for a vip":3}"#).unwrap();
        assert_eq!(other_version[DropReason::NotForVip], 3);
        assert_eq!(other_version.total(), 3);
    }
}
