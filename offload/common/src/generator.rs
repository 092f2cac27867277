//! The traffic generator's shared parts: its settings, the stamp it writes, and the map from
//! a flow number to the flow's 5-tuple fields. The program (`gen_tx`) and the AF_XDP sender
//! in user space both use them, so both modes send the same flows. The stamp's layout is
//! [`wire::stamp`]'s, re-exported here for the kernel side.

pub use wire::stamp::{STAMP_LEN, Stamp};

/// The ranges flows are spread over. Flow `n` is the `n`-th point of their product in
/// mixed radix: the source port turns fastest, then the destination port, the source
/// address and the destination address. Addresses vary in their last 32 bits (all of an
/// IPv4 address, the last word of an IPv6 one). A count of 0 counts as 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSpace {
    /// First source address value (host order): all of an IPv4 address, or the last 32 bits of
    /// an IPv6 one.
    pub src_base: u32,
    /// Source addresses to spread over, counting up from `src_base`.
    pub src_count: u32,
    /// First destination address value (host order), like `src_base`.
    pub dst_base: u32,
    /// Destination addresses to spread over, counting up from `dst_base`.
    pub dst_count: u32,
    /// First source port (host order).
    pub sport_base: u16,
    /// Source ports to spread over, counting up from `sport_base`.
    pub sport_count: u16,
    /// First destination port (host order).
    pub dport_base: u16,
    /// Destination ports to spread over, counting up from `dport_base`.
    pub dport_count: u16,
}

/// One flow's fields, in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFields {
    /// Source address value: IPv4 address or last 32 bits of the IPv6 one.
    pub src: u32,
    /// Destination address value, like `src`.
    pub dst: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl FlowSpace {
    /// How many distinct 5-tuples the ranges hold.
    pub fn size(&self) -> u64 {
        [
            self.src_count,
            self.dst_count,
            self.sport_count.into(),
            self.dport_count.into(),
        ]
        .iter()
        .map(|&count| u64::from(count.max(1)))
        .product()
    }

    /// The fields of flow `n` (wrapping round when `n` is past `size`).
    pub fn flow(&self, n: u32) -> FlowFields {
        let mut rest = n;
        let mut digit = |count: u32| {
            let count = count.max(1);
            let value = rest % count;
            rest /= count;
            value
        };
        let sport = digit(self.sport_count.into()) as u16;
        let dport = digit(self.dport_count.into()) as u16;
        let src = digit(self.src_count);
        let dst = digit(self.dst_count);
        FlowFields {
            src: self.src_base.wrapping_add(src),
            dst: self.dst_base.wrapping_add(dst),
            sport: self.sport_base.wrapping_add(sport),
            dport: self.dport_base.wrapping_add(dport),
        }
    }
}

/// Settings of the traffic generator program (`gen_tx`), slot 0 of `GEN_CONFIG`.
///
/// The template frame is built in user space. Per packet the program writes the flow's
/// ports and addresses (refreshing the IPv4 header checksum), then a sequence number and a
/// CLOCK_MONOTONIC timestamp at `stamp_offset`, so the sink can count loss and latency.
/// Offsets are from the start of the frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// Flows to cycle through; at least 1.
    pub flows: u32,
    /// The ranges flow numbers map into.
    pub space: FlowSpace,
    /// The L4 checksum's constant part; see [`GenConfig::l4_checksum`].
    pub checksum_base: u32,
    /// The L4 header: source port, then destination port.
    pub l4_offset: u16,
    /// The stamp ([`wire::stamp`]: sequence number, then timestamp).
    pub stamp_offset: u16,
    /// The last 4 bytes of the source address.
    pub src_offset: u16,
    /// The last 4 bytes of the destination address.
    pub dst_offset: u16,
    /// The IPv4 header whose checksum to refresh; 0 for IPv6.
    pub ipv4_offset: u16,
    /// The L4 checksum field; 0 when there is none to write (IPv4 UDP sends zero, "no
    /// checksum").
    pub checksum_offset: u16,
    /// How often the L4 length counts in the checksum: 2 for UDP (pseudo-header and UDP
    /// header), 1 for TCP (pseudo-header only).
    pub length_weight: u16,
    /// Two bytes holding the IPv4 TTL (and the protocol after it) or the IPv6 hop limit
    /// (and the next header before it), written with [`Self::hop_limit`] per packet; 0 for
    /// none. Two: the verifier follows a variable offset's bounds check for them.
    pub hop_limit_offset: u16,
    /// The template's Ethernet header, written whole per packet: the pages of a live-frames
    /// run come back with what the receivers wrote (a router rewrites the MACs in place).
    pub ethernet: [u8; 14],
    /// The template's two bytes at [`Self::hop_limit_offset`] (a router decrements the TTL
    /// in place).
    pub hop_limit: [u8; 2],
}

