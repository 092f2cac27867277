//! The stateful firewall's kernel ABI: the connection-tracking table every firewall of a
//! node shares, and the per-interface rule tables of the built-in module `firewall`.
//!
//! - Conntrack ([`CtKey`] -> [`CtEntry`], an LRU hash of [`CT_MAX_ENTRIES`]) is pinned
//!   once per node under [`CONNTRACK_PIN_DIR`]; the firewall module of each interface and
//!   the egress tracker bind it there. A flow's two directions are one entry: the key holds
//!   the lower (address, port) end first.
//! - Rules are classified by tuple-space search: each distinct mask ([`RuleKey`] with the
//!   bits a rule looks at set) is one probe of the hash [`maps::RULES`] with the packet's
//!   key masked by it. The cost follows the number of masks, not of rules.
//! - Policies live in two banks; [`PolicyState`] names the running one and is switched with
//!   one map update, as the module chain switches revisions.

use core::mem::size_of;

/// Entries of the conntrack LRU hash.
pub const CT_MAX_ENTRIES: u32 = 1 << 20;
/// Entries the table is allowed to fill when the settings give no limit: the LRU hash
/// starts evicting before it is quite full (per-CPU free lists), and an eviction would be a
/// silent loss of a live flow; the limit keeps inserts below that point so a full table is
/// a counted, fail-closed refusal instead.
pub const CT_DEFAULT_LIMIT: u32 = CT_MAX_ENTRIES - 16384;
/// Where the node's conntrack maps are pinned (shared by every interface's firewall).
pub const CONNTRACK_PIN_DIR: &str = "/sys/fs/bpf/fastpath/conntrack";
/// Slot of [`maps::CT_FILL`] the kernel adds its inserts to.
pub const FILL_INSERTED: u32 = 0;
/// Slot of [`maps::CT_FILL`] user space adds its removals to.
pub const FILL_REMOVED: u32 = 1;
/// Distinct masks one policy can have (probes per packet at most).
pub const MAX_MASKS: u32 = 64;
/// Rules one policy can have; counters are indexed by rule, 0 being the default policy.
pub const MAX_RULES: u32 = 65536;
/// Entries of the rule hash (a rule with port ranges or several ct states takes several).
pub const RULE_ENTRIES: u32 = 1 << 18;
/// Policy banks: the running one and the one being built.
pub const BANKS: u32 = 2;
/// Counter slots of one bank: the default policy, then one per rule.
pub const COUNTERS_PER_BANK: u32 = MAX_RULES + 1;

/// Map names, bound to their pins by the loader.
pub mod maps {
    /// LRU hash [`super::CtKey`] -> [`super::CtEntry`], node-wide.
    pub const CONNTRACK: &str = "FW_CONNTRACK";
    /// Array of one [`super::CtSettings`], node-wide.
    pub const CT_SETTINGS: &str = "FW_CT_SETTINGS";
    /// Array of two `u64`: entries the kernel inserted (slot [`super::FILL_INSERTED`],
    /// added to atomically) and entries user space removed (slot [`super::FILL_REMOVED`],
    /// written only by user space); their difference is what the table holds. Two
    /// slots, so neither side ever read-modify-writes the other's count.
    pub const CT_FILL: &str = "FW_CT_FILL";
    /// Per-CPU array of `u64` indexed by [`super::ct_counter`], node-wide.
    pub const CT_COUNTERS: &str = "FW_CT_COUNTERS";
    /// Array of one [`super::PolicyState`], per interface.
    pub const POLICY: &str = "FW_POLICY";
    /// Array of [`super::BANKS`] × [`super::MAX_MASKS`] [`super::RuleKey`] masks.
    pub const MASKS: &str = "FW_MASKS";
    /// Hash [`super::RuleKey`] -> [`super::RuleValue`].
    pub const RULES: &str = "FW_RULES";
    /// Per-CPU array of [`super::BANKS`] × [`super::COUNTERS_PER_BANK`] `Counter`s.
    pub const COUNTERS: &str = "FW_COUNTERS";
    /// Ring buffer of [`super::LogEvent`]s ([`super::LOG_RING_BYTES`]), per interface.
    pub const LOG: &str = "FW_LOG";
    /// Array of [`super::LogRate`] indexed by counter slot (bank included), then one for
    /// the conntrack-full events ([`super::LOG_SLOT_CONNTRACK_FULL`]), per interface.
    pub const LOG_RATES: &str = "FW_LOG_RATES";
    /// LRU hash [`super::FragmentKey`] -> [`super::FragmentVerdict`], per interface: what
    /// a datagram's first fragment carried and was decided, for its later fragments.
    pub const FRAGMENTS: &str = "FW_FRAGMENTS";
    /// Array of `crate::topology::MAX_INSTANCE_PORTS` `u32`, a topology firewall
    /// instance's own: for each of its two ports, the other one (where a packet it
    /// accepts leaves).
    pub const OTHER_PORT: &str = "FW_OTHER_PORT";
    /// The node-wide maps, pinned under [`super::CONNTRACK_PIN_DIR`].
    pub const NODE: [&str; 4] = [CONNTRACK, CT_SETTINGS, CT_FILL, CT_COUNTERS];
}

