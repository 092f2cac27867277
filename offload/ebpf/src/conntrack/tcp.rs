//! TCP connection tracking as Linux's conntrack does it (`nf_conntrack_proto_tcp.c`), so
//! that a rule on `ct_state` decides as the same rule in nftables would, with Linux's
//! defaults: its state table, its window tracking (Guido van Rooij's "Real Stateful TCP
//! Packet Filtering"), mid-stream pick-up, RST checks against the acknowledged sequence
//! number (RFC 5961), the ignored segments that resynchronise a flow, and reopening a
//! closed flow with a new SYN. `firewall/tests/kernel_agrees.rs` holds it to Linux's
//! verdicts on random conversations.
//!
//! Left out: NAT sequence adjustment (there is no NAT here), the SYN proxy, and the
//! shortened timeout Linux gives an assured flow after an out-of-window FIN or RST.

use aya_ebpf::{cty::c_void, helpers::bpf_loop, macros::map, maps::PerCpuArray};
use offload_common::firewall::{
    CtEntry, TcpSide, ct_flag, tcp_last_flag, tcp_setting, tcp_side_flag, tcp_state, timeout,
};

use crate::parse::Frame;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE_CWR: u8 = 0xc0;

/// The kind of a segment, as Linux's table is indexed (`enum tcp_bit_set`).
const SYN_SET: u8 = 0;
const SYNACK_SET: u8 = 1;
const FIN_SET: u8 = 2;
const ACK_SET: u8 = 3;
const RST_SET: u8 = 4;
const NONE_SET: u8 = 5;

/// Table outcomes besides the states: invalid (`sIV`) and ignored (`sIG`).
const IV: u8 = 10;
const IG: u8 = 11;

/// A window scale above this is taken as this (RFC 7323).
const MAX_WSCALE: u8 = 14;
/// Linux's lower bound on the acknowledgment window (`MAXACKWINCONST`).
const MAX_ACK_WINDOW: u32 = 66_000;
/// Retransmissions of one segment after which a flow gets the short timeout.
const MAX_RETRANS: u8 = 3;

/// What a packet's TCP header says, read once per packet by [`read_segment`].
#[derive(Clone, Copy, Default)]
pub struct Segment {
    pub flags: u8,
    /// The header's length in bytes (the data offset).
    pub header_len: u8,
    pub window: u16,
    pub seq: u32,
    pub ack: u32,
    /// The sequence number past the segment (its data, SYN and FIN).
    pub end: u32,
    /// Its options, as [`options`] packs them.
    pub options: u64,
}

/// How long a flow lives on after a packet. A plain struct, every field always set: an
/// enum's unused payload may be read as undefined, and the verifier refuses what LLVM
/// does with it.
#[derive(Clone, Copy)]
pub struct Refresh {
    /// [`Refresh::KILL`], [`Refresh::KEEP`], [`Refresh::TO`], or [`Refresh::UNSET`].
    pub kind: u8,
    /// With [`Refresh::TO`]: the [`timeout`] slot.
    pub slot: u8,
    /// With [`Refresh::TO`]: the unacknowledged timeout instead when that is shorter.
    pub cap: bool,
}

impl Refresh {
    /// Nothing decided yet.
    pub const UNSET: u8 = 0;
    /// The flow ends now (an RST was the only answer).
    pub const KILL: u8 = 1;
    /// The expiry stays (a repeated SYN does not keep a flow alive).
    pub const KEEP: u8 = 2;
    /// The timeout of a slot.
    pub const TO: u8 = 3;

    #[inline(always)]
    pub const fn of(kind: u8) -> Refresh {
        Refresh {
            kind,
            slot: 0,
            cap: false,
        }
    }

    /// Packed in a number (kinds below 4: [`Outcome`] uses 4 to 6 for its others).
    #[inline(always)]
    fn encode(self) -> u64 {
        u64::from(self.kind) | u64::from(self.slot) << 8 | u64::from(self.cap) << 16
    }

    #[inline(always)]
    fn decode(code: u64) -> Refresh {
        Refresh {
            kind: code as u8,
            slot: (code >> 8) as u8,
            cap: code & (1 << 16) != 0,
        }
    }

    #[inline(always)]
    pub const fn to(slot: usize, cap: bool) -> Refresh {
        Refresh {
            kind: Refresh::TO,
            slot: slot as u8,
            cap,
        }
    }
}

/// What tracking made of a segment of a tracked flow.
pub enum Outcome {
    /// In its window: the flow moved.
    Accept(Refresh),
    /// Let through without moving the flow (Linux: "ignored").
    Ignore,
    /// Invalid.
    Invalid,
    /// A SYN that reopens a closed flow: the old entry ends, the SYN opens a new one.
    Reopen,
}

