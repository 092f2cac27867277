//! The load balancer as users run it: kernel default offloads (TX checksum offload on, so
//! senders leave TCP/UDP checksums partial), real tools (curl against Python's
//! http.server), fragmented datagrams through every forwarding mode, and the receivers'
//! own checksum counters as the oracle.

mod lb_common;

use std::{
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lab::segment::LbLab;
use lb_common::*;

/// `InCsumErrors` of TCP and UDP in a namespace (/proc/net/snmp): segments its kernel
/// dropped for a bad checksum.
fn checksum_errors(namespace: &str) -> u64 {
    let snmp = lab::Lab::run_in(namespace, || {
        std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap()
    })
    .unwrap();
    let lines: Vec<&str> = snmp.lines().collect();
    let mut errors = 0;
    for pair in lines.windows(2) {
        let (names, values) = (pair[0], pair[1]);
        // A header line ("Tcp: ... InCsumErrors") followed by its values ("Tcp: ...").
        let protocol = names.split(':').next().unwrap();
        if !["Tcp", "Udp"].contains(&protocol)
            || !names.contains("InCsumErrors")
            || !values.starts_with(&format!("{protocol}:"))
        {
            continue;
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        let at = names.iter().position(|n| *n == "InCsumErrors").unwrap();
        errors += values[at].parse::<u64>().unwrap();
    }
    errors
}

fn all_checksum_errors(lab: &LbLab) -> u64 {
    std::iter::once(&lab.client)
        .chain(&lab.backends)
        .map(|end| checksum_errors(&end.namespace))
        .sum()
}

/// With offloads on (the default) every client segment arrives with a partial checksum and
/// the load balancer completes it; with them off it has nothing to complete. Either way
/// every connection is served and no receiver counts a checksum error.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn tcp_through_dsr_and_nat_with_offloads_on_and_off() {
    lab::require_root("tcp_through_dsr_and_nat_with_offloads_on_and_off");
    for offload in [true, false] {
        for (forwarding, v4) in [("dsr-l2", true), ("nat", true), ("nat", false)] {
            let case = format!("offload={offload} {forwarding} v4={v4}");
            let setup = setup("ra", 1);
            if !offload {
                setup.lab.set_tx_checksum_offload(false).unwrap();
            }
            let appliance = Appliance::start(
                &setup,
                &config(&setup, v4, "tcp", forwarding, "", [1, 1, 1]),
            );
            let counts = tally(&http_gets(&setup, v4, 200));
            assert!(counts.iter().all(|&c| c > 0), "{case}: {counts:?}");
            let status = appliance.status();
            let completed = status["partial_checksums"].as_u64().unwrap();
            if offload {
                assert!(completed >= 200, "{case}: {completed} completed, {status}");
            } else {
                assert_eq!(completed, 0, "{case}");
            }
            assert_eq!(all_checksum_errors(&setup.lab), 0, "{case}");
        }
    }
}

/// A process killed with its namespace's lab: Python's http.server in a backend.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server 80` in each backend, serving a page that names the backend.
fn python_servers(lab: &LbLab) -> Vec<Process> {
    let servers: Vec<Process> = lab
        .backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let root = std::env::temp_dir().join(format!("{}-www{}", lab.prefix, i + 1));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("index.html"), format!("b{}\n", i + 1)).unwrap();
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &backend.namespace,
                    "python3",
                    "-m",
                    "http.server",
                ])
                .args(["80", "--bind", "::", "--directory"])
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start python3 -m http.server");
            Process(child)
        })
        .collect();
    for backend in &lab.backends {
        let at = SocketAddr::new(backend.ipv4, 80);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = lab::Lab::run_in(&backend.namespace, move || {
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&at, Duration::from_millis(100)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
        .unwrap();
        assert!(ready, "http.server in {} did not start", backend.namespace);
    }
    servers
}

fn curl(namespace: &str, url: &str) -> Result<String, String> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "curl",
            "-sS",
            "-g",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .map_err(|e| format!("run curl: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The reproduction: curl on a client with default offloads, Python's http.server
/// on the backends, the LB in dsr-l2 and nat, IPv4 and IPv6.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn curl_reaches_python_http_servers_with_default_offloads() {
    lab::require_root("curl_reaches_python_http_servers_with_default_offloads");
    for (forwarding, v4) in [
        ("dsr-l2", true),
        ("dsr-l2", false),
        ("nat", true),
        ("nat", false),
    ] {
        let lab = LbLab::for_test("rb", 1);
        lab.hold_vips_on_backends().unwrap();
        let _servers = python_servers(&lab);
        let setup = Setup::from_lab(lab);
        let _appliance = Appliance::start(
            &setup,
            &config(&setup, v4, "tcp", forwarding, "", [1, 1, 1]),
        );
        let url = match setup.lab.vip(v4) {
            IpAddr::V4(vip) => format!("http://{vip}/"),
            IpAddr::V6(vip) => format!("http://[{vip}]/"),
        };
        let mut served = [0usize; 3];
        for request in 0..30 {
            let body = curl(&setup.lab.client.namespace, &url)
                .unwrap_or_else(|e| panic!("{forwarding} v4={v4}: request {request}: {e}"));
            let backend = ["b1\n", "b2\n", "b3\n"].iter().position(|b| *b == body);
            served[backend.unwrap_or_else(|| panic!("unexpected body {body:?}"))] += 1;
        }
        assert_eq!(served.iter().sum::<usize>(), 30);
        assert_eq!(all_checksum_errors(&setup.lab), 0, "{forwarding} v4={v4}");
    }
}

/// Datagrams of `size` bytes to the VIP; each echo must come back whole.
fn udp_round_trips(setup: &Setup, v4: bool, size: usize, count: usize) -> Vec<String> {
    let vip = SocketAddr::new(setup.lab.vip(v4), 80);
    lab::Lab::run_in(&setup.lab.client.namespace, move || {
        let socket = std::net::UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket.connect(vip).unwrap();
        let mut failures = Vec::new();
        let mut buffer = vec![0u8; 65536];
        for round in 0..count {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 + round) as u8).collect();
            socket.send(&payload).unwrap();
            match socket.recv(&mut buffer) {
                Ok(len) => {
                    let reply = &buffer[..len];
                    let echoed = reply.len() == size + 3 && reply[3..] == payload[..];
                    if !echoed {
                        failures.push(format!("round {round}: a {len}-byte reply, not the echo"));
                    }
                }
                Err(e) => failures.push(format!("round {round}: {e}")),
            }
        }
        failures
    })
    .unwrap()
}

