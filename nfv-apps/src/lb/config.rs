//! The appliance's TOML config. Syntax errors, unknown keys and bad values come from the
//! TOML reader with their line; the checks across fields (duplicate VIPs, all weights zero,
//! address families) name the line of the value at fault.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use pipeline::PollMode;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::lb::maglev::{DEFAULT_SIZE, is_prime};

/// The control socket when the config names none.
pub const DEFAULT_CONTROL: &str = "/run/fastpath/lb.sock";

/// What is wrong with a config, and where.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file.
    pub path: String,
    /// The line at fault, when one is.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// Why the file could not be read, when it could not.
    #[source]
    pub source: Option<std::io::Error>,
}

/// A VIP's transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => crate::lb::packet::PROTO_TCP,
            Protocol::Udp => crate::lb::packet::PROTO_UDP,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a VIP's packets reach its backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    /// Direct server return: only the MAC addresses change; backends hold the VIP.
    DsrL2,
    /// Direct server return over IP-in-IP; backends decapsulate and hold the VIP.
    DsrIpip,
    /// Destination and source NAT: replies come back through the appliance.
    Nat,
}

/// A feature setting: `auto`, `on` or `off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// Used where available.
    #[default]
    Auto,
    /// Required: the appliance fails to start without it.
    On,
    /// Not used.
    Off,
}

/// The XDP mode the config asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// The best mode the driver takes.
    #[default]
    Auto,
    /// Offloaded to the NIC.
    Hw,
    /// In the driver (native).
    Drv,
    /// Generic, on the socket buffer.
    Skb,
}

/// The queues to serve.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Queues {
    /// `"all"`: every queue of the interface.
    All(String),
    /// These queues.
    List(Vec<u32>),
}

/// `health_check = { ... }`: active TCP checks of a VIP's backends.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Time between the starts of two checks of one backend.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// How long a connect may take to count as a success.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Successes in a row that bring a backend up, failures that take it down.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failures in a row that take a backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    500
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_weight() -> u32 {
    1
}

/// `[[vip.backend]]`: one backend.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Its address.
    pub address: Spanned<IpAddr>,
    /// Its share of new flows (0: none).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The port its flows go to; default, the VIP's.
    pub port: Option<u16>,
}

/// `[[vip]]`: one VIP.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The virtual address clients connect to.
    pub address: Spanned<IpAddr>,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// How packets reach the backends.
    pub forwarding: Forwarding,
    /// nat: the address replies come back to (one the appliance's interface holds).
    pub snat_address: Option<Spanned<IpAddr>>,
    /// nat: the inclusive SNAT port range, "LO-HI". Keep it clear of local services and
    /// of the kernel's ephemeral range (net.ipv4.ip_local_port_range).
    pub snat_ports: Option<Spanned<String>>,
    /// dsr-ipip: the outer source address; default, the interface's address.
    pub encap_source: Option<Spanned<IpAddr>>,
    /// Slots of the VIP's Maglev table (a prime).
    #[serde(default = "default_maglev_size")]
    pub maglev_size: Spanned<usize>,
    /// Active TCP health checks of the backends; none without it.
    pub health_check: Option<HealthCheck>,
    /// `[[vip.backend]]`: the backends.
    #[serde(default)]
    pub backend: Vec<BackendConfig>,
}

fn default_maglev_size() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_SIZE)
}

/// The appliance's config file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The interface to serve.
    pub interface: String,
    /// The queues to put workers on; default, all of them.
    #[serde(default = "all_queues")]
    pub queues: Spanned<Queues>,
    /// Worker cores; default one per queue, spread over the cores.
    pub cores: Option<Vec<usize>>,
    /// How the steering program attaches.
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    /// Whether the sockets bind in zero-copy mode.
    #[serde(default)]
    pub zero_copy: Toggle,
    /// The control socket; default [`DEFAULT_CONTROL`].
    pub control: Option<PathBuf>,
    /// How workers wait for packets.
    #[serde(default)]
    pub poll: PollMode,
    /// Packets per batch; default from the matched NIC profile.
    pub batch: Option<u32>,
    /// Descriptors per AF_XDP ring; default from the matched NIC profile.
    pub ring_size: Option<u32>,
    /// UMEM frame size, 2048 or 4096; default from the matched NIC profile.
    pub frame_size: Option<u32>,
    /// Source addresses dropped before anything else, by the prefilter stage: in the NIC
    /// where it offloads, merged into the steering program otherwise (offload::placement).
    #[serde(default)]
    pub prefilter: Vec<IpAddr>,
    /// ntuple rules steering each VIP to a socket queue: auto uses them when the sockets
    /// are on some of the queues and the NIC has them; on requires them.
    #[serde(default)]
    pub ntuple: Toggle,
    /// Flows per worker in the connection table.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Pipelined mode; absent, each worker runs the chain itself (run-to-completion).
    pub pipelined: Option<Pipelined>,
    /// `[[vip]]`: the VIPs.
    #[serde(default)]
    pub vip: Vec<VipConfig>,
}