/// Whether Linux takes the flag combination at all (`tcp_valid_flags`; PSH, ECE and CWR
/// go with anything).
#[inline(always)]
pub fn valid_flags(flags: u8) -> bool {
    let flags = flags & !(ECE_CWR | PSH);
    matches!(flags, SYN | ACK | RST)
        || flags == SYN | URG
        || flags == SYN | ACK
        || flags == RST | ACK
        || flags == FIN | ACK
        || flags == FIN | ACK | URG
        || flags == ACK | URG
}

#[inline(always)]
fn index_of(flags: u8) -> u8 {
    if flags & RST != 0 {
        RST_SET
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            SYNACK_SET
        } else {
            SYN_SET
        }
    } else if flags & FIN != 0 {
        FIN_SET
    } else if flags & ACK != 0 {
        ACK_SET
    } else {
        NONE_SET
    }
}

/// A row of the state table packed four bits a state (state 0 lowest).
const fn row(next: [u8; 10]) -> u64 {
    let mut packed = 0u64;
    let mut state = 0;
    while state < 10 {
        packed |= (next[state] as u64) << (state * 4);
        state += 1;
    }
    packed
}

const SS: u8 = tcp_state::SYN_SENT;
const SR: u8 = tcp_state::SYN_RECV;
const ES: u8 = tcp_state::ESTABLISHED;
const FW: u8 = tcp_state::FIN_WAIT;
const CW: u8 = tcp_state::CLOSE_WAIT;
const LA: u8 = tcp_state::LAST_ACK;
const TW: u8 = tcp_state::TIME_WAIT;
const CL: u8 = tcp_state::CLOSE;
const S2: u8 = tcp_state::SYN_SENT2;

// Linux's `tcp_conntracks`, from the states NONE, SS, SR, ES, FW, CW, LA, TW, CL, S2.
const ORIGINAL_SYN: u64 = row([SS, SS, IG, IG, IG, IG, IG, SS, SS, S2]);
const ORIGINAL_SYNACK: u64 = row([IV, IV, SR, IV, IV, IV, IV, IV, IV, SR]);
const FIN_ROW: u64 = row([IV, IV, FW, FW, LA, LA, LA, TW, CL, IV]);
const ORIGINAL_ACK: u64 = row([ES, IV, ES, ES, CW, CW, TW, TW, CL, IV]);
const RST_ROW: u64 = row([IV, CL, CL, CL, CL, CL, CL, CL, CL, CL]);
const NONE_ROW: u64 = row([IV; 10]);
const REPLY_SYN: u64 = row([IV, S2, IV, IV, IV, IV, IV, SS, IV, S2]);
const REPLY_SYNACK: u64 = row([IV, SR, IG, IG, IG, IG, IG, IG, IG, SR]);
const REPLY_ACK: u64 = row([IV, IG, SR, ES, CW, CW, TW, TW, CL, IG]);

#[inline(always)]
fn next_state(reply: bool, index: u8, state: u8) -> u8 {
    let row = match (reply, index) {
        (false, SYN_SET) => ORIGINAL_SYN,
        (false, SYNACK_SET) => ORIGINAL_SYNACK,
        (false, ACK_SET) => ORIGINAL_ACK,
        (true, SYN_SET) => REPLY_SYN,
        (true, SYNACK_SET) => REPLY_SYNACK,
        (true, ACK_SET) => REPLY_ACK,
        (_, FIN_SET) => FIN_ROW,
        (_, RST_SET) => RST_ROW,
        _ => NONE_ROW,
    };
    if state > S2 {
        return IV;
    }
    ((row >> (u32::from(state) * 4)) & 0xf) as u8
}

/// `a` comes before `b` in sequence space (RFC 1982 arithmetic).
#[inline(always)]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline(always)]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

// The packed options: the highest SACK right edge, and whether there was one; SACK
// permitted; the window scale, and whether there was one.
const OPT_SACK: u64 = 1 << 32;
const OPT_SACK_PERM: u64 = 1 << 33;
const OPT_WSCALE: u64 = 1 << 34;
const OPT_WSCALE_SHIFT: u64 = 40;

/// Per-CPU: the option bytes of the segment being read ([`options`]): the stack has no
/// room for them beside the options walk's callback.
#[map]
static FW_CT_OPTIONS: PerCpuArray<[u8; 64]> = PerCpuArray::with_max_entries(1, 0);

/// The options of a segment with only a timestamp, as Linux aligns it: NOP, NOP, then
/// the timestamp option (kind 8, length 10).
const TIMESTAMP_ONLY: [u8; 4] = [1, 1, 8, 10];