/// 3000-byte UDP datagrams leave the client as three fragments, and the echoes come back
/// fragmented too: through dsr-l2 and nat (both directions), IPv4 and IPv6, every datagram
/// arrives whole at one backend and its echo returns.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn fragmented_datagrams_cross_dsr_and_nat() {
    lab::require_root("fragmented_datagrams_cross_dsr_and_nat");
    for forwarding in ["dsr-l2", "nat"] {
        for v4 in [true, false] {
            let setup = setup("rc", 1);
            let appliance = Appliance::start(
                &setup,
                &config(&setup, v4, "udp", forwarding, "", [1, 1, 1]),
            );
            let failures = udp_round_trips(&setup, v4, 3000, 20);
            assert!(failures.is_empty(), "{forwarding} v4={v4}: {failures:?}");
            let status = appliance.status();
            // 20 datagrams of 3 fragments each way through the LB; the echo of dsr returns
            // directly.
            let expected = if forwarding == "nat" { 120 } else { 60 };
            assert_eq!(
                status["fragments"], expected,
                "{forwarding} v4={v4}: {status}"
            );
            assert_eq!(all_checksum_errors(&setup.lab), 0);
        }
    }
}

/// dsr-ipip: every fragment of a datagram is encapsulated to the same backend. IP-in-IP
/// needs 20 (IPv4) or 40 (IPv6) bytes more than the client's MTU between the load balancer
/// and the backends, as in any IP-in-IP deployment: that path gets MTU 1600 here.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn fragmented_datagrams_are_encapsulated_to_one_backend() {
    lab::require_root("fragmented_datagrams_are_encapsulated_to_one_backend");
    for v4 in [true, false] {
        let setup = setup("rd", 1);
        setup.lab.set_backend_path_mtu(1600).unwrap();
        let _appliance = Appliance::start(
            &setup,
            &config(&setup, v4, "udp", "dsr-ipip", "", [1, 1, 1]),
        );
        let captures = backend_captures(&setup);
        let vip = SocketAddr::new(setup.lab.vip(v4), 80);
        const DATAGRAMS: usize = 10;
        lab::Lab::run_in(&setup.lab.client.namespace, move || {
            let socket =
                std::net::UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
            for round in 0..DATAGRAMS {
                socket.send_to(&vec![round as u8; 3000], vip).unwrap();
            }
        })
        .unwrap();
        // Inner fragments by datagram id: which backends saw them, and their inner bytes.
        let mut datagrams: std::collections::HashMap<u32, (Vec<usize>, usize)> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        while datagrams
            .values()
            .map(|(seen, _)| seen.len())
            .sum::<usize>()
            < DATAGRAMS * 3
            && Instant::now() < deadline
        {
            for (backend, capture) in captures.iter().enumerate() {
                while let Ok(Some(frame)) = capture.receive(Duration::from_millis(10)) {
                    let Ok(Some(outer)) = wire::parse(&frame) else {
                        continue;
                    };
                    if !matches!(
                        outer.protocol,
                        wire::parse::proto::IPIP | wire::parse::proto::IPV6
                    ) {
                        continue;
                    }
                    // The inner packet, behind a fresh Ethernet header, through the same parser.
                    let mut inner = frame[..14].to_vec();
                    inner.extend_from_slice(&frame[outer.l4..outer.l3_end]);
                    let inner = wire::parse(&inner)
                        .expect("inner packet")
                        .expect("inner ip");
                    let fragment = inner.fragment.expect("a fragment");
                    let entry = datagrams.entry(fragment.id).or_default();
                    entry.0.push(backend);
                    entry.1 += inner.l3_end - inner.l4;
                }
            }
        }
        assert_eq!(datagrams.len(), DATAGRAMS, "v4={v4}");
        for (id, (backends, bytes)) in &datagrams {
            assert_eq!(backends.len(), 3, "datagram {id}: fragments {backends:?}");
            assert!(
                backends.iter().all(|b| *b == backends[0]),
                "datagram {id}: {backends:?}"
            );
            assert_eq!(*bytes, 3008, "datagram {id}: UDP header and payload");
        }
    }
}