/// A packet's connection-tracking state, as rules match it (one bit each, so a rule can
/// name several).
pub mod ct_state {
    /// The first packet of a flow the table does not hold.
    pub const NEW: u8 = 1;
    /// A packet of a flow whose other side has answered, or the answer itself.
    pub const ESTABLISHED: u8 = 2;
    /// An ICMP error about a tracked flow (matched through the header it quotes).
    pub const RELATED: u8 = 4;
    /// A packet no flow explains (a TCP segment other than a SYN without an entry).
    pub const INVALID: u8 = 8;
    /// Each bit with its name, as the rules file spells it, in the order a rule lists them.
    pub const NAMES: [(u8, &str); 4] = [
        (NEW, "new"),
        (ESTABLISHED, "established"),
        (RELATED, "related"),
        (INVALID, "invalid"),
    ];
}

/// States of a TCP entry ([`super::CtEntry::state`]): Linux's conntrack states
/// (`enum tcp_conntrack`), numbered as Linux numbers them.
pub mod tcp_state {
    /// Not TCP (or a picked-up flow whose first segment left no state).
    pub const NONE: u8 = 0;
    /// The originator's SYN seen.
    pub const SYN_SENT: u8 = 1;
    /// The answer's SYN-ACK seen.
    pub const SYN_RECV: u8 = 2;
    /// The handshake's last ACK seen (or a flow picked up in mid-stream).
    pub const ESTABLISHED: u8 = 3;
    /// A FIN seen from one side.
    pub const FIN_WAIT: u8 = 4;
    /// The first FIN acknowledged.
    pub const CLOSE_WAIT: u8 = 5;
    /// FINs seen from both sides, the last not yet acknowledged.
    pub const LAST_ACK: u8 = 6;
    /// Both FINs acknowledged.
    pub const TIME_WAIT: u8 = 7;
    /// An RST seen.
    pub const CLOSE: u8 = 8;
    /// A SYN from each side (simultaneous open).
    pub const SYN_SENT2: u8 = 9;
    /// Display names, indexed by state.
    pub const NAMES: [&str; 10] = [
        "none",
        "syn-sent",
        "syn-recv",
        "established",
        "fin-wait",
        "close-wait",
        "last-ack",
        "time-wait",
        "close",
        "syn-sent2",
    ];
}

/// Bits of [`super::CtEntry::flags`].
pub mod ct_flag {
    /// The answering side has sent a packet (Linux's `IPS_SEEN_REPLY`).
    pub const SEEN_REPLY: u8 = 1;
    /// The connection is past its handshake (Linux's `IPS_ASSURED`).
    pub const ASSURED: u8 = 2;
}

/// Bits of [`super::TcpSide::flags`] (Linux's `IP_CT_TCP_FLAG_*`).
pub mod tcp_side_flag {
    /// The side offered window scaling.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// The side allows selective acknowledgments.
    pub const SACK_PERM: u8 = 0x02;
    /// The side sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Its segments are not checked against the window (a flow picked up in mid-stream).
    pub const BE_LIBERAL: u8 = 0x08;
    /// The side has sent data the other has not acknowledged.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// [`super::TcpSide::max_ack`] holds an acknowledgment the side sent.
    pub const MAXACK_SET: u8 = 0x20;
}

