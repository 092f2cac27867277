//! The ethtool ioctl (SIOCETHTOOL): driver info, channels, RSS table size, link speed and
//! the ntuple (flow director) state, and the driver's counters. Requests and replies are
//! the kernel's structs as bytes (include/uapi/linux/ethtool.h), so tests feed replies
//! recorded in the shapes real drivers return through [`Ethtool`] fakes.

use serde::Serialize;

pub use crate::sys::Ethtool;
use crate::{NicError, sys::Kernel};

/// `ETHTOOL_GSET`: legacy link settings (speed).
pub const GSET: u32 = 0x01;
/// `ETHTOOL_GDRVINFO`: driver name, version, firmware, bus.
pub const GDRVINFO: u32 = 0x03;
/// `ETHTOOL_GFLAGS`: the feature flag word.
pub const GFLAGS: u32 = 0x25;
/// `ETHTOOL_GRXCLSRLCNT`: ntuple rule count and capacity.
pub const GRXCLSRLCNT: u32 = 0x2e;
/// `ETHTOOL_GRXCLSRULE`: one ntuple rule.
pub const GRXCLSRULE: u32 = 0x2f;
/// `ETHTOOL_GRXCLSRLALL`: every ntuple rule's location.
pub const GRXCLSRLALL: u32 = 0x30;
/// `ETHTOOL_SRXCLSRLDEL`: delete an ntuple rule.
pub const SRXCLSRLDEL: u32 = 0x31;
/// `ETHTOOL_SRXCLSRLINS`: insert an ntuple rule.
pub const SRXCLSRLINS: u32 = 0x32;
/// `ETHTOOL_GRXFHINDIR`: the RSS indirection table.
pub const GRXFHINDIR: u32 = 0x38;
/// `ETHTOOL_GCHANNELS`: queue (channel) counts.
pub const GCHANNELS: u32 = 0x3c;
/// `ETH_FLAG_NTUPLE` in the GFLAGS word.
const FLAG_NTUPLE: u32 = 1 << 27;

/// A `u32` in native byte order at byte `at` of a reply.
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn text_at(bytes: &[u8], at: usize, len: usize) -> String {
    let field = &bytes[at..at + len];
    let end = field.iter().position(|&b| b == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A request buffer of `len` bytes starting with `cmd`.
pub fn command(cmd: u32, len: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; len];
    buffer[..4].copy_from_slice(&cmd.to_ne_bytes());
    buffer
}

/// What ETHTOOL_GDRVINFO says about the driver.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DriverInfo {
    /// The driver's name, e.g. "veth", "mlx5_core".
    pub driver: String,
    /// The driver's version.
    pub version: String,
    /// The firmware version.
    pub firmware: String,
    /// Where the device sits, e.g. a PCI address.
    pub bus_info: String,
}

/// `struct ethtool_drvinfo`: cmd, then 32-byte driver, version, fw_version and bus_info.
pub const DRVINFO_LEN: usize = 196;

/// Parses an ETHTOOL_GDRVINFO reply of [`DRVINFO_LEN`] bytes.
pub fn parse_drvinfo(reply: &[u8]) -> DriverInfo {
    DriverInfo {
        driver: text_at(reply, 4, 32),
        version: text_at(reply, 36, 32),
        firmware: text_at(reply, 68, 32),
        bus_info: text_at(reply, 100, 32),
    }
}

/// What ETHTOOL_GCHANNELS says about the device's queues: current counts and maximums.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Channels {
    /// Most RX-only channels.
    pub max_rx: u32,
    /// Most TX-only channels.
    pub max_tx: u32,
    /// Most combined (RX and TX) channels.
    pub max_combined: u32,
    /// RX-only channels now.
    pub rx: u32,
    /// TX-only channels now.
    pub tx: u32,
    /// Combined channels now.
    pub combined: u32,
}

impl Channels {
    /// How many queues an AF_XDP socket can bind to: the larger of the RX and TX channel
    /// counts, as the kernel checks it (net/xdp/xsk.c: xsk_reg_pool_at_qid).
    pub fn queue_count(&self) -> u32 {
        (self.rx + self.combined).max(self.tx + self.combined)
    }
}

/// `struct ethtool_channels`: nine u32s.
pub const CHANNELS_LEN: usize = 36;

/// Parses an ETHTOOL_GCHANNELS reply of [`CHANNELS_LEN`] bytes.
pub fn parse_channels(reply: &[u8]) -> Channels {
    Channels {
        max_rx: u32_at(reply, 4),
        max_tx: u32_at(reply, 8),
        max_combined: u32_at(reply, 16),
        rx: u32_at(reply, 20),
        tx: u32_at(reply, 24),
        combined: u32_at(reply, 32),
    }
}

/// `struct ethtool_cmd` (legacy GSET): the speed is split in `speed` (u16 at 12) and
/// `speed_hi` (u16 at 28); all ones means unknown.
pub const GSET_LEN: usize = 44;

/// The link speed in Mbit/s from an ETHTOOL_GSET reply, when the driver knows it.
pub fn parse_speed_mbps(reply: &[u8]) -> Option<u32> {
    let low = u16::from_ne_bytes([reply[12], reply[13]]) as u32;
    let high = u16::from_ne_bytes([reply[28], reply[29]]) as u32;
    let speed = high << 16 | low;
    (speed != 0 && speed != u32::MAX && speed != 0xffff).then_some(speed)
}

/// What the device offers for ntuple filters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ntuple {
    /// The feature flag is on (`ethtool -K IF ntuple on`).
    pub enabled: bool,
    /// Rule slots, when the driver says (GRXCLSRLCNT).
    pub capacity: Option<u32>,
    /// Rules installed now.
    pub rules: Option<u32>,
    /// Why it is unavailable, when it is.
    pub error: Option<String>,
}

