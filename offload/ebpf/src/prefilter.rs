//! The stateless prefilter: drop packets from listed source addresses.
//!
//! It is written to fit a NIC's offload limits (nfp: array and hash maps only, key plus value
//! at most 64 bytes, no helpers beyond map lookups): exact-match hashes keyed by the source
//! address, a drop counter as the value, its own short parse with no helper calls. The same
//! lookup runs inside `steer` when the planner merges both stages into one driver program.

use aya_ebpf::{macros::map, maps::HashMap, programs::XdpContext};
use offload_common::{FAMILY_V4, MAX_PREFILTER, address_bytes, address_words};
use wire::parse::ETH_HLEN;

/// Source address (network byte order) -> packets dropped.
#[map]
pub static PREFILTER_V4: HashMap<[u8; 4], u64> = HashMap::pinned(MAX_PREFILTER, 0);
#[map]
pub static PREFILTER_V6: HashMap<[u8; 16], u64> = HashMap::pinned(MAX_PREFILTER, 0);

/// True when the source is listed; its counter is then incremented.
#[inline(always)]
pub fn listed(family: u8, src: &[u32; 4]) -> bool {
    let counter = if family == FAMILY_V4 {
        PREFILTER_V4.get_ptr_mut(&src[0].to_ne_bytes())
    } else {
        PREFILTER_V6.get_ptr_mut(&address_bytes(*src))
    };
    match counter {
        Some(counter) => {
            // SAFETY: a map value stays valid while the program runs. The add is not atomic
            // (core has no atomic add for the BPF target), so two CPUs dropping from the
            // same source at the same instant can lose a count: the figure is a lower bound.
            unsafe { *counter += 1 };
            true
        }
        None => false,
    }
}

/// The verdict of the standalone prefilter program (the hardware stage of a split plan).
/// Untagged Ethernet only: the NIC strips VLAN tags before XDP on the drivers that offload.
#[inline(always)]
pub fn verdict(ctx: &XdpContext) -> bool {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 > end {
        return false;
    }
    // SAFETY: the Ethernet header and 20 bytes after it were checked above.
    let ethertype = unsafe { *((start + 12) as *const [u8; 2]) };
    match ethertype {
        [0x08, 0x00] => {
            // SAFETY: checked above; the IPv4 source address is at bytes 12..16.
            let src = unsafe { *((start + ETH_HLEN + 12) as *const [u8; 4]) };
            listed(FAMILY_V4, &[u32::from_ne_bytes(src), 0, 0, 0])
        }
        [0x86, 0xdd] => {
            if start + ETH_HLEN + 40 > end {
                return false;
            }
            // SAFETY: 40 bytes of IPv6 header checked; the source address is at 8..24.
            let bytes = unsafe { *((start + ETH_HLEN + 8) as *const [u8; 16]) };
            listed(0, &address_words(&bytes))
        }
        _ => false,
    }
}