/// Reads a TCP header's options (`length` bytes at `at`): SACK permitted, the window
/// scale and the highest right edge of the first SACK option, packed into a u64. As
/// Linux's `tcp_options` and `tcp_sack`: parsing stops at the end-of-list, at a malformed
/// length or at an option cut short.
// A function of its own: the copy's states stay out of the caller's verification.
#[inline(never)]
pub fn options(data: usize, data_end: usize, at: usize, length: usize) -> u64 {
    let frame = &super::Bounds { data, data_end };
    let at = at & 2047;
    // Most segments carry a timestamp and nothing else (Linux's fast path too).
    if length == 12 && super::read::<[u8; 4]>(frame, at).is_ok_and(|start| start == TIMESTAMP_ONLY)
    {
        return 0;
    }
    let Some(bytes) = FW_CT_OPTIONS.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU slot; the program runs with migration disabled.
    let bytes = unsafe { &mut *bytes };
    // Copied a word at a time first (a header's length is whole words): single-byte
    // reads of the packet at varying offsets lead LLVM to bounds checks the verifier
    // cannot follow.
    for word in 0..16 {
        let value = if word * 4 < length {
            let Ok(value) = super::read::<[u8; 4]>(frame, at + word * 4) else {
                return 0;
            };
            value
        } else {
            [0; 4]
        };
        bytes[word * 4..word * 4 + 4].copy_from_slice(&value);
    }
    let mut walk = OptionWalk {
        length: length.min(40) as u64,
        next: 0,
        packed: 0,
    };
    // The walk is a `bpf_loop` callback: the verifier checks its body once, where a
    // loop in line would have it follow every sequence of option lengths.
    // SAFETY: the helper calls `option_step` with `walk`, which outlives the call.
    unsafe {
        bpf_loop(
            40,
            option_step as *mut c_void,
            (&mut walk as *mut OptionWalk).cast(),
            0,
        )
    };
    walk.packed
}

/// The state of an options walk ([`options`]).
#[repr(C)]
struct OptionWalk {
    length: u64,
    /// Where the next option starts.
    next: u64,
    packed: u64,
}

/// One byte of the options walk: an option is read where the previous one ends. Returns
/// 1 to stop the walk.
unsafe extern "C" fn option_step(position: u64, context: *mut c_void) -> i64 {
    // SAFETY: `options` hands its walk.
    let walk = unsafe { &mut *context.cast::<OptionWalk>() };
    let (position, length) = ((position & 63) as usize, (walk.length & 63) as usize);
    if position >= length {
        return 1;
    }
    if position as u64 != walk.next {
        return 0;
    }
    let Some(bytes) = FW_CT_OPTIONS.get_ptr(0) else {
        return 1;
    };
    // SAFETY: a per-CPU slot `options` filled.
    let bytes = unsafe { &*bytes };
    let byte = |index: usize| bytes[index & 63];
    let kind = byte(position);
    if kind == 0 {
        return 1;
    }
    if kind == 1 {
        walk.next = position as u64 + 1;
        return 0;
    }
    if length - position < 2 {
        return 1;
    }
    let size = usize::from(byte(position + 1));
    if size < 2 || size > length - position {
        return 1;
    }
    let mut packed = walk.packed;
    if kind == 4 && size == 2 {
        packed |= OPT_SACK_PERM;
    } else if kind == 3 && size == 3 {
        let scale = byte(position + 2).min(MAX_WSCALE);
        packed |= OPT_WSCALE | (u64::from(scale) << OPT_WSCALE_SHIFT);
    } else if kind == 5 && packed & OPT_SACK == 0 && size >= 10 && (size - 2) % 8 == 0 {
        let mut edge = 0u32;
        for block in 0..4 {
            if 2 + block * 8 + 8 > size {
                break;
            }
            let at = position + 2 + block * 8 + 4;
            let right = u32::from_be_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)]);
            if block == 0 || after(right, edge) {
                edge = right;
            }
        }
        packed |= OPT_SACK | u64::from(edge);
    }
    walk.packed = packed;
    walk.next = (position + size) as u64;
    0
}

/// Per-CPU: the TCP header of the packet being tracked ([`read_segment`]), kept off the
/// stack, which the program's deepest calls fill.
#[map]
static FW_CT_SEGMENT: PerCpuArray<Segment> = PerCpuArray::with_max_entries(1, 0);

/// The segment [`read_segment`] read last on this CPU.
#[inline(always)]
pub fn segment() -> Option<&'static Segment> {
    // SAFETY: a per-CPU slot; the program runs with migration disabled.
    FW_CT_SEGMENT.get_ptr(0).map(|segment| unsafe { &*segment })
}

