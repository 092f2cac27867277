//! `fastpath gen` on the lab: live frames leave the client's veth and reach the dut's XDP
//! program; the counters at both ends agree. Rates are reported, never asserted.

mod support;
use support::{fastpath, json};

use std::process::Command;

use lab::{Lab, require_root};

/// `--netns <client> gen --iface <client's> --dst <dst>`, then `more`: a generator run from
/// the lab's client.
fn gen_from_client<'a>(lab: &'a Lab, dst: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let (ns, iface) = (lab.client.namespace.as_str(), lab.client.iface.as_str());
    [
        &["--netns", ns, "gen", "--iface", iface, "--dst", dst],
        more,
    ]
    .concat()
}

/// Attaches the steering program on the dut with a rule dropping UDP to its port 9, so the
/// rule's counters are exact; returns the dut's address.
fn drop_rule_on_dut(lab: &Lab) -> String {
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let dst = lab.dut.ipv4.to_string();
    json(&["--netns", dut_ns, "xdp", "attach", "--iface", dut_if]);
    json(&[
        "--netns", dut_ns, "xdp", "rule", "add", "--iface", dut_if, "--action", "drop", "--proto",
        "udp", "--dst", &dst, "--dport", "9",
    ]);
    dst
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn live_frames_reach_the_peer_and_the_counters_agree() {
    require_root("live frames generator");
    let lab = Lab::for_test("gn");
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let (client_ns, client_if) = (lab.client.namespace.as_str(), lab.client.iface.as_str());
    let dst = drop_rule_on_dut(&lab);
    let run = gen_from_client(
        &lab,
        &dst,
        &[
            "--flows",
            "8",
            "--count",
            "100000",
            "--duration",
            "10",
            "--rate",
            "200000",
        ],
    );
    let output = fastpath(&[&["--json"], &run[..]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // No warning: the dispatcher hold was made, so calls do not wait for RCU grace periods.
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let sent = report["sent"].as_u64().unwrap();
    assert_eq!(sent, 100_000, "{report}");
    // The rate is reported, not judged: it is what was sent over the time it took.
    let seconds = report["seconds"].as_f64().unwrap();
    let mpps = report["mpps"].as_f64().unwrap();
    assert!(seconds > 0.0, "{report}");
    assert!(
        (mpps - sent as f64 / seconds / 1e6).abs() < 1e-9,
        "{report}"
    );
    let transmitted = report["transmitted"]
        .as_u64()
        .expect("veth has xdp_xmit counters");
    let refused = report["transmit_errors"].as_u64().unwrap();
    assert!(transmitted > 0, "{report}");
    assert!(transmitted + refused <= sent, "{report}");

    // The generator's dispatcher hold (a veth pair named fpgh<pid>) is gone with the run.
    let links = Command::new("ip")
        .args(["-n", client_ns, "-o", "link", "show"])
        .output()
        .expect("run ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(links.contains(client_if), "{links}");
    assert!(!links.contains("fpgh"), "the hold veth was left: {links}");

    let status = json(&["--netns", dut_ns, "xdp", "status", "--iface", dut_if]);
    let received = status["rules"][0]["packets"].as_u64().unwrap();
    assert_eq!(
        received, transmitted,
        "dut rule counter vs client xdp_xmit: {status}"
    );
    json(&["--netns", dut_ns, "xdp", "detach", "--iface", dut_if]);
}

/// A UDP socket on `port` (IPv4 and IPv6) in namespace `ns`, reading with a short timeout.
fn udp_socket_in(ns: &str, port: u16) -> std::net::UdpSocket {
    lab::netns::run_in(ns, move || {
        let socket = std::net::UdpSocket::bind(("::", port)).expect("bind UDP");
        // Room for every datagram of the run, so a reader starved of CPU by the tests
        // running alongside loses none (FORCE: past rmem_max, as root).
        let bytes: libc::c_int = 16 << 20;
        // SAFETY: setsockopt reads an int from a live local.
        let result = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&bytes as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            result,
            0,
            "SO_RCVBUFFORCE: {}",
            std::io::Error::last_os_error()
        );
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        socket
    })
    .expect("enter the dut's namespace")
}

/// Reads datagrams until the socket has been quiet for its timeout; the sources seen.
fn drain(socket: std::net::UdpSocket) -> std::thread::JoinHandle<Vec<std::net::SocketAddr>> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        let mut sources = Vec::new();
        let quiet_for = |sources: &Vec<_>| if sources.is_empty() { 20 } else { 1 };
        let mut timeouts = 0;
        while timeouts < quiet_for(&sources) {
            match socket.recv_from(&mut buffer) {
                Ok((_, from)) => {
                    sources.push(from);
                    timeouts = 0;
                }
                Err(_) => timeouts += 1,
            }
        }
        sources
    })
}

