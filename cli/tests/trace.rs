//! `fastpath trace vxlan` and `fastpath serve` on the VXLAN lab (`lab::vxlan`): three
//! hosts on a bridged underlay, each with a kernel `vxlan` device. The tracer runs on host
//! 1's underlay interface, on XDP ingress and TC egress; known counts of inner UDP
//! datagrams cross the mesh and every pair's counts must equal what was sent, per
//! direction; malformed VXLAN is counted as malformed; `/metrics`, read by a Prometheus
//! text parser, says what the CLI says; traffic loses nothing while the tracer comes and
//! goes.

mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lab::{
    Lab,
    raw::RawSocket,
    vxlan::{Underlay, VxlanLab},
};
use serde_json::Value;
use support::{
    fastpath, json,
    serve::{Server, Tracers},
};
use wire::build::FrameBuilder;

/// Bytes of each inner datagram's payload.
const PAYLOAD: usize = 64;
/// The inner UDP port receivers listen on.
const INNER_PORT: u16 = 9100;

/// The tracer on host 1's underlay interface, loaded by the first snapshot of a hook,
/// unloaded from its XDP and TC egress chains when the test ends, pass or fail.
struct Tracer<'a> {
    lab: &'a VxlanLab,
    tracers: Tracers,
}

impl Tracer<'_> {
    fn new(lab: &VxlanLab) -> Tracer<'_> {
        let iface = lab.hosts[0].underlay.iface.as_str();
        Tracer {
            lab,
            tracers: Tracers::new(
                &lab.namespace("h1"),
                &[(iface, "xdp"), (iface, "tc-egress")],
            ),
        }
    }

    fn ns(&self) -> String {
        self.lab.namespace("h1")
    }

    fn iface(&self) -> &str {
        &self.lab.hosts[0].underlay.iface
    }

    /// Loads the tracer on `hook` if it is not there, and returns its snapshot.
    fn snapshot(&self, hook: &str) -> Value {
        self.tracers.snapshot(self.iface(), hook)
    }

    fn unload(&self, hook: &str) {
        self.tracers.unload(self.iface(), hook);
    }
}

/// Detaches the steering program when the test ends, pass or fail.
struct Steered {
    ns: String,
    iface: String,
}

impl Drop for Steered {
    fn drop(&mut self) {
        let _ = fastpath(&["--netns", &self.ns, "xdp", "detach", "--iface", &self.iface]);
    }
}

/// Sends `count` datagrams from host `from` to host `to` (1-based) over the tunnel, each
/// carrying its sequence number, and waits until the receiver has every one of them,
/// unchanged.
fn send(lab: &VxlanLab, from: usize, to: usize, count: u32, inner_v6: bool) {
    let (source, target) = (&lab.hosts[from - 1].vxlan, &lab.hosts[to - 1].vxlan);
    let address = |end: &lab::Endpoint| if inner_v6 { end.ipv6 } else { end.ipv4 };
    let receiver = Lab::udp_socket(
        &target.namespace,
        SocketAddr::new(address(target), INNER_PORT),
    )
    .unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sender = Lab::udp_socket(&source.namespace, SocketAddr::new(address(source), 0)).unwrap();
    let destination = SocketAddr::new(address(target), INNER_PORT);
    for sequence in 0..count {
        sender.send_to(&payload(sequence), destination).unwrap();
    }
    let mut seen = vec![false; count as usize];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 2048];
    while seen.iter().any(|got| !got) && Instant::now() < deadline {
        if let Ok(length) = receiver.recv(&mut buffer) {
            let sequence = u32::from_be_bytes(buffer[..4].try_into().unwrap());
            assert_eq!(
                &buffer[..length],
                &payload(sequence)[..],
                "datagram changed"
            );
            seen[sequence as usize] = true;
        }
    }
    let lost = seen.iter().filter(|got| !**got).count();
    assert_eq!(lost, 0, "host {from} -> host {to}: {lost} of {count} lost");
}

fn payload(sequence: u32) -> Vec<u8> {
    let mut bytes = vec![0xa5u8; PAYLOAD];
    bytes[..4].copy_from_slice(&sequence.to_be_bytes());
    bytes
}