/// `[pipelined]`: each queue's worker receives and transmits, and hands its batches to one
/// stage per listed core, by flow, through queues of `queue_depth` batches. When a queue is
/// full the batch is dropped and counted ("stage queue full"); the worker never waits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pipelined {
    /// One stage per core listed.
    pub cores: Spanned<Vec<usize>>,
    /// Batches waiting per stage before the worker drops instead.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: Spanned<usize>,
}

fn default_queue_depth() -> Spanned<usize> {
    Spanned::new(0..0, 8)
}

fn all_queues() -> Spanned<Queues> {
    Spanned::new(0..0, Queues::All("all".into()))
}
fn default_connections() -> usize {
    1 << 20
}

/// The SNAT port range when the config gives none.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (10_000, 32_767);
/// The most flows a worker's connection table holds. The table is allocated whole when the
/// worker starts, so a larger value fails there (a capacity-overflow panic), not here.
pub const MAX_CONNECTIONS: usize = 1 << 24;
/// The largest Maglev table: 4 MiB of slots per VIP, rebuilt on every change. Above it a
/// table costs seconds and gigabytes, and proving a size prime alone takes seconds.
pub const MAX_MAGLEV_SIZE: usize = 1 << 20;

/// What identifies a VIP: address, port and protocol (printed as ADDR:PORT/PROTO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct VipKey {
    /// The VIP's address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for VipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol),
        }
    }
}

/// Text that is not a VIP key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid VIP {text:?}: expected ADDR:PORT/PROTO, e.g. 10.0.0.100:80/tcp or [fd00::100]:80/tcp"
)]
pub struct InvalidVipKey {
    /// The text given.
    pub text: String,
}

impl std::str::FromStr for VipKey {
    type Err = InvalidVipKey;
    fn from_str(text: &str) -> Result<Self, InvalidVipKey> {
        let error = || InvalidVipKey {
            text: text.to_string(),
        };
        let (socket, protocol) = text.rsplit_once('/').ok_or_else(error)?;
        let socket: std::net::SocketAddr = socket.parse().map_err(|_| error())?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(error()),
        };
        Ok(VipKey {
            address: socket.ip(),
            port: socket.port(),
            protocol,
        })
    }
}

impl VipConfig {
    /// What identifies the VIP.
    pub fn key(&self) -> VipKey {
        VipKey {
            address: *self.address.get_ref(),
            port: self.port,
            protocol: self.protocol,
        }
    }

