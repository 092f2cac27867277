//! The rules file: a policy as `fastpath firewall apply` reads it.
//!
//! ```toml
//! default = "drop"                 # what no rule decides: "accept" or "drop"
//!
//! [conntrack]                      # node-wide: every interface's firewall shares the table
//! limit = 100000                   # entries before new flows are refused (fail closed)
//! timeouts = { established = 3600, udp = 30 }   # seconds
//!
//! [[rule]]
//! name = "replies"
//! ct_state = ["established", "related"]
//! action = "accept"
//!
//! [[rule]]
//! name = "web"
//! proto = "tcp"
//! dst_port = "8000-8080"           # or one port: 8000
//! src = "10.0.0.0/8"               # IPv4 or IPv6 CIDR
//! action = "accept"
//!
//! [[rule]]
//! proto = "icmp"
//! icmp_type = 8                    # echo request
//! action = "accept"
//!
//! [[rule]]
//! proto = "tcp"
//! tcp_flags = "syn,!ack"           # SYN set, ACK clear; the others not looked at
//! action = "accept"
//! ```
//!
//! Rules decide by priority: `priority` when given, else their place in the file (the
//! first that matches wins, as in nftables). Every error names the file and the line.

use std::{
    net::IpAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use offload_common::{
    firewall::{ct_state, tcp_setting, timeout, verdict},
    proto,
};
use serde::Deserialize;
use toml::Spanned;

use crate::FirewallError;

/// A policy, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The file it was read from (named in errors).
    pub file: PathBuf,
    /// The rules, in the file's order.
    pub rules: Vec<Rule>,
    /// What no rule decides ([`verdict`]).
    pub default_verdict: u8,
    /// Entries the conntrack table may hold (None: the built-in limit).
    pub conntrack_limit: Option<u32>,
    /// Timeouts in seconds, indexed by [`timeout`] (0: the default).
    pub timeouts: [u32; timeout::COUNT],
    /// TCP tracking's departures from Linux's defaults ([`tcp_setting`] bits).
    pub conntrack_tcp: u32,
}

/// One rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Its name (`rule N` when the file gives none).
    pub name: String,
    /// The line of its `[[rule]]`.
    pub line: usize,
    /// Lower decides first.
    pub priority: u32,
    /// Source and destination networks.
    pub src: Option<IpNet>,
    /// Destination network.
    pub dst: Option<IpNet>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Port ranges (TCP and UDP).
    pub src_ports: Option<RangeInclusive<u16>>,
    /// Destination ports.
    pub dst_ports: Option<RangeInclusive<u16>>,
    /// ICMP/ICMPv6 type and code.
    pub icmp_type: Option<u8>,
    /// ICMP/ICMPv6 code.
    pub icmp_code: Option<u8>,
    /// TCP flags that must be set or clear (TCP only).
    pub tcp_flags: Option<TcpFlags>,
    /// [`ct_state`] bits; 0: any state.
    pub ct_states: u8,
    /// The ingress interface's name.
    pub iface: Option<String>,
    /// [`verdict`].
    pub verdict: u8,
    /// For `action = "log"`: events per second at most (None: [`DEFAULT_LOG_RATE`]; 0:
    /// every packet).
    pub log_rate: Option<u32>,
}

/// Events per second a `log` rule sends when the file gives no `log_rate`.
pub const DEFAULT_LOG_RATE: u32 = 10;

/// TCP flags a rule looks at: `flags & mask == value`, as nftables'
/// `tcp flags & (mask) == value`. Written `tcp_flags = "syn,!ack"`: the flags named must be
/// set, those with `!` clear, the others are not looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags {
    /// The flags that must be set.
    pub value: u8,
    /// The flags looked at (set or clear).
    pub mask: u8,
}

/// TCP flag names, by bit (the header's byte 13, RFC 9293 and RFC 3168).
pub const TCP_FLAG_NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];