/// Bits of [`super::CtEntry::last_flags`]: what an ignored SYN carried, and Linux's
/// expectations (`IP_CT_EXP_CHALLENGE_ACK`, `IP_CT_TCP_SIMULTANEOUS_OPEN`).
pub mod tcp_last_flag {
    /// The ignored SYN offered window scaling ([`super::tcp_side_flag::WINDOW_SCALE`]).
    pub const WINDOW_SCALE: u8 = 0x01;
    /// The ignored SYN allowed SACK ([`super::tcp_side_flag::SACK_PERM`]).
    pub const SACK_PERM: u8 = 0x02;
    /// A SYN in LAST_ACK was let through: the ACK that answers it is a challenge ACK.
    pub const CHALLENGE_ACK: u8 = 0x40;
    /// Both sides sent a SYN.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// Bits of [`super::CtSettings::tcp`]: Linux's TCP conntrack sysctls, each bit the
/// opposite of Linux's default, so zero behaves as Linux does out of the box.
pub mod tcp_setting {
    /// No pick-up in mid-stream: an ACK of no known flow is invalid
    /// (`nf_conntrack_tcp_loose=0`).
    pub const NO_PICKUP: u32 = 1;
    /// No window checks (`nf_conntrack_tcp_be_liberal=1`).
    pub const BE_LIBERAL: u32 = 2;
    /// An RST before the sequence number the peer acknowledged is not invalid
    /// (`nf_conntrack_tcp_ignore_invalid_rst=1`).
    pub const IGNORE_INVALID_RST: u32 = 4;
}

/// Slots of [`maps::CT_COUNTERS`].
pub mod ct_counter {
    /// New flows refused because the table was full (their packet dropped).
    pub const TABLE_FULL: u32 = 0;
    /// Entries created.
    pub const CREATED: u32 = 1;
    /// Packets whose state was invalid.
    pub const INVALID: u32 = 2;
    /// Later fragments dropped: their datagram's first fragment was not seen (counted by
    /// the firewall module of each interface into this node-wide slot).
    pub const ORPHAN_FRAGMENT: u32 = 3;
    /// Number of slots.
    pub const COUNT: u32 = 4;
}

/// What a rule (or the default policy) does.
pub mod verdict {
    /// Continue down the chain.
    pub const ACCEPT: u8 = 0;
    /// Drop.
    pub const DROP: u8 = 1;
    /// Drop, and answer the sender: a TCP RST, or an ICMP/ICMPv6 port unreachable, built
    /// from the packet and sent back out of its interface (XDP_TX).
    pub const REJECT: u8 = 2;
    /// Log (sampled, to the ring buffer [`super::maps::LOG`]) and go on to the next rule,
    /// as nftables' `log` does; a rule with it never decides.
    pub const LOG: u8 = 3;
}

/// What a [`LogEvent`] reports.
pub mod log_kind {
    /// A packet a `log` rule matched.
    pub const RULE: u8 = 0;
    /// A new flow refused because the conntrack table is full (its packet dropped).
    pub const CONNTRACK_FULL: u8 = 1;
}

/// Timeouts, in seconds, indexed like [`CtSettings::timeouts`].
pub mod timeout {
    /// TCP: SYN sent, no answer yet.
    pub const SYN_SENT: usize = 0;
    /// TCP: SYN-ACK seen.
    pub const SYN_RECV: usize = 1;
    /// TCP: established.
    pub const ESTABLISHED: usize = 2;
    /// TCP: one FIN seen.
    pub const FIN_WAIT: usize = 3;
    /// TCP: both FINs seen.
    pub const TIME_WAIT: usize = 4;
    /// TCP: RST seen.
    pub const CLOSE: usize = 5;
    /// UDP, one direction seen.
    pub const UDP: usize = 6;
    /// UDP, both directions seen.
    pub const UDP_REPLIED: usize = 7;
    /// ICMP echo and other protocols.
    pub const ICMP: usize = 8;
    /// TCP: data sent and not acknowledged, a zero window, retransmissions, or a flow
    /// picked up in mid-stream and never answered (Linux's unacknowledged and retrans
    /// timeouts), when the state's own timeout is longer.
    pub const UNACKNOWLEDGED: usize = 9;
    /// Slots of [`super::CtSettings::timeouts`].
    pub const COUNT: usize = 10;
    /// Defaults when the settings hold 0, as Linux's `nf_conntrack_*_timeout*` sysctls.
    pub const DEFAULTS: [u32; COUNT] = [120, 60, 432_000, 120, 120, 10, 30, 120, 30, 300];
    /// Names, as the rules file's `[conntrack.timeouts]` spells them.
    pub const NAMES: [&str; COUNT] = [
        "syn_sent",
        "syn_recv",
        "established",
        "fin_wait",
        "time_wait",
        "close",
        "udp",
        "udp_replied",
        "icmp",
        "unacknowledged",
    ];
}

/// Key of the conntrack table: the flow with its lower end (address, then port) first, so
/// both directions find one entry. For ICMP echo both ports are the echo identifier.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// The lower end's address, network order (IPv4: first 4 bytes).
    pub addr_low: [u8; 16],
    /// The higher end's address.
    pub addr_high: [u8; 16],
    /// The lower end's port, host order.
    pub port_low: u16,
    /// The higher end's port.
    pub port_high: u16,
    /// IP protocol.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 2],
}