/// (a -> b, b -> a) packets and bytes of the UDP pair between hosts `one` and `other`'s
/// inner IPv4 addresses, in the tunnel between their VTEPs, as (one -> other,
/// other -> one).
fn pair(lab: &VxlanLab, snapshot: &Value, one: usize, other: usize) -> ((u64, u64), (u64, u64)) {
    inner_pair(lab, snapshot, one, other, false, 17)
}

/// [`pair`] for the inner IPv4 or IPv6 addresses.
fn inner_pair(
    lab: &VxlanLab,
    snapshot: &Value,
    one: usize,
    other: usize,
    inner_v6: bool,
    protocol: u8,
) -> ((u64, u64), (u64, u64)) {
    let (one, other) = (&lab.hosts[one - 1], &lab.hosts[other - 1]);
    let (vtep_one, vtep_other) = (
        one.vtep(lab.underlay).to_string(),
        other.vtep(lab.underlay).to_string(),
    );
    let (inner_one, inner_other) = if inner_v6 {
        (one.vxlan.ipv6.to_string(), other.vxlan.ipv6.to_string())
    } else {
        (one.vxlan.ipv4.to_string(), other.vxlan.ipv4.to_string())
    };
    for tunnel in snapshot["tunnels"].as_array().unwrap() {
        let (a, b) = (
            tunnel["outer_a"].as_str().unwrap(),
            tunnel["outer_b"].as_str().unwrap(),
        );
        let flipped = if (a, b) == (vtep_one.as_str(), vtep_other.as_str()) {
            false
        } else if (a, b) == (vtep_other.as_str(), vtep_one.as_str()) {
            true
        } else {
            continue;
        };
        assert_eq!(tunnel["kind"], "vxlan");
        assert_eq!(tunnel["vni"], lab::vxlan::VNI);
        for found in tunnel["pairs"].as_array().unwrap() {
            let sides = (found["inner_a"].as_str(), found["inner_b"].as_str());
            let matches = if flipped {
                sides == (Some(inner_other.as_str()), Some(inner_one.as_str()))
            } else {
                sides == (Some(inner_one.as_str()), Some(inner_other.as_str()))
            };
            if !matches || found["protocol"] != protocol {
                continue;
            }
            let flow = |name: &str| {
                (
                    found[name]["packets"].as_u64().unwrap(),
                    found[name]["bytes"].as_u64().unwrap(),
                )
            };
            let (a_to_b, b_to_a) = (flow("a_to_b"), flow("b_to_a"));
            return if flipped {
                (b_to_a, a_to_b)
            } else {
                (a_to_b, b_to_a)
            };
        }
    }
    ((0, 0), (0, 0))
}

/// Bytes of one outer frame carrying one inner datagram.
fn frame_bytes(underlay: Underlay, inner_v6: bool) -> u64 {
    let outer_ip = match underlay {
        Underlay::V4 => 20,
        Underlay::V6 => 40,
    };
    let inner_ip = if inner_v6 { 40 } else { 20 };
    (14 + outer_ip + 8 + 8 + 14 + inner_ip + 8 + PAYLOAD) as u64
}

