//! `fastpath serve`'s `/metrics` read by a real Prometheus text parser (the Python
//! `prometheus_client` library's, from Debian) and checked against what the CLI's `--json`
//! says: the tracer's tunnels, steering, the module chain, the firewall and its conntrack
//! table on the VXLAN lab; a load balancer's VIPs, backends and workers on the LB lab.
//!
//! Counters the lab's own chatter moves (neighbour discovery crosses the steering program
//! and the firewall too) must lie between the CLI's readings taken before and after the
//! scrape; those only the test's traffic moves must be equal.

mod lb_common;
mod support;

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use lab::{
    Lab,
    vxlan::{Underlay, VxlanLab},
};
use serde_json::Value;
use support::{
    TempDir, fastpath, json,
    serve::{Server, Tracers},
};

/// Parses the text format with `prometheus_client.parser` and prints every sample.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": sample.name,
                        "labels": sample.labels, "value": sample.value})
print(json.dumps(samples))
"#;

/// A scrape as the parser read it.
struct Scrape {
    samples: Vec<Value>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        // Debian's interpreter: the package python3-prometheus-client installs there.
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 (`cargo xtask setup` installs python3-prometheus-client)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "prometheus_client refused the scrape: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let samples: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        assert!(!samples.is_empty(), "no samples in {text}");
        Scrape { samples, text }
    }

    /// The value of the one sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Value> = self
            .samples
            .iter()
            .filter(|sample| {
                sample["name"] == name
                    && labels
                        .iter()
                        .all(|(label, text)| sample["labels"][label] == *text)
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {labels:?}: {} samples in\n{}",
            found.len(),
            self.text
        );
        found[0]["value"].as_f64().unwrap()
    }

    /// Every family's type, by name: counters' names end in `_total` in the text.
    fn types(&self) -> BTreeMap<String, String> {
        self.samples
            .iter()
            .map(|sample| {
                (
                    sample["name"].as_str().unwrap().to_string(),
                    sample["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// `low <= scraped <= high`, for counters other traffic moves.
fn between(what: &str, scraped: f64, low: &Value, high: &Value) {
    let (low, high) = (low.as_f64().unwrap(), high.as_f64().unwrap());
    assert!(
        low <= scraped && scraped <= high,
        "{what}: {scraped} not within {low}..={high}"
    );
}

/// Removes the firewall and detaches steering when the test ends, pass or fail.
struct Attached {
    namespace: String,
    iface: String,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let (ns, iface) = (&self.namespace, &self.iface);
        let _ = fastpath(&["--netns", ns, "firewall", "remove", "--iface", iface]);
        let _ = fastpath(&["--netns", ns, "xdp", "detach", "--iface", iface]);
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn metrics_of_tracer_steering_chain_and_firewall_parse_and_match_the_cli() {
    lab::require_root("serve_metrics");
    let lab = VxlanLab::for_test("tm", Underlay::V6, 4789);
    let (one, two) = (&lab.hosts[0], &lab.hosts[1]);
    let ns = lab.namespace("h1");
    let iface = one.underlay.iface.clone();
    let tracers = Tracers::load(&ns, &[(&iface, "xdp")]);
    let attached = Attached {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    json(&["--netns", &ns, "xdp", "attach", "--iface", &iface]);
    let dir = TempDir::new("serve-metrics");
    let rules = dir.0.join("rules.toml");
    std::fs::write(
        &rules,
        "default = \"accept\"\n[[rule]]\nname = \"vxlan\"\nproto = \"udp\"\ndst_port = 4789\naction = \"accept\"\n",
    )
    .unwrap();
    json(&[
        "--netns",
        &ns,
        "firewall",
        "apply",
        "--iface",
        &iface,
        rules.to_str().unwrap(),
    ]);

    // 30 inner datagrams from host 2 to host 1, received (no ICMP error comes back).
    const COUNT: u64 = 30;
    let target = SocketAddr::new(one.vxlan.ipv4, 9300);
    let _receiver = Lab::udp_socket(&one.vxlan.namespace, target).unwrap();
    let sender = Lab::udp_socket(&two.vxlan.namespace, SocketAddr::new(two.vxlan.ipv4, 0)).unwrap();
    for _ in 0..COUNT {
        sender.send_to(&[7u8; 48], target).unwrap();
    }
    let pair_packets = |snapshot: &Value| -> u64 {
        snapshot["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|tunnel| tunnel["pairs"].as_array().unwrap())
            .filter(|pair| pair["protocol"] == 17)
            .map(|pair| {
                pair["a_to_b"]["packets"].as_u64().unwrap()
                    + pair["b_to_a"]["packets"].as_u64().unwrap()
            })
            .sum()
    };
    lab::wait_until(Duration::from_secs(10), "the tracer counts 30", || {
        pair_packets(&tracers.snapshot(&iface, "xdp")) == COUNT
    });

    let cli = || {
        (
            tracers.snapshot(&iface, "xdp"),
            json(&["--netns", &ns, "xdp", "status", "--iface", &iface]),
            json(&["--netns", &ns, "module", "list", "--iface", &iface]),
            json(&["--netns", &ns, "firewall", "status", "--iface", &iface]),
        )
    };
    let server = Server::start(&ns, &[]);
    let before = cli();
    let (status, body) = server.get("/metrics");
    let after = cli();
    assert!(status.contains("200"), "{status}");
    let scrape = Scrape::parse(body);

    // Conventions: counters end in _total; every family has a type.
    for (name, kind) in scrape.types() {
        assert!(name.starts_with("fastpath_"), "{name}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} without _total");
        }
    }

    // The tracer: only the test's traffic moves the pair: equal.
    let (vtep_one, vtep_two) = (
        one.vtep(Underlay::V6).to_string(),
        two.vtep(Underlay::V6).to_string(),
    );
    let (inner_one, inner_two) = (one.vxlan.ipv4.to_string(), two.vxlan.ipv4.to_string());
    let pair_labels = [
        ("iface", iface.as_str()),
        ("hook", "xdp"),
        ("outer_src", vtep_two.as_str()),
        ("outer_dst", vtep_one.as_str()),
        ("inner_src", inner_two.as_str()),
        ("inner_dst", inner_one.as_str()),
        ("protocol", "17"),
    ];
    assert_eq!(
        scrape.value("fastpath_tunnel_packets_total", &pair_labels),
        COUNT as f64
    );
    let tunnel = &after.0["tunnels"][0];
    let flow = if tunnel["outer_a"] == vtep_two.as_str() {
        &tunnel["pairs"][0]["a_to_b"]
    } else {
        &tunnel["pairs"][0]["b_to_a"]
    };
    assert_eq!(
        scrape.value("fastpath_tunnel_bytes_total", &pair_labels),
        flow["bytes"].as_f64().unwrap()
    );
    let chain = [("iface", iface.as_str()), ("hook", "xdp")];
    for (class, field) in [
        ("tunnel", "tunnel_packets"),
        ("malformed", "malformed_packets"),
    ] {
        assert_eq!(
            scrape.value(
                "fastpath_tracer_packets_total",
                &[&chain[..], &[("class", class)]].concat()
            ),
            after.0[field].as_f64().unwrap(),
            "{class}"
        );
    }
    between(
        "tracer other",
        scrape.value(
            "fastpath_tracer_packets_total",
            &[&chain[..], &[("class", "other")]].concat(),
        ),
        &before.0["other_packets"],
        &after.0["other_packets"],
    );

    // Steering and the chain's modules: the underlay's chatter moves them.
    for action in ["pass", "drop", "xsk", "malformed", "non_ip"] {
        between(
            &format!("steering {action}"),
            scrape.value(
                "fastpath_steering_packets_total",
                &[("iface", &iface), ("action", action)],
            ),
            &before.1["counters"][action],
            &after.1["counters"][action],
        );
    }
    let modules = |listing: &Value| -> BTreeMap<String, Value> {
        listing["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|module| {
                (
                    module["name"].as_str().unwrap().to_string(),
                    module["packets"].clone(),
                )
            })
            .collect()
    };
    let (modules_before, modules_after) = (modules(&before.2), modules(&after.2));
    assert!(
        ["vxlan-trace", "steer", "firewall"]
            .iter()
            .all(|name| modules_after.contains_key(*name)),
        "{modules_after:?}"
    );
    for (name, packets) in &modules_after {
        for (verdict, high) in packets.as_object().unwrap() {
            let low = modules_before[name]
                .get(verdict)
                .cloned()
                .unwrap_or(Value::from(0));
            between(
                &format!("{name} {verdict}"),
                scrape.value(
                    "fastpath_module_packets_total",
                    &[&chain[..], &[("module", name), ("verdict", verdict)]].concat(),
                ),
                &low,
                high,
            );
        }
    }

    // The firewall: the tunnel's rule sees only the test's datagrams; the default sees
    // the chatter.
    let rule = |status: &Value, name: &str| -> Value {
        if name == "default" {
            return status["default"].clone();
        }
        status["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["name"] == name)
            .cloned()
            .unwrap()
    };
    let vxlan_rule = [("iface", iface.as_str()), ("rule", "vxlan")];
    assert_eq!(
        scrape.value("fastpath_firewall_rule_packets_total", &vxlan_rule),
        rule(&after.3, "vxlan")["packets"].as_f64().unwrap()
    );
    assert!(scrape.value("fastpath_firewall_rule_packets_total", &vxlan_rule) >= COUNT as f64);
    assert_eq!(
        scrape.value("fastpath_firewall_rule_bytes_total", &vxlan_rule),
        rule(&after.3, "vxlan")["bytes"].as_f64().unwrap()
    );
    for field in ["packets", "bytes"] {
        between(
            &format!("firewall default {field}"),
            scrape.value(
                &format!("fastpath_firewall_rule_{field}_total"),
                &[
                    ("iface", iface.as_str()),
                    ("rule", "default"),
                    ("default_verdict", "accept"),
                ],
            ),
            &rule(&before.3, "default")[field],
            &rule(&after.3, "default")[field],
        );
    }
    let conntrack = (&before.3["conntrack"], &after.3["conntrack"]);
    assert_eq!(
        scrape.value("fastpath_conntrack_limit_entries", &[]),
        conntrack.1["limit"].as_f64().unwrap()
    );
    assert_eq!(
        scrape.value("fastpath_conntrack_capacity_entries", &[]),
        conntrack.1["capacity"].as_f64().unwrap()
    );
    for (name, field) in [
        ("fastpath_conntrack_created_total", "created"),
        ("fastpath_conntrack_refused_total", "refused_full"),
        ("fastpath_conntrack_invalid_packets_total", "invalid"),
    ] {
        between(
            name,
            scrape.value(name, &[]),
            &conntrack.0[field],
            &conntrack.1[field],
        );
    }
    assert!(scrape.value("fastpath_conntrack_created_total", &[]) >= 1.0);
    assert_eq!(scrape.value("fastpath_collect_errors", &[]), 0.0);
    drop(server);
    drop(attached);
    drop(tracers);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn metrics_of_a_load_balancer_parse_and_match_its_status() {
    lab::require_root("serve_metrics");
    let setup = lb_common::setup("tb", 1);
    let text = lb_common::config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let appliance = lb_common::Appliance::start(&setup, &text);
    const GETS: usize = 30;
    let counts = lb_common::tally(&lb_common::http_gets(&setup, true, GETS));
    assert_eq!(counts.iter().sum::<usize>(), GETS);
    let control = appliance.control.to_str().unwrap().to_string();
    let server = Server::start(&appliance.namespace, &["--lb-control", &control]);
    let before = appliance.status();
    let (status, body) = server.get("/metrics");
    let after = appliance.status();
    assert!(status.contains("200"), "{status}");
    let scrape = Scrape::parse(body);
    let lb = after["interface"].as_str().unwrap().to_string();
    let vips = (
        before["vips"].as_array().unwrap(),
        after["vips"].as_array().unwrap(),
    );
    let mut connections = 0.0;
    for (vip_before, vip_after) in vips.0.iter().zip(vips.1) {
        let vip = vip_after["vip"].as_str().unwrap();
        for field in ["packets", "bytes", "connections"] {
            between(
                &format!("{vip} {field}"),
                scrape.value(
                    &format!("fastpath_lb_vip_{field}_total"),
                    &[("lb", &lb), ("vip", vip)],
                ),
                &vip_before[field],
                &vip_after[field],
            );
        }
        for (backend_before, backend_after) in vip_before["backends"]
            .as_array()
            .unwrap()
            .iter()
            .zip(vip_after["backends"].as_array().unwrap())
        {
            let address = backend_after["address"].as_str().unwrap();
            let labels = [("lb", lb.as_str()), ("vip", vip), ("backend", address)];
            for field in ["packets", "bytes", "connections"] {
                between(
                    &format!("{vip} {address} {field}"),
                    scrape.value(&format!("fastpath_lb_backend_{field}_total"), &labels),
                    &backend_before[field],
                    &backend_after[field],
                );
            }
            connections += scrape.value("fastpath_lb_backend_connections_total", &labels);
            assert_eq!(
                scrape.value("fastpath_lb_backend_weight", &labels),
                backend_after["weight"].as_f64().unwrap()
            );
            assert_eq!(scrape.value("fastpath_lb_backend_up", &labels), 1.0);
        }
    }
    assert!(
        connections >= GETS as f64,
        "{connections} connections for {GETS} GETs"
    );
    let workers = |status: &Value| -> Vec<Value> {
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry.get("total").is_none())
            .cloned()
            .collect()
    };
    let (workers_before, workers_after) = (workers(&before), workers(&after));
    assert!(!workers_after.is_empty());
    for (low, high) in workers_before.iter().zip(&workers_after) {
        let queue = high["queue"].to_string();
        let labels = [
            ("lb", lb.as_str()),
            ("iface", high["iface"].as_str().unwrap()),
            ("queue", queue.as_str()),
        ];
        for (name, field) in [
            ("fastpath_lb_worker_received_packets_total", "rx_packets"),
            ("fastpath_lb_worker_received_bytes_total", "rx_bytes"),
            ("fastpath_lb_worker_sent_packets_total", "tx_packets"),
            ("fastpath_lb_worker_sent_bytes_total", "tx_bytes"),
            ("fastpath_lb_worker_socket_drops_total", "socket_drops"),
        ] {
            between(
                &format!("worker {queue} {field}"),
                scrape.value(name, &labels),
                &low[field],
                &high[field],
            );
        }
        let busy = scrape.value("fastpath_lb_worker_busy_ratio", &labels);
        assert!((0.0..=1.0).contains(&busy), "busy ratio {busy}");
    }
    assert_eq!(scrape.value("fastpath_collect_errors", &[]), 0.0);
}