impl TcpFlags {
    /// Parses `"syn,!ack"`.
    pub fn parse(text: &str) -> Result<TcpFlags, String> {
        let mut flags = TcpFlags { value: 0, mask: 0 };
        for word in text.split(',').map(str::trim) {
            let (clear, name) = match word.strip_prefix('!') {
                Some(name) => (true, name.trim()),
                None => (false, word),
            };
            let Some(bit) = TCP_FLAG_NAMES.iter().position(|known| *known == name) else {
                return Err(format!(
                    "`{word}` is not a TCP flag; known: {} (`!` before one: must be clear)",
                    TCP_FLAG_NAMES.join(", ")
                ));
            };
            let bit = 1u8 << bit;
            if flags.mask & bit != 0 {
                return Err(format!("`{name}` is named twice"));
            }
            flags.mask |= bit;
            if !clear {
                flags.value |= bit;
            }
        }
        Ok(flags)
    }
}

impl std::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = (0..8)
            .filter(|bit| self.mask & (1 << bit) != 0)
            .map(|bit| {
                let name = TCP_FLAG_NAMES[bit];
                if self.value & (1 << bit) != 0 {
                    name.to_string()
                } else {
                    format!("!{name}")
                }
            })
            .collect();
        f.write_str(&words.join(","))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<Spanned<String>>,
    conntrack: Option<Spanned<RawConntrack>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    limit: Option<u32>,
    /// Linux's `nf_conntrack_tcp_loose`: pick up a connection in mid-stream.
    tcp_loose: Option<bool>,
    /// Linux's `nf_conntrack_tcp_be_liberal`: no window checks.
    tcp_be_liberal: Option<bool>,
    /// Linux's `nf_conntrack_tcp_ignore_invalid_rst`.
    tcp_ignore_invalid_rst: Option<bool>,
    #[serde(default)]
    timeouts: std::collections::BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPorts {
    One(i64),
    Range(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    priority: Option<u32>,
    src: Option<String>,
    dst: Option<String>,
    proto: Option<String>,
    src_port: Option<RawPorts>,
    dst_port: Option<RawPorts>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    tcp_flags: Option<String>,
    #[serde(default)]
    ct_state: Vec<String>,
    iface: Option<String>,
    action: String,
    log_rate: Option<u32>,
}

impl Policy {
    /// Reads the rules file at `path`.
    pub fn read(path: &Path) -> Result<Policy, FirewallError> {
        let text = std::fs::read_to_string(path).map_err(|source| FirewallError::ReadFile {
            file: path.to_path_buf(),
            source,
        })?;
        Policy::parse(path, &text)
    }

    /// Parses a rules file's text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, FirewallError> {
        let error = |offset: usize, message: String| FirewallError::Rules {
            file: PathBuf::from(path),
            line: line_of(text, offset),
            message,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|syntax| {
            let offset = syntax.span().map_or(0, |span| span.start);
            error(offset, syntax.message().to_string())
        })?;
        let default_verdict = match &raw.default {
            None => verdict::DROP,
            Some(value) => parse_verdict(value.get_ref(), false)
                .map_err(|message| error(value.span().start, format!("default: {message}")))?,
        };
        let mut timeouts = [0; timeout::COUNT];
        let mut conntrack_limit = None;
        let mut conntrack_tcp = 0;
        if let Some(conntrack) = &raw.conntrack {
            let at = conntrack.span().start;
            let conntrack = conntrack.get_ref();
            if conntrack.limit == Some(0) {
                return Err(error(at, "conntrack.limit: must be at least 1".into()));
            }
            conntrack_limit = conntrack.limit;
            for (setting, bit) in [
                (
                    conntrack.tcp_loose.map(|loose| !loose),
                    tcp_setting::NO_PICKUP,
                ),
                (conntrack.tcp_be_liberal, tcp_setting::BE_LIBERAL),
                (
                    conntrack.tcp_ignore_invalid_rst,
                    tcp_setting::IGNORE_INVALID_RST,
                ),
            ] {
                if setting == Some(true) {
                    conntrack_tcp |= bit;
                }
            }
            for (name, seconds) in &conntrack.timeouts {
                let Some(index) = timeout::NAMES.iter().position(|known| known == name) else {
                    return Err(error(
                        at,
                        format!(
                            "conntrack.timeouts: unknown timeout `{name}`; known: {}",
                            timeout::NAMES.join(", ")
                        ),
                    ));
                };
                if *seconds == 0 {
                    return Err(error(
                        at,
                        format!("conntrack.timeouts.{name}: must be at least 1 second"),
                    ));
                }
                timeouts[index] = *seconds;
            }
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        // Lines counted on from the previous rule: from the start each time, a file of
        // 64,000 rules took minutes.
        let mut lines = LineCursor::new(text);
        for (index, spanned) in raw.rule.iter().enumerate() {
            let at = spanned.span().start;
            let rule = parse_rule(spanned.get_ref(), index, lines.line_of(at))
                .map_err(|message| error(at, message))?;
            rules.push(rule);
        }
        if rules.len() >= offload_common::firewall::MAX_RULES as usize {
            return Err(error(
                0,
                format!(
                    "{} rules; a policy holds at most {}",
                    rules.len(),
                    offload_common::firewall::MAX_RULES - 1
                ),
            ));
        }
        // Stable: equal priorities keep the file's order.
        rules.sort_by_key(|rule| rule.priority);
        Ok(Policy {
            file: path.to_path_buf(),
            rules,
            default_verdict,
            conntrack_limit,
            conntrack_tcp,
            timeouts,
        })
    }
}

fn parse_rule(raw: &RawRule, index: usize, line: usize) -> Result<Rule, String> {
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| format!("rule {}", index + 1));
    let within = |message: String| format!("rule `{name}`: {message}");
    let network = |field: &str, text: &Option<String>| -> Result<Option<IpNet>, String> {
        text.as_deref()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| within(format!("{field}: `{text}` is not an IPv4 or IPv6 CIDR")))
            })
            .transpose()
    };
    let src = network("src", &raw.src)?;
    let dst = network("dst", &raw.dst)?;
    if let (Some(src), Some(dst)) = (src, dst)
        && matches!(src, IpNet::V4(_)) != matches!(dst, IpNet::V4(_))
    {
        return Err(within(format!(
            "src {src} and dst {dst} are of different IP versions"
        )));
    }
    let protocol = raw
        .proto
        .as_deref()
        .map(|text| parse_proto(text).map_err(within))
        .transpose()?;
    let ports =
        |field: &str, raw: &Option<RawPorts>| -> Result<Option<RangeInclusive<u16>>, String> {
            let Some(raw) = raw else { return Ok(None) };
            if !matches!(protocol, Some(proto::TCP | proto::UDP)) {
                return Err(within(format!(
                    "{field}: ports need proto = \"tcp\" or \"udp\""
                )));
            }
            parse_ports(raw)
                .map(Some)
                .map_err(|message| within(format!("{field}: {message}")))
        };
    let src_ports = ports("src_port", &raw.src_port)?;
    let dst_ports = ports("dst_port", &raw.dst_port)?;
    if (raw.icmp_type.is_some() || raw.icmp_code.is_some())
        && !matches!(protocol, Some(proto::ICMP | proto::ICMPV6))
    {
        return Err(within(
            "icmp_type and icmp_code need proto = \"icmp\" or \"icmpv6\"".into(),
        ));
    }
    let tcp_flags = match &raw.tcp_flags {
        None => None,
        Some(_) if protocol != Some(proto::TCP) => {
            return Err(within("tcp_flags: needs proto = \"tcp\"".into()));
        }
        Some(text) => {
            Some(TcpFlags::parse(text).map_err(|message| within(format!("tcp_flags: {message}")))?)
        }
    };
    let family_of = |net: &Option<IpNet>| net.map(|net| matches!(net, IpNet::V4(_)));
    if let Some(v4) = family_of(&src).or(family_of(&dst))
        && matches!(
            (protocol, v4),
            (Some(proto::ICMP), false) | (Some(proto::ICMPV6), true)
        )
    {
        return Err(within(
            "icmp goes with IPv4 networks, icmpv6 with IPv6 ones".into(),
        ));
    }
    let mut ct_states = 0;
    for state in &raw.ct_state {
        let Some((bit, _)) = ct_state::NAMES.iter().find(|(_, name)| name == state) else {
            return Err(within(format!(
                "ct_state: unknown state `{state}`; known: new, established, related, invalid"
            )));
        };
        ct_states |= bit;
    }
    let action =
        parse_verdict(&raw.action, true).map_err(|message| within(format!("action: {message}")))?;
    if raw.log_rate.is_some() && action != verdict::LOG {
        return Err(within("log_rate: needs action = \"log\"".into()));
    }
    Ok(Rule {
        priority: raw.priority.unwrap_or(index as u32),
        name: name.clone(),
        line,
        src,
        dst,
        proto: protocol,
        src_ports,
        dst_ports,
        icmp_type: raw.icmp_type,
        icmp_code: raw.icmp_code,
        tcp_flags,
        ct_states,
        iface: raw.iface.clone(),
        verdict: action,
        log_rate: (action == verdict::LOG).then(|| raw.log_rate.unwrap_or(DEFAULT_LOG_RATE)),
    })
}