/// Reads the segment's TCP header at `l4_offset` into this CPU's [`segment`]: flags,
/// numbers, window, options and its end (from the IP header's length, as Linux counts it:
/// Ethernet padding is not data). Returns its flags. With `l4_offset` 0 (no header to
/// read) the segment is left empty.
#[inline(always)]
pub fn read_segment(frame: &impl Frame, family: u8, l3_offset: usize, l4_offset: usize) -> u8 {
    let Some(segment) = FW_CT_SEGMENT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU slot; the program runs with migration disabled.
    let segment = unsafe { &mut *segment };
    *segment = Segment::default();
    if l4_offset == 0 {
        return 0;
    }
    let Ok(header) = super::read::<[u8; 16]>(frame, l4_offset) else {
        return 0;
    };
    segment.seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    segment.ack = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    segment.header_len = (header[12] >> 4) * 4;
    segment.flags = header[13];
    segment.window = u16::from_be_bytes([header[14], header[15]]);
    let header_len = usize::from(segment.header_len);
    let l3_offset = l3_offset & 511;
    let ip_bytes = if family == offload_common::FAMILY_V4 {
        super::read::<u16>(frame, l3_offset + 2).map(|total| usize::from(u16::from_be(total)))
    } else {
        super::read::<u16>(frame, l3_offset + 4)
            .map(|payload| usize::from(u16::from_be(payload)) + 40)
    };
    let packet_end = match ip_bytes {
        Ok(bytes) => l3_offset + bytes,
        Err(_) => frame.data_end() - frame.data(),
    };
    let data = packet_end.saturating_sub(l4_offset + header_len) as u32;
    segment.end = segment
        .seq
        .wrapping_add(data)
        .wrapping_add(u32::from(segment.flags & SYN != 0))
        .wrapping_add(u32::from(segment.flags & FIN != 0));
    if header_len > 20 {
        segment.options = options(
            frame.data(),
            frame.data_end(),
            l4_offset + 20,
            header_len - 20,
        );
    }
    segment.flags
}

/// A side's scale and flags from a SYN's options (Linux's `tcp_options`: only when the
/// header has options at all).
#[inline(always)]
fn take_options(side: &mut TcpSide, segment: &Segment) {
    if segment.header_len <= 20 {
        return;
    }
    side.scale = 0;
    side.flags &= tcp_side_flag::BE_LIBERAL;
    if segment.options & OPT_SACK_PERM != 0 {
        side.flags |= tcp_side_flag::SACK_PERM;
    }
    if segment.options & OPT_WSCALE != 0 {
        side.scale = (segment.options >> OPT_WSCALE_SHIFT) as u8;
        side.flags |= tcp_side_flag::WINDOW_SCALE;
    }
}

/// Sets up the entry of a flow a segment opens (Linux's `tcp_new`, then the segment as
/// the flow's first): a SYN, or (unless pick-up is off) an ACK in mid-stream, whose flow
/// is then judged liberally since its window scaling is unknown. [`Refresh::UNSET`] when
/// the segment opens nothing (invalid).
#[inline(always)]
pub fn open(entry: &mut CtEntry, segment: &Segment, settings: u32) -> Refresh {
    Refresh::decode(fastpath_ct_tcp_open(entry, segment, settings))
}

/// [`open`] as a global function, as [`fastpath_ct_tcp_packet`] is (the window checks
/// are verified there and here only).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fastpath_ct_tcp_open(
    entry: *mut CtEntry,
    segment: *const Segment,
    settings: u32,
) -> u64 {
    if entry.is_null() || segment.is_null() {
        return Refresh::of(Refresh::UNSET).encode();
    }
    // SAFETY: checked non-null; the caller hands map values (the entry, the segment).
    let (entry, segment) = unsafe { (&mut *entry, &*segment) };
    open_flow(entry, segment, settings).encode()
}

#[inline(always)]
fn open_flow(entry: &mut CtEntry, segment: &Segment, settings: u32) -> Refresh {
    if !valid_flags(segment.flags) {
        return Refresh::of(Refresh::UNSET);
    }
    let index = index_of(segment.flags);
    let state = next_state(false, index, tcp_state::NONE);
    let side = &mut entry.seen[0];
    match state {
        tcp_state::SYN_SENT => {
            side.end = segment.end;
            side.max_win = u32::from(segment.window).max(1);
            side.max_end = segment.end;
            take_options(side, segment);
        }
        tcp_state::ESTABLISHED if settings & tcp_setting::NO_PICKUP == 0 => {
            side.end = segment.end;
            side.max_win = u32::from(segment.window).max(1);
            side.max_end = segment.end.wrapping_add(side.max_win);
            let liberal = tcp_side_flag::SACK_PERM | tcp_side_flag::BE_LIBERAL;
            entry.seen[0].flags = liberal;
            entry.seen[1].flags = liberal;
        }
        _ => return Refresh::of(Refresh::UNSET),
    }
    // From nothing, the table's only step is the window's: a SYN always fits, and a
    // picked-up flow is liberal.
    if !matches!(
        in_window(entry, false, index, segment, settings),
        Window::Accept
    ) {
        return Refresh::of(Refresh::UNSET);
    }
    entry.state = state;
    entry.last_index = index;
    entry.last_dir = 0;
    Refresh::to(timeout_of_state(state), true)
}

