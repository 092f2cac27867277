//! The Internet checksum (RFC 1071), its incremental update (RFC 1624), the TCP/UDP
//! pseudo-header, and the completion of a checksum a sender left partial for offload.

use crate::parse::{Headers, proto};

/// A running one's-complement sum. Words are added into 64 bits in the machine's byte
/// order and folded once at the end: one's-complement sums are byte-order independent
/// (RFC 1071 2.B), so the swap to network order is done once, on the folded result, and
/// summing is plain additions the compiler vectorises.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum(u64);

impl Sum {
    /// Adds `bytes` as 16-bit words; an odd last byte is padded with zero. `bytes` must
    /// start at an even offset of the checksummed data.
    #[inline]
    pub fn add_bytes(self, bytes: &[u8]) -> Sum {
        let mut sum = self.0;
        let mut words = bytes.chunks_exact(4);
        for word in &mut words {
            sum += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
        let rest = words.remainder();
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        Sum(sum + u64::from(u32::from_ne_bytes(tail)))
    }

    /// Adds one 16-bit word given as a number (a length, a protocol number).
    #[inline]
    pub fn add_u16(self, word: u16) -> Sum {
        // As the two bytes would lie in memory, in network order.
        Sum(self.0 + u64::from(u16::from_ne_bytes(word.to_be_bytes())))
    }

    /// The sum folded to 16 bits (not complemented), as a number.
    #[inline]
    pub fn fold(self) -> u16 {
        let mut sum = self.0;
        sum = (sum & 0xffff_ffff) + (sum >> 32);
        sum = (sum & 0xffff_ffff) + (sum >> 32);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        u16::from_be_bytes((sum as u16).to_ne_bytes())
    }

    /// The checksum field's value: the complement of the folded sum.
    #[inline]
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

/// The checksum of `bytes` (an IPv4 header, say).
#[inline]
pub fn checksum(bytes: &[u8]) -> u16 {
    Sum::default().add_bytes(bytes).finish()
}

/// Updates checksum `field` for `old` bytes replaced by `new` (RFC 1624 eqn. 3:
/// HC' = ~(~HC + ~m + m')). Both slices have the same even length and start at an even
/// offset.
#[inline]
pub fn update(field: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = Sum::default().add_u16(!field);
    for (old, new) in old.chunks(2).zip(new.chunks(2)) {
        let word = |b: &[u8]| u16::from_be_bytes([b[0], *b.get(1).unwrap_or(&0)]);
        sum = sum.add_u16(!word(old)).add_u16(word(new));
    }
    sum.finish()
}

/// The TCP/UDP pseudo-header sum (RFC 793, RFC 768, RFC 8200 8.1): addresses, protocol
/// and L4 length. `src` and `dst` are 4 or 16 bytes.
#[inline]
pub fn pseudo_header(src: &[u8], dst: &[u8], protocol: u8, l4_len: usize) -> Sum {
    // IPv4's addresses as arrays: the arms read alike, but in the first `add_bytes` is
    // inlined with the length known (4), without its loop and tail: 1.5-2 ns per packet
    // in the load balancer (docs/performance.md). Do not merge them.
    let addresses = match (<&[u8; 4]>::try_from(src), <&[u8; 4]>::try_from(dst)) {
        (Ok(src), Ok(dst)) => Sum::default().add_bytes(src).add_bytes(dst),
        _ => Sum::default().add_bytes(src).add_bytes(dst),
    };
    addresses
        .add_u16(u16::from(protocol))
        .add_u16((l4_len & 0xffff) as u16)
        .add_u16((l4_len >> 16) as u16)
}

/// Where the checksum field of a TCP or UDP header is, from the L4 header.
#[inline]
pub fn l4_checksum_offset(protocol: u8) -> Option<usize> {
    match protocol {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        _ => None,
    }
}

/// Whether a frame's L4 checksum was left partial, and what was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Not TCP or UDP, a fragment, or a UDP datagram without checksum: nothing to do.
    NotApplicable,
    /// The field did not hold the bare pseudo-header sum: the sender computed it.
    Complete,
    /// The field held the pseudo-header sum only; the checksum is now complete (and
    /// differs from what the field held).
    Completed,
}

/// Completes a TCP or UDP checksum left partial by a sender with TX checksum offload on.
///
/// With offload, Linux writes only the folded pseudo-header sum into the field and leaves
/// the rest to the NIC (`CHECKSUM_PARTIAL`; `__tcp_v4_send_check`, `udp4_hwcsum`). Frames
/// reaching XDP or AF_XDP from a veth or virtio peer still look like that, and nothing
/// downstream will finish them. Finishing one is what the NIC would have done: sum the L4
/// bytes from the header on, field included, and store the complement.
///
/// The test costs one pseudo-header sum. A fully checksummed segment whose checksum happens
/// to equal its pseudo-header sum is summed again and keeps its (correct) value.
#[inline]
pub fn complete_partial(frame: &mut [u8], headers: &Headers) -> Completion {
    let Some(at) = l4_checksum_offset(headers.protocol) else {
        return Completion::NotApplicable;
    };
    if headers.fragment.is_some() {
        // Fragmenting a datagram finishes its checksum first (ip_do_fragment, skb_checksum_help).
        return Completion::NotApplicable;
    }
    let field_at = headers.l4 + at;
    let field = u16::from_be_bytes([frame[field_at], frame[field_at + 1]]);
    if headers.protocol == proto::UDP && headers.ipv4() && field == 0 {
        return Completion::NotApplicable; // RFC 768: no checksum
    }
    // UDP covers its own length (RFC 768), which the policy keeps within the IP packet;
    // TCP covers the rest of the IP packet.
    let segment_end = if headers.protocol == proto::UDP {
        headers.l4
            + usize::from(u16::from_be_bytes([
                frame[headers.l4 + 4],
                frame[headers.l4 + 5],
            ]))
    } else {
        headers.l3_end
    };
    let (src, dst) = headers.addresses(frame);
    let pseudo = pseudo_header(src, dst, headers.protocol, segment_end - headers.l4).fold();
    if field != pseudo {
        return Completion::Complete;
    }
    let mut sum = Sum::default()
        .add_bytes(&frame[headers.l4..segment_end])
        .finish();
    if sum == 0 && headers.protocol == proto::UDP {
        sum = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    if sum == field {
        // A complete checksum that happens to equal its pseudo-header sum: left as it was.
        return Completion::Complete;
    }
    frame[field_at..field_at + 2].copy_from_slice(&sum.to_be_bytes());
    Completion::Completed
}

/// Verifies the L4 checksum of an unfragmented TCP or UDP segment (tests and tools).
pub fn l4_checksum_ok(frame: &[u8], headers: &Headers) -> bool {
    let (src, dst) = headers.addresses(frame);
    let segment = &frame[headers.l4..headers.l3_end];
    pseudo_header(src, dst, headers.protocol, segment.len())
        .add_bytes(segment)
        .fold()
        == 0xffff
}

#[cfg(test)]
mod tests;
