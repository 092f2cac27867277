//! Hardware flow steering with ethtool ntuple rules (ETHTOOL_SRXCLSRLINS): each rule sends a
//! flow to the RX queue an AF_XDP socket is bound to, where the steering program's
//! XSKMAP entry for that queue (indexed by RX queue) hands it to the socket and its pinned
//! worker. The rules an [`InstalledRules`] owns are removed when it is dropped.

use std::{io, net::IpAddr};

use crate::ethtool::{
    Ethtool, GRXCLSRLALL, GRXCLSRLCNT, GRXCLSRULE, RXNFC_LEN, SRXCLSRLDEL, SRXCLSRLINS, command,
    u32_at,
};

/// The transport protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Send `protocol` traffic to `destination[:port]` to RX queue `queue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRule {
    /// TCP or UDP.
    pub protocol: L4,
    /// The destination address matched.
    pub destination: IpAddr,
    /// The destination port matched; any port when None.
    pub port: Option<u16>,
    /// The RX queue the flow goes to.
    pub queue: u32,
}

/// Why rules could not be installed. The reasons are errnos in words ([`crate::explain_errno`]).
#[derive(Debug, thiserror::Error)]
pub enum NtupleError {
    /// The device has no ntuple filters, or they are off.
    #[error("{iface}: no ntuple filters ({reason}); steering stays in XDP")]
    Unavailable {
        /// The interface.
        iface: String,
        /// The errno in words.
        reason: String,
    },
    /// Fewer free slots than rules.
    #[error("{iface}: {wanted} ntuple rules do not fit: {free} of {capacity} slots are free")]
    Full {
        /// The interface.
        iface: String,
        /// Rules asked for.
        wanted: usize,
        /// Free slots.
        free: usize,
        /// All slots.
        capacity: u32,
    },
    /// The driver refused a rule.
    #[error("{iface}: installing the ntuple rule for {rule} failed: {reason}")]
    Install {
        /// The interface.
        iface: String,
        /// The rule, as [`describe`] puts it.
        rule: String,
        /// The errno in words.
        reason: String,
    },
}

// Offsets in `struct ethtool_rxnfc` (the flow spec `fs` starts at 16).
const FLOW_TYPE: usize = 16;
const HEADER: usize = 20;
const MASK: usize = 92;
const RING_COOKIE: usize = 168;
const LOCATION: usize = 176;
const RULE_COUNT: usize = 184;

/// The request that installs `rule` at `location`.
pub fn encode(rule: &FlowRule, location: u32) -> Vec<u8> {
    let mut buffer = command(SRXCLSRLINS, RXNFC_LEN);
    let flow_type: u32 = match (rule.protocol, rule.destination.is_ipv4()) {
        (L4::Tcp, true) => 1,
        (L4::Udp, true) => 2,
        (L4::Tcp, false) => 5,
        (L4::Udp, false) => 6,
    };
    buffer[FLOW_TYPE..FLOW_TYPE + 4].copy_from_slice(&flow_type.to_ne_bytes());
    // Values and masks share one layout: source, destination, source port, destination
    // port (ethtool_tcpip4_spec / ethtool_tcpip6_spec).
    let (address, destination_at, ports_at) = match rule.destination {
        IpAddr::V4(ip) => (ip.octets().to_vec(), 4, 8),
        IpAddr::V6(ip) => (ip.octets().to_vec(), 16, 32),
    };
    let len = address.len();
    buffer[HEADER + destination_at..][..len].copy_from_slice(&address);
    buffer[MASK + destination_at..][..len].fill(0xff);
    if let Some(port) = rule.port {
        buffer[HEADER + ports_at + 2..][..2].copy_from_slice(&port.to_be_bytes());
        buffer[MASK + ports_at + 2..][..2].fill(0xff);
    }
    buffer[RING_COOKIE..RING_COOKIE + 8].copy_from_slice(&u64::from(rule.queue).to_ne_bytes());
    buffer[LOCATION..LOCATION + 4].copy_from_slice(&location.to_ne_bytes());
    buffer
}

/// The rule in words, e.g. "udp to 10.0.0.1:53 -> queue 3".
pub fn describe(rule: &FlowRule) -> String {
    let protocol = if rule.protocol == L4::Tcp {
        "tcp"
    } else {
        "udp"
    };
    let port = rule.port.map_or(String::new(), |p| format!(":{p}"));
    format!(
        "{protocol} to {}{port} -> queue {}",
        rule.destination, rule.queue
    )
}

/// Rules this process installed; removed on drop.
pub struct InstalledRules<E: Ethtool> {
    io: E,
    iface: String,
    /// The slots the rules occupy.
    pub locations: Vec<u32>,
}