fn exact_counts(tag: &str, underlay: Underlay, port: u16) {
    lab::require_root("trace");
    let lab = VxlanLab::for_test(tag, underlay, port);
    let tracer = Tracer::new(&lab);
    let xdp = tracer.snapshot("xdp");
    let egress = tracer.snapshot("tc-egress");
    assert_eq!(xdp["tunnel_packets"], 0, "{xdp}");
    assert_eq!(egress["tunnel_packets"], 0, "{egress}");

    let sent = [(1, 2, 100), (2, 1, 60), (1, 3, 40), (3, 1, 25), (2, 3, 30)];
    for (from, to, count) in sent {
        send(&lab, from, to, count, false);
    }
    // Inner IPv6 too, between hosts 1 and 2.
    send(&lab, 1, 2, 11, true);
    send(&lab, 2, 1, 13, true);
    let per_frame = frame_bytes(underlay, false);
    let per_frame6 = frame_bytes(underlay, true);
    let xdp = tracer.snapshot("xdp");
    let egress = tracer.snapshot("tc-egress");
    // Host 1 receives on XDP ingress and sends on TC egress; 2 <-> 3 never crosses it.
    assert_eq!(
        pair(&lab, &xdp, 1, 2),
        ((0, 0), (60, 60 * per_frame)),
        "{xdp}"
    );
    assert_eq!(
        pair(&lab, &xdp, 1, 3),
        ((0, 0), (25, 25 * per_frame)),
        "{xdp}"
    );
    assert_eq!(pair(&lab, &xdp, 2, 3), ((0, 0), (0, 0)), "{xdp}");
    assert_eq!(
        pair(&lab, &egress, 1, 2),
        ((100, 100 * per_frame), (0, 0)),
        "{egress}"
    );
    assert_eq!(
        pair(&lab, &egress, 1, 3),
        ((40, 40 * per_frame), (0, 0)),
        "{egress}"
    );
    assert_eq!(
        inner_pair(&lab, &xdp, 1, 2, true, 17),
        ((0, 0), (13, 13 * per_frame6)),
        "{xdp}"
    );
    assert_eq!(
        inner_pair(&lab, &egress, 1, 2, true, 17),
        ((11, 11 * per_frame6), (0, 0)),
        "{egress}"
    );
    assert_eq!(xdp["malformed_packets"], 0, "{xdp}");
    assert_eq!(xdp["evictions"], 0, "{xdp}");
    assert_eq!(xdp["tunnel_packets"], 85 + 13, "{xdp}");
    assert_eq!(egress["tunnel_packets"], 140 + 11, "{egress}");

    // Malformed VXLAN from host 2's underlay, straight to host 1's: a header without the
    // I flag, and a good header followed by a truncated inner Ethernet header.
    let (one, two) = (&lab.hosts[0].underlay, &lab.hosts[1].underlay);
    let raw = RawSocket::open(&two.namespace, &two.iface).unwrap();
    let inner = FrameBuilder::udp(lab.hosts[1].vxlan.ipv4, lab.hosts[0].vxlan.ipv4)
        .payload(vec![0u8; 16])
        .build();
    let vni = lab::vxlan::VNI.to_be_bytes();
    let bad_flags = [&[0u8, 0, 0, 0, vni[1], vni[2], vni[3], 0][..], &inner].concat();
    let truncated = [
        &[0x08u8, 0, 0, 0, vni[1], vni[2], vni[3], 0][..],
        &inner[..6],
    ]
    .concat();
    for tunnel_payload in [bad_flags, truncated] {
        let mut frame = FrameBuilder::udp(two.vtep_of(underlay), one.vtep_of(underlay))
            .ports(40000, port)
            .payload(tunnel_payload);
        frame.src_mac = two.read_mac().unwrap();
        frame.dst_mac = one.read_mac().unwrap();
        raw.send(&frame.build()).unwrap();
    }
    let mut malformed = xdp.clone();
    lab::wait_until(
        Duration::from_secs(5),
        "two malformed packets counted",
        || {
            malformed = tracer.snapshot("xdp");
            malformed["malformed_packets"] == 2
        },
    );
    assert_eq!(malformed["tunnel_packets"], 85 + 13, "{malformed}");
    assert_eq!(pair(&lab, &malformed, 1, 2), pair(&lab, &xdp, 1, 2));

    // Steering joins the chain behind the tracer, for its counters in /metrics.
    let ns = tracer.ns();
    let steering = Steered {
        ns: ns.clone(),
        iface: tracer.iface().to_string(),
    };
    json(&["--netns", &ns, "xdp", "attach", "--iface", &steering.iface]);
    let steer_status = || json(&["--netns", &ns, "xdp", "status", "--iface", &steering.iface]);
    let listed = || {
        json(&["--netns", &ns, "module", "list", "--iface", &steering.iface])["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|module| {
                (
                    module["name"].as_str().unwrap().to_string(),
                    module["packets"]["continue"].as_u64().unwrap_or(0),
                )
            })
            .collect::<Vec<_>>()
    };
    let modules_before = listed();
    assert_eq!(
        modules_before
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["vxlan-trace", "steer"],
        "the tracer sees every packet first"
    );
    let steer_before = steer_status();

    // /metrics says what the CLI says.
    let server = Server::start(&lab.namespace("h1"), &[]);
    let (status, body) = server.get("/metrics");
    assert!(status.contains("200"), "{status}");
    let cli = tracer.snapshot("xdp");
    let steer_after = steer_status();
    let modules_after = listed();
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, String)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == metric
                    && labels
                        .iter()
                        .all(|(name, text)| sample.labels.get(name) == Some(text.as_str()))
            })
            .map(|sample| match sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => value,
                _ => panic!("{metric} is not a plain value"),
            })
    };
    let host = |n: usize| lab.hosts[n - 1].clone();
    for (from, to) in [(2, 1), (3, 1)] {
        let labels = [
            ("iface", tracer.iface().to_string()),
            ("hook", "xdp".to_string()),
            ("outer_src", host(from).vtep(underlay).to_string()),
            ("outer_dst", host(to).vtep(underlay).to_string()),
            ("inner_src", host(from).vxlan.ipv4.to_string()),
            ("inner_dst", host(to).vxlan.ipv4.to_string()),
            ("protocol", "17".to_string()),
            ("vni", lab::vxlan::VNI.to_string()),
        ];
        let (_, (packets, bytes)) = pair(&lab, &cli, to, from);
        assert_eq!(
            value("fastpath_tunnel_packets_total", &labels),
            Some(packets as f64),
            "{from} -> {to}: {body}"
        );
        assert_eq!(
            value("fastpath_tunnel_bytes_total", &labels),
            Some(bytes as f64)
        );
    }
    let chain = [
        ("iface", tracer.iface().to_string()),
        ("hook", "xdp".to_string()),
    ];
    for (class, field) in [
        ("malformed", "malformed_packets"),
        ("tunnel", "tunnel_packets"),
    ] {
        let labels = [&chain[..], &[("class", class.to_string())]].concat();
        assert_eq!(
            value("fastpath_tracer_packets_total", &labels),
            cli[field].as_u64().map(|count| count as f64),
            "{class}"
        );
    }
    let labels = [
        &chain[..],
        &[
            ("module", "vxlan-trace".to_string()),
            ("verdict", "continue".to_string()),
        ],
    ]
    .concat();
    assert!(
        value("fastpath_module_packets_total", &labels).is_some_and(|count| count >= 98.0),
        "{body}"
    );
    // Counters that move with the underlay's own chatter: between the CLI's readings
    // taken before and after the scrape.
    for action in ["pass", "drop", "malformed", "non_ip"] {
        let labels = [
            ("iface", tracer.iface().to_string()),
            ("action", action.to_string()),
        ];
        let scraped = value("fastpath_steering_packets_total", &labels)
            .unwrap_or_else(|| panic!("no steering {action} counter: {body}"));
        let (low, high) = (
            steer_before["counters"][action].as_u64().unwrap() as f64,
            steer_after["counters"][action].as_u64().unwrap() as f64,
        );
        assert!(
            low <= scraped && scraped <= high,
            "steering {action}: {scraped} not within {low}..={high}"
        );
    }
    for ((name, low), (_, high)) in modules_before.iter().zip(&modules_after) {
        let labels = [
            &chain[..],
            &[
                ("module", name.clone()),
                ("verdict", "continue".to_string()),
            ],
        ]
        .concat();
        let scraped = value("fastpath_module_packets_total", &labels).unwrap();
        assert!(
            *low as f64 <= scraped && scraped <= *high as f64,
            "{name} continue: {scraped} not within {low}..={high}"
        );
    }
    let (status, api) = server.get("/api/tunnels");
    assert!(status.contains("200"), "{status}");
    let api: Value = serde_json::from_str(&api).unwrap();
    let (_, all) = server.get("/api/all");
    assert_eq!(
        api.as_array().unwrap().len(),
        2,
        "xdp and tc-egress tracers: {all}"
    );
    let (status, _) = server.get("/nowhere");
    assert!(status.contains("404"), "{status}");
}

