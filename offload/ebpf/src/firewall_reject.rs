//! The firewall's `reject`: the refused packet is rewritten, in its own buffer, into the
//! answer its sender gets, and sent back out of the interface it came in on (XDP_TX):
//!
//! - TCP: an RST (RFC 9293 section 3.10.7.1, as Linux's `nf_send_reset`): to a segment
//!   with ACK, `seq = SEG.ACK` and no ACK; else `seq = 0`, `ack = SEG.SEQ + SEG.LEN`
//!   (SYN and FIN count one each) and ACK set;
//! - anything else: an ICMP port unreachable (RFC 792, type 3 code 3) or ICMPv6 port
//!   unreachable (RFC 4443 section 3.1, type 1 code 4), as nftables' `reject` sends by
//!   default, quoting the packet's IP header and the first 8 bytes after it (its ports).
//!
//! MACs and addresses are swapped, TTL / hop limit 64, checksums computed here. A packet
//! gets no answer (it is dropped, still counted on its rule) when it is an RST or an ICMP
//! error itself (RFC 9293, RFC 1122 section 3.2.2: never answer those), comes from or goes
//! to a multicast, broadcast or unspecified address, is a later fragment, is VLAN-tagged,
//! or carries IPv4 options or IPv6 extension headers (the headers are then not where the
//! rewrite writes at constant offsets, which keeps it short for the verifier).

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len},
    programs::XdpContext,
};
use fastpath_module::ModuleContext;
use offload_common::{FAMILY_V4, fold, fragment, proto};

const ETH: usize = 14;
const IPV4: usize = 20;
const IPV6: usize = 40;
const TCP: usize = 20;
const ICMP_HEADER: usize = 8;
/// What an ICMP error quotes of an IPv4 packet: its header and 8 bytes (RFC 792).
const QUOTE_V4: usize = IPV4 + 8;
/// Of an IPv6 packet: its header and 8 bytes (RFC 4443 allows more; the ports suffice
/// for the sender's stack to find its socket).
const QUOTE_V6: usize = IPV6 + 8;
const TTL: u8 = 64;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Rewrites the packet into its rejection; false when it gets none (the caller drops it).
/// The frame's size is changed here (helpers on the context); the headers are written by
/// functions of their own (BPF-to-BPF calls), whose stack frames do not add to the
/// module's.
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, context: &ModuleContext) -> bool {
    let v4 = context.ip_version == FAMILY_V4;
    let (l3, l4) = (
        usize::from(context.l3_offset),
        usize::from(context.l4_offset),
    );
    let header = if v4 { IPV4 } else { IPV6 };
    if l3 != ETH || l4 != ETH + header || context.fragment == fragment::LATER {
        return false;
    }
    if !unicast(&context.src_addr, v4) || !unicast(&context.dst_addr, v4) {
        return false;
    }
    let first = if v4 { ETH + IPV4 } else { ETH + IPV6 };
    // The L4 header's byte the answer depends on: TCP flags, or the ICMP type.
    let (data, end) = (ctx.data(), ctx.data_end());
    let at = if context.protocol == proto::TCP {
        first + 13
    } else {
        first
    };
    if data + at + 1 > end {
        return false;
    }
    // SAFETY: in bounds, checked above.
    let byte = unsafe { *((data + at) as *const u8) };
    if context.protocol == proto::TCP {
        if byte & TCP_RST != 0 {
            return false;
        }
        // The RST takes the place of the headers: the frame is cut after the TCP header.
        if !truncate(ctx, first + TCP) {
            return false;
        }
        let (data, end) = (ctx.data(), ctx.data_end());
        return if v4 {
            write_reset::<true>(data, end, context)
        } else {
            write_reset::<false>(data, end, context)
        };
    }
    // ICMP errors: IPv4 types 3, 4, 5, 11, 12; ICMPv6 types below 128.
    let icmp_error = if context.protocol == proto::ICMP {
        matches!(byte, 3 | 4 | 5 | 11 | 12)
    } else {
        context.protocol == proto::ICMPV6 && byte < 128
    };
    if icmp_error {
        return false;
    }
    // The frame is cut after the quote, then grown at the front by the answer's IP and
    // ICMP headers; the old Ethernet header lands right before the quote.
    let (quote, grown) = if v4 {
        (QUOTE_V4, IPV4 + ICMP_HEADER)
    } else {
        (QUOTE_V6, IPV6 + ICMP_HEADER)
    };
    // SAFETY: a helper on the program's own context.
    if !truncate(ctx, ETH + quote) || unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grown as i32)) } != 0
    {
        return false;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if v4 {
        write_unreachable::<true>(data, end, context)
    } else {
        write_unreachable::<false>(data, end, context)
    }
}

