//! The compiled policies and `explain` on a four-container node, without a kernel.

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use offload_common::{firewall::verdict, proto};

use super::{Explanation, GroupPolicy, Node, Origin, compile, explain};

const POLICY: &str = r#"
[[group]]
name = "web"
members = ["v-web1", "v-web2"]
allow_in = [ { from = "group:lb", proto = "tcp", port = 80 },
         { from = "0.0.0.0/0", proto = "icmp" } ]
[[group]]
name = "db"
members = ["v-db1"]
allow_in = [ { from = "group:web", proto = "tcp", port = 5432 } ]
[[group]]
name = "lb"
members = ["v-lb1"]
allow_out = [ { to = "192.0.2.0/24", proto = "udp", port = 53 } ]
[[group]]
name = "ops"
members = ["10.9.0.0/16", "group:db"]
allow_in = [ { from = "group:lb", proto = "tcp", port = 22 } ]
"#;

fn node() -> Node {
    let net = |text: &str| text.parse::<IpNet>().unwrap();
    Node {
        interfaces: [
            ("v-web1", "10.91.1.0/24"),
            ("v-web2", "10.91.2.0/24"),
            ("v-db1", "10.91.3.0/24"),
            ("v-lb1", "10.91.4.0/24"),
        ]
        .into_iter()
        .map(|(iface, network)| (iface.to_string(), vec![net(network)]))
        .collect(),
        local: [
            "10.91.1.1",
            "10.91.2.1",
            "10.91.3.1",
            "10.91.4.1",
            "127.0.0.1",
        ]
        .iter()
        .map(|address| address.parse().unwrap())
        .collect(),
    }
}

fn policy() -> GroupPolicy {
    GroupPolicy::parse(Path::new("policy.toml"), POLICY).unwrap()
}

fn explain_new(from: &str, to: &str, protocol: u8, port: Option<u16>) -> Explanation {
    explain(&policy(), &node(), from, to, protocol, port).unwrap()
}

#[test]
fn each_member_interface_gets_a_policy_of_its_groups() {
    let compiled = compile(&policy(), &node()).unwrap();
    let names: Vec<&str> = compiled.iter().map(|c| c.iface.as_str()).collect();
    assert_eq!(names, ["v-db1", "v-lb1", "v-web1", "v-web2"]);
    let db = &compiled[0];
    assert_eq!(db.groups, ["db", "ops"], "db is in ops through group:db");
    for interface in &compiled {
        assert_eq!(interface.origins[0], Origin::Replies);
        assert_eq!(interface.policy.default_verdict, verdict::DROP);
        // Every policy compiles within the firewall's limits.
        crate::compile(&interface.policy, |_| Err(String::new())).unwrap();
    }
}

#[test]
fn allowed_paths_accept_and_forbidden_ones_drop() {
    let cases = [
        // lb may reach web on 80, web may reach db on 5432.
        (
            "v-lb1",
            "10.91.1.2",
            proto::TCP,
            Some(80),
            "accept",
            "web allow_in #1 (line 5)",
        ),
        (
            "10.91.4.7",
            "v-web2",
            proto::TCP,
            Some(80),
            "accept",
            "web allow_in #1 (line 5)",
        ),
        (
            "v-web1",
            "v-db1",
            proto::TCP,
            Some(5432),
            "accept",
            "db allow_in #1 (line 10)",
        ),
        // Anyone may ping web.
        (
            "v-db1",
            "v-web1",
            proto::ICMP,
            None,
            "accept",
            "web allow_in #2 (line 6)",
        ),
        // Forbidden: lb to db, db to web on 80, web to web, anyone to lb.
        (
            "v-lb1",
            "v-db1",
            proto::TCP,
            Some(5432),
            "drop",
            "drop: to members, not in their allow_in",
        ),
        (
            "v-db1",
            "v-web1",
            proto::TCP,
            Some(80),
            "drop",
            "drop: to members, not in their allow_in",
        ),
        (
            "v-web1",
            "v-web2",
            proto::TCP,
            Some(80),
            "drop",
            "drop: to members, not in their allow_in",
        ),
        (
            "v-web1",
            "v-lb1",
            proto::ICMP,
            None,
            "drop",
            "drop: to members, not in their allow_in",
        ),
        // ops holds db (nested) and a CIDR: lb may reach both on 22.
        (
            "v-lb1",
            "v-db1",
            proto::TCP,
            Some(22),
            "accept",
            "ops allow_in #1 (line 18)",
        ),
        (
            "v-lb1",
            "10.9.3.3",
            proto::TCP,
            Some(22),
            "accept",
            "ops allow_in #1 (line 18)",
        ),
        // Outside every group: only allow_out lets out.
        (
            "v-lb1",
            "192.0.2.53",
            proto::UDP,
            Some(53),
            "accept",
            "lb allow_out #1 (line 14)",
        ),
        (
            "v-lb1",
            "192.0.2.53",
            proto::UDP,
            Some(54),
            "drop",
            "default",
        ),
        (
            "v-web1",
            "192.0.2.53",
            proto::UDP,
            Some(53),
            "drop",
            "default",
        ),
        // The node's own gateway address is no member of web.
        (
            "v-lb1",
            "10.91.1.1",
            proto::TCP,
            Some(80),
            "drop",
            "drop: the node's own address",
        ),
    ];
    for (from, to, protocol, port, verdict, rule) in cases {
        let explanation = explain_new(from, to, protocol, port);
        assert_eq!(
            (explanation.verdict.as_str(), explanation.rule.as_str()),
            (verdict, rule),
            "{from} -> {to} {protocol}/{port:?}: {explanation:?}"
        );
    }
}

