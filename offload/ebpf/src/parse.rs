//! Bounds-checked header parsing: Ethernet, two VLAN tags, IPv4 (with options), IPv6 (with
//! extension headers), then TCP, UDP, ICMP and ICMPv6.
//!
//! This is the kernel side of the data path's one parsing policy; `wire/src/parse.rs` states
//! it and implements it for user space, and `offload/tests/parse_differential.rs` runs both
//! over one corpus. Change them together.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_xdp_get_buff_len,
    programs::{TcContext, XdpContext},
};
use core::mem::size_of;
use offload_common::{FAMILY_V4, FAMILY_V6, fragment, proto};

/// The packet is shorter than a header it announces, or a header field is impossible.
pub struct Malformed;

/// What the rules match on.
pub struct Packet {
    pub family: u8,
    pub proto: u8,
    /// False for protocols without ports and for non-first fragments.
    pub has_ports: bool,
    /// Source and destination port, host byte order.
    pub sport: u16,
    pub dport: u16,
    /// `fragment::NONE`, `FIRST` or `LATER`, and the datagram's identification.
    pub fragment: u8,
    pub fragment_id: u32,
    /// Source address as 32-bit words in network byte order (IPv4: word 0 only).
    pub src: [u32; 4],
    /// Destination address, as `src` is: words, not bytes, because the lookups take it a
    /// word at a time; as bytes, each byte took a stack slot of its own in the BPF build.
    pub dst: [u32; 4],
    /// Offsets of the IP header and of the header `proto` names (0 for a later fragment;
    /// an IPv6 extension header when more than the policy skips), for the module chain's
    /// context.
    pub l3_offset: u16,
    pub l4_offset: u16,
    /// VLAN tags in front of the IP header and their TCIs, outer first.
    pub vlan_count: u8,
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
}

// The policy's limits and numbers are wire's own (shared, not restated).
use wire::parse::{
    ETH_HLEN, IPV6_HLEN, MAX_IPV6_EXTENSIONS, MAX_VLAN_TAGS, VLAN_HLEN,
    ethertype::{
        IPV4 as ETH_P_IPV4, IPV6 as ETH_P_IPV6, QINQ as ETH_P_8021AD, VLAN as ETH_P_8021Q,
    },
    proto::{
        DSTOPTS as IPPROTO_DSTOPTS, FRAGMENT as IPPROTO_FRAGMENT, HOPOPTS as IPPROTO_HOPOPTS,
        ROUTING as IPPROTO_ROUTING,
    },
};

/// A packet the parse can read: an XDP frame, or a socket buffer at a TC hook (its linear
/// part, where the headers are).
pub trait Frame {
    /// The start of the packet's directly readable bytes.
    fn data(&self) -> usize;
    /// One past their end.
    fn data_end(&self) -> usize;
    /// The packet's whole length, every buffer (or fragment page) counted.
    fn total_len(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    /// data..data_end covers only the first buffer, so a jumbo frame's IP length would
    /// look truncated against it.
    #[inline(always)]
    fn total_len(&self) -> usize {
        // SAFETY: the helper only reads the context the kernel handed to the program.
        unsafe { bpf_xdp_get_buff_len(self.as_ptr().cast()) as usize }
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn total_len(&self) -> usize {
        self.len() as usize
    }
}

/// Pointer to a `T` at `offset` bytes into the packet, if all of it is inside the packet.
#[inline(always)]
pub fn at<T>(ctx: &impl Frame, offset: usize) -> Result<*const T, Malformed> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Malformed);
    }
    Ok((start + offset) as *const T)
}

/// A copy of the `T` at `offset`, if all of it is inside the packet.
#[inline(always)]
pub fn read<T: Copy>(ctx: &impl Frame, offset: usize) -> Result<T, Malformed> {
    // SAFETY: `at` checked that the whole `T` lies between data and data_end; packet data
    // has no alignment guarantee, hence read_unaligned.
    Ok(unsafe { at::<T>(ctx, offset)?.read_unaligned() })
}