/// Not multicast, broadcast (the limited one: a subnet's is not known here) or unspecified.
#[inline(always)]
fn unicast(address: &[u8; 16], v4: bool) -> bool {
    if v4 {
        let unspecified = address[..4] == [0; 4];
        !unspecified && address[0] < 224
    } else {
        let unspecified = address.iter().all(|byte| *byte == 0);
        !unspecified && address[0] != 0xff
    }
}

/// Sets the frame to `length` bytes (it only shrinks here); false when the kernel refuses.
#[inline(always)]
fn truncate(ctx: &XdpContext, length: usize) -> bool {
    // SAFETY: helpers on the program's own context.
    let current = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    if current < length {
        return false;
    }
    let delta = length as i64 - current as i64;
    // SAFETY: as above.
    delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0
}

// Packet accessors at absolute addresses the callers bounds-checked.
#[inline(always)]
fn get8(at: usize) -> u8 {
    // SAFETY: the callers checked `at` is inside the packet.
    unsafe { *(at as *const u8) }
}
#[inline(always)]
fn get16(at: usize) -> u16 {
    // SAFETY: as in `get8`.
    u16::from_be_bytes(unsafe { core::ptr::read_unaligned(at as *const [u8; 2]) })
}
#[inline(always)]
fn get32(at: usize) -> u32 {
    // SAFETY: as in `get8`.
    u32::from_be_bytes(unsafe { core::ptr::read_unaligned(at as *const [u8; 4]) })
}
#[inline(always)]
fn put8(at: usize, value: u8) {
    // SAFETY: as in `get8`.
    unsafe { *(at as *mut u8) = value };
}
#[inline(always)]
fn put16(at: usize, value: u16) {
    // SAFETY: as in `get8`.
    unsafe { core::ptr::write_unaligned(at as *mut [u8; 2], value.to_be_bytes()) };
}
#[inline(always)]
fn put32(at: usize, value: u32) {
    // SAFETY: as in `get8`.
    unsafe { core::ptr::write_unaligned(at as *mut [u8; 4], value.to_be_bytes()) };
}

/// The sum of `WORDS` big-endian 16-bit words from `at` (the callers checked they are
/// inside the packet).
#[inline(always)]
fn sum_words<const WORDS: usize>(at: usize) -> u64 {
    let mut sum = 0u64;
    let mut index = 0;
    while index < WORDS {
        sum += u64::from(get16(at + 2 * index));
        index += 1;
    }
    sum
}

/// Writes, from `data`: the Ethernet header with the MACs of the one at `old_eth`
/// swapped, and the answer's IP header (addresses of the packet swapped) announcing
/// `payload` bytes of `protocol`. Returns the pseudo-header's sum for the L4 checksum.
#[inline(always)]
fn write_headers<const V4: bool>(
    data: usize,
    old_eth: usize,
    context: &ModuleContext,
    protocol: u8,
    payload: u16,
) -> u64 {
    // SAFETY: the callers checked both headers are inside the packet.
    let (destination, source) = unsafe {
        (
            core::ptr::read_unaligned(old_eth as *const [u8; 6]),
            core::ptr::read_unaligned((old_eth + 6) as *const [u8; 6]),
        )
    };
    // SAFETY: as above.
    unsafe {
        core::ptr::write_unaligned(data as *mut [u8; 6], source);
        core::ptr::write_unaligned((data + 6) as *mut [u8; 6], destination);
    }
    let ip = data + ETH;
    if V4 {
        put16(data + 12, 0x0800);
        put32(ip, 0x4500_0000 | u32::from(IPV4 as u16 + payload));
        put32(ip + 4, 0x0000_4000); // identification 0, don't fragment
        put8(ip + 8, TTL);
        put8(ip + 9, protocol);
        put16(ip + 10, 0);
        for index in 0..4 {
            put8(ip + 12 + index, context.dst_addr[index]);
            put8(ip + 16 + index, context.src_addr[index]);
        }
        put16(ip + 10, !fold(sum_words::<{ IPV4 / 2 }>(ip)));
        sum_words::<4>(ip + 12) + u64::from(protocol) + u64::from(payload)
    } else {
        put16(data + 12, 0x86dd);
        put32(ip, 0x6000_0000);
        put16(ip + 4, payload);
        put8(ip + 6, protocol);
        put8(ip + 7, TTL);
        for index in 0..16 {
            put8(ip + 8 + index, context.dst_addr[index]);
            put8(ip + 24 + index, context.src_addr[index]);
        }
        sum_words::<16>(ip + 8) + u64::from(protocol) + u64::from(payload)
    }
}

