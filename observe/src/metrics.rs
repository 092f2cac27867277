//! Everything fastpath counts, collected in one pass and rendered in the Prometheus text
//! format (version 0.0.4) or served as JSON.
//!
//! Sources, each read from the kernel and the pinned maps, changing nothing:
//! - every chain (each interface's XDP, tc-ingress and tc-egress chain):
//!   `offload::modules::list`, the per-module verdict counters and run time;
//! - every steering attachment: `offload::status`, the action and rule counters;
//! - every chain running `vxlan-trace`: [`crate::tunnels::snapshot`].
//!
//! Only interfaces of the network namespace the process runs in are collected: bpffs pins
//! are shared by every namespace, interface names are not.

use std::{ffi::CString, fmt::Write as _};

use offload::{
    Status, TRANSIENT,
    modules::{self, ChainAt, ChainListing, Hook, ModuleError, builtin::VXLAN_TRACE_MODULE},
};
use serde::Serialize;

use crate::tunnels::{self, TraceSnapshot};

/// One collection of everything.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Collected {
    /// Every chain, with its modules' counters.
    pub chains: Vec<ChainListing>,
    /// Every steering attachment.
    pub steering: Vec<Status>,
    /// Every tracer's statistics.
    pub tunnels: Vec<TraceSnapshot>,
    /// What could not be read, each naming its interface (the rest is still served).
    pub errors: Vec<String>,
}

/// The interfaces of this network namespace with fastpath pins.
fn interfaces() -> Vec<String> {
    let root = offload::bpffs::Bpffs::get().fastpath_dir();
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    offload::netns::iface_of_pin_name(&entry.file_name().to_string_lossy())
                })
                .filter(|name| name != TRANSIENT && here(name))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether this namespace has an interface named `name`.
fn here(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

/// Reads every source.
pub fn collect() -> Collected {
    let mut collected = Collected::default();
    for iface in interfaces() {
        for hook in Hook::ALL {
            let at = ChainAt::new(&iface, hook);
            match modules::list(at) {
                Ok(listing) => {
                    if listing
                        .modules
                        .iter()
                        .any(|module| module.name == VXLAN_TRACE_MODULE)
                    {
                        match tunnels::snapshot(at) {
                            Ok(snapshot) => collected.tunnels.push(snapshot),
                            Err(error) => collected.errors.push(format!("{at}: {error}")),
                        }
                    }
                    collected.chains.push(listing);
                }
                Err(ModuleError::NoChain { .. }) => {}
                Err(error) => collected.errors.push(format!("{at}: {error}")),
            }
        }
        if offload::Pins::for_iface(&iface).exists() {
            match offload::status(&iface) {
                Ok(status) => collected.steering.push(status),
                Err(error) => collected.errors.push(format!("{iface}: {error}")),
            }
        }
    }
    collected
}

/// One metric family: its samples, written under one HELP and TYPE.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (index, (label, text)) in labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{label}=\"{}\"", escape(text));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn chain_labels(iface: &str, hook: Hook) -> Vec<(&'static str, String)> {
    vec![("iface", iface.to_string()), ("hook", hook.to_string())]
}