/// A tracked flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// When it expires, in `bpf_ktime_get_ns` time (CLOCK_MONOTONIC).
    pub expires_ns: u64,
    /// Packets seen (both directions).
    pub packets: u64,
    /// [`tcp_state`] for TCP.
    pub state: u8,
    /// [`ct_flag`] bits.
    pub flags: u8,
    /// 1 when the originator is the key's lower end.
    pub original_is_low: u8,
    /// TCP, Linux's `ip_ct_tcp`: the kind of the last segment that moved the flow (see
    /// `offload-ebpf`'s `conntrack_tcp`: 0 SYN, 1 SYN-ACK, 2 FIN, 3 ACK, 4 RST, 5 none).
    pub last_index: u8,
    /// Its direction: 0 from the originator, 1 from the answering side.
    pub last_dir: u8,
    /// [`tcp_last_flag`] bits.
    pub last_flags: u8,
    /// The window scale an ignored SYN offered.
    pub last_wscale: u8,
    /// Retransmissions of the last ACK-only segment seen in a row.
    pub retrans: u8,
    /// The last segment's sequence number.
    pub last_seq: u32,
    /// Its acknowledgment number.
    pub last_ack: u32,
    /// Its sequence number past its data.
    pub last_end: u32,
    /// Its window, unscaled.
    pub last_win: u16,
    /// Zero.
    pub _pad: u16,
    /// Each side's window tracking: the originator's, then the answering side's.
    pub seen: [TcpSide; 2],
}

/// One side of a TCP flow, as Linux's window tracking keeps it (`ip_ct_tcp_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSide {
    /// The highest sequence number past the data the side sent.
    pub end: u32,
    /// The highest sequence number the other side's window lets it reach.
    pub max_end: u32,
    /// The largest window it advertised (scaled).
    pub max_win: u32,
    /// The highest acknowledgment it sent.
    pub max_ack: u32,
    /// Its window scale.
    pub scale: u8,
    /// [`tcp_side_flag`] bits.
    pub flags: u8,
    /// Zero.
    pub _pad: [u8; 2],
}

/// Node-wide conntrack settings, written by `fastpath firewall apply`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtSettings {
    /// Entries the table may hold before new flows are refused; 0: [`CT_DEFAULT_LIMIT`].
    pub limit: u32,
    /// [`tcp_setting`] bits (0: Linux's defaults).
    pub tcp: u32,
    /// Timeouts in seconds, indexed by [`timeout`]; 0: the default.
    pub timeouts: [u32; timeout::COUNT],
}

/// A rule's match, and (with the bits a rule looks at set) a mask. Masked packet keys are
/// looked up with `bank` and `mask` set to the bank and the mask's index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleKey {
    /// The policy bank.
    pub bank: u8,
    /// The mask's index in its bank.
    pub mask: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// The packet's one [`ct_state`] bit.
    pub ct_state: u8,
    /// TCP flags (the header's byte 13: FIN 0x01 ... CWR 0x80); 0 for other protocols.
    pub tcp_flags: u8,
    /// Zero.
    pub _pad: [u8; 2],
    /// The ingress interface.
    pub ifindex: u32,
    /// Source port (host order).
    pub src_port: u16,
    /// Destination port; for ICMP and ICMPv6, type << 8 | code.
    pub dst_port: u16,
    /// Source address, network order.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
}

/// What a rule hash entry says: the rule that decides for its match, and the `log` rule
/// before it with the very same match, if any (one entry holds both: a hash key is one
/// entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleValue {
    /// Lower wins; [`NO_PRIORITY`] when only a `log` rule has this match.
    pub priority: u32,
    /// The rule's counter slot in its bank (1..; 0 is the default policy).
    pub counter: u32,
    /// [`verdict`].
    pub verdict: u8,
    /// Zero.
    pub _pad: [u8; 3],
    /// The `log` rule's priority ([`NO_PRIORITY`]: none): it logs when it comes before
    /// the rule that decides the packet.
    pub log_priority: u32,
    /// The `log` rule's counter slot in its bank.
    pub log_counter: u32,
}