/// One side's tracking: the answering side's (`reply`) or the originator's. Chosen by a
/// branch, not an index: an index known only at run time makes the verifier follow each
/// access for both values.
#[inline(always)]
fn side_mut(entry: &mut CtEntry, reply: bool) -> &mut TcpSide {
    if reply {
        &mut entry.seen[1]
    } else {
        &mut entry.seen[0]
    }
}

/// Whether the flow is established past its handshake (`nf_conntrack_tcp_established`).
#[inline(always)]
fn established(entry: &CtEntry) -> bool {
    entry.state == tcp_state::ESTABLISHED && entry.flags & ct_flag::ASSURED != 0
}

/// Where the state machine sends a segment before the window check.
enum Step {
    /// Check the window, then move.
    Window,
    /// Move without the window check.
    Move,
    Done(Outcome),
}

/// One segment of a tracked flow, from the originator (`reply` false) or the answering
/// side (Linux's `nf_conntrack_tcp_packet`). Moves the entry in place.
#[inline(always)]
pub fn packet(entry: &mut CtEntry, reply: bool, segment: &Segment, settings: u32) -> Outcome {
    let code = fastpath_ct_tcp_packet(entry, u32::from(reply), segment, settings);
    Outcome::decode(code)
}

/// [`packet`] as a global function: the verifier checks it once, on its own, rather than
/// once for each way the program reaches it (the state machine and window checks have
/// too many for the 1M-instruction budget). Its outcome comes back packed in a number:
/// an enum with data would come back through the caller's stack.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fastpath_ct_tcp_packet(
    entry: *mut CtEntry,
    reply: u32,
    segment: *const Segment,
    settings: u32,
) -> u64 {
    // A global function's pointers may be null as far as the verifier knows.
    if entry.is_null() || segment.is_null() {
        return Outcome::Invalid.encode();
    }
    // SAFETY: checked non-null; the caller hands map values (the entry, the segment).
    let (entry, segment) = unsafe { (&mut *entry, &*segment) };
    track_segment(entry, reply != 0, segment, settings).encode()
}

impl Outcome {
    #[inline(always)]
    fn encode(self) -> u64 {
        match self {
            Outcome::Accept(refresh) => refresh.encode(),
            Outcome::Ignore => 4,
            Outcome::Reopen => 5,
            Outcome::Invalid => 6,
        }
    }

    #[inline(always)]
    fn decode(code: u64) -> Outcome {
        match code & 0xff {
            4 => Outcome::Ignore,
            5 => Outcome::Reopen,
            6 => Outcome::Invalid,
            _ => Outcome::Accept(Refresh::decode(code)),
        }
    }
}

