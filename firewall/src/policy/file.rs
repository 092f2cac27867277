//! The security-group file: groups with members and what they allow, read and checked.
//!
//! ```toml
//! [[group]]
//! name = "web"
//! members = ["veth-web1", "veth-web2", "10.1.0.0/24"]   # interfaces, CIDRs or "group:NAME"
//! allow_in = [ { from = "group:lb", proto = "tcp", port = 80 },
//!              { from = "0.0.0.0/0", proto = "icmp" } ]
//! allow_out = [ { to = "192.0.2.0/24", proto = "udp", port = 53 } ]
//!
//! edge = ["uplink0"]   # top level: where traffic from outside the groups enters the node
//! ```
//!
//! Every error names the file and the line: TOML syntax and unknown fields, a bad CIDR, an
//! unknown group, a group that contains itself (directly or through others), a port
//! without TCP or UDP. An allow rule that an earlier one of the same list covers is a
//! warning: it allows nothing more.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use offload_common::proto;
use serde::Deserialize;
use toml::Spanned;

use super::PolicyError;
use crate::rules::{RawPorts, line_of, parse_ports, parse_proto};

/// A security-group policy, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    /// The file it was read from (named in errors).
    pub file: PathBuf,
    /// The groups, in the file's order.
    pub groups: Vec<Group>,
    /// Edge interfaces (name, line): no member's veth, but where traffic from outside the
    /// groups enters; their firewall holds it to the members' `allow_in` and lets the rest
    /// on.
    pub edges: Vec<(String, usize)>,
    /// Shadowed rules, each naming its line.
    pub warnings: Vec<String>,
}

/// One security group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The line of its `[[group]]`.
    pub line: usize,
    /// Its members, as written.
    pub members: Vec<Member>,
    /// What may open flows to its members.
    pub allow_in: Vec<Allow>,
    /// Where its members may open flows to, outside every group.
    pub allow_out: Vec<Allow>,
}

/// A member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// The host side of an endpoint's veth: it stands for the networks routed through it.
    Interface {
        /// The interface's name.
        name: String,
        /// Where the file names it.
        line: usize,
    },
    /// Addresses, matched as such.
    Network(IpNet),
    /// Every member of another group.
    Group(String),
}

/// Who an allow rule is about: the source of `allow_in`, the destination of `allow_out`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Addresses.
    Network(IpNet),
    /// A group's members.
    Group(String),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Network(net) => write!(f, "{net}"),
            Peer::Group(name) => write!(f, "group:{name}"),
        }
    }
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// Its line.
    pub line: usize,
    /// The other end of the flow.
    pub peer: Peer,
    /// IP protocol; None: any.
    pub proto: Option<u8>,
    /// Destination ports (TCP and UDP).
    pub ports: Option<RangeInclusive<u16>>,
    /// ICMP/ICMPv6 type.
    pub icmp_type: Option<u8>,
    /// ICMP/ICMPv6 code.
    pub icmp_code: Option<u8>,
}

