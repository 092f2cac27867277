//! Everything fastpath counts, collected in one pass and rendered in the Prometheus text
//! format (version 0.0.4) or served as JSON.
//!
//! Sources, each read from the kernel and the pinned maps, changing nothing:
//! - every chain (each interface's XDP, tc-ingress and tc-egress chain):
//!   `offload::modules::list`, the per-module verdict counters and run time;
//! - every steering attachment: `offload::status`, the action and rule counters;
//! - every chain running `vxlan-trace`: [`crate::tunnels::snapshot`];
//! - every interface's firewall: `firewall::status`, its rules' counters and the node's
//!   conntrack table (reading it removes expired entries, as `fastpath firewall status`
//!   does: they are dead already);
//! - every load balancer appliance named in [`Sources`]: its control socket's `status`
//!   (the LB's VIP, backend and worker counters live in its process, not in pinned maps).
//!
//! Only interfaces of the network namespace the process runs in are collected: bpffs pins
//! are shared by every namespace, interface names are not.

use std::{
    ffi::CString,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use nfv_apps::lb::{
    config::DEFAULT_CONTROL,
    control::{self, Request},
};

use offload::{
    Status, TRANSIENT,
    modules::{self, ChainAt, ChainListing, Hook, ModuleError, builtin::VXLAN_TRACE_MODULE},
};
use serde::Serialize;

use crate::tunnels::{self, TraceSnapshot};

/// One collection of everything.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Every chain, with its modules' counters.
    pub chains: Vec<ChainListing>,
    /// Every steering attachment.
    pub steering: Vec<Status>,
    /// Every tracer's statistics.
    pub tunnels: Vec<TraceSnapshot>,
    /// Every interface's firewall, each with the node's conntrack table.
    pub firewalls: Vec<firewall::Status>,
    /// Every load balancer that answered.
    pub load_balancers: Vec<LoadBalancer>,
    /// What could not be read, each naming its interface or socket (the rest is still
    /// served).
    pub errors: Vec<String>,
}

/// A load balancer appliance's status, as its control socket answered.
#[derive(Debug, Serialize)]
pub struct LoadBalancer {
    /// Its control socket.
    pub control: PathBuf,
    /// What `fastpath lb status` shows.
    pub status: nfv_apps::lb::control::Status,
}

/// Where to collect from beyond the pins: the load balancers' control sockets.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Control sockets of load balancer appliances. Empty: the default socket
    /// (`/run/fastpath/lb.sock`) when something listens there.
    pub lb_controls: Vec<PathBuf>,
}

impl Sources {
    /// The sockets to ask, and whether a failure is worth reporting (a named socket is;
    /// the default one is asked only when it exists, and no appliance is no error).
    fn lb_controls(&self) -> Vec<(PathBuf, bool)> {
        if self.lb_controls.is_empty() {
            let default = Path::new(DEFAULT_CONTROL);
            return if default.exists() {
                vec![(default.to_path_buf(), false)]
            } else {
                Vec::new()
            };
        }
        self.lb_controls
            .iter()
            .map(|path| (path.clone(), true))
            .collect()
    }
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
pub fn collect(sources: &Sources) -> Collected {
    gather(sources, true)
}

/// Reads the tracers only (what the tunnel graph needs every second: no load balancer
/// asked, no conntrack table swept); the rest of the collection stays empty.
pub fn collect_tunnels() -> Collected {
    gather(&Sources::default(), false)
}

/// Reads the tracers, and with `everything` every other source too.
fn gather(sources: &Sources, everything: bool) -> Collected {
    let mut collected = Collected::default();
    let controls = if everything {
        sources.lb_controls()
    } else {
        Vec::new()
    };
    for (path, report) in controls {
        match control::send(&path, &Request::Status) {
            Ok(response) => match (response.status, response.error) {
                (Some(status), _) => collected.load_balancers.push(LoadBalancer {
                    control: path,
                    status,
                }),
                (None, error) => collected.errors.push(format!(
                    "load balancer at {}: {}",
                    path.display(),
                    error.unwrap_or_else(|| "no status in its answer".into())
                )),
            },
            Err(error) if report => collected
                .errors
                .push(format!("load balancer at {}: {error}", path.display())),
            Err(_) => {}
        }
    }
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
                    if everything {
                        collected.chains.push(listing);
                    }
                }
                Err(ModuleError::NoChain { .. }) => {}
                Err(error) => collected.errors.push(format!("{at}: {error}")),
            }
        }
        if !everything {
            continue;
        }
        if offload::Pins::for_iface(&iface).exists() {
            match offload::status(&iface) {
                Ok(status) => collected.steering.push(status),
                Err(error) => collected.errors.push(format!("{iface}: {error}")),
            }
        }
        match firewall::status(&iface) {
            Ok(status) => collected.firewalls.push(status),
            Err(firewall::FirewallError::NotLoaded { .. }) => {}
            Err(error) => collected.errors.push(format!("{iface}: {error}")),
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
    let families = [
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
    ]
    .into_iter()
    .chain(firewall_families(&collected.firewalls))
    .chain(lb_families(&collected.load_balancers))
    .chain([errors]);
    for family in families {
        family.render(&mut out);
    }
    out
}