#[inline(always)]
fn track_segment(entry: &mut CtEntry, reply: bool, segment: &Segment, settings: u32) -> Outcome {
    if !valid_flags(segment.flags) {
        return Outcome::Invalid;
    }
    let dir = u8::from(reply);
    let index = index_of(segment.flags);
    let mut old_state = entry.state;
    let mut new_state = next_state(reply, index, old_state);
    let step = match new_state {
        tcp_state::SYN_SENT if old_state < tcp_state::TIME_WAIT => Step::Window,
        tcp_state::SYN_SENT => {
            // A SYN on a flow closed by a FIN, or by an RST from the SYN's own side:
            // Linux deletes the old flow and looks the SYN up again.
            let closing = (entry.seen[0].flags | entry.seen[1].flags) & tcp_side_flag::CLOSE_INIT;
            if closing != 0 || (entry.last_dir == dir && entry.last_index == RST_SET) {
                return Outcome::Reopen;
            }
            ignore(entry, reply, index, segment, &mut old_state, &mut new_state)
        }
        IG => ignore(entry, reply, index, segment, &mut old_state, &mut new_state),
        IV => return Outcome::Invalid,
        tcp_state::TIME_WAIT => {
            // RFC 5961: an ACK answering a SYN let through in LAST_ACK is a challenge
            // ACK, not the ACK of the last FIN.
            if old_state == tcp_state::LAST_ACK
                && index == ACK_SET
                && entry.last_dir != dir
                && entry.last_index == SYN_SET
                && entry.last_flags & tcp_last_flag::CHALLENGE_ACK != 0
            {
                entry.last_flags &= !tcp_last_flag::CHALLENGE_ACK;
                return Outcome::Ignore;
            }
            Step::Window
        }
        tcp_state::SYN_SENT2 => {
            entry.last_flags |= tcp_last_flag::SIMULTANEOUS_OPEN;
            Step::Window
        }
        tcp_state::SYN_RECV => {
            if reply && index == ACK_SET && entry.last_flags & tcp_last_flag::SIMULTANEOUS_OPEN != 0
            {
                new_state = tcp_state::ESTABLISHED;
            }
            Step::Window
        }
        tcp_state::CLOSE if index == RST_SET => {
            reset(entry, reply, segment, old_state, &mut new_state, settings)
        }
        _ => Step::Window,
    };
    match step {
        Step::Done(outcome) => return outcome,
        Step::Window => match in_window(entry, reply, index, segment, settings) {
            Window::Accept => {}
            Window::Ignore => return Outcome::Ignore,
            Window::Invalid => {
                // An assured flow remembers an out-of-window FIN or RST as its last
                // segment (Linux's `nf_tcp_handle_invalid`).
                if entry.flags & ct_flag::ASSURED != 0
                    && (index == RST_SET || index == FIN_SET)
                    && !(entry.last_dir != dir
                        && (entry.last_index == FIN_SET || entry.last_index == RST_SET))
                {
                    entry.last_index = index;
                    entry.last_dir = dir;
                }
                return Outcome::Invalid;
            }
        },
        Step::Move => {}
    }
    entry.last_index = index;
    entry.last_dir = dir;
    entry.state = new_state;
    if old_state != new_state && new_state == tcp_state::FIN_WAIT {
        side_mut(entry, reply).flags |= tcp_side_flag::CLOSE_INIT;
    }
    let slot = if index == RST_SET {
        timeout::CLOSE
    } else {
        timeout_of_state(new_state)
    };
    // Data unacknowledged, a zero window or retransmissions: the unacknowledged timeout
    // when shorter.
    let unacknowledged =
        (entry.seen[0].flags | entry.seen[1].flags) & tcp_side_flag::DATA_UNACKNOWLEDGED != 0;
    let mut cap =
        index != RST_SET && (entry.retrans >= MAX_RETRANS || unacknowledged || entry.last_win == 0);
    if entry.flags & ct_flag::SEEN_REPLY == 0 {
        // "If only reply is a RST, we can consider ourselves not to have an established
        // connection" (Linux deletes the flow).
        if segment.flags & RST != 0 {
            return Outcome::Accept(Refresh::of(Refresh::KILL));
        }
        if index == SYN_SET && old_state == tcp_state::SYN_SENT {
            return Outcome::Accept(Refresh::of(Refresh::KEEP));
        }
        // Picked up in mid-stream and never answered: no long established timeout.
        cap |= new_state == tcp_state::ESTABLISHED;
    } else if entry.flags & ct_flag::ASSURED == 0
        && (old_state == tcp_state::SYN_RECV || old_state == tcp_state::ESTABLISHED)
        && new_state == tcp_state::ESTABLISHED
    {
        entry.flags |= ct_flag::ASSURED;
    }
    Outcome::Accept(Refresh::to(slot, cap))
}

/// A segment the table ignores: it may belong to a connection the flow is out of step
/// with. A SYN-ACK answering a SYN ignored earlier brings the flow back in step;
/// otherwise the segment is noted, for the answer that may follow it.
#[inline(always)]
fn ignore(
    entry: &mut CtEntry,
    reply: bool,
    index: u8,
    segment: &Segment,
    old_state: &mut u8,
    new_state: &mut u8,
) -> Step {
    let dir = u8::from(reply);
    if index == SYNACK_SET
        && entry.last_index == SYN_SET
        && entry.last_dir != dir
        && segment.ack == entry.last_end
    {
        *old_state = tcp_state::SYN_SENT;
        *new_state = tcp_state::SYN_RECV;
        let last_flags = entry.last_flags;
        let (last_end, last_win, last_wscale) = (entry.last_end, entry.last_win, entry.last_wscale);
        let synner = side_mut(entry, entry.last_dir != 0);
        synner.end = last_end;
        synner.max_end = last_end;
        synner.max_win = u32::from(last_win).max(1);
        synner.scale = last_wscale;
        synner.flags = last_flags & (tcp_last_flag::WINDOW_SCALE | tcp_last_flag::SACK_PERM);
        entry.last_flags &= !tcp_last_flag::CHALLENGE_ACK;
        let answerer = side_mut(entry, reply);
        *answerer = TcpSide {
            flags: answerer.flags & tcp_side_flag::BE_LIBERAL,
            ..TcpSide::default()
        };
        return Step::Window;
    }
    entry.last_index = index;
    entry.last_dir = dir;
    entry.last_seq = segment.seq;
    entry.last_end = segment.end;
    entry.last_win = segment.window;
    if index == SYN_SET && !reply {
        entry.last_flags = 0;
        entry.last_wscale = 0;
        if segment.header_len > 20 {
            if segment.options & OPT_WSCALE != 0 {
                entry.last_flags |= tcp_last_flag::WINDOW_SCALE;
                entry.last_wscale = (segment.options >> OPT_WSCALE_SHIFT) as u8;
            }
            if segment.options & OPT_SACK_PERM != 0 {
                entry.last_flags |= tcp_last_flag::SACK_PERM;
            }
        }
        if *old_state == tcp_state::LAST_ACK {
            entry.last_flags |= tcp_last_flag::CHALLENGE_ACK;
        }
    }
    // A challenge ACK answering the SYN, for the RST that may follow.
    if *old_state == tcp_state::SYN_SENT && index == ACK_SET && reply {
        entry.last_ack = segment.ack;
    }
    Step::Done(Outcome::Ignore)
}

