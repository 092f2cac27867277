//! An `lb` instance in a topology of the lab (`lab::topology::TopologyLab`), between the
//! clients' bridge and the router: a1 -> br-a -> lb -> r1 -> br-b -> b1 | b2, in one XDP
//! run. Clients reach a VIP (off their subnet, so through their gateway) over IPv4 and
//! IPv6; connections are spread over the backends (each http.server says who it is) and
//! their replies come back from the VIP. The hosts keep the kernel's defaults, so every
//! TCP checksum crossing the instance is partial (TX checksum offload) and bulk TCP comes
//! in 64 KB segments. A new file takes a backend away while a slow download from it runs
//! on; a bad VIP is refused naming its line, with the running topology untouched.

mod support;

use std::{collections::BTreeSet, process::Command, time::Duration};

use lab::{require_root, topology::TopologyLab, wait_until};
use support::{
    TempDir, failure,
    netns::{
        Killed, TopologyDown, download, http_server, instance_counter, ping_works, topology_apply,
        topology_show,
    },
};

const NAME: &str = "lbt";

fn topology(lab: &TopologyLab, v4_backends: &str) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    format!(
        r#"name = "{NAME}"

[[instance]]
name = "br-a"
kind = "bridge"
ports = {{ p1 = "{a1}", p2 = "{a2}", up = "lb:clients" }}

[[instance]]
name = "lb"
kind = "lb"
ports = {{ clients = "br-a:up", servers = "r1:a" }}
vips = [
  {{ address = "10.31.9.10", port = 80, backends = [{v4_backends}] }},
  {{ address = "fd31:9::10", port = 80, backends = ["[fd31:2::11]:8000", {{ address = "fd31:2::12", port = 8000 }}] }},
  {{ address = "10.31.9.10", port = 53, protocol = "udp", backends = ["10.31.2.11:5353", "10.31.2.12:5353"] }},
  {{ address = "10.31.9.10", port = 54, protocol = "udp", backends = ["10.31.2.11:5454"] }},
]

[[instance]]
name = "r1"
kind = "router"
ports = {{ a = "lb:servers", b = "br-b:up" }}
addresses = {{ a = ["10.31.1.1/24", "fd31:1::1/64"], b = ["10.31.2.1/24", "fd31:2::1/64"] }}

[[instance]]
name = "br-b"
kind = "bridge"
ports = {{ p1 = "{b1}", p2 = "{b2}", up = "r1:b" }}
"#,
        a1 = iface("a1"),
        a2 = iface("a2"),
        b1 = iface("b1"),
        b2 = iface("b2"),
    )
}

const BOTH: &str = r#""10.31.2.11:8000", "10.31.2.12:8000""#;

/// `curl` in `namespace` for `url`: what it fetched, or None.
fn fetch(namespace: &str, url: &str, seconds: &str) -> Option<String> {
    let output = Command::new("ip")
        .args([
            "netns", "exec", namespace, "curl", "-s", "-g", "-m", seconds, url,
        ])
        .output()
        .expect("run curl");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Who answers `count` new connections from `namespace` to `url`.
fn answers(namespace: &str, url: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| fetch(namespace, url, "3").unwrap_or_else(|| "(none)".into()))
        .collect()
}

/// A UDP server on port 5353 in `namespace` that answers every datagram with `name`.
fn udp_namer(namespace: &str, name: &str) -> Killed {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 5353))\n\
         while True:\n    _, peer = s.recvfrom(2048)\n    s.sendto(b'{name}', peer)\n"
    );
    Killed(
        Command::new("ip")
            .args(["netns", "exec", namespace, "python3", "-c", &program])
            .spawn()
            .expect("start the UDP server"),
    )
}

/// What `count` datagrams from `namespace` to `to` (one socket, so one source port,
/// each) are answered with, and from where ("b1 from 10.31.9.10:53").
fn udp_answers(namespace: &str, to: &str, port: u16, count: usize) -> Vec<String> {
    let program = format!(
        "import socket\n\
         for _ in range({count}):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.settimeout(2)\n\
         \x20   s.sendto(b'who', ('{to}', {port}))\n\
         \x20   try:\n\
         \x20       data, peer = s.recvfrom(2048)\n\
         \x20       print(data.decode(), 'from', '%s:%d' % peer)\n\
         \x20   except socket.timeout:\n\
         \x20       print('(none)')\n"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "python3", "-c", &program])
        .output()
        .expect("run the UDP client");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a connected UDP socket in `namespace` gets for a datagram to `to`:`port`:
/// "answer", "refused" (an ICMP port unreachable matched to it) or "timeout".
fn udp_connected(namespace: &str, to: &str, port: u16) -> String {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         s.connect(('{to}', {port}))\n\
         s.send(b'who')\n\
         try:\n\
         \x20   s.recv(2048)\n\
         \x20   print('answer')\n\
         except ConnectionRefusedError:\n\
         \x20   print('refused')\n\
         except socket.timeout:\n\
         \x20   print('timeout')\n"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "python3", "-c", &program])
        .output()
        .expect("run the UDP client");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The counter `name` of instance `lb` in `topology show --json`.
fn lb_counter(lab: &TopologyLab, name: &str) -> u64 {
    instance_counter(&topology_show(&lab.node, NAME), "lb", name)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_lb_instance_spreads_a_vips_connections_over_its_backends() {
    require_root("an_lb_instance_spreads_a_vips_connections_over_its_backends");
    let lab = TopologyLab::for_test("tl");
    let _down = TopologyDown {
        namespace: lab.node.clone(),
        name: NAME,
    };
    let dir = TempDir::new("topology-lb");
    let path = dir.0.join("topo.toml");
    std::fs::write(&path, topology(&lab, BOTH)).unwrap();
    assert_eq!(topology_apply(&lab.node, &path)["revision"], 1);

    // Each backend says who it is; b1 has a large file too.
    let mut servers: Vec<Killed> = Vec::new();
    for backend in ["b1", "b2"] {
        let www = dir.0.join(backend);
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("who.txt"), backend).unwrap();
        std::fs::write(www.join("large.bin"), vec![7u8; 1 << 20]).unwrap();
        servers.push(http_server(
            &lab.host(backend).host.namespace,
            8000,
            "::",
            &www,
        ));
        servers.push(udp_namer(&lab.host(backend).host.namespace, backend));
    }
    let a1 = lab.host("a1").host.namespace.clone();
    let a2 = lab.host("a2").host.namespace.clone();
    for url in [
        "http://10.31.2.11:8000/who.txt",
        "http://10.31.2.12:8000/who.txt",
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(6);
        let answered = std::iter::repeat_with(|| fetch(&a1, url, "2").is_some())
            .take_while(|_| std::time::Instant::now() < deadline)
            .any(|ok| ok);
        assert!(
            answered,
            "{url} directly: {}",
            topology_show(&lab.node, NAME)
        );
    }

    // New connections to the VIP are spread over both backends, over both families.
    for (client, url) in [
        (&a1, "http://10.31.9.10/who.txt"),
        (&a2, "http://[fd31:9::10]/who.txt"),
    ] {
        let seen: BTreeSet<String> = answers(client, url, 24).into_iter().collect();
        assert_eq!(
            seen,
            BTreeSet::from(["b1".to_string(), "b2".to_string()]),
            "{url}: {}",
            topology_show(&lab.node, NAME)
        );
    }
    assert!(lb_counter(&lab, "new_flows") >= 48);
    assert!(lb_counter(&lab, "replies") >= 48);
    assert!(
        lb_counter(&lab, "partial_checksums") > 0,
        "the hosts' TX checksum offload leaves checksums partial"
    );
    assert!(lb_counter(&lab, "connections to 10.31.2.11:8000") > 0);
    assert!(lb_counter(&lab, "connections to [fd31:2::12]:8000") > 0);

    // UDP: datagrams from new source ports reach both backends, and every answer comes
    // back from the VIP (the hosts' UDP checksums are partial too).
    let seen: BTreeSet<String> = udp_answers(&a1, "10.31.9.10", 53, 24).into_iter().collect();
    assert_eq!(
        seen,
        BTreeSet::from([
            "b1 from 10.31.9.10:53".to_string(),
            "b2 from 10.31.9.10:53".to_string()
        ]),
        "{}",
        topology_show(&lab.node, NAME)
    );

    // Nothing listens behind port 54: the backend's port unreachable, its quote given the
    // VIP back, reaches the client's socket at once (untranslated, it would time out).
    assert_eq!(udp_connected(&a1, "10.31.9.10", 54), "refused");
    assert!(lb_counter(&lab, "icmp_errors") >= 1);

    // Bulk TCP through the VIP: 64 KB segments, translated, arrive whole.
    for url in [
        "http://10.31.9.10/large.bin",
        "http://[fd31:9::10]/large.bin",
    ] {
        let got = fetch(&a1, url, "10").unwrap_or_else(|| panic!("{url} failed"));
        assert_eq!(got.len(), 1 << 20, "{url}");
    }
    // Traffic that is no VIP's crosses unchanged.
    ping_works(&a1, "10.31.2.12");
    let passed = lb_counter(&lab, "passed");
    assert!(passed > 0);

    // b2 goes: connections it has keep it (a slow download runs on across the apply),
    // new ones all go to b1.
    let flows = lb_counter(&lab, "new_flows");
    let download = download(&a1, "http://10.31.9.10/large.bin", "30", Some("200k"))
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(5), "the download's connection", || {
        lb_counter(&lab, "new_flows") > flows
    });
    std::fs::write(&path, topology(&lab, r#""10.31.2.11:8000""#)).unwrap();
    assert_eq!(topology_apply(&lab.node, &path)["revision"], 2);
    let output = download.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the download across the apply: {output:?}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1048576");
    let seen: BTreeSet<String> = answers(&a1, "http://10.31.9.10/who.txt", 12)
        .into_iter()
        .collect();
    assert_eq!(seen, BTreeSet::from(["b1".to_string()]));

    // A backend of the other family: refused naming its line, the topology runs on.
    std::fs::write(&path, topology(&lab, r#""fd31:2::11""#)).unwrap();
    let error = failure(&[
        "--netns",
        &lab.node,
        "topology",
        "apply",
        path.to_str().unwrap(),
    ]);
    assert!(
        error.contains("topo.toml: line 13") && error.contains("not of the VIP's family"),
        "{error}"
    );
    let shown = topology_show(&lab.node, NAME);
    assert_eq!(shown["revision"], 2, "{shown}");
    assert_eq!(
        fetch(&a1, "http://10.31.9.10/who.txt", "3").as_deref(),
        Some("b1")
    );
    drop(servers);
}