/// A rule's action; the default policy takes `accept` or `drop` only (as nftables').
fn parse_verdict(text: &str, of_rule: bool) -> Result<u8, String> {
    match text {
        "accept" => Ok(verdict::ACCEPT),
        "drop" => Ok(verdict::DROP),
        "reject" if of_rule => Ok(verdict::REJECT),
        "log" if of_rule => Ok(verdict::LOG),
        other if of_rule => Err(format!(
            "unknown action `{other}`; known: accept, drop, reject, log"
        )),
        other => Err(format!("unknown action `{other}`; known: accept, drop")),
    }
}

pub(crate) fn parse_proto(text: &str) -> Result<u8, String> {
    match text {
        "tcp" => Ok(proto::TCP),
        "udp" => Ok(proto::UDP),
        "icmp" => Ok(proto::ICMP),
        "icmpv6" => Ok(proto::ICMPV6),
        number => number.parse::<u8>().map_err(|_| {
            format!(
                "proto: unknown protocol `{text}`; known: tcp, udp, icmp, icmpv6 or a number 0-255"
            )
        }),
    }
}

pub(crate) fn parse_ports(raw: &RawPorts) -> Result<RangeInclusive<u16>, String> {
    let port = |text: &str| {
        text.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{text}` is not a port (0-65535)"))
    };
    match raw {
        RawPorts::One(number) => u16::try_from(*number)
            .map(|port| port..=port)
            .map_err(|_| format!("{number} is not a port (0-65535)")),
        RawPorts::Range(text) => {
            let (low, high) = match text.split_once('-') {
                Some((low, high)) => (port(low)?, port(high)?),
                None => (port(text)?, port(text)?),
            };
            if low > high {
                return Err(format!("range `{text}` ends before it starts"));
            }
            Ok(low..=high)
        }
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// [`line_of`] for offsets that mostly grow: counts from the previous one.
struct LineCursor<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCursor<'a> {
    fn new(text: &'a str) -> LineCursor<'a> {
        LineCursor {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            (self.offset, self.line) = (0, 1);
        }
        self.line += self.text[self.offset..offset].matches('\n').count();
        self.offset = offset;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(Path::new("rules.toml"), text).map_err(|error| error.to_string())
    }

    #[test]
    fn linux_tcp_conntrack_defaults_hold_unless_the_file_sets_a_switch() {
        assert_eq!(parse("").unwrap().conntrack_tcp, 0);
        let strict = parse(
            "[conntrack]\ntcp_loose = false\ntcp_be_liberal = true\n\
             tcp_ignore_invalid_rst = true\n",
        )
        .unwrap();
        assert_eq!(
            strict.conntrack_tcp,
            tcp_setting::NO_PICKUP | tcp_setting::BE_LIBERAL | tcp_setting::IGNORE_INVALID_RST
        );
        let defaults = parse(
            "[conntrack]\ntcp_loose = true\ntcp_be_liberal = false\n\
             tcp_ignore_invalid_rst = false\n",
        )
        .unwrap();
        assert_eq!(defaults.conntrack_tcp, 0);
        let error = parse("[conntrack]\ntcp_loose = 1\n").unwrap_err();
        assert!(
            error.contains("line 2") || error.contains("tcp_loose"),
            "{error}"
        );
    }

    #[test]
    fn a_policy_reads_with_its_rules_in_priority_order() {
        let policy = parse(
            "default = \"drop\"\n[conntrack]\nlimit = 10\ntimeouts = { udp = 5 }\n\
             [[rule]]\nname = \"web\"\npriority = 10\nproto = \"tcp\"\ndst_port = \"8000-8080\"\nsrc = \"10.0.0.0/8\"\naction = \"accept\"\n\
             [[rule]]\nct_state = [\"established\", \"related\"]\naction = \"accept\"\npriority = 0\n",
        )
        .unwrap();
        assert_eq!(policy.default_verdict, verdict::DROP);
        assert_eq!(policy.conntrack_limit, Some(10));
        assert_eq!(policy.timeouts[timeout::UDP], 5);
        assert_eq!(policy.rules[0].name, "rule 2");
        assert_eq!(
            policy.rules[0].ct_states,
            ct_state::ESTABLISHED | ct_state::RELATED
        );
        assert_eq!(policy.rules[1].dst_ports, Some(8000..=8080));
        assert_eq!(policy.rules[1].line, 5);
    }

    #[test]
    fn tcp_flags_read_as_value_and_mask() {
        let flags = TcpFlags::parse("syn, !ack,cwr").unwrap();
        assert_eq!(
            flags,
            TcpFlags {
                value: 0x82,
                mask: 0x92
            }
        );
        assert_eq!(flags.to_string(), "syn,!ack,cwr");
        let policy =
            parse("[[rule]]\nproto = \"tcp\"\ntcp_flags = \"!rst\"\naction = \"drop\"\n").unwrap();
        assert_eq!(
            policy.rules[0].tcp_flags,
            Some(TcpFlags {
                value: 0,
                mask: 0x04
            })
        );
    }

    #[test]
    fn each_rule_knows_its_line_in_a_long_file() {
        let mut text = String::from("default = \"drop\"\n");
        for index in 0..300 {
            text.push_str(&format!(
                "\n# rule {index}\n[[rule]]\nname = \"r{index}\"\naction = \"accept\"\n"
            ));
        }
        let policy = Policy::parse(Path::new("long.toml"), &text).unwrap();
        for (index, rule) in policy.rules.iter().enumerate() {
            assert_eq!(rule.line, 4 + index * 5, "{}", rule.name);
            assert_eq!(text.lines().nth(rule.line - 1), Some("[[rule]]"));
        }
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                "[[rule]]\naction = \"accept\"\n[[rule]]\nsrc = \"10.0.0.300/8\"\naction = \"drop\"\n",
                "rules.toml: line 3: rule `rule 2`: src: `10.0.0.300/8` is not",
            ),
            (
                "[[rule]]\nproto = \"udp\"\ndst_port = \"9-1\"\naction = \"drop\"\n",
                "line 1: rule `rule 1`: dst_port: range `9-1` ends before it starts",
            ),
            (
                "[[rule]]\ndst_port = 80\naction = \"drop\"\n",
                "ports need proto",
            ),
            ("[[rule]]\naction = \"bounce\"\n", "unknown action `bounce`"),
            (
                "default = \"reject\"\n",
                "line 1: default: unknown action `reject`",
            ),
            (
                "[[rule]]\nproto = \"icmp\"\nsrc = \"::/0\"\naction = \"accept\"\n",
                "icmp goes with IPv4",
            ),
            (
                "\n[[rule]]\nactoin = \"drop\"\n",
                "line 3: unknown field `actoin`",
            ),
            (
                "[conntrack]\ntimeouts = { tcp = 5 }\n",
                "unknown timeout `tcp`",
            ),
            (
                "[[rule]]\nct_state = [\"open\"]\naction = \"accept\"\n",
                "unknown state `open`",
            ),
            (
                "[[rule]]\nlog_rate = 5\naction = \"drop\"\n",
                "line 1: rule `rule 1`: log_rate: needs action = \"log\"",
            ),
            (
                "[[rule]]\nproto = \"udp\"\ntcp_flags = \"syn\"\naction = \"drop\"\n",
                "line 1: rule `rule 1`: tcp_flags: needs proto = \"tcp\"",
            ),
            (
                "\n\n[[rule]]\nproto = \"tcp\"\ntcp_flags = \"syn,!ak\"\naction = \"drop\"\n",
                "line 3: rule `rule 1`: tcp_flags: `!ak` is not a TCP flag",
            ),
            (
                "[[rule]]\nproto = \"tcp\"\ntcp_flags = \"syn,!syn\"\naction = \"drop\"\n",
                "`syn` is named twice",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err();
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
        }
    }
}