/// Whether the packet holds `len` bytes from `offset` on, counting every buffer of a
/// multi-buffer packet. The first buffer answers for nearly every packet; only a longer
/// claim asks for the whole length, which on XDP is a helper call (a measured 2-3 ns of a
/// 40 ns classification).
#[inline(always)]
fn holds(ctx: &impl Frame, offset: usize, len: usize) -> bool {
    // Opaque to LLVM: knowing that the IP packet fits in the first buffer, it would drop a
    // later header's own check against data_end as redundant, and the verifier only
    // learns a header's bounds from that check.
    let linear = core::hint::black_box(ctx.data_end() - ctx.data());
    offset + len <= linear || offset + len <= ctx.total_len()
}

/// The big-endian `u16` at `at` of a header copied out of the packet.
pub fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// `Ok(None)` for frames that are not IP; they are not classified.
///
/// Each header is copied whole onto the stack after one bounds check, then decoded from the
/// copy: LLVM otherwise merges checks in ways the verifier cannot follow.
#[inline(always)]
pub fn parse(ctx: &impl Frame) -> Result<Option<Packet>, Malformed> {
    parse_at(ctx, 0)
}

/// [`parse`] of an Ethernet frame that starts `start` bytes into the packet: a tunnel's
/// inner frame (the `vxlan-trace` module). The offsets it reports count from the packet's
/// start. `start` must be small and visibly bounded for the verifier (the caller masks
/// it).
#[inline(always)]
pub fn parse_at(ctx: &impl Frame, start: usize) -> Result<Option<Packet>, Malformed> {
    let ethernet = read::<[u8; ETH_HLEN]>(ctx, start)?;
    let mut ethertype = be16(&ethernet, 12);
    let mut offset = start + ETH_HLEN;
    let mut vlan_tci = [0u16; MAX_VLAN_TAGS];
    let mut vlan_count = 0u8;
    for tci in vlan_tci.iter_mut() {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // A tag is the TCI, then the encapsulated ethertype.
        let tag = read::<[u8; VLAN_HLEN]>(ctx, offset)?;
        *tci = be16(&tag, 0);
        vlan_count += 1;
        ethertype = be16(&tag, 2);
        offset += VLAN_HLEN;
    }
    let mut packet = match ethertype {
        ETH_P_IPV4 => parse_ipv4(ctx, offset)?,
        ETH_P_IPV6 => parse_ipv6(ctx, offset)?,
        _ => return Ok(None),
    };
    packet.l3_offset = offset as u16;
    packet.vlan_count = vlan_count;
    packet.vlan_tci = vlan_tci;
    Ok(Some(packet))
}

/// An IP header's addresses are read as the words `Packet` keeps: read as bytes, each
/// byte took a stack slot and its own shift and or in the BPF build.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Header {
    fields: [u8; 12],
    src: u32,
    dst: u32,
}

/// [`Ipv4Header`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Header {
    fields: [u8; 8],
    src: [u32; 4],
    dst: [u32; 4],
}

const _: () = assert!(size_of::<Ipv4Header>() == 20 && size_of::<Ipv6Header>() == IPV6_HLEN);

#[inline(always)]
fn parse_ipv4(ctx: &impl Frame, l3: usize) -> Result<Packet, Malformed> {
    let Ipv4Header {
        fields: header,
        src,
        dst,
    } = read::<Ipv4Header>(ctx, l3)?;
    let header_len = ((header[0] & 0x0f) as usize) * 4;
    if header[0] >> 4 != 4 || header_len < 20 {
        return Err(Malformed);
    }
    let total_len = be16(&header, 2) as usize;
    if total_len < header_len || !holds(ctx, l3, total_len) {
        return Err(Malformed);
    }
    let fragment_field = be16(&header, 6);
    let mut packet = Packet {
        family: FAMILY_V4,
        proto: header[9],
        has_ports: false,
        sport: 0,
        dport: 0,
        fragment: fragment_kind(fragment_field & 0x1fff, fragment_field & 0x2000 != 0),
        fragment_id: be16(&header, 4) as u32,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        l3_offset: 0,
        l4_offset: 0,
        vlan_count: 0,
        vlan_tci: [0; MAX_VLAN_TAGS],
    };
    // Only the first fragment (offset 0) carries the transport header.
    if packet.fragment != fragment::LATER {
        // header_len <= total_len, held by the packet: the options are inside it.
        let l4 = l3 + (header_len & 0x3c);
        parse_l4(ctx, l4, l3 + (total_len & 0xffff), &mut packet)?;
    }
    Ok(packet)
}

