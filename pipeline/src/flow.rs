//! Which pipeline stage a packet goes to: a hash of its flow (addresses, protocol and, when
//! present, ports), so every packet of a flow meets the same stage and that stage's state
//! (a connection table, say) sees the whole flow, in order.

/// A 32-bit hash of the packet's flow, read by the data path's one parsing policy
/// ([`wire::parse`]: VLAN tags, IPv6 extension headers, fragments). Frames it cannot parse
/// hash by their MAC addresses, so they still spread and never fail.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut hash = FlowHash::default();
    match wire::parse(frame) {
        Ok(Some(headers)) => {
            let (src, dst) = headers.addresses(frame);
            hash.add(src);
            hash.add(dst);
            hash.add(&[headers.protocol]);
            // Only the first fragment carries ports; hash every fragment by its addresses
            // alone so the whole datagram meets one stage. (An atomic fragment is whole.)
            let whole = headers
                .fragment
                .is_none_or(|fragment| fragment.offset == 0 && !fragment.more);
            if let (true, Some((src_port, dst_port))) = (whole, headers.ports) {
                hash.add(&src_port.to_be_bytes());
                hash.add(&dst_port.to_be_bytes());
            }
        }
        _ => hash.add(frame.get(..12).unwrap_or(frame)),
    }
    hash.finish()
}

/// A multiply-rotate hash: a few cycles per 8 bytes, good enough to spread flows.
#[derive(Default)]
struct FlowHash(u64);

impl FlowHash {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(Self::K);
        }
    }

    fn finish(&self) -> u32 {
        let folded = self.0 ^ (self.0 >> 29);
        (folded.wrapping_mul(Self::K) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src_port: u16, fragment: u16) -> Vec<u8> {
        let mut frame =
            wire::FrameBuilder::udp("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
                .ports(src_port, 53)
                .payload([0; 18])
                .build();
        frame[20..22].copy_from_slice(&fragment.to_be_bytes());
        frame
    }

    #[test]
    fn packets_of_one_flow_hash_alike_and_flows_spread() {
        let mut first = udp4(1000, 0);
        let same_flow = first.clone();
        first[50] = 0xff; // payload does not count
        assert_eq!(flow_hash(&first), flow_hash(&same_flow));
        let stages: std::collections::HashSet<u32> =
            (0..64).map(|port| flow_hash(&udp4(port, 0)) % 4).collect();
        assert_eq!(stages.len(), 4, "64 flows reach all 4 stages");
    }

    #[test]
    fn fragments_hash_by_addresses_and_short_frames_do_not_fail() {
        // A later fragment's "ports" are payload bytes: they must not count.
        assert_eq!(flow_hash(&udp4(1, 0x2000)), flow_hash(&udp4(2, 0x0010)));
        for len in 0..60 {
            flow_hash(&udp4(7, 0)[..len]);
        }
    }
}
