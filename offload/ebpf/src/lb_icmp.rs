//! ICMP errors about a connection of the `lb` instance (destination unreachable, packet too
//! big or fragmentation needed, time exceeded, parameter problem; ICMP and ICMPv6). The
//! error quotes the packet at fault as it was on the far side of the instance, so its
//! addresses are translated as the connection's own packets are:
//! - from the backends' side, it quotes a packet the client sent to the backend: the
//!   quote's destination becomes the VIP again, and so does the error's source when the
//!   backend sent it (the client's stack matches the error to its socket by the quote);
//! - from the clients' side, it quotes a reply the VIP sent: the quote's source becomes
//!   the backend, and so does the error's destination (the VIP).
//!
//! The ICMP checksum (ICMPv6's with its pseudo-header) and both IPv4 header checksums are
//! updated incrementally. The quoted segment's own checksum is left as it was: nothing
//! checks it, and the quote often stops before it.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use offload_common::{module::ModuleContext, proto};
use wire::checksum::update;

use crate::{LB_FLOWS, LB_KEYS, LB_REPLIES, load, store};

/// The ICMP header before the quote: type, code, checksum, four more bytes.
const ICMP_HEADER: usize = 8;

/// Translates the packet when it is an ICMP error about one of the instance's connections;
/// false when it is not (it passes unchanged).
#[inline(never)]
pub fn translate_error(raw: *mut xdp_md, context: &ModuleContext) -> bool {
    let ctx = &XdpContext::new(raw);
    if context.ip_version == 4 {
        translate::<4>(ctx, context).is_some()
    } else {
        translate::<16>(ctx, context).is_some()
    }
}

/// Whether ICMP (`v4`) or ICMPv6 type `kind` is an error quoting the packet at fault.
fn is_error(v4: bool, kind: u8) -> bool {
    if v4 {
        matches!(kind, 3 | 11 | 12)
    } else {
        matches!(kind, 1..=4)
    }
}

/// [`translate_error`] for addresses of `N` bytes.
#[inline(always)]
fn translate<const N: usize>(ctx: &XdpContext, context: &ModuleContext) -> Option<()> {
    let v4 = N == 4;
    let l3 = context.l3_offset as usize;
    let icmp = context.l4_offset as usize;
    let [kind] = load::<1>(ctx, icmp)?;
    if !is_error(v4, kind) {
        return None;
    }
    // The quoted IP header, then the first bytes of its segment (the ports).
    let quote = icmp + ICMP_HEADER;
    let (protocol, header_len) = if v4 {
        let [version_ihl] = load::<1>(ctx, quote)?;
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        if version_ihl >> 4 != 4 || header_len < 20 {
            return None;
        }
        (load::<1>(ctx, quote + 9)?[0], header_len)
    } else {
        (load::<1>(ctx, quote + 6)?[0], 40)
    };
    if protocol != proto::TCP && protocol != proto::UDP {
        return None;
    }
    let (src_at, dst_at) = if v4 { (12, 16) } else { (8, 24) };
    let quoted_src = load::<N>(ctx, quote + src_at)?;
    let quoted_dst = load::<N>(ctx, quote + dst_at)?;
    let ports_at = quote + header_len;
    let ports = load::<4>(ctx, ports_at)?;
    // The quote reversed is the way back: a reply's key (backend side), or a
    // connection's key (client side).
    let keys = LB_KEYS.get_ptr_mut(0)?;
    // SAFETY: a per-CPU slot, see `lb`.
    let keys = unsafe { &mut *keys };
    keys.flow.src = [0; 16];
    keys.flow.src[..N].copy_from_slice(&quoted_dst);
    keys.flow.dst = [0; 16];
    keys.flow.dst[..N].copy_from_slice(&quoted_src);
    keys.flow.src_port = u16::from_be_bytes([ports[2], ports[3]]);
    keys.flow.dst_port = u16::from_be_bytes([ports[0], ports[1]]);
    keys.flow.protocol = protocol;
    keys.flow._pad = [0; 3];
    // SAFETY: the entries are read at once.
    let (quoted_at, port_at, outer_at, target) =
        if let Some(vip) = unsafe { LB_REPLIES.get(&keys.flow) } {
            // From the backends' side: the quote's destination, the error's source.
            (dst_at, 2, if v4 { 12 } else { 8 }, vip)
        } else if let Some(backend) = unsafe { LB_FLOWS.get(&keys.flow) } {
            // From the clients' side: the quote's source, the error's destination.
            (src_at, 0, if v4 { 16 } else { 24 }, backend)
        } else {
            return None;
        };
    let old = if quoted_at == dst_at {
        quoted_dst
    } else {
        quoted_src
    };
    let new = &target.addr[..N];
    let old_port = [ports[port_at], ports[port_at + 1]];
    let new_port = target.port.to_be_bytes();

    let checksum_at = icmp + 2;
    let mut checksum = u16::from_be_bytes(load::<2>(ctx, checksum_at)?);
    checksum = update(checksum, &old, new);
    checksum = update(checksum, &old_port, &new_port);
    if v4 {
        let header_at = quote + 10;
        let header = load::<2>(ctx, header_at)?;
        let fixed = update(u16::from_be_bytes(header), &old, new).to_be_bytes();
        // The quoted header's checksum is part of the ICMP message too.
        checksum = update(checksum, &header, &fixed);
        store(ctx, header_at, &fixed)?;
    }
    // The error itself: from the backend, or to the VIP.
    let outer = load::<N>(ctx, l3 + outer_at)?;
    if outer == old {
        if v4 {
            let header = u16::from_be_bytes(load::<2>(ctx, l3 + 10)?);
            store(ctx, l3 + 10, &update(header, &old, new).to_be_bytes())?;
        } else {
            // ICMPv6's checksum covers the addresses (its pseudo-header).
            checksum = update(checksum, &old, new);
        }
        store(ctx, l3 + outer_at, new)?;
    }
    store(ctx, checksum_at, &checksum.to_be_bytes())?;
    store(ctx, quote + quoted_at, new)?;
    store(ctx, ports_at + port_at, &new_port)
}