#[inline(always)]
fn parse_ipv6(ctx: &impl Frame, l3: usize) -> Result<Packet, Malformed> {
    let Ipv6Header {
        fields: header,
        src,
        dst,
    } = read::<Ipv6Header>(ctx, l3)?;
    if header[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let payload_len = be16(&header, 4) as usize;
    if !holds(ctx, l3, IPV6_HLEN + payload_len) {
        return Err(Malformed);
    }
    let end = l3 + IPV6_HLEN + payload_len;
    let mut next = header[6];
    let mut packet = Packet {
        family: FAMILY_V6,
        proto: next,
        has_ports: false,
        sport: 0,
        dport: 0,
        fragment: fragment::NONE,
        fragment_id: 0,
        src,
        dst,
        l3_offset: 0,
        l4_offset: 0,
        vlan_count: 0,
        vlan_tci: [0; MAX_VLAN_TAGS],
    };

    let mut offset = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // RFC 8200 4.3-4.6: length in 8-octet units, not counting the first 8.
                within(offset, 2, end)?;
                let extension = read::<[u8; 2]>(ctx, offset)?;
                next = extension[0];
                offset += (extension[1] as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                // RFC 8200 4.5: fixed 8 bytes; offset in the top 13 bits, M in the lowest.
                // Only the first fragment carries ports.
                within(offset, 8, end)?;
                let extension = read::<[u8; 8]>(ctx, offset)?;
                next = extension[0];
                offset += 8;
                let field = be16(&extension, 2);
                packet.fragment = fragment_kind(field >> 3, field & 1 != 0);
                packet.fragment_id =
                    u32::from_be_bytes([extension[4], extension[5], extension[6], extension[7]]);
                if packet.fragment == fragment::LATER {
                    packet.proto = next;
                    return Ok(packet);
                }
            }
            _ => break,
        }
        // Keep the offset visibly bounded for the verifier.
        offset &= 0x3fff;
    }
    packet.proto = next;
    parse_l4(ctx, offset, end, &mut packet)?;
    Ok(packet)
}

/// A fragment's place in its datagram, from its offset and M flag. An IPv6 atomic fragment
/// (offset 0, no M) is the whole datagram.
#[inline(always)]
fn fragment_kind(offset: u16, more: bool) -> u8 {
    if offset != 0 {
        fragment::LATER
    } else if more {
        fragment::FIRST
    } else {
        fragment::NONE
    }
}

/// Headers must lie within the IP packet, not only within the frame.
#[inline(always)]
fn within(offset: usize, len: usize, end: usize) -> Result<(), Malformed> {
    if offset + len > end {
        return Err(Malformed);
    }
    Ok(())
}

/// The L4 header at `l4`, inside the IP packet that ends at `end`.
#[inline(always)]
fn parse_l4(ctx: &impl Frame, l4: usize, end: usize, packet: &mut Packet) -> Result<(), Malformed> {
    packet.l4_offset = l4 as u16;
    match packet.proto {
        proto::TCP => {
            within(l4, 20, end)?;
            let header = read::<[u8; 20]>(ctx, l4)?;
            // Data offset (header length in 32-bit words) in the top nibble of byte 12.
            if header[12] >> 4 < 5 {
                return Err(Malformed);
            }
            packet.sport = be16(&header, 0);
            packet.dport = be16(&header, 2);
            packet.has_ports = true;
        }
        proto::UDP => {
            within(l4, 8, end)?;
            let header = read::<[u8; 8]>(ctx, l4)?;
            // A first fragment's length covers the whole datagram, not this fragment.
            let length = be16(&header, 4) as usize;
            if packet.fragment == fragment::NONE && (length < 8 || l4 + length > end) {
                return Err(Malformed);
            }
            packet.sport = be16(&header, 0);
            packet.dport = be16(&header, 2);
            packet.has_ports = true;
        }
        proto::ICMP => {
            within(l4, 8, end)?;
            at::<[u8; 8]>(ctx, l4)?;
        }
        proto::ICMPV6 => {
            within(l4, 4, end)?;
            at::<[u8; 4]>(ctx, l4)?;
        }
        _ => {}
    }
    Ok(())
}