/// Each firewall's rule counters, and the node's conntrack table once (every status
/// carries the same node-wide table).
fn firewall_families(firewalls: &[firewall::Status]) -> Vec<Family> {
    let mut packets = Family::new(
        "fastpath_firewall_rule_packets_total",
        "counter",
        "Packets each firewall rule decided (rule=\"default\": the default policy).",
    );
    let mut bytes = Family::new(
        "fastpath_firewall_rule_bytes_total",
        "counter",
        "Bytes each firewall rule decided (first buffer of each packet).",
    );
    let mut masks = Family::new(
        "fastpath_firewall_masks",
        "gauge",
        "Distinct masks of the running policy: hash probes per packet.",
    );
    for status in firewalls {
        for (rule, verdict) in status
            .rules
            .iter()
            .map(|rule| (rule, ""))
            .chain([(&status.default, status.default_verdict)])
        {
            let labels = vec![
                ("iface", status.iface.clone()),
                ("rule", rule.name.clone()),
                ("default_verdict", verdict.to_string()),
            ];
            packets.add(labels.clone(), rule.packets as f64);
            bytes.add(labels, rule.bytes as f64);
        }
        masks.add(
            vec![("iface", status.iface.clone())],
            f64::from(status.masks),
        );
    }
    let mut families = vec![packets, bytes, masks];
    let gauges = [
        (
            "fastpath_conntrack_entries",
            "Connections in the node's conntrack table.",
        ),
        (
            "fastpath_conntrack_limit_entries",
            "Connections allowed before new flows are refused.",
        ),
        (
            "fastpath_conntrack_capacity_entries",
            "Entries the conntrack table has room for.",
        ),
        (
            "fastpath_conntrack_full",
            "1 when the table is at its limit: new flows are dropped.",
        ),
    ];
    let counters = [
        (
            "fastpath_conntrack_created_total",
            "Conntrack entries ever created.",
        ),
        (
            "fastpath_conntrack_refused_total",
            "New flows refused because the table was full (their packets dropped).",
        ),
        (
            "fastpath_conntrack_invalid_packets_total",
            "Packets whose connection state was invalid.",
        ),
    ];
    let table = firewalls.first().map(|status| &status.conntrack);
    for (index, (name, help)) in gauges.into_iter().enumerate() {
        let mut family = Family::new(name, "gauge", help);
        if let Some(table) = table {
            let value = [
                table.entries as f64,
                f64::from(table.limit),
                f64::from(table.capacity),
                f64::from(u8::from(table.full)),
            ][index];
            family.add(Vec::new(), value);
        }
        families.push(family);
    }
    for (index, (name, help)) in counters.into_iter().enumerate() {
        let mut family = Family::new(name, "counter", help);
        if let Some(table) = table {
            let value = [table.created, table.refused_full, table.invalid][index];
            family.add(Vec::new(), value as f64);
        }
        families.push(family);
    }
    families
}