    /// The inclusive SNAT port range: the config's, or [`DEFAULT_SNAT_PORTS`].
    pub fn snat_port_range(&self) -> (u16, u16) {
        self.snat_ports
            .as_ref()
            .and_then(|text| parse_port_range(text.get_ref()))
            .unwrap_or(DEFAULT_SNAT_PORTS)
    }
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = text.split_once('-')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

impl Config {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            path: path.display().to_string(),
            line: None,
            message: "cannot read".to_string(),
            source: Some(error),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks config `text`; errors name `path` and the line at fault.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let error = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            path: path.to_string(),
            line: span.filter(|s| s.end > 0).map(|s| line_of(text, s.start)),
            message,
            source: None,
        };
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| error(e.span(), e.message().to_string()))?;
        // The key path names the field at fault ("vip[0].backend[1].address"), which the
        // TOML message alone ("invalid IP address syntax") does not.
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.inner();
            let message = inner.message().trim().to_string();
            let message = if key == "." {
                message
            } else {
                format!("{key}: {message}")
            };
            error(inner.span(), message)
        })?;
        config
            .check(text)
            .map_err(|(span, message)| error(span, message))?;
        Ok(config)
    }

    /// The control socket's path.
    pub fn control_path(&self) -> PathBuf {
        self.control
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL))
    }

    /// The configured queues, or `None` for all of them.
    pub fn queue_list(&self) -> Option<&[u32]> {
        match self.queues.get_ref() {
            Queues::List(list) => Some(list),
            Queues::All(_) => None,
        }
    }

    fn check(&self, text: &str) -> Result<(), (Option<std::ops::Range<usize>>, String)> {
        if let Queues::All(word) = self.queues.get_ref()
            && word != "all"
        {
            return Err((
                Some(self.queues.span()),
                format!("queues = {word:?}: expected \"all\" or a list such as [0, 1]"),
            ));
        }
        if let Queues::List(list) = self.queues.get_ref()
            && list.is_empty()
        {
            return Err((Some(self.queues.span()), "queues: the list is empty".into()));
        }
        if let Some(batch) = self.batch
            && !(1..=1024).contains(&batch)
        {
            return Err((None, format!("batch = {batch}: expected 1 to 1024")));
        }
        if let Some(size) = self.ring_size
            && !(size.is_power_of_two() && (64..=16384).contains(&size))
        {
            return Err((
                None,
                format!("ring_size = {size}: expected a power of two from 64 to 16384"),
            ));
        }
        if let Some(size) = self.frame_size
            && size != 2048
            && size != 4096
        {
            return Err((None, format!("frame_size = {size}: expected 2048 or 4096")));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err((
                None,
                format!(
                    "connections = {}: expected 1 to {MAX_CONNECTIONS} flows per worker",
                    self.connections
                ),
            ));
        }
        if let Some(pipelined) = &self.pipelined {
            if pipelined.cores.get_ref().is_empty() {
                return Err((
                    Some(pipelined.cores.span()),
                    "pipelined.cores: the list is empty".into(),
                ));
            }
            let depth = *pipelined.queue_depth.get_ref();
            if !(1..=4096).contains(&depth) {
                return Err((
                    Some(pipelined.queue_depth.span()),
                    format!("pipelined.queue_depth = {depth}: expected 1 to 4096 batches"),
                ));
            }
        }
        if self.vip.is_empty() {
            return Err((
                None,
                "no [[vip]]: the load balancer needs at least one".into(),
            ));
        }
        let mut seen: Vec<(VipKey, usize)> = Vec::new();
        for vip in &self.vip {
            let span = Some(vip.address.span());
            let key = vip.key();
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err((
                    span,
                    format!(
                        "duplicate VIP {key} (first defined at line {})",
                        line_of(text, *first)
                    ),
                ));
            }
            seen.push((key, vip.address.span().start));
            let v4 = key.address.is_ipv4();
            let family = |ip: &IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            // The bound first: it keeps the primality test short.
            let size = *vip.maglev_size.get_ref();
            if size > MAX_MAGLEV_SIZE || !is_prime(size) {
                return Err((
                    Some(vip.maglev_size.span()),
                    format!(
                        "maglev_size = {size}: must be a prime up to {MAX_MAGLEV_SIZE} (e.g. 65537)"
                    ),
                ));
            }
            for (field, value) in [
                ("snat_address", &vip.snat_address),
                ("encap_source", &vip.encap_source),
            ] {
                if let Some(value) = value
                    && value.get_ref().is_ipv4() != v4
                {
                    return Err((
                        Some(value.span()),
                        format!(
                            "{field} {} is {} but VIP {key} is {}",
                            value.get_ref(),
                            family(value.get_ref()),
                            family(&key.address)
                        ),
                    ));
                }
            }
            match vip.forwarding {
                Forwarding::Nat if vip.snat_address.is_none() => {
                    return Err((
                        span,
                        format!("VIP {key}: forwarding = \"nat\" needs snat_address"),
                    ));
                }
                Forwarding::Nat => {}
                _ => {
                    if let Some(snat) = &vip.snat_address {
                        return Err((
                            Some(snat.span()),
                            format!("VIP {key}: snat_address applies to forwarding = \"nat\" only"),
                        ));
                    }
                }
            }
            if let Some(ports) = &vip.snat_ports
                && parse_port_range(ports.get_ref()).is_none()
            {
                return Err((
                    Some(ports.span()),
                    format!(
                        "snat_ports = {:?}: expected LO-HI with 1 <= LO <= HI <= 65535",
                        ports.get_ref()
                    ),
                ));
            }
            if vip.backend.is_empty() {
                return Err((span, format!("VIP {key} has no [[vip.backend]]")));
            }
            if vip.backend.iter().all(|b| b.weight == 0) {
                return Err((
                    span,
                    format!("VIP {key}: every backend has weight 0, so no flow could be placed"),
                ));
            }
            let mut backends = Vec::new();
            for backend in &vip.backend {
                let address = *backend.address.get_ref();
                if address.is_ipv4() != v4 {
                    return Err((
                        Some(backend.address.span()),
                        format!(
                            "backend {address} is {} but VIP {key} is {}",
                            family(&address),
                            family(&key.address)
                        ),
                    ));
                }
                let port = backend.port.unwrap_or(vip.port);
                if backends.contains(&(address, port)) {
                    return Err((
                        Some(backend.address.span()),
                        format!("backend {address} port {port} appears twice in VIP {key}"),
                    ));
                }
                backends.push((address, port));
            }
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests;
