//! nftables enforcing a firewall policy: the policy as an nft ruleset, loading it into a
//! lab namespace and reading its per-rule counters. Shared by the differential test
//! (kernel_agrees.rs) and the Mpps report (examples/firewall_mpps.rs), which compare the
//! module with nftables on the same rules.

use firewall::Policy;
use lab::Lab;
use offload_common::{
    firewall::{ct_state, verdict},
    proto,
};

/// The nft table the ruleset lives in (inside a lab namespace).
pub const TABLE: &str = "fwtest";

/// `policy` as an nftables ruleset: a chain `rules` with the rules in priority order and
/// the default last, each with a counter; the prerouting hook (after conntrack, which is at
/// priority -200) jumps there for the packets each of `jump_when` matches (nft match
/// expressions, e.g. `ip saddr 10.1.0.0/16`), so that nothing else meets the policy.
pub fn ruleset(policy: &Policy, jump_when: &[&str]) -> String {
    use ipnet::IpNet;
    let mut rules = String::new();
    for rule in &policy.rules {
        let mut parts = Vec::new();
        if let Some(iface) = &rule.iface {
            parts.push(format!("iifname \"{iface}\""));
        }
        for (field, net) in [("saddr", rule.src), ("daddr", rule.dst)] {
            match net {
                Some(IpNet::V4(net)) => parts.push(format!("ip {field} {net}")),
                Some(IpNet::V6(net)) => parts.push(format!("ip6 {field} {net}")),
                None => {}
            }
        }
        if let Some(protocol) = rule.proto {
            parts.push(format!("meta l4proto {protocol}"));
        }
        for (field, ports) in [("sport", &rule.src_ports), ("dport", &rule.dst_ports)] {
            if let Some(ports) = ports {
                parts.push(format!("th {field} {}-{}", ports.start(), ports.end()));
            }
        }
        let icmp = if rule.proto == Some(proto::ICMPV6) {
            "icmpv6"
        } else {
            "icmp"
        };
        if let Some(kind) = rule.icmp_type {
            parts.push(format!("{icmp} type {kind}"));
        }
        if let Some(code) = rule.icmp_code {
            parts.push(format!("{icmp} code {code}"));
        }
        if let Some(flags) = rule.tcp_flags {
            parts.push(format!(
                "tcp flags & {:#x} == {:#x}",
                flags.mask, flags.value
            ));
        }
        if rule.ct_states != 0 {
            let names: Vec<&str> = ct_state::NAMES
                .into_iter()
                .filter(|(bit, _)| rule.ct_states & bit != 0)
                .map(|(_, name)| name)
                .collect();
            parts.push(format!("ct state {{ {} }}", names.join(", ")));
        }
        // nft's reject counts like a drop (its answer is not compared here).
        let action = if rule.verdict == verdict::ACCEPT {
            "accept"
        } else {
            "drop"
        };
        rules.push_str(&format!("    {} counter {action}\n", parts.join(" ")));
    }
    let default = if policy.default_verdict_is_drop() {
        "drop"
    } else {
        "accept"
    };
    let jumps: String = jump_when
        .iter()
        .map(|when| format!("    {when} jump rules\n"))
        .collect();
    format!(
        "table inet {TABLE} {{\n  chain rules {{\n{rules}    counter {default}\n  }}\n  \
         chain pre {{\n    type filter hook prerouting priority -150; policy accept;\n\
         {jumps}  }}\n}}\n"
    )
}

trait DefaultVerdict {
    fn default_verdict_is_drop(&self) -> bool;
}

impl DefaultVerdict for Policy {
    fn default_verdict_is_drop(&self) -> bool {
        self.default_verdict == verdict::DROP
    }
}

/// Runs `nft ARGS` in `namespace` (stdin `input` when given); its stdout.
pub fn nft(namespace: &str, args: &[&str], input: Option<String>) -> String {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    Lab::run_in(namespace, move || {
        use std::io::Write;
        let mut child = std::process::Command::new("nft")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (`cargo xtask setup` installs nftables)");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .expect("namespace")
}

/// Packets each rule of the `rules` chain counted, in order (the default last).
pub fn counters(namespace: &str) -> Vec<u64> {
    let listing: serde_json::Value = serde_json::from_str(&nft(
        namespace,
        &["-j", "list", "chain", "inet", TABLE, "rules"],
        None,
    ))
    .expect("nft JSON");
    listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|rule| {
            rule["expr"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|expr| expr.get("counter"))
                .and_then(|counter| counter["packets"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

/// Loads `ruleset` into `namespace`, replacing the table a previous one left.
pub fn load(namespace: &str, ruleset: String) {
    delete(namespace);
    nft(namespace, &["-f", "-"], Some(ruleset));
}

/// Removes the table from `namespace` (nothing when there is none).
pub fn delete(namespace: &str) {
    let _ = Lab::run_in(namespace, || {
        std::process::Command::new("nft")
            .args(["delete", "table", "inet", TABLE])
            .output()
    });
}