/// `struct ethtool_rxnfc`: cmd, flow_type, data (u64 at 8), the 168-byte flow spec at 16,
/// rule_cnt at 184, then the rule locations.
pub const RXNFC_LEN: usize = 192;

/// Every fact ethtool gives for one interface; a failed request leaves its part empty and
/// says why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EthtoolFacts {
    /// The driver (GDRVINFO; the one request that must succeed).
    pub info: DriverInfo,
    /// Queue counts (GCHANNELS).
    pub channels: Option<Channels>,
    /// The RSS indirection table's size (GRXFHINDIR).
    pub rss_indirection: Option<u32>,
    /// The link speed (GSET).
    pub speed_mbps: Option<u32>,
    /// The ntuple filters (GFLAGS, GRXCLSRLCNT).
    pub ntuple: Ntuple,
}

/// Everything ethtool says about `iface`; fails only when the driver answers nothing
/// (GDRVINFO fails).
pub fn read(io: &mut dyn Ethtool, iface: &str) -> Result<EthtoolFacts, NicError> {
    let mut ask = |cmd: u32, len: usize| {
        let mut buffer = command(cmd, len);
        io.request(iface, &mut buffer).map(|()| buffer)
    };
    let info = parse_drvinfo(
        &ask(GDRVINFO, DRVINFO_LEN)
            .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GDRVINFO", error))?,
    );
    let channels = ask(GCHANNELS, CHANNELS_LEN)
        .ok()
        .map(|r| parse_channels(&r));
    let rss_indirection = ask(GRXFHINDIR, 8)
        .ok()
        .map(|r| u32_at(&r, 4))
        .filter(|&n| n > 0);
    let speed_mbps = ask(GSET, GSET_LEN).ok().and_then(|r| parse_speed_mbps(&r));
    let enabled = ask(GFLAGS, 8).is_ok_and(|r| u32_at(&r, 4) & FLAG_NTUPLE != 0);
    let ntuple = match ask(GRXCLSRLCNT, RXNFC_LEN) {
        Ok(reply) => Ntuple {
            enabled,
            capacity: Some(u64::from_ne_bytes(reply[8..16].try_into().unwrap()) as u32)
                .filter(|&n| n > 0),
            rules: Some(u32_at(&reply, 184)),
            error: None,
        },
        Err(error) => Ntuple {
            enabled,
            capacity: None,
            rules: None,
            error: Some(crate::explain_errno(&error)),
        },
    };
    Ok(EthtoolFacts {
        info,
        channels,
        rss_indirection,
        speed_mbps,
        ntuple,
    })
}

const GSSET_INFO: u32 = 0x37;
const GSTRINGS: u32 = 0x1b;
const GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const GSTRING_LEN: usize = 32;

/// The driver's own counters (`ethtool -S`), by name, in the driver's order.
pub fn statistics(io: &mut dyn Ethtool, iface: &str) -> Result<Vec<(String, u64)>, NicError> {
    // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, then one u32 per set asked.
    let mut info = command(GSSET_INFO, 20);
    info[8..16].copy_from_slice(&(1u64 << ETH_SS_STATS).to_ne_bytes());
    io.request(iface, &mut info)
        .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GSSET_INFO", error))?;
    let count = u32_at(&info, 16) as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then 32-byte names.
    let mut names = command(GSTRINGS, 12 + count * GSTRING_LEN);
    names[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    names[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    io.request(iface, &mut names)
        .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GSTRINGS", error))?;
    // struct ethtool_stats: cmd, n_stats, then u64 values.
    let mut values = command(GSTATS, 8 + count * 8);
    values[4..8].copy_from_slice(&(count as u32).to_ne_bytes());
    io.request(iface, &mut values)
        .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GSTATS", error))?;
    Ok((0..count)
        .map(|i| {
            let at = 8 + i * 8;
            let value = u64::from_ne_bytes(values[at..at + 8].try_into().unwrap());
            (text_at(&names, 12 + i * GSTRING_LEN, GSTRING_LEN), value)
        })
        .collect())
}

/// The sum of every counter whose name ends with `suffix` (one per queue, e.g.
/// "tx_queue_0_xdp_xmit", "tx_queue_1_xdp_xmit").
pub fn sum_of(stats: &[(String, u64)], suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, value)| value)
        .sum()
}

/// The driver's name through ETHTOOL_GDRVINFO, e.g. "veth", "mlx5_core".
pub fn driver(iface: &str) -> Result<String, NicError> {
    let mut reply = command(GDRVINFO, DRVINFO_LEN);
    Kernel
        .request(iface, &mut reply)
        .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GDRVINFO", error))?;
    Ok(parse_drvinfo(&reply).driver)
}

/// How many queues an AF_XDP socket can bind to on `iface` (see
/// [`Channels::queue_count`]).
pub fn queue_count(iface: &str) -> Result<u32, NicError> {
    channels(&mut Kernel, iface).map(|channels| channels.queue_count())
}

/// The device's channels through ETHTOOL_GCHANNELS.
pub fn channels(io: &mut dyn Ethtool, iface: &str) -> Result<Channels, NicError> {
    let mut reply = command(GCHANNELS, CHANNELS_LEN);
    io.request(iface, &mut reply)
        .map_err(|error| NicError::syscall("SIOCETHTOOL ETHTOOL_GCHANNELS", error))?;
    Ok(parse_channels(&reply))
}

#[cfg(test)]
mod tests;