#[test]
fn an_edge_holds_outside_traffic_to_the_members_allow_in_and_lets_the_rest_on() {
    let text = format!("edge = [\"v-up\"]\n{POLICY}");
    let policy = GroupPolicy::parse(Path::new("policy.toml"), &text).unwrap();
    let mut node = node();
    node.interfaces.insert("v-up".into(), Vec::new());
    let compiled = compile(&policy, &node).unwrap();
    let up = compiled.iter().find(|c| c.iface == "v-up").unwrap();
    assert!(up.edge && up.groups.is_empty());
    assert_eq!(up.policy.default_verdict, verdict::ACCEPT);
    let outside = "198.51.100.1";
    let cases = [
        (
            "v-web1",
            proto::TCP,
            Some(80),
            "drop",
            "drop: to members, not in their allow_in",
        ),
        (
            "v-web1",
            proto::ICMP,
            None,
            "accept",
            "web allow_in #2 (line 7)",
        ),
        (
            "v-lb1",
            proto::ICMP,
            None,
            "drop",
            "drop: to members, not in their allow_in",
        ),
        ("203.0.113.9", proto::TCP, Some(443), "accept", "default"),
        (
            "10.91.1.1",
            proto::TCP,
            Some(22),
            "accept",
            "the node's own address (no member)",
        ),
    ];
    for (to, protocol, port, verdict, rule) in cases {
        let explanation = explain(&policy, &node, outside, to, protocol, port).unwrap();
        assert_eq!(explanation.ingress.as_deref(), Some("v-up"));
        assert_eq!(
            (explanation.verdict.as_str(), explanation.rule.as_str()),
            (verdict, rule),
            "{to} {protocol}/{port:?}: {explanation:?}"
        );
    }
    // Members' sources still enter through their own veth, not the edge.
    let from_lb = explain(&policy, &node, "10.91.4.2", "v-web1", proto::TCP, Some(80)).unwrap();
    assert_eq!(from_lb.ingress.as_deref(), Some("v-lb1"));
}

#[test]
fn explain_says_why_and_where() {
    let allowed = explain_new("v-lb1", "v-web1", proto::TCP, Some(80));
    assert_eq!(allowed.from, "10.91.4.2".parse::<IpAddr>().unwrap());
    assert_eq!(allowed.ingress.as_deref(), Some("v-lb1"));
    assert_eq!(allowed.line, Some(5));
    assert_eq!(allowed.to_groups, ["web"]);
    assert!(allowed.why.contains("from group:lb"), "{}", allowed.why);
    let dropped = explain_new("v-lb1", "v-db1", proto::TCP, Some(5432));
    assert!(
        dropped.why.contains("member of db, ops, and no allow_in"),
        "{}",
        dropped.why
    );
    let outside = explain_new("198.51.100.1", "v-web1", proto::TCP, Some(80));
    assert_eq!(outside.verdict, "unchecked");
    assert!(outside.why.contains("no interface of the policy"));
    let unknown = explain(&policy(), &node(), "v-nope", "v-web1", proto::TCP, Some(80));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("`v-nope` is neither an address nor a member interface")
    );
}