impl GenConfig {
    /// The L4 checksum of a generated frame whose L4 segment is `l4_len` bytes long.
    ///
    /// The checksum is a one's complement sum, and sums add: `checksum_base` holds the sum
    /// of every word that is the same in all frames of a run (the pseudo-header without the
    /// low address words and the length, the L4 header without ports, checksum and length;
    /// the payload is zeros). Added here: the length, the flow's fields and the stamp.
    pub fn l4_checksum(&self, flow: &FlowFields, stamp: &[u8; STAMP_LEN], l4_len: u32) -> u16 {
        let mut sum = u64::from(self.checksum_base)
            + u64::from(self.length_weight) * u64::from(l4_len)
            + u64::from(flow.sport)
            + u64::from(flow.dport);
        for word in [flow.src, flow.dst] {
            sum += u64::from(word >> 16) + u64::from(word & 0xffff);
        }
        let mut i = 0;
        while i < STAMP_LEN {
            sum += u64::from(u16::from_be_bytes([stamp[i], stamp[i + 1]]));
            i += 2;
        }
        match !fold(sum) {
            // UDP sends a computed zero as all ones (0 means "none"); TCP reads both alike.
            0 => 0xffff,
            checksum => checksum,
        }
    }
}

/// A one's complement sum folded to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    // Four rounds bring any u64 down to 16 bits; a fixed count keeps the verifier happy.
    let mut round = 0;
    while round < 4 {
        sum = (sum & 0xffff) + (sum >> 16);
        round += 1;
    }
    sum as u16
}

/// The generator's write offsets are masked with this (a bound the verifier can follow), so
/// they must be below it.
pub const GEN_OFFSET_MASK: u16 = 0x7ff;

/// The checksum of a 20-byte IPv4 header, computed with its checksum field taken as zero.
pub fn ipv4_checksum(header: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        if i != 10 {
            sum += u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
        }
        i += 2;
    }
    !fold(sum.into())
}

const _: () = assert!(size_of::<FlowSpace>() == 24);
const _: () = assert!(size_of::<GenConfig>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_walk_the_ranges_source_port_first() {
        let space = FlowSpace {
            src_base: 0x0a00_0001,
            src_count: 2,
            dst_base: 0x0a00_0101,
            dst_count: 1,
            sport_base: 1024,
            sport_count: 3,
            dport_base: 9,
            dport_count: 2,
        };
        assert_eq!(space.size(), 12);
        let tuple = |n| {
            let f = space.flow(n);
            (f.src - 0x0a00_0000, f.dst - 0x0a00_0000, f.sport, f.dport)
        };
        assert_eq!(tuple(0), (1, 0x101, 1024, 9));
        assert_eq!(tuple(2), (1, 0x101, 1026, 9));
        assert_eq!(tuple(3), (1, 0x101, 1024, 10));
        assert_eq!(tuple(6), (2, 0x101, 1024, 9));
        assert_eq!(tuple(11), (2, 0x101, 1026, 10));
        assert_eq!(tuple(12), tuple(0), "past the end it wraps round");
    }

    #[test]
    fn zero_counts_are_one_value() {
        let space = FlowSpace {
            sport_base: 7,
            ..FlowSpace::default()
        };
        assert_eq!(space.size(), 1);
        assert_eq!(space.flow(5).sport, 7);
    }

    #[test]
    fn ipv4_checksum_ignores_the_old_checksum_field() {
        // The example header of RFC 1071's usual illustration (checksum 0xb861).
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&header), 0xb861);
        header[10] = 0xde;
        header[11] = 0xad;
        assert_eq!(ipv4_checksum(&header), 0xb861);
    }
}
