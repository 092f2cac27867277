//! Which pipeline stage a packet goes to: a hash of its flow (addresses, protocol and, when
//! present, ports), so every packet of a flow meets the same stage and that stage's state
//! (a connection table, say) sees the whole flow, in order.

const ETH_HEADER: usize = 14;
const VLAN_TAGS: [u16; 2] = [0x8100, 0x88a8];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Protocols whose first four L4 bytes are the source and destination ports.
const PORTED: [u8; 3] = [6, 17, 132];

/// A 32-bit hash of the packet's flow. Frames it cannot parse hash by their MAC addresses,
/// so they still spread and never fail.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut hash = FlowHash::default();
    let (mut ethertype, mut l3) = (read_u16(frame, 12), ETH_HEADER);
    if VLAN_TAGS.contains(&ethertype) {
        ethertype = read_u16(frame, 16);
        l3 += 4;
    }
    let l3_header = frame.get(l3..).unwrap_or_default();
    match ethertype {
        ETHERTYPE_IPV4 if l3_header.len() >= 20 => {
            let protocol = l3_header[9];
            hash.add(&l3_header[12..20]);
            hash.add(&[protocol]);
            // Only the first fragment carries ports; hash every fragment by its addresses
            // alone so the whole datagram meets one stage.
            let fragmented = read_u16(l3_header, 6) & 0x3fff != 0;
            let l4 = usize::from(l3_header[0] & 0x0f) * 4;
            if !fragmented && PORTED.contains(&protocol) {
                hash.add(l3_header.get(l4..l4 + 4).unwrap_or_default());
            }
        }
        ETHERTYPE_IPV6 if l3_header.len() >= 40 => {
            let next_header = l3_header[6];
            hash.add(&l3_header[8..40]);
            hash.add(&[next_header]);
            if PORTED.contains(&next_header) {
                hash.add(l3_header.get(40..44).unwrap_or_default());
            }
        }
        _ => hash.add(frame.get(..12).unwrap_or(frame)),
    }
    hash.finish()
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
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
        let mut frame = vec![0u8; 60];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x45;
        frame[20..22].copy_from_slice(&fragment.to_be_bytes());
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
        frame[34..36].copy_from_slice(&src_port.to_be_bytes());
        frame[36..38].copy_from_slice(&53u16.to_be_bytes());
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