/// An RST on a flow not yet closing: checked against what the peer acknowledged
/// (RFC 5961 3.2): before it, invalid (unless so configured); past it on an established
/// flow, the flow stays open for the challenge ACK unless the RST ends a train.
#[inline(always)]
fn reset(
    entry: &mut CtEntry,
    reply: bool,
    segment: &Segment,
    old_state: u8,
    new_state: &mut u8,
    settings: u32,
) -> Step {
    if matches!(
        old_state,
        tcp_state::FIN_WAIT
            | tcp_state::LAST_ACK
            | tcp_state::TIME_WAIT
            | tcp_state::CLOSE
            | tcp_state::CLOSE_WAIT
    ) {
        return Step::Move;
    }
    let dir = u8::from(reply);
    let peer = *side_mut(entry, !reply);
    if peer.flags & tcp_side_flag::MAXACK_SET != 0 && entry.last_index != SYN_SET {
        let seq = segment.seq;
        if seq == 0 && !established(entry) {
            return Step::Window;
        }
        if before(seq, peer.max_ack) && settings & tcp_setting::IGNORE_INVALID_RST == 0 {
            return Step::Done(Outcome::Invalid);
        }
        if !established(entry) || seq == peer.max_ack {
            return Step::Window;
        }
        if entry.last_index == ACK_SET && entry.last_dir == dir && seq == entry.last_end {
            return Step::Window;
        }
        *new_state = old_state;
    }
    let seen_reply = entry.flags & ct_flag::SEEN_REPLY != 0;
    let assured = entry.flags & ct_flag::ASSURED != 0;
    // The answer to a SYN or an ACK let through out of step: the flow goes.
    if ((seen_reply && entry.last_index == SYN_SET) || (!assured && entry.last_index == ACK_SET))
        && segment.ack == entry.last_end
    {
        return Step::Move;
    }
    // The answer to a challenge ACK let through.
    if old_state == tcp_state::SYN_SENT
        && entry.last_index == ACK_SET
        && entry.last_dir == 1
        && segment.seq == entry.last_ack
    {
        return Step::Move;
    }
    Step::Window
}

enum Window {
    Accept,
    Ignore,
    Invalid,
}