impl Allow {
    /// Whether every flow `other` allows, this one allows too (same direction and list).
    fn covers(&self, other: &Allow) -> bool {
        let peer = match (&self.peer, &other.peer) {
            (Peer::Network(wide), Peer::Network(narrow)) => wide.contains(narrow),
            (Peer::Group(a), Peer::Group(b)) => a == b,
            _ => false,
        };
        let within = |wide: &Option<u8>, narrow: &Option<u8>| wide.is_none() || wide == narrow;
        let ports = match (&self.ports, &other.ports) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(wide), Some(narrow)) => {
                wide.start() <= narrow.start() && narrow.end() <= wide.end()
            }
        };
        peer && within(&self.proto, &other.proto)
            && ports
            && within(&self.icmp_type, &other.icmp_type)
            && within(&self.icmp_code, &other.icmp_code)
    }

    /// What it lets through, for people: `tcp port 80`, `icmp type 8`, `any protocol`.
    pub fn what(&self) -> String {
        let mut text = match self.proto {
            None => return "any protocol".to_string(),
            Some(number) => protocol_name(number),
        };
        if let Some(ports) = &self.ports {
            if ports.start() == ports.end() {
                text.push_str(&format!(" port {}", ports.start()));
            } else {
                text.push_str(&format!(" ports {}-{}", ports.start(), ports.end()));
            }
        }
        if let Some(kind) = self.icmp_type {
            text.push_str(&format!(" type {kind}"));
        }
        if let Some(code) = self.icmp_code {
            text.push_str(&format!(" code {code}"));
        }
        text
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6` or the number.
pub fn protocol_name(number: u8) -> String {
    match number {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        other => format!("protocol {other}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    edge: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    #[serde(default)]
    allow_in: Vec<Spanned<RawAllow>>,
    #[serde(default)]
    allow_out: Vec<Spanned<RawAllow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    from: Option<String>,
    to: Option<String>,
    proto: Option<String>,
    port: Option<RawPorts>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

const GROUP_PREFIX: &str = "group:";

impl GroupPolicy {
    /// Reads the policy file at `path`.
    pub fn read(path: &Path) -> Result<GroupPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::ReadFile {
            file: path.to_path_buf(),
            source,
        })?;
        GroupPolicy::parse(path, &text)
    }

    /// Parses a policy file's text; `path` only names it in errors and warnings.
    pub fn parse(path: &Path, text: &str) -> Result<GroupPolicy, PolicyError> {
        let error = |offset: usize, message: String| PolicyError::Line {
            file: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|syntax| {
            let offset = syntax.span().map_or(0, |span| span.start);
            error(offset, syntax.message().to_string())
        })?;
        let mut groups = Vec::with_capacity(raw.group.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for spanned in &raw.group {
            let raw_group = spanned.get_ref();
            let name = raw_group.name.get_ref().trim().to_string();
            let name_at = raw_group.name.span().start;
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
                return Err(error(
                    name_at,
                    format!("group name `{name}`: use letters, digits, `-` or `_`"),
                ));
            }
            if let Some(first) = seen.insert(name.clone(), line_of(text, name_at)) {
                return Err(error(
                    name_at,
                    format!("group `{name}` is defined twice (first at line {first})"),
                ));
            }
            let within = |message: String| format!("group `{name}`: {message}");
            let mut members = Vec::with_capacity(raw_group.members.len());
            for member in &raw_group.members {
                let at = member.span().start;
                members.push(
                    parse_member(member.get_ref(), line_of(text, at))
                        .map_err(|message| error(at, within(format!("members: {message}"))))?,
                );
            }
            let mut lists = [Vec::new(), Vec::new()];
            for (list, raws, inward) in [
                (0, &raw_group.allow_in, true),
                (1, &raw_group.allow_out, false),
            ] {
                let field = if inward { "allow_in" } else { "allow_out" };
                for (index, raw_allow) in raws.iter().enumerate() {
                    let at = raw_allow.span().start;
                    lists[list].push(
                        parse_allow(raw_allow.get_ref(), inward, line_of(text, at)).map_err(
                            |message| {
                                error(at, within(format!("{field} #{}: {message}", index + 1)))
                            },
                        )?,
                    );
                }
            }
            let [allow_in, allow_out] = lists;
            groups.push(Group {
                name,
                line: line_of(text, spanned.span().start),
                members,
                allow_in,
                allow_out,
            });
        }
        let mut edges: Vec<(String, usize)> = Vec::with_capacity(raw.edge.len());
        for edge in &raw.edge {
            let at = edge.span().start;
            let line = line_of(text, at);
            let name = match parse_member(edge.get_ref(), line) {
                Ok(Member::Interface { name, .. }) => name,
                Ok(_) => {
                    return Err(error(
                        at,
                        format!("edge: `{}` is not an interface name", edge.get_ref()),
                    ));
                }
                Err(message) => return Err(error(at, format!("edge: {message}"))),
            };
            let member = groups.iter().find(|group: &&Group| {
                group
                    .members
                    .iter()
                    .any(|member| matches!(member, Member::Interface { name: m, .. } if *m == name))
            });
            if let Some(group) = member {
                return Err(error(
                    at,
                    format!(
                        "edge: `{name}` is a member of group `{}`; an interface is a member or an edge",
                        group.name
                    ),
                ));
            }
            if !edges.iter().any(|(known, _)| *known == name) {
                edges.push((name, line));
            }
        }
        let policy = GroupPolicy {
            file: path.to_path_buf(),
            groups,
            edges,
            warnings: Vec::new(),
        };
        policy.check_references(&seen)?;
        policy.check_cycles()?;
        Ok(GroupPolicy {
            warnings: policy.shadowed(),
            ..policy
        })
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|group| group.name == name)
    }

    fn line_error(&self, line: usize, message: String) -> PolicyError {
        PolicyError::Line {
            file: self.file.clone(),
            line,
            message,
        }
    }

    /// Every `group:NAME` names a group of the file.
    fn check_references(&self, names: &BTreeMap<String, usize>) -> Result<(), PolicyError> {
        let known = || names.keys().cloned().collect::<Vec<_>>().join(", ");
        for group in &self.groups {
            let unknown = |name: &str| !names.contains_key(name);
            for allow in group.allow_in.iter().chain(&group.allow_out) {
                if let Peer::Group(name) = &allow.peer
                    && unknown(name)
                {
                    return Err(self.line_error(
                        allow.line,
                        format!(
                            "group `{}`: unknown group `{name}`; known: {}",
                            group.name,
                            known()
                        ),
                    ));
                }
            }
            for member in &group.members {
                if let Member::Group(name) = member
                    && unknown(name)
                {
                    return Err(self.line_error(
                        group.line,
                        format!(
                            "group `{}`: members: unknown group `{name}`; known: {}",
                            group.name,
                            known()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// No group contains itself, directly or through others.
    fn check_cycles(&self) -> Result<(), PolicyError> {
        let edges = |name: &str| -> Vec<String> {
            self.group(name)
                .map(|group| {
                    group
                        .members
                        .iter()
                        .filter_map(|member| match member {
                            Member::Group(inner) => Some(inner.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        for group in &self.groups {
            // Depth-first from each group, with the path that led here.
            let mut stack = vec![vec![group.name.clone()]];
            let mut visited = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap().clone();
                for inner in edges(&last) {
                    if inner == group.name {
                        let mut cycle = path.clone();
                        cycle.push(inner);
                        return Err(self.line_error(
                            group.line,
                            format!(
                                "group `{}` contains itself: {}",
                                group.name,
                                cycle.join(" -> ")
                            ),
                        ));
                    }
                    if visited.insert(inner.clone()) {
                        let mut longer = path.clone();
                        longer.push(inner);
                        stack.push(longer);
                    }
                }
            }
        }
        Ok(())
    }

    /// A warning for each allow rule an earlier one of the same list covers.
    fn shadowed(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for group in &self.groups {
            for (field, list) in [
                ("allow_in", &group.allow_in),
                ("allow_out", &group.allow_out),
            ] {
                for (later, allow) in list.iter().enumerate() {
                    if let Some(earlier) = list[..later].iter().position(|e| e.covers(allow)) {
                        warnings.push(format!(
                            "{}: line {}: group `{}`: {field} #{} is shadowed by {field} #{} \
                             (line {}): it allows nothing more",
                            self.file.display(),
                            allow.line,
                            group.name,
                            later + 1,
                            earlier + 1,
                            list[earlier].line
                        ));
                    }
                }
            }
        }
        warnings
    }
}

/// A CIDR (or one address), when `text` looks like one.
fn parse_network(text: &str) -> Option<Result<IpNet, String>> {
    let looks_like = text.contains('/')
        || text.contains(':')
        || (text.starts_with(|c: char| c.is_ascii_digit()) && text.contains('.'));
    looks_like.then(|| {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|net| net.trunc())
            .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 CIDR"))
    })
}

fn parse_member(text: &str, line: usize) -> Result<Member, String> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix(GROUP_PREFIX) {
        return Ok(Member::Group(name.to_string()));
    }
    if let Some(network) = parse_network(text) {
        return network.map(Member::Network);
    }
    if text.is_empty() || text.len() > 15 || text.contains(char::is_whitespace) {
        return Err(format!(
            "`{text}` is neither an interface name, a CIDR nor \"group:NAME\""
        ));
    }
    Ok(Member::Interface {
        name: text.to_string(),
        line,
    })
}

fn parse_peer(text: &str) -> Result<Peer, String> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix(GROUP_PREFIX) {
        return Ok(Peer::Group(name.to_string()));
    }
    match parse_network(text) {
        Some(network) => network.map(Peer::Network),
        None => Err(format!(
            "`{text}` is neither a CIDR nor \"group:NAME\" (interfaces are named as members)"
        )),
    }
}

fn parse_allow(raw: &RawAllow, inward: bool, line: usize) -> Result<Allow, String> {
    let peer = match (inward, &raw.from, &raw.to) {
        (true, Some(from), None) => parse_peer(from).map_err(|m| format!("from: {m}"))?,
        (false, None, Some(to)) => {
            let peer = parse_peer(to).map_err(|m| format!("to: {m}"))?;
            if let Peer::Group(name) = &peer {
                return Err(format!(
                    "to: group:{name}: flows to a group's members are decided by that \
                     group's allow_in; allow_out is for destinations outside every group"
                ));
            }
            peer
        }
        (true, _, _) => return Err("needs `from` (and no `to`)".into()),
        (false, _, _) => return Err("needs `to` (and no `from`)".into()),
    };
    let protocol = raw.proto.as_deref().map(parse_proto).transpose()?;
    let ports = match &raw.port {
        None => None,
        Some(_) if !matches!(protocol, Some(proto::TCP | proto::UDP)) => {
            return Err("port: ports need proto = \"tcp\" or \"udp\"".into());
        }
        Some(raw) => Some(parse_ports(raw).map_err(|m| format!("port: {m}"))?),
    };
    if (raw.icmp_type.is_some() || raw.icmp_code.is_some())
        && !matches!(protocol, Some(proto::ICMP | proto::ICMPV6))
    {
        return Err("icmp_type and icmp_code need proto = \"icmp\" or \"icmpv6\"".into());
    }
    if let Peer::Network(net) = &peer
        && matches!(
            (protocol, net),
            (Some(proto::ICMP), IpNet::V6(_)) | (Some(proto::ICMPV6), IpNet::V4(_))
        )
    {
        return Err("icmp goes with IPv4 networks, icmpv6 with IPv6 ones".into());
    }
    Ok(Allow {
        line,
        peer,
        proto: protocol,
        ports,
        icmp_type: raw.icmp_type,
        icmp_code: raw.icmp_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GroupPolicy, String> {
        GroupPolicy::parse(Path::new("policy.toml"), text).map_err(|error| error.to_string())
    }

    const ISSUE_EXAMPLE: &str = r#"
[[group]]
name = "web"
members = ["veth-web1", "veth-web2", "10.1.0.0/24"]   # endpoints: interfaces or CIDRs
allow_in = [ { from = "group:lb", proto = "tcp", port = 80 },
             { from = "0.0.0.0/0", proto = "icmp" } ]
[[group]]
name = "db"
members = ["veth-db1"]
allow_in = [ { from = "group:web", proto = "tcp", port = 5432 } ]
[[group]]
name = "lb"
members = ["veth-lb1", "group:db"]
allow_out = [ { to = "192.0.2.0/24", proto = "udp", port = "53-54" } ]
"#;

    #[test]
    fn the_issue_example_reads_with_its_lines() {
        let policy = parse(ISSUE_EXAMPLE).unwrap();
        assert_eq!(policy.groups.len(), 3);
        let web = &policy.groups[0];
        assert_eq!(web.line, 2);
        assert_eq!(
            web.members,
            [
                Member::Interface {
                    name: "veth-web1".into(),
                    line: 4
                },
                Member::Interface {
                    name: "veth-web2".into(),
                    line: 4
                },
                Member::Network("10.1.0.0/24".parse().unwrap()),
            ]
        );
        assert_eq!(web.allow_in[0].peer, Peer::Group("lb".into()));
        assert_eq!(web.allow_in[0].ports, Some(80..=80));
        assert_eq!(web.allow_in[0].line, 5);
        assert_eq!(web.allow_in[1].line, 6);
        assert_eq!(web.allow_in[1].what(), "icmp");
        let lb = &policy.groups[2];
        assert_eq!(lb.members[1], Member::Group("db".into()));
        assert_eq!(lb.allow_out[0].what(), "udp ports 53-54");
        assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
    }

    #[test]
    fn edges_are_interfaces_of_no_group() {
        let policy =
            parse("edge = [\"up0\",\n  \"up1\", \"up0\"]\n[[group]]\nname = \"a\"\n").unwrap();
        assert_eq!(
            policy.edges,
            [("up0".to_string(), 1), ("up1".to_string(), 2)]
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                "[[group]]\nname = \"web\"\nmembers = [\"a\"]\n\nallow_in = [ { from = \"group:nope\" } ]\n",
                "policy.toml: line 5: group `web`: unknown group `nope`; known: web",
            ),
            (
                "[[group]]\nname = \"web\"\nmembers = [\"10.1.0.0/24\",\n  \"10.1.0.300/24\"]\n",
                "policy.toml: line 4: group `web`: members: `10.1.0.300/24` is not an IPv4 or IPv6 CIDR",
            ),
            (
                "[[group]]\nname = \"web\"\nallow_in = [\n  { from = \"10.0.0.0/33\", proto = \"tcp\" } ]\n",
                "line 4: group `web`: allow_in #1: from: `10.0.0.0/33` is not",
            ),
            (
                "[[group]]\nname = \"a\"\nmembers = [\"group:a\"]\n",
                "line 1: group `a` contains itself: a -> a",
            ),
            (
                "[[group]]\nname = \"a\"\nmembers = [\"group:b\"]\n[[group]]\nname = \"b\"\nmembers = [\"group:c\"]\n\
                 [[group]]\nname = \"c\"\nmembers = [\"group:a\"]\n",
                "line 1: group `a` contains itself: a -> b -> c -> a",
            ),
            (
                "[[group]]\nname = \"a\"\nmembers = [\"group:zz\"]\n",
                "line 1: group `a`: members: unknown group `zz`",
            ),
            (
                "[[group]]\nname = \"a\"\n\nmembres = [\"x\"]\n",
                "line 4: unknown field `membres`",
            ),
            (
                "[[group]]\nname = \"a\"\nallow_in = [ { from = \"0.0.0.0/0\", port = 80 } ]\n",
                "line 3: group `a`: allow_in #1: port: ports need proto",
            ),
            (
                "[[group]]\nname = \"a\"\nallow_in = [ { from = \"0.0.0.0/0\", proto = \"tcp\", prot = 80 } ]\n",
                "line 3: unknown field `prot`",
            ),
            (
                "[[group]]\nname = \"a\"\nallow_out = [ { to = \"group:a\" } ]\n",
                "line 3: group `a`: allow_out #1: to: group:a: flows to a group's members",
            ),
            (
                "[[group]]\nname = \"a\"\n[[group]]\nname = \"a\"\n",
                "line 4: group `a` is defined twice (first at line 2)",
            ),
            (
                "[[group]]\nname = \"a\"\nallow_in = [ { from = \"::/0\", proto = \"icmp\" } ]\n",
                "icmp goes with IPv4",
            ),
            (
                "edge = [\"up0\",\n  \"v-web\"]\n[[group]]\nname = \"a\"\nmembers = [\"v-web\"]\n",
                "line 2: edge: `v-web` is a member of group `a`",
            ),
            (
                "edge = [\"10.0.0.0/8\"]\n",
                "line 1: edge: `10.0.0.0/8` is not an interface name",
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

    #[test]
    fn a_rule_an_earlier_one_covers_is_a_warning() {
        let policy = parse(
            "[[group]]\nname = \"web\"\nallow_in = [\n\
               { from = \"10.0.0.0/8\", proto = \"tcp\", port = \"80-90\" },\n\
               { from = \"10.1.0.0/16\", proto = \"tcp\", port = 85 },\n\
               { from = \"10.1.0.0/16\", proto = \"udp\", port = 85 },\n\
               { from = \"group:web\" },\n\
               { from = \"group:web\", proto = \"icmp\", icmp_type = 8 },\n\
               { from = \"192.0.2.0/24\", proto = \"tcp\", port = 80 },\n]\n",
        )
        .unwrap();
        assert_eq!(policy.warnings.len(), 2, "{:?}", policy.warnings);
        assert!(
            policy.warnings[0].contains(
                "policy.toml: line 5: group `web`: allow_in #2 is shadowed by allow_in #1 (line 4)"
            ),
            "{:?}",
            policy.warnings
        );
        assert!(
            policy.warnings[1]
                .contains("line 8: group `web`: allow_in #5 is shadowed by allow_in #4"),
            "{:?}",
            policy.warnings
        );
    }
}