/// Each load balancer's VIPs, backends and workers, labelled by the interface it serves.
fn lb_families(balancers: &[LoadBalancer]) -> Vec<Family> {
    let mut vip = [
        (
            "fastpath_lb_vip_packets_total",
            "Packets sent to a VIP's backends.",
        ),
        (
            "fastpath_lb_vip_bytes_total",
            "Bytes sent to a VIP's backends.",
        ),
        (
            "fastpath_lb_vip_connections_total",
            "New flows scheduled to a VIP's backends.",
        ),
    ]
    .map(|(name, help)| Family::new(name, "counter", help));
    let mut backend = [
        (
            "fastpath_lb_backend_packets_total",
            "Packets sent to a backend.",
        ),
        (
            "fastpath_lb_backend_bytes_total",
            "Bytes sent to a backend.",
        ),
        (
            "fastpath_lb_backend_connections_total",
            "New flows scheduled to a backend.",
        ),
    ]
    .map(|(name, help)| Family::new(name, "counter", help));
    let mut weight = Family::new(
        "fastpath_lb_backend_weight",
        "gauge",
        "A backend's share of new flows.",
    );
    let mut up = Family::new(
        "fastpath_lb_backend_up",
        "gauge",
        "1 when a backend takes new flows: active and healthy.",
    );
    let mut worker = [
        (
            "fastpath_lb_worker_received_packets_total",
            "Packets a worker received.",
        ),
        (
            "fastpath_lb_worker_received_bytes_total",
            "Bytes a worker received.",
        ),
        (
            "fastpath_lb_worker_sent_packets_total",
            "Packets a worker transmitted.",
        ),
        (
            "fastpath_lb_worker_sent_bytes_total",
            "Bytes a worker transmitted.",
        ),
        (
            "fastpath_lb_worker_socket_drops_total",
            "Frames the kernel dropped before the worker saw them (socket rings).",
        ),
    ]
    .map(|(name, help)| Family::new(name, "counter", help));
    let mut drops = Family::new(
        "fastpath_lb_worker_drops_total",
        "counter",
        "Packets a worker dropped, by reason.",
    );
    let mut busy = Family::new(
        "fastpath_lb_worker_busy_ratio",
        "gauge",
        "The share of a worker's serving time spent on packets (0 to 1).",
    );
    let mut nat = Family::new("fastpath_lb_nat_entries", "gauge", "NAT mappings in use.");
    let mut evictions = Family::new(
        "fastpath_lb_conntrack_evictions_total",
        "counter",
        "Connections evicted from full connection tables.",
    );
    for balancer in balancers {
        let status = &balancer.status;
        let lb = || ("lb", status.interface.clone());
        for entry in &status.vips {
            let labels = vec![lb(), ("vip", entry.vip.clone())];
            for (family, value) in
                vip.iter_mut()
                    .zip([entry.packets, entry.bytes, entry.connections])
            {
                family.add(labels.clone(), value as f64);
            }
            for server in &entry.backends {
                let labels = vec![
                    lb(),
                    ("vip", entry.vip.clone()),
                    ("backend", server.address.to_string()),
                    ("port", server.port.to_string()),
                ];
                for (family, value) in
                    backend
                        .iter_mut()
                        .zip([server.packets, server.bytes, server.connections])
                {
                    family.add(labels.clone(), value as f64);
                }
                weight.add(labels.clone(), f64::from(server.weight));
                let active = server.state == nfv_apps::lb::tables::BackendState::Active;
                up.add(labels, f64::from(u8::from(active && server.healthy)));
            }
        }
        for stats in status.workers() {
            let labels = vec![
                lb(),
                ("iface", stats.iface.clone()),
                ("queue", stats.queue.to_string()),
            ];
            for (family, value) in worker.iter_mut().zip([
                stats.rx_packets,
                stats.rx_bytes,
                stats.tx_packets,
                stats.tx_bytes,
                stats.socket_drops,
            ]) {
                family.add(labels.clone(), value as f64);
            }
            for (reason, count) in stats.drops.iter() {
                let mut labels = labels.clone();
                labels.push(("reason", reason.name().to_string()));
                drops.add(labels, count as f64);
            }
            busy.add(labels, stats.busy_percent / 100.0);
        }
        nat.add(vec![lb()], status.nat_entries as f64);
        evictions.add(vec![lb()], status.conntrack_evictions as f64);
    }
    vip.into_iter()
        .chain(backend)
        .chain([weight, up])
        .chain(worker)
        .chain([drops, busy, nat, evictions])
        .collect()
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
        assert!(text.contains("# TYPE fastpath_firewall_rule_packets_total counter"));
        assert!(text.contains("# TYPE fastpath_lb_backend_packets_total counter"));
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