/// The VTEP address of an underlay endpoint, for the lab's family.
trait VtepOf {
    fn vtep_of(&self, underlay: Underlay) -> IpAddr;
}

impl VtepOf for lab::Endpoint {
    fn vtep_of(&self, underlay: Underlay) -> IpAddr {
        match underlay {
            Underlay::V4 => self.ipv4,
            Underlay::V6 => self.ipv6,
        }
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn pairs_count_exactly_what_crossed_an_ipv4_underlay_on_4789() {
    exact_counts("t4", Underlay::V4, 4789);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn pairs_count_exactly_what_crossed_an_ipv6_underlay_on_8472() {
    exact_counts("t6", Underlay::V6, 8472);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn traffic_loses_nothing_while_the_tracer_is_loaded_swapped_and_unloaded() {
    lab::require_root("trace");
    let lab = VxlanLab::for_test("tl", Underlay::V4, 4789);
    let tracer = Tracer::new(&lab);
    let (source, target) = (lab.hosts[1].vxlan.clone(), lab.hosts[0].vxlan.clone());
    let receiver =
        Lab::udp_socket(&target.namespace, SocketAddr::new(target.ipv4, INNER_PORT)).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    const COUNT: u32 = 4000;
    let sender = std::thread::spawn(move || {
        let socket = Lab::udp_socket(&source.namespace, SocketAddr::new(source.ipv4, 0)).unwrap();
        let destination = SocketAddr::new(target.ipv4, INNER_PORT);
        for sequence in 0..COUNT {
            socket.send_to(&payload(sequence), destination).unwrap();
            // Paced, so the traffic spans the loads and unloads below.
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    let receiving = std::thread::spawn(move || {
        let mut seen = vec![false; COUNT as usize];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buffer = [0u8; 2048];
        while seen.iter().any(|got| !got) && Instant::now() < deadline {
            if let Ok(length) = receiver.recv(&mut buffer) {
                let sequence = u32::from_be_bytes(buffer[..4].try_into().unwrap());
                assert_eq!(
                    &buffer[..length],
                    &payload(sequence)[..],
                    "datagram changed"
                );
                seen[sequence as usize] = true;
            }
        }
        seen
    });
    // The built-in objects as files, for `module swap`.
    let dir = support::TempDir::new("trace-swap");
    let objects = [
        ("xdp", offload::modules::builtin::VXLAN_TRACE_FRAGS_OBJECT),
        (
            "tc-egress",
            offload::modules::builtin::VXLAN_TRACE_TC_OBJECT,
        ),
    ]
    .map(|(hook, bytes)| {
        let path = dir.0.join(format!("vxlan-trace-{hook}.o"));
        std::fs::write(&path, bytes).unwrap();
        (hook, path.to_str().unwrap().to_string())
    });
    for round in 0..3 {
        for hook in ["xdp", "tc-egress"] {
            let snapshot = tracer.snapshot(hook);
            assert_eq!(
                snapshot["malformed_packets"], 0,
                "round {round}: {snapshot}"
            );
        }
        // A swap keeps the tables (same shapes): the counts carry on.
        for (hook, object) in &objects {
            let before = tracer.snapshot(hook)["tunnel_packets"].as_u64().unwrap();
            json(&[
                "--netns",
                &tracer.ns(),
                "module",
                "swap",
                "--iface",
                tracer.iface(),
                "--hook",
                hook,
                "vxlan-trace",
                object,
            ]);
            let after = tracer.snapshot(hook)["tunnel_packets"].as_u64().unwrap();
            assert!(
                after >= before,
                "{hook}: {before} before the swap, {after} after"
            );
        }
        for hook in ["xdp", "tc-egress"] {
            tracer.unload(hook);
        }
    }
    sender.join().unwrap();
    let seen = receiving.join().unwrap();
    let lost = seen.iter().filter(|got| !**got).count();
    assert_eq!(lost, 0, "{lost} of {COUNT} datagrams lost");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn geneve_with_options_is_traced_by_the_inner_five_tuple() {
    lab::require_root("trace");
    let lab = VxlanLab::for_test("tg", Underlay::V4, 4789);
    let tracer = Tracer::new(&lab);
    json(&[
        "--netns",
        &tracer.ns(),
        "trace",
        "vxlan",
        "--iface",
        tracer.iface(),
        "--once",
        "--granularity",
        "five-tuple",
    ]);
    // Geneve frames from host 2's VTEP to host 1's, sent from host 2's underlay: 8 bytes
    // of options to skip, then the inner frame, inner UDP 5000 -> 6000.
    let (one, two) = (&lab.hosts[0], &lab.hosts[1]);
    let raw = RawSocket::open(&two.underlay.namespace, &two.underlay.iface).unwrap();
    let inner = FrameBuilder::udp(two.vxlan.ipv4, one.vxlan.ipv4)
        .ports(5000, 6000)
        .payload(vec![0u8; 16])
        .build();
    let geneve = |version: u8| {
        let mut header = vec![(version << 6) | 2, 0, 0x65, 0x58, 0, 0, 7, 0];
        header.extend([0x01, 0x02, 0x80, 0x01, 0xaa, 0xbb, 0xcc, 0xdd]);
        header.extend(&inner);
        let mut frame = FrameBuilder::udp(two.underlay.ipv4, one.underlay.ipv4)
            .ports(40000, 6081)
            .payload(header);
        frame.src_mac = two.underlay.read_mac().unwrap();
        frame.dst_mac = one.underlay.read_mac().unwrap();
        frame.build()
    };
    for _ in 0..7 {
        raw.send(&geneve(0)).unwrap();
    }
    // A version this parser does not know: malformed.
    raw.send(&geneve(1)).unwrap();
    let mut snapshot = Value::Null;
    lab::wait_until(Duration::from_secs(5), "eight Geneve frames seen", || {
        snapshot = tracer.snapshot("xdp");
        snapshot["tunnel_packets"] == 7 && snapshot["malformed_packets"] == 1
    });
    let tunnels = snapshot["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 1, "{snapshot}");
    let tunnel = &tunnels[0];
    assert_eq!(tunnel["kind"], "geneve");
    assert_eq!(tunnel["vni"], 7);
    assert_eq!(tunnel["outer_a"], one.underlay.ipv4.to_string());
    let pair = &tunnel["pairs"][0];
    assert_eq!(pair["inner_a"], one.vxlan.ipv4.to_string(), "{snapshot}");
    assert_eq!(pair["port_a"], 6000);
    assert_eq!(pair["port_b"], 5000);
    assert_eq!(pair["protocol"], 17);
    assert_eq!(pair["b_to_a"]["packets"], 7);
    assert_eq!(pair["a_to_b"]["packets"], 0);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn tcp_through_the_tunnel_is_counted_in_wire_packets_at_tc_egress() {
    lab::require_root("trace");
    let lab = VxlanLab::for_test("tt", Underlay::V4, 4789);
    let tracer = Tracer::new(&lab);
    tracer.snapshot("tc-egress");
    const BYTES: usize = 1_000_000;
    let (one, two) = (lab.hosts[0].vxlan.clone(), lab.hosts[1].vxlan.clone());
    let server = SocketAddr::new(two.ipv4, 5201);
    let listener = Lab::run_in(&two.namespace, move || std::net::TcpListener::bind(server))
        .unwrap()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        received
    });
    let mut stream = Lab::run_in(&one.namespace, move || TcpStream::connect(server))
        .unwrap()
        .unwrap();
    let sent: Vec<u8> = (0..BYTES).map(|index| (index % 251) as u8).collect();
    stream.write_all(&sent).unwrap();
    drop(stream);
    assert!(reader.join().unwrap() == sent, "the stream arrived changed");
    // The vxlan device hands the underlay GSO buffers of many segments each: counted as
    // the packets they become, at least one per 1500 bytes of payload.
    let egress = tracer.snapshot("tc-egress");
    let ((packets, bytes), _) = inner_pair(&lab, &egress, 1, 2, false, 6);
    assert!(
        packets >= (BYTES / 1500) as u64,
        "{packets} packets for {BYTES} bytes: {egress}"
    );
    assert!(bytes >= BYTES as u64, "{bytes} bytes: {egress}");
}

/// The packets host 1's underlay interface received, as the kernel counts them.
fn rx_packets(lab: &VxlanLab) -> u64 {
    let host = &lab.hosts[0].underlay;
    let output = std::process::Command::new("ip")
        .args(["-n", &host.namespace, "-j", "-s", "link", "show", "dev"])
        .arg(&host.iface)
        .output()
        .expect("run ip");
    assert!(output.status.success(), "ip -s link: {output:?}");
    let links: Value = serde_json::from_slice(&output.stdout).unwrap();
    links[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// Every packet the tracer on host 1's XDP ingress saw, with the interface's received
/// packets read just before and just after: retried until both readings agree, so
/// nothing arrived in between (a quiet instant).
fn quiet_totals(lab: &VxlanLab, tracer: &Tracer) -> (u64, Value) {
    let mut result = None;
    lab::wait_until(
        Duration::from_secs(20),
        "a quiet instant on host 1's underlay",
        || {
            let received = rx_packets(lab);
            let snapshot = tracer.snapshot("xdp");
            if rx_packets(lab) != received {
                return false;
            }
            result = Some((received, snapshot));
            true
        },
    );
    result.unwrap()
}

fn seen_total(snapshot: &Value) -> u64 {
    ["tunnel_packets", "malformed_packets", "other_packets"]
        .iter()
        .map(|field| snapshot[field].as_u64().unwrap())
        .sum()
}

/// A process in a namespace, killed on drop.
struct Background(std::process::Child);

impl Background {
    fn start(namespace: &str, command: &[&str]) -> Background {
        Background(
            std::process::Command::new("ip")
                .args(["netns", "exec", namespace])
                .args(command)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("start {command:?}: {error}")),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Real traffic across the mesh (known counts of UDP, `curl` to `http.server`, a short
/// `iperf3`): every UDP pair counts exactly what was sent, and the tracer's totals equal
/// the interface's own received packets over the same window.
fn totals_equal_the_interface(tag: &str, underlay: Underlay, port: u16) {
    lab::require_root("trace");
    let lab = VxlanLab::for_test(tag, underlay, port);
    let tracer = Tracer::new(&lab);
    let (received_before, seen_before) = quiet_totals(&lab, &tracer);

    // UDP with known counts, received and unchanged (`send` checks).
    for (from, to, count) in [(2, 1, 70), (3, 1, 35), (2, 3, 20)] {
        send(&lab, from, to, count, false);
    }
    // curl to http.server on host 2.
    let (two, three) = (lab.hosts[1].vxlan.clone(), lab.hosts[2].vxlan.clone());
    let site = support::TempDir::new(&format!("trace-site-{tag}"));
    let page: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(site.0.join("page.txt"), &page).unwrap();
    let _http = Background::start(
        &two.namespace,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            &two.ipv4.to_string(),
            "--directory",
            site.0.to_str().unwrap(),
            "8000",
        ],
    );
    let url = format!("http://{}:8000/page.txt", two.ipv4);
    let mut body = String::new();
    lab::wait_until(Duration::from_secs(20), "http.server answers curl", || {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.hosts[0].vxlan.namespace])
            .args(["curl", "-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&output.stdout).into_owned();
        output.status.success()
    });
    assert!(body == page, "curl got {} bytes, not the page", body.len());
    // A short iperf3 (a fixed amount of data, not a duration) from host 3 to host 1.
    let one = lab.hosts[0].vxlan.clone();
    let _iperf = Background::start(
        &one.namespace,
        &["iperf3", "-s", "-1", "-B", &one.ipv4.to_string()],
    );
    lab::wait_until(Duration::from_secs(20), "iperf3 runs", || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &three.namespace])
            .args(["iperf3", "-c", &one.ipv4.to_string(), "-n", "2M", "-J"])
            .output()
            .unwrap()
            .status
            .success()
    });

    let (received_after, seen_after) = quiet_totals(&lab, &tracer);
    assert_eq!(
        seen_total(&seen_after) - seen_total(&seen_before),
        received_after - received_before,
        "the tracer saw every packet host 1's underlay received: {seen_after}"
    );
    assert_eq!(seen_after["malformed_packets"], 0, "{seen_after}");
    // UDP pairs: exactly what was sent; 2 -> 3 never reaches host 1.
    let per_frame = frame_bytes(underlay, false);
    assert_eq!(
        pair(&lab, &seen_after, 1, 2),
        ((0, 0), (70, 70 * per_frame))
    );
    assert_eq!(
        pair(&lab, &seen_after, 1, 3),
        ((0, 0), (35, 35 * per_frame))
    );
    assert_eq!(pair(&lab, &seen_after, 2, 3), ((0, 0), (0, 0)));
    // TCP: the page from host 2, iperf3's stream from host 3; and every attributed packet
    // is in exactly one pair.
    let (_, (from_two, _)) = inner_pair(&lab, &seen_after, 1, 2, false, 6);
    let (_, (from_three, _)) = inner_pair(&lab, &seen_after, 1, 3, false, 6);
    assert!(from_two > 0 && from_three > 0, "{seen_after}");
    let in_pairs: u64 = seen_after["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|tunnel| tunnel["pairs"].as_array().unwrap())
        .map(|pair| {
            pair["a_to_b"]["packets"].as_u64().unwrap()
                + pair["b_to_a"]["packets"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(in_pairs, seen_after["tunnel_packets"].as_u64().unwrap());
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn totals_equal_the_interfaces_counters_on_an_ipv4_underlay_on_8472() {
    totals_equal_the_interface("tq", Underlay::V4, 8472);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn totals_equal_the_interfaces_counters_on_an_ipv6_underlay_on_4789() {
    totals_equal_the_interface("tr", Underlay::V6, 4789);
}