/// `collected` in the Prometheus text format: counters end in `_total`, times are in
/// seconds, bytes in bytes.
pub fn render(collected: &Collected) -> String {
    let mut verdicts = Family::new(
        "fastpath_module_packets_total",
        "counter",
        "Packets each module of a chain decided, by verdict.",
    );
    let mut run = Family::new(
        "fastpath_module_run_seconds_total",
        "counter",
        "Time each module ran while its chain was profiled (fastpath module profile).",
    );
    let mut ends = Family::new(
        "fastpath_chain_passed_packets_total",
        "counter",
        "Packets a chain passed itself: empty chain, or past its last module.",
    );
    let mut revision = Family::new(
        "fastpath_chain_revision",
        "gauge",
        "The revision each chain runs.",
    );
    for chain in &collected.chains {
        for module in &chain.modules {
            for (verdict, packets) in &module.packets {
                let mut labels = chain_labels(&chain.iface, chain.hook);
                labels.push(("module", module.name.clone()));
                labels.push(("verdict", verdict.clone()));
                verdicts.add(labels, *packets as f64);
            }
            let mut labels = chain_labels(&chain.iface, chain.hook);
            labels.push(("module", module.name.clone()));
            run.add(labels, module.run_ns as f64 / 1e9);
        }
        for (reason, packets) in [
            ("empty", chain.empty_chain_passes),
            ("end", chain.chain_end_passes),
        ] {
            let mut labels = chain_labels(&chain.iface, chain.hook);
            labels.push(("reason", reason.to_string()));
            ends.add(labels, packets as f64);
        }
        revision.add(
            chain_labels(&chain.iface, chain.hook),
            f64::from(chain.revision),
        );
    }

    let mut actions = Family::new(
        "fastpath_steering_packets_total",
        "counter",
        "Packets the steering program handled, by action (malformed is not in pass).",
    );
    let mut rule_packets = Family::new(
        "fastpath_steering_rule_packets_total",
        "counter",
        "Packets each steering rule matched.",
    );
    let mut rule_bytes = Family::new(
        "fastpath_steering_rule_bytes_total",
        "counter",
        "Bytes each steering rule matched (first buffer, no FCS).",
    );
    for status in &collected.steering {
        let counters = &status.counters;
        for (action, packets) in [
            ("pass", counters.pass),
            ("drop", counters.drop),
            ("xsk", counters.xsk),
            ("tx", counters.tx),
            ("malformed", counters.malformed),
            ("xsk_fallback", counters.xsk_fallback),
            ("non_ip", counters.non_ip),
            ("prefilter", counters.prefilter),
        ] {
            actions.add(
                vec![
                    ("iface", status.iface.clone()),
                    ("action", action.to_string()),
                ],
                packets as f64,
            );
        }
        for rule in &status.rules {
            let labels = vec![
                ("iface", status.iface.clone()),
                ("rule", rule.rule.id.to_string()),
            ];
            rule_packets.add(labels.clone(), rule.packets as f64);
            rule_bytes.add(labels, rule.bytes as f64);
        }
    }

    let mut traced = Family::new(
        "fastpath_tracer_packets_total",
        "counter",
        "Packets vxlan-trace saw, by class: tunnel (attributed), malformed, other.",
    );
    let mut evictions = Family::new(
        "fastpath_tracer_evictions_total",
        "counter",
        "Pairs vxlan-trace's table evicted to make room.",
    );
    let mut pairs = Family::new(
        "fastpath_tracer_pairs",
        "gauge",
        "Pairs in vxlan-trace's table.",
    );
    let mut pair_packets = Family::new(
        "fastpath_tunnel_packets_total",
        "counter",
        "Tunnel packets per inner pair and direction (outer_src/inner_src send).",
    );
    let mut pair_bytes = Family::new(
        "fastpath_tunnel_bytes_total",
        "counter",
        "Bytes of whole outer frames per inner pair and direction.",
    );
    for snapshot in &collected.tunnels {
        for (class, packets) in [
            ("tunnel", snapshot.tunnel_packets),
            ("malformed", snapshot.malformed_packets),
            ("other", snapshot.other_packets),
        ] {
            let mut labels = chain_labels(&snapshot.iface, snapshot.hook);
            labels.push(("class", class.to_string()));
            traced.add(labels, packets as f64);
        }
        evictions.add(
            chain_labels(&snapshot.iface, snapshot.hook),
            snapshot.evictions as f64,
        );
        pairs.add(
            chain_labels(&snapshot.iface, snapshot.hook),
            snapshot.pairs as f64,
        );
        for tunnel in &snapshot.tunnels {
            for pair in &tunnel.pairs {
                let shown = |address: Option<std::net::IpAddr>| {
                    address.map_or_else(String::new, |address| address.to_string())
                };
                let directions = [
                    (
                        tunnel.outer_a,
                        tunnel.outer_b,
                        shown(pair.inner_a),
                        shown(pair.inner_b),
                        pair.port_a,
                        pair.port_b,
                        pair.a_to_b,
                    ),
                    (
                        tunnel.outer_b,
                        tunnel.outer_a,
                        shown(pair.inner_b),
                        shown(pair.inner_a),
                        pair.port_b,
                        pair.port_a,
                        pair.b_to_a,
                    ),
                ];
                for (outer_src, outer_dst, inner_src, inner_dst, sport, dport, flow) in directions {
                    let mut labels = chain_labels(&snapshot.iface, snapshot.hook);
                    labels.extend([
                        ("kind", tunnel.kind.to_string()),
                        ("vni", tunnel.vni.to_string()),
                        ("outer_src", outer_src.to_string()),
                        ("outer_dst", outer_dst.to_string()),
                        ("inner_src", inner_src),
                        ("inner_dst", inner_dst),
                        ("protocol", pair.protocol.to_string()),
                        ("src_port", sport.to_string()),
                        ("dst_port", dport.to_string()),
                    ]);
                    pair_packets.add(labels.clone(), flow.packets as f64);
                    pair_bytes.add(labels, flow.bytes as f64);
                }
            }
        }
    }

    let mut errors = Family::new(
        "fastpath_collect_errors",
        "gauge",
        "Sources that could not be read in this scrape (see /api/all for the messages).",
    );
    errors.add(Vec::new(), collected.errors.len() as f64);

    let mut out = String::new();
    for family in [
        verdicts,
        run,
        ends,
        revision,
        actions,
        rule_packets,
        rule_bytes,
        traced,
        evictions,
        pairs,
        pair_packets,
        pair_bytes,
        errors,
    ] {
        family.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn an_empty_collection_still_names_every_family() {
        let text = render(&Collected::default());
        assert!(text.contains("# TYPE fastpath_module_packets_total counter"));
        assert!(text.contains("# TYPE fastpath_tunnel_packets_total counter"));
        assert!(text.contains("fastpath_collect_errors 0\n"), "{text}");
    }

    #[test]
    fn a_family_writes_its_samples_with_labels() {
        let mut family = Family::new("x_total", "counter", "Things.");
        family.add(
            vec![("iface", "eth0".into()), ("verdict", "pass".into())],
            3.0,
        );
        let mut out = String::new();
        family.render(&mut out);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{iface=\"eth0\",verdict=\"pass\"} 3\n"
        );
    }
}