/// A [`RuleValue`] priority that never wins.
pub const NO_PRIORITY: u32 = u32::MAX;

impl Default for RuleValue {
    fn default() -> RuleValue {
        RuleValue {
            priority: NO_PRIORITY,
            counter: 0,
            verdict: verdict::ACCEPT,
            _pad: [0; 3],
            log_priority: NO_PRIORITY,
            log_counter: 0,
        }
    }
}

/// Bytes of the log ring buffer of one interface's firewall.
pub const LOG_RING_BYTES: u32 = 256 * 1024;
/// The [`maps::LOG_RATES`] slot of conntrack-full events (after every rule's).
pub const LOG_SLOT_CONNTRACK_FULL: u32 = BANKS * COUNTERS_PER_BANK;

/// A `log` rule's sampling: at most `per_second` events in each second (0: every
/// packet); `second` and `sent` are the kernel's running window (not locked across CPUs:
/// a few more may pass when CPUs race).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogRate {
    /// Events allowed per second; 0: all.
    pub per_second: u32,
    /// Events sent in the current second.
    pub sent: u32,
    /// The current second (`bpf_ktime_get_ns() / 10^9`).
    pub second: u64,
}

/// One entry of the log ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub time_ns: u64,
    /// The counter slot (bank included) of the `log` rule; [`LOG_SLOT_CONNTRACK_FULL`]
    /// for a conntrack-full event.
    pub slot: u32,
    /// [`log_kind`].
    pub kind: u8,
    /// The packet's [`verdict`] (the rule that decided it, or the default).
    pub verdict: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// Source address, network order (IPv4: first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (host order); 0 for ICMP.
    pub src_port: u16,
    /// Destination port; for ICMP and ICMPv6, type << 8 | code.
    pub dst_port: u16,
    /// The ingress interface.
    pub ifindex: u32,
}

/// Entries of [`maps::FRAGMENTS`]: datagrams being fragmented through one interface at
/// once.
pub const FRAGMENT_ENTRIES: u32 = 8192;

/// A fragmented datagram: its addresses, protocol and IP identification.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address, network order (IPv4: first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv4's 16-bit or IPv6's 32-bit identification.
    pub id: u32,
    /// IP protocol.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 2],
}

/// What the first fragment of a datagram carried and was decided.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentVerdict {
    /// Its source port (host order).
    pub src_port: u16,
    /// Its destination port.
    pub dst_port: u16,
    /// The counter slot (bank included) of the rule that decided.
    pub counter: u32,
    /// [`verdict`] (a rejected datagram's later fragments are dropped).
    pub verdict: u8,
    /// Zero.
    pub _pad: [u8; 7],
}

/// One bank's facts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankInfo {
    /// Masks in use.
    pub masks: u32,
    /// The default policy's [`verdict`].
    pub default_verdict: u8,
    /// The [`ct_state`] bits for which the bank's first rule (counter slot 1) accepts
    /// every packet: it looks at nothing else. A packet in one of these states is accepted
    /// and counted there right after its conntrack look-up, with no mask probed (it is what
    /// the probes would find: the first rule wins). 0: no such rule. Whatever changes the
    /// bank's first rule in place must keep it true.
    pub first_rule_accepts: u8,
    /// Zero.
    pub _pad: [u8; 2],
}

/// Which bank runs; written in one update to switch policies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// The running bank (0 or 1).
    pub bank: u32,
    /// Zero.
    pub _pad: u32,
    /// Each bank's masks and default.
    pub banks: [BankInfo; BANKS as usize],
}

const _: () = assert!(size_of::<CtKey>() == 40);
const _: () = assert!(size_of::<CtEntry>() == 80);
const _: () = assert!(size_of::<CtSettings>() == 48);
const _: () = assert!(size_of::<RuleKey>() == 48);
const _: () = assert!(size_of::<RuleValue>() == 20);
const _: () = assert!(size_of::<LogRate>() == 16);
const _: () = assert!(size_of::<LogEvent>() == 56);
const _: () = assert!(size_of::<PolicyState>() == 24);
const _: () = assert!(size_of::<FragmentKey>() == 40);
const _: () = assert!(size_of::<FragmentVerdict>() == 16);