/// The client's address with its last part replaced, as `ip` prints it.
fn client_neighbour(client: std::net::IpAddr, last: u16) -> std::net::IpAddr {
    match client {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, last as u8).into()
        }
        std::net::IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[7] = last;
            std::net::Ipv6Addr::from(segments).into()
        }
    }
}

/// Sends 4 sources x 2 destination ports from the client to the dut's UDP sockets, through
/// an XDP program on the dut that counts per port and passes the frames on. The kernel
/// drops a frame whose IPv4 header checksum or UDP checksum (mandatory over IPv6) is
/// wrong, so every datagram received shows the generator refreshed them per flow.
fn flows_reach_the_dut_stack(tag: &str, ipv6: bool) {
    let lab = Lab::for_test(tag);
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    json(&["--netns", dut_ns, "xdp", "attach", "--iface", dut_if]);
    for port in ["9", "10"] {
        json(&[
            "--netns", dut_ns, "xdp", "rule", "add", "--iface", dut_if, "--action", "pass",
            "--proto", "udp", "--dport", port,
        ]);
    }
    let readers = [
        drain(udp_socket_in(dut_ns, 9)),
        drain(udp_socket_in(dut_ns, 10)),
    ];
    let (client, dut) = match ipv6 {
        false => (lab.client.ipv4, lab.dut.ipv4),
        true => (lab.client.ipv6, lab.dut.ipv6),
    };
    let expected: Vec<std::net::IpAddr> = (100..104)
        .map(|last| client_neighbour(client, last))
        .collect();
    let sources = format!("{}-{}", expected[0], expected[3]);
    let count = 4000u64;
    let (dut, count_arg) = (dut.to_string(), count.to_string());
    let report = json(&gen_from_client(
        &lab,
        &dut,
        &[
            "--dst-mac",
            &lab.dut.mac,
            "--src",
            &sources,
            "--dport",
            "9-10",
            "--size",
            "128",
            // One core: the program's per-CPU packet count decides the flow, so the split
            // between the ports is exact.
            "--cores",
            "0",
            "--count",
            &count_arg,
            "--rate",
            "20000",
            "--duration",
            "10",
        ],
    ));
    assert_eq!(
        report["flows"].as_u64(),
        Some(8),
        "4 sources x 2 ports: {report}"
    );
    assert_eq!(report["sent"].as_u64(), Some(count), "{report}");
    let status = json(&["--netns", dut_ns, "xdp", "status", "--iface", dut_if]);
    for rule in status["rules"].as_array().unwrap() {
        assert_eq!(rule["packets"].as_u64(), Some(count / 2), "{status}");
    }
    let [port_9, port_10] = readers.map(|reader| reader.join().unwrap());
    assert_eq!(
        (port_9.len() as u64, port_10.len() as u64),
        (count / 2, count / 2),
        "every frame reached a socket"
    );
    for received in [&port_9, &port_10] {
        let mut seen: Vec<std::net::IpAddr> = received
            .iter()
            .map(|from| from.ip().to_canonical())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, expected, "each port heard every source");
        assert!(received.iter().all(|from| from.port() == 1024));
    }
    json(&["--netns", dut_ns, "xdp", "detach", "--iface", dut_if]);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn ipv4_flows_spread_over_5_tuple_ranges_reach_the_dut_stack_intact() {
    require_root("generator 5-tuple ranges, IPv4");
    flows_reach_the_dut_stack("gr", false);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn ipv6_flows_spread_over_5_tuple_ranges_reach_the_dut_stack_intact() {
    require_root("generator 5-tuple ranges, IPv6");
    flows_reach_the_dut_stack("g6", true);
}

/// The IMIX frames on the wire less their FCS, as the dut's rule counts them, in the order
/// the AF_XDP mode sends one cycle of the mix.
const IMIX_CYCLE: [u64; 12] = [60, 60, 60, 60, 60, 60, 60, 590, 590, 590, 590, 1514];

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn af_xdp_mode_sends_an_imix_in_its_exact_shares() {
    require_root("AF_XDP TX generator");
    let lab = Lab::for_test("gx");
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let dst = drop_rule_on_dut(&lab);
    let count = 20_000u64;
    let count_arg = count.to_string();
    let report = json(&gen_from_client(
        &lab,
        &dst,
        &[
            "--mode",
            "xsk",
            "--size",
            "imix",
            "--flows",
            "4",
            "--count",
            &count_arg,
            "--rate",
            "100000",
            "--duration",
            "10",
        ],
    ));
    assert_eq!(report["mode"], "xsk-tx", "{report}");
    assert_eq!(report["sent"].as_u64(), Some(count), "{report}");
    // veth has no zero-copy: the fallback is reported.
    let notes = report["notes"].to_string();
    assert!(notes.contains("copy mode"), "{report}");
    let mean = report["mean_frame_size"].as_f64().unwrap();
    assert!((mean - 4342.0 / 12.0).abs() < 1e-9, "{report}");

    let status = json(&["--netns", dut_ns, "xdp", "status", "--iface", dut_if]);
    let rule = &status["rules"][0];
    assert_eq!(rule["packets"].as_u64(), Some(count), "{status}");
    let cycle: u64 = IMIX_CYCLE.iter().sum();
    let tail: u64 = IMIX_CYCLE[..(count % 12) as usize].iter().sum();
    assert_eq!(
        rule["bytes"].as_u64(),
        Some(count / 12 * cycle + tail),
        "every frame of the mix arrived at its size: {status}"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn bad_generator_input_is_named() {
    // `fastpath gen --iface <iface> --dst <dst> <more>` fails, naming `needle`.
    let fails = |iface: &str, dst: &str, more: &[&str], needle: &str| {
        let args = [&["gen", "--iface", iface, "--dst", dst], more].concat();
        let output = fastpath(&args);
        assert!(!output.status.success(), "{args:?} should fail");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(
            text.contains(needle),
            "{args:?}: {needle:?} not in {text:?}"
        );
    };
    fails("lo", "10.0.0.1", &["--flows", "0"], "--flows 0");
    fails("lo", "10.0.0.1", &["--rate", "0"], "--rate 0");
    fails("lo", "10.0.0.1", &["--duration", "0"], "--duration 0");
    fails("lo", "not-an-ip", &[], "--dst");
    let reversed = "--dst 10.0.0.9-10.0.0.1: expected A-B with A <= B";
    fails("lo", "10.0.0.9-10.0.0.1", &[], reversed);
    let wide = "may differ only in its last 32 bits";
    fails("lo", "fd00::1-fd01::1", &[], wide);
    let port = "--dport 9-x: expected a port or a range A-B";
    fails("lo", "10.0.0.1", &["--dport", "9-x"], port);
    fails("lo", "10.0.0.1", &["--dst-mac", "zz"], "invalid MAC");
    require_root("generator errors on interfaces");
    fails("nosuchif0", "10.0.0.1", &[], "nosuchif0");
    let flows = &["--src", "127.0.0.1", "--sport", "1-2", "--flows", "3"];
    let few = "--flows 3: the address and port ranges hold only 2 distinct 5-tuples";
    fails("lo", "127.0.0.1", flows, few);
    let size = "--size 9000: frame size 9000 out of range";
    fails("lo", "127.0.0.1", &["--size", "9000"], size);
    let jumbo = "--size jumbo: expected a frame size in bytes or `imix`";
    fails("lo", "127.0.0.1", &["--size", "jumbo"], jumbo);
    // One AF_XDP socket per queue: lo has one queue.
    let queues = "2 cores but lo has 1 queue(s)";
    fails(
        "lo",
        "127.0.0.1",
        &["--mode", "xsk", "--cores", "0,1"],
        queues,
    );
}

/// The names at the top of bpffs: a generator must add none (its maps are pinned, if at
/// all, in a directory of its own under /sys/fs/bpf/fastpath/, removed once loaded).
fn bpffs_top() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .expect("list /sys/fs/bpf")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Two generators at once from one namespace, each to its own port: both run, each one's
/// frames go where its own settings say (a shared settings map would send one's frames to
/// the other's port), and nothing is left in bpffs, at its top or in fastpath's folder.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn two_generators_at_once_share_nothing_and_leave_nothing_in_bpffs() {
    require_root("concurrent generators");
    let lab = Lab::for_test("g2");
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let dst = drop_rule_on_dut(&lab);
    json(&[
        "--netns", dut_ns, "xdp", "rule", "add", "--iface", dut_if, "--action", "drop", "--proto",
        "udp", "--dst", &dst, "--dport", "10",
    ]);
    let before = bpffs_top();
    let count = 30_000u64;
    let count_arg = count.to_string();
    // About a second each at this rate, so the two runs overlap.
    let children: Vec<(&str, std::process::Child)> = ["9", "10"]
        .into_iter()
        .map(|port| {
            let run = gen_from_client(
                &lab,
                &dst,
                &[
                    "--dport",
                    port,
                    "--count",
                    &count_arg,
                    "--rate",
                    "30000",
                    "--duration",
                    "20",
                ],
            );
            let child = Command::new(env!("CARGO_BIN_EXE_fastpath"))
                .arg("--json")
                .args(&run)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start fastpath gen");
            (port, child)
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(|(_, child)| child.id()).collect();
    let mut sent = std::collections::BTreeMap::new();
    for (port, child) in children {
        let output = child.wait_with_output().expect("wait for fastpath gen");
        assert!(
            output.status.success(),
            "generator to port {port}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("JSON output");
        assert_eq!(report["sent"].as_u64(), Some(count), "{report}");
        sent.insert(port.parse::<u16>().unwrap(), count);
    }

    let status = json(&["--netns", dut_ns, "xdp", "status", "--iface", dut_if]);
    // Rules in id order: port 9's first.
    let rules = status["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{status}");
    for (rule, port) in rules.iter().zip([9u16, 10]) {
        let packets = rule["packets"].as_u64().unwrap();
        assert!(
            packets > 0 && packets <= sent[&port],
            "port {port} counted {packets} of the {} its generator sent: {status}",
            sent[&port]
        );
    }
    assert_eq!(
        bpffs_top(),
        before,
        "a generator pinned at the top of bpffs"
    );
    let transient = std::path::Path::new("/sys/fs/bpf/fastpath/transient-objects");
    let left: Vec<String> = std::fs::read_dir(transient)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| pids.iter().any(|pid| name.contains(&format!("-{pid}-"))))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "generators left pins: {left:?}");
    json(&["--netns", dut_ns, "xdp", "detach", "--iface", dut_if]);
}