/// Linux's `tcp_in_window`: whether the segment's sequence and acknowledgment numbers
/// fit what each side has sent and allowed, and the sides' windows moved on by it.
#[inline(always)]
fn in_window(
    entry: &mut CtEntry,
    reply: bool,
    index: u8,
    segment: &Segment,
    settings: u32,
) -> Window {
    let state = entry.state;
    // Chosen by a branch (see `side_mut`).
    let [original, answering] = &mut entry.seen;
    let (sender, receiver) = if reply {
        (answering, original)
    } else {
        (original, answering)
    };
    let result = check_window(sender, receiver, state, reply, segment, settings);
    // Retransmissions of an ACK-only segment, counted for the timeout.
    if matches!(result, Window::Accept) && index == ACK_SET {
        let dir = u8::from(reply);
        if entry.last_dir == dir
            && entry.last_seq == segment.seq
            && entry.last_ack == segment.ack
            && entry.last_end == segment.end
            && entry.last_win == segment.window
        {
            entry.retrans = entry.retrans.saturating_add(1);
        } else {
            entry.last_dir = dir;
            entry.last_seq = segment.seq;
            entry.last_ack = segment.ack;
            entry.last_end = segment.end;
            entry.last_win = segment.window;
            entry.retrans = 0;
        }
    }
    result
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn check_window(
    sender: &mut TcpSide,
    receiver: &mut TcpSide,
    state: u8,
    reply: bool,
    segment: &Segment,
    settings: u32,
) -> Window {
    let liberal =
        sender.flags & tcp_side_flag::BE_LIBERAL != 0 || settings & tcp_setting::BE_LIBERAL != 0;
    // Linux logs what fails a check and, for a liberal flow, lets it through unchanged.
    let failed = |result: Window| if liberal { Window::Accept } else { result };
    let flags = segment.flags;
    let mut seq = segment.seq;
    let mut end = segment.end;
    let mut ack = segment.ack;
    let mut sack = ack;
    let mut win = u32::from(segment.window);
    if receiver.flags & tcp_side_flag::SACK_PERM != 0
        && segment.options & OPT_SACK != 0
        && after(segment.options as u32, sack)
    {
        sack = segment.options as u32;
    }
    if sender.max_win == 0 {
        if flags & SYN != 0 {
            init_sender(sender, receiver, reply, segment);
            if flags & ACK == 0 {
                return Window::Accept;
            }
        } else {
            // In mid-stream: start from this segment.
            sender.end = end;
            let scaled = win << sender.scale;
            sender.max_win = scaled.max(1);
            sender.max_end = end.wrapping_add(sender.max_win);
            if receiver.max_win == 0 {
                receiver.end = sack;
                receiver.max_end = sack;
            } else if sack == receiver.end.wrapping_add(1) {
                receiver.end = receiver.end.wrapping_add(1);
            }
        }
    } else if flags & SYN != 0
        && after(end, sender.end)
        && (state == tcp_state::SYN_SENT || state == tcp_state::SYN_RECV)
    {
        // A SYN sent again with new numbers or options.
        init_sender(sender, receiver, reply, segment);
        if reply && flags & ACK == 0 {
            return Window::Accept;
        }
    }
    if flags & ACK == 0 || (flags & (ACK | RST) == ACK | RST && ack == 0) {
        ack = receiver.end;
        sack = receiver.end;
    }
    if flags & RST != 0 && seq == 0 && state == tcp_state::SYN_SENT {
        seq = sender.end;
        end = sender.end;
    }
    let max_ack_window = sender.max_win.max(MAX_ACK_WINDOW);
    if !before(seq, sender.max_end.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.max_end).wrapping_add(1);
        let ack_ok = after(
            sack,
            receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
        );
        let in_receive_window = receiver.max_win != 0
            && after(
                end,
                sender.end.wrapping_sub(receiver.max_win).wrapping_sub(1),
            );
        if in_receive_window
            && ack_ok
            && overshot <= receiver.max_win
            && before(sack, receiver.end.wrapping_add(1))
        {
            // More than the window allowed: noted, so that its acknowledgment fits.
            sender.end = end;
            sender.flags |= tcp_side_flag::DATA_UNACKNOWLEDGED;
            return failed(Window::Ignore);
        }
        return failed(Window::Invalid);
    }
    if !before(sack, receiver.end.wrapping_add(1)) {
        // Acknowledges data not seen yet.
        return failed(Window::Invalid);
    }
    if receiver.max_win != 0
        && !after(
            end,
            sender.end.wrapping_sub(receiver.max_win).wrapping_sub(1),
        )
    {
        // Data acknowledged already, sent again.
        return failed(Window::Ignore);
    }
    if !after(
        sack,
        receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
    ) {
        // An acknowledgment long overtaken.
        return failed(Window::Ignore);
    }
    if flags & SYN == 0 {
        win <<= sender.scale;
    }
    let sender_window = win.wrapping_add(sack.wrapping_sub(ack));
    if sender.max_win < sender_window {
        sender.max_win = sender_window;
    }
    if after(end, sender.end) {
        sender.end = end;
        sender.flags |= tcp_side_flag::DATA_UNACKNOWLEDGED;
    }
    if flags & ACK != 0 {
        if sender.flags & tcp_side_flag::MAXACK_SET == 0 {
            sender.max_ack = ack;
            sender.flags |= tcp_side_flag::MAXACK_SET;
        } else if after(ack, sender.max_ack) {
            sender.max_ack = ack;
        }
    }
    if receiver.max_win != 0 && after(end, sender.max_end) {
        receiver.max_win = receiver
            .max_win
            .wrapping_add(end.wrapping_sub(sender.max_end));
    }
    if after(sack.wrapping_add(win), receiver.max_end.wrapping_sub(1)) {
        receiver.max_end = sack.wrapping_add(win);
        if win == 0 {
            receiver.max_end = receiver.max_end.wrapping_add(1);
        }
    }
    if ack == receiver.end {
        receiver.flags &= !tcp_side_flag::DATA_UNACKNOWLEDGED;
    }
    Window::Accept
}

/// A side's first SYN (or SYN-ACK): its numbers and options (Linux's `tcp_init_sender`).
/// Window scaling holds only when both sides offered it.
#[inline(always)]
fn init_sender(sender: &mut TcpSide, receiver: &mut TcpSide, reply: bool, segment: &Segment) {
    sender.end = segment.end;
    sender.max_end = segment.end;
    sender.max_win = u32::from(segment.window).max(1);
    take_options(sender, segment);
    let both = sender.flags & receiver.flags & tcp_side_flag::WINDOW_SCALE != 0;
    if reply && !both {
        sender.scale = 0;
        receiver.scale = 0;
    }
}

/// The timeout slot of a state (close-wait and last-ack live as fin-wait does, a
/// simultaneous open as syn-sent).
#[inline(always)]
fn timeout_of_state(state: u8) -> usize {
    match state {
        tcp_state::SYN_SENT | tcp_state::SYN_SENT2 => timeout::SYN_SENT,
        tcp_state::SYN_RECV => timeout::SYN_RECV,
        tcp_state::ESTABLISHED => timeout::ESTABLISHED,
        tcp_state::TIME_WAIT => timeout::TIME_WAIT,
        tcp_state::CLOSE => timeout::CLOSE,
        _ => timeout::FIN_WAIT,
    }
}