/// Installs `rules` in free slots. On any failure, the rules installed so far are removed.
pub fn install<E: Ethtool>(
    mut io: E,
    iface: &str,
    rules: &[FlowRule],
) -> Result<InstalledRules<E>, NtupleError> {
    let unavailable = |error: io::Error| NtupleError::Unavailable {
        iface: iface.to_string(),
        reason: crate::explain_errno(&error),
    };
    let mut count = command(GRXCLSRLCNT, RXNFC_LEN);
    io.request(iface, &mut count).map_err(unavailable)?;
    let capacity = u64::from_ne_bytes(count[8..16].try_into().unwrap()) as u32;
    let used_count = u32_at(&count, RULE_COUNT) as usize;
    let mut all = command(GRXCLSRLALL, RXNFC_LEN + 4 * used_count);
    all[RULE_COUNT..RULE_COUNT + 4].copy_from_slice(&(used_count as u32).to_ne_bytes());
    io.request(iface, &mut all).map_err(unavailable)?;
    let used: Vec<u32> = (0..used_count)
        .map(|i| u32_at(&all, RXNFC_LEN + 4 * i))
        .collect();
    let free: Vec<u32> = (0..capacity).filter(|l| !used.contains(l)).collect();
    if free.len() < rules.len() {
        return Err(NtupleError::Full {
            iface: iface.to_string(),
            wanted: rules.len(),
            free: free.len(),
            capacity,
        });
    }
    let mut installed = InstalledRules {
        io,
        iface: iface.to_string(),
        locations: Vec::new(),
    };
    for (rule, &location) in rules.iter().zip(&free) {
        let mut request = encode(rule, location);
        installed
            .io
            .request(iface, &mut request)
            .map_err(|error| NtupleError::Install {
                iface: iface.to_string(),
                rule: describe(rule),
                reason: crate::explain_errno(&error),
            })?;
        installed.locations.push(location);
    }
    Ok(installed)
}

/// Removes rules a process that died had installed, from its record of (location, rule):
/// each location is read back (ETHTOOL_GRXCLSRULE) and cleared only if it still holds that
/// rule, so a slot someone has reused since is left alone. Returns the locations cleared.
pub fn remove_recorded<E: Ethtool>(
    mut io: E,
    iface: &str,
    recorded: &[(u32, FlowRule)],
) -> Vec<u32> {
    let mut removed = Vec::new();
    for (location, rule) in recorded {
        let mut current = command(GRXCLSRULE, RXNFC_LEN);
        current[LOCATION..LOCATION + 4].copy_from_slice(&location.to_ne_bytes());
        if io.request(iface, &mut current).is_err()
            || !same_rule(&current, &encode(rule, *location))
        {
            continue;
        }
        let mut request = command(SRXCLSRLDEL, RXNFC_LEN);
        request[LOCATION..LOCATION + 4].copy_from_slice(&location.to_ne_bytes());
        if io.request(iface, &mut request).is_ok() {
            removed.push(*location);
        }
    }
    removed
}

/// Whether two `ethtool_rxnfc` buffers hold the same flow: type (without the FLOW_EXT,
/// FLOW_MAC_EXT and FLOW_RSS flags), addresses, ports and masks, and queue.
fn same_rule(a: &[u8], b: &[u8]) -> bool {
    const FLAGS: u32 = 0x8000_0000 | 0x4000_0000 | 0x2000_0000;
    // ethtool_tcpip6_spec: two addresses, two ports and a traffic class.
    const SPEC: usize = 37;
    u32_at(a, FLOW_TYPE) & !FLAGS == u32_at(b, FLOW_TYPE) & !FLAGS
        && a[HEADER..HEADER + SPEC] == b[HEADER..HEADER + SPEC]
        && a[MASK..MASK + SPEC] == b[MASK..MASK + SPEC]
        && a[RING_COOKIE..RING_COOKIE + 8] == b[RING_COOKIE..RING_COOKIE + 8]
}

impl<E: Ethtool> InstalledRules<E> {
    /// Removes the rules; returns the locations whose removal failed.
    pub fn remove(mut self) -> Vec<u32> {
        self.remove_all()
    }

    fn remove_all(&mut self) -> Vec<u32> {
        let mut failed = Vec::new();
        for location in std::mem::take(&mut self.locations) {
            let mut request = command(SRXCLSRLDEL, RXNFC_LEN);
            request[LOCATION..LOCATION + 4].copy_from_slice(&location.to_ne_bytes());
            if self.io.request(&self.iface, &mut request).is_err() {
                failed.push(location);
            }
        }
        failed
    }
}

impl<E: Ethtool> Drop for InstalledRules<E> {
    fn drop(&mut self) {
        self.remove_all();
    }
}

#[cfg(test)]
mod tests;