/// The packet (cut after its TCP header) becomes the RST answering it.
#[inline(never)]
fn write_reset<const V4: bool>(data: usize, end: usize, context: &ModuleContext) -> bool {
    let l4 = if V4 { ETH + IPV4 } else { ETH + IPV6 };
    if data + l4 + TCP > end {
        return false;
    }
    let flags = get8(data + l4 + 13);
    // IPv4's total length counts its header; IPv6's payload length does not.
    let ip_payload = if V4 {
        u32::from(get16(data + ETH + 2)).saturating_sub(IPV4 as u32)
    } else {
        u32::from(get16(data + ETH + 4))
    };
    let data_length = ip_payload.saturating_sub(u32::from(get8(data + l4 + 12) >> 4) * 4);
    let segment_length =
        data_length + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
    let (their_seq, their_ack) = (get32(data + l4 + 4), get32(data + l4 + 8));
    let (seq, ack, answer_flags) = if flags & TCP_ACK != 0 {
        (their_ack, 0, TCP_RST)
    } else {
        (0, their_seq.wrapping_add(segment_length), TCP_RST | TCP_ACK)
    };
    let pseudo = write_headers::<V4>(data, data, context, proto::TCP, TCP as u16);
    let tcp = data + l4;
    put16(tcp, context.dst_port);
    put16(tcp + 2, context.src_port);
    put32(tcp + 4, seq);
    put32(tcp + 8, ack);
    put8(tcp + 12, (TCP as u8 / 4) << 4);
    put8(tcp + 13, answer_flags);
    put32(tcp + 14, 0); // window, checksum
    put16(tcp + 18, 0); // urgent pointer
    put16(tcp + 16, !fold(pseudo + sum_words::<{ TCP / 2 }>(tcp)));
    true
}

/// The packet (cut after its quote, grown at the front) becomes the port unreachable
/// quoting it.
#[inline(never)]
fn write_unreachable<const V4: bool>(data: usize, end: usize, context: &ModuleContext) -> bool {
    let (ip_header, quote) = if V4 {
        (IPV4, QUOTE_V4)
    } else {
        (IPV6, QUOTE_V6)
    };
    let icmp = data + ETH + ip_header;
    let old_eth = icmp + ICMP_HEADER - ETH;
    if data + ETH + ip_header + ICMP_HEADER + quote > end {
        return false;
    }
    // The old Ethernet header's MACs are read before the new headers overwrite them (the
    // IP header written covers them).
    let length = (ICMP_HEADER + quote) as u16;
    let (protocol, kind, code) = if V4 {
        (proto::ICMP, 3, 3) // destination unreachable, port unreachable
    } else {
        (proto::ICMPV6, 1, 4)
    };
    let pseudo = write_headers::<V4>(data, old_eth, context, protocol, length);
    put8(icmp, kind);
    put8(icmp + 1, code);
    put16(icmp + 2, 0);
    put32(icmp + 4, 0);
    let sum = if V4 {
        sum_words::<{ (ICMP_HEADER + QUOTE_V4) / 2 }>(icmp)
    } else {
        pseudo + sum_words::<{ (ICMP_HEADER + QUOTE_V6) / 2 }>(icmp)
    };
    put16(icmp + 2, !fold(sum));
    true
}