/// dsr-ipip on a path without MTU headroom: a datagram sent with DF (or over IPv6) that
/// would not fit once encapsulated is answered with ICMP "fragmentation needed" / "packet
/// too big", and the client's kernel lowers its path MTU to the VIP by the outer header.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn too_big_to_encapsulate_teaches_the_client_its_path_mtu() {
    use std::os::fd::AsRawFd;
    lab::require_root("too_big_to_encapsulate_teaches_the_client_its_path_mtu");
    for v4 in [true, false] {
        let setup = setup("re", 1);
        let appliance = Appliance::start(
            &setup,
            &config(&setup, v4, "udp", "dsr-ipip", "", [1, 1, 1]),
        );
        let vip = SocketAddr::new(setup.lab.vip(v4), 80);
        let learned = lab::Lab::run_in(&setup.lab.client.namespace, move || {
            let socket =
                std::net::UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
            socket.connect(vip).unwrap();
            let fd = socket.as_raw_fd();
            // Path MTU discovery on, never fragment locally: the socket learns from ICMP.
            let (level, discover, mtu_option) = if v4 {
                (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_MTU)
            } else {
                (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_MTU)
            };
            let on: libc::c_int = libc::IP_PMTUDISC_DO;
            // SAFETY: plain setsockopt on a socket this closure owns.
            let set = unsafe {
                libc::setsockopt(fd, level, discover, (&on as *const libc::c_int).cast(), 4)
            };
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
            let mtu = || {
                let mut value: libc::c_int = 0;
                let mut len: libc::socklen_t = 4;
                // SAFETY: `value` and `len` outlive the call.
                unsafe {
                    libc::getsockopt(
                        fd,
                        level,
                        mtu_option,
                        (&mut value as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                value
            };
            // A full 1500-byte IP packet.
            let payload = vec![7u8; if v4 { 1472 } else { 1452 }];
            let deadline = Instant::now() + Duration::from_secs(5);
            while mtu() == 1500 && Instant::now() < deadline {
                let _ = socket.send(&payload); // EMSGSIZE once the MTU is learned
                std::thread::sleep(Duration::from_millis(50));
            }
            mtu()
        })
        .unwrap();
        let expected = if v4 { 1480 } else { 1460 };
        assert_eq!(learned, expected, "v4={v4}: the path MTU to the VIP");
        let status = appliance.status();
        assert!(status["too_big_replies"].as_u64().unwrap() >= 1, "{status}");
    }
}
