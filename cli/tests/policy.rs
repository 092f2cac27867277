//! Security groups on a lab of "containers": namespaces behind veths whose host ends are in
//! a "host" namespace that routes between them. `fastpath policy apply` puts a firewall on
//! the host end of each member's veth; real traffic (curl to Python's http.server, iperf3,
//! ping, TCP echo) shows every allowed path working with its replies, every forbidden one
//! dropped and counted, a policy change under traffic keeping a connection it still
//! allows, `--check` changing nothing and errors naming the line. A fifth container in no
//! group sits behind an edge interface: what it sends is held to the members' `allow_in`.

mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use lab::{netlink, netns, require_root, wait_until};
use support::{TempDir, failure, fastpath, json, pins_root};

/// One container: its namespace, the host end of its veth, its addresses.
struct Container {
    namespace: String,
    host_iface: String,
    address: Ipv4Addr,
    address6: Ipv6Addr,
}

/// The lab: a host namespace routing between five containers (web1, web2, db1, lb1, out1), each
/// on its own /24 and /64 (`10.91.N.2`, `fd91:N::2`; the host end `.1`, `::1`). Neighbours
/// are learnt (ARP, neighbour discovery), not written in: the firewall must let that work. Dropping it kills the servers,
/// removes the policy and the namespaces.
struct Containers {
    host: String,
    web1: Container,
    web2: Container,
    db1: Container,
    lb1: Container,
    out1: Container,
    namespaces: Vec<String>,
    processes: Vec<Child>,
}

impl Containers {
    fn up() -> Containers {
        lab::Lab::teardown_on_signals();
        let prefix = format!("fppo{:04}", std::process::id() % 10000);
        let _ = lab::Lab::down(&prefix);
        let host = format!("{prefix}-host");
        let container = |role: &str, short: &str, subnet: u8| Container {
            namespace: format!("{prefix}-{role}"),
            host_iface: format!("{prefix}-{short}"),
            address: Ipv4Addr::new(10, 91, subnet, 2),
            address6: Ipv6Addr::new(0xfd91, u16::from(subnet), 0, 0, 0, 0, 0, 2),
        };
        let mut lab = Containers {
            host: host.clone(),
            web1: container("web1", "w1", 1),
            web2: container("web2", "w2", 2),
            db1: container("db1", "d1", 3),
            lb1: container("lb1", "l1", 4),
            out1: container("out1", "o1", 5),
            namespaces: vec![host.clone()],
            processes: Vec::new(),
        };
        netns::create(&host).expect("host namespace");
        netns::run_in(&host, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .and_then(|()| std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1"))
        })
        .unwrap()
        .expect("forwarding in the lab's host namespace");
        for (index, container) in [&lab.web1, &lab.web2, &lab.db1, &lab.lb1, &lab.out1]
            .into_iter()
            .enumerate()
        {
            lab.namespaces.push(container.namespace.clone());
            netns::create(&container.namespace).expect("container namespace");
            let peer = std::fs::File::open(netns::path(&container.namespace)).unwrap();
            let gateway = Ipv4Addr::new(10, 91, index as u8 + 1, 1);
            let gateway6 = Ipv6Addr::new(0xfd91, index as u16 + 1, 0, 0, 0, 0, 0, 1);
            let host_iface = container.host_iface.clone();
            netns::run_in(&host, move || -> Result<(), lab::LabError> {
                netlink::add_veth(&host_iface, "eth0", peer.as_raw_fd(), 1)?;
                no_dad(&host_iface);
                netlink::add_address(&host_iface, IpAddr::V4(gateway), 24)?;
                netlink::add_address(&host_iface, IpAddr::V6(gateway6), 64)?;
                netlink::set_up(&host_iface)
            })
            .unwrap()
            .expect("the host end of a container's veth");
            let (address, address6) = (container.address, container.address6);
            netns::run_in(
                &container.namespace,
                move || -> Result<(), lab::LabError> {
                    no_dad("eth0");
                    netlink::add_address("eth0", IpAddr::V4(address), 24)?;
                    netlink::add_address("eth0", IpAddr::V6(address6), 64)?;
                    netlink::set_up("eth0")?;
                    // The other containers, through the host; no route leaves the lab.
                    netlink::add_route(
                        IpAddr::V4(Ipv4Addr::new(10, 91, 0, 0)),
                        16,
                        IpAddr::V4(gateway),
                    )?;
                    netlink::add_route(
                        IpAddr::V6(Ipv6Addr::new(0xfd91, 0, 0, 0, 0, 0, 0, 0)),
                        16,
                        IpAddr::V6(gateway6),
                    )
                },
            )
            .unwrap()
            .expect("the container's end");
        }
        lab
    }

    /// `python3 -m http.server PORT` in `container`, serving a page that names it.
    fn http_server(&mut self, container: &str, namespace: &str, port: u16, files: &Path) {
        let root = files.join(format!("www-{container}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), format!("{container}\n")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", namespace, "python3", "-m", "http.server"])
            .args([&port.to_string(), "--bind", "::", "--directory"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        self.processes.push(child);
        wait_listening(namespace, port);
    }

    /// `iperf3 -s -p PORT` in `namespace`.
    fn iperf_server(&mut self, namespace: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", namespace, "iperf3", "-s", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s");
        self.processes.push(child);
        wait_listening(namespace, port);
    }

    fn on_host(&self, args: &[&str]) -> serde_json::Value {
        json(&[&["--netns", self.host.as_str()], args].concat())
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fastpath(&["--netns", &self.host, "policy", "remove"]);
        for namespace in &self.namespaces {
            let _ = netns::delete(namespace);
        }
    }
}

/// Waits until something listens on TCP `port` in `namespace` (read from the namespace's
/// own /proc/net/tcp, so no probe connection disturbs the server).
fn wait_listening(namespace: &str, port: u16) {
    let namespace = namespace.to_string();
    wait_until(
        Duration::from_secs(10),
        &format!("a listener on {port} in {namespace}"),
        || {
            netns::run_in(&namespace, move || {
                // iperf3 listens on [::], which /proc/net/tcp6 lists.
                let table = ["tcp", "tcp6"]
                    .map(|file| {
                        std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))
                            .unwrap_or_default()
                    })
                    .concat();
                let wanted = format!(":{port:04X} ");
                table.lines().any(|line| {
                    line.contains(&wanted) && line.split_whitespace().nth(3) == Some("0A")
                })
            })
            .unwrap()
        },
    );
}

/// IPv6 duplicate address detection would hold the addresses back for a second (the
/// lab's own setting, as `lab::Lab` does).
fn no_dad(iface: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/accept_dad"), "0");
}

fn curl(namespace: &str, to: impl Into<IpAddr>, port: u16) -> Result<String, String> {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "curl", "-sS", "-g"])
        .args(["--connect-timeout", "2", "--max-time", "5"])
        .arg(format!("http://{}/", SocketAddr::new(to.into(), port)))
        .output()
        .map_err(|e| format!("run curl: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn ping(namespace: &str, to: impl Into<IpAddr>) -> bool {
    let to: IpAddr = to.into();
    Command::new("ip")
        .args(["netns", "exec", namespace, "ping", "-c", "1", "-W", "2"])
        .arg(to.to_string())
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

/// A short, bounded iperf3 run (4 MB); the bytes the server received, or why it failed.
fn iperf(namespace: &str, to: Ipv4Addr, port: u16) -> Result<u64, String> {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "iperf3", "-J"])
        .args(["--connect-timeout", "2000", "-n", "4M", "-p"])
        .arg(port.to_string())
        .arg("-c")
        .arg(to.to_string())
        .output()
        .map_err(|e| format!("run iperf3: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| String::from_utf8_lossy(&output.stderr).into_owned())?;
    if !output.status.success() {
        return Err(report["error"].to_string());
    }
    report["end"]["sum_received"]["bytes"]
        .as_u64()
        .ok_or_else(|| format!("no bytes received: {report}"))
}

/// Echoes every connection on `listener`, each in a thread of its own.
fn serve_echo(listener: TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn connect(namespace: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    netns::run_in(namespace, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    })
    .expect("namespace")
}

fn echo(stream: &mut TcpStream, text: &str) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(text.as_bytes())?;
    let mut buffer = vec![0u8; text.len()];
    stream.read_exact(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// The member interface `iface` of `policy show`.
fn shown<'a>(show: &'a serde_json::Value, iface: &str) -> &'a serde_json::Value {
    show["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|interface| interface["iface"] == iface)
        .unwrap_or_else(|| panic!("no interface {iface} in {show}"))
}

fn counter(show: &serde_json::Value, iface: &str, rule: &str) -> u64 {
    shown(show, iface)["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|counter| counter["name"] == rule)
        .map_or(0, |counter| counter["packets"].as_u64().unwrap())
}

/// One try of a path; true when it failed as a dropped path does.
type Attempt<'a> = Box<dyn Fn() -> bool + 'a>;

const TO_MEMBERS: &str = "drop: to members, not in their allow_in";
const REPLIES: &str = "replies (established, related)";
const NEIGHBOUR_DISCOVERY: &str = "neighbour discovery (icmpv6 133-136)";

fn policy_text(lab: &Containers, web_members: &str, echo_ports: &str) -> String {
    format!(
        r#"edge = ["{o1}"]   # out1 is in no group: what it sends enters here
[[group]]
name = "web"
members = [{web_members}]
allow_in = [ {{ from = "group:lb", proto = "tcp", port = 80 }},
             {{ from = "group:lb", proto = "tcp", port = "{echo_ports}" }},
             {{ from = "0.0.0.0/0", proto = "icmp" }}, {{ from = "::/0", proto = "icmpv6" }} ]

# db serves web only
[[group]]
name = "db"
members = ["{db1}"]
allow_in = [ {{ from = "group:web", proto = "tcp", port = 5432 }},
             {{ from = "group:web", proto = "tcp", port = 5201 }},
             {{ from = "group:web", proto = "tcp", port = 5432 }} ]

[[group]]
name = "lb"
members = ["{lb1}"]
"#,
        db1 = lab.db1.host_iface,
        lb1 = lab.lb1.host_iface,
        o1 = lab.out1.host_iface,
    )
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn security_groups_segment_containers_with_real_traffic() {
    require_root("security groups on the lab");
    let files = TempDir::new("policy");
    let mut lab = Containers::up();
    let (web1, web2, db1, lb1) = (
        lab.web1.address,
        lab.web2.address,
        lab.db1.address,
        lab.lb1.address,
    );
    let (w1, w2, d1, l1, o1) = (
        lab.web1.host_iface.clone(),
        lab.web2.host_iface.clone(),
        lab.db1.host_iface.clone(),
        lab.lb1.host_iface.clone(),
        lab.out1.host_iface.clone(),
    );
    let out1_ns = lab.out1.namespace.clone();
    let (web1_ns, web2_ns, db1_ns, lb1_ns) = (
        lab.web1.namespace.clone(),
        lab.web2.namespace.clone(),
        lab.db1.namespace.clone(),
        lab.lb1.namespace.clone(),
    );
    lab.http_server("web1", &web1_ns, 80, &files.0);
    lab.http_server("web2", &web2_ns, 80, &files.0);
    lab.http_server("db1", &db1_ns, 5432, &files.0);
    lab.iperf_server(&db1_ns, 5201);
    for port in [8080, 8081] {
        let listener = netns::run_in(&web1_ns, move || TcpListener::bind(("0.0.0.0", port)))
            .unwrap()
            .expect("bind the echo server");
        serve_echo(listener);
    }

    // Before any policy every path works: what is dropped later is the policy's doing.
    assert_eq!(curl(&lb1_ns, db1, 5432).as_deref(), Ok("db1\n"));
    assert_eq!(curl(&db1_ns, web1, 80).as_deref(), Ok("web1\n"));
    assert_eq!(curl(&out1_ns, web1, 80).as_deref(), Ok("web1\n"));

    let v1 = files.0.join("v1.toml");
    let both_webs = format!("\"{w1}\", \"{w2}\"");
    std::fs::write(&v1, policy_text(&lab, &both_webs, "8080-8081")).unwrap();
    let v1 = v1.to_str().unwrap().to_string();

    // Errors name the line: an unknown group, an unknown interface, a group in itself.
    let bad = files.0.join("bad.toml");
    let bad_text = policy_text(&lab, &both_webs, "8080-8081").replace(
        "from = \"group:web\", proto = \"tcp\", port = 5201",
        "from = \"group:wbe\", proto = \"tcp\", port = 5201",
    );
    std::fs::write(&bad, &bad_text).unwrap();
    let error = failure(&[
        "--netns",
        &lab.host,
        "policy",
        "apply",
        bad.to_str().unwrap(),
    ]);
    assert!(
        error.contains("bad.toml: line 14: group `db`: unknown group `wbe`"),
        "{error}"
    );
    std::fs::write(
        &bad,
        policy_text(&lab, &format!("\"{w1}\",\n  \"nosuch0\""), "8080"),
    )
    .unwrap();
    let error = failure(&[
        "--netns",
        &lab.host,
        "policy",
        "apply",
        bad.to_str().unwrap(),
    ]);
    assert!(
        error.contains("bad.toml: line 5: group `web`: members: no interface `nosuch0`"),
        "{error}"
    );
    std::fs::write(&bad, policy_text(&lab, "\"group:web\"", "8080")).unwrap();
    let error = failure(&[
        "--netns",
        &lab.host,
        "policy",
        "apply",
        bad.to_str().unwrap(),
    ]);
    assert!(
        error.contains("bad.toml: line 2: group `web` contains itself: web -> web"),
        "{error}"
    );

    // --check: compiled for each member, a warning for the shadowed rule, nothing changed.
    let output = fastpath(&[
        "--netns", &lab.host, "--json", "policy", "apply", &v1, "--check",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 15: group `db`: allow_in #3 is shadowed by allow_in #1 (line 13)"),
        "{stderr}"
    );
    let checked: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(checked["checked"], true, "{checked}");
    assert_eq!(
        checked["interfaces"].as_array().unwrap().len(),
        5,
        "{checked}"
    );
    assert_eq!(
        checked["warnings"].as_array().unwrap().len(),
        1,
        "{checked}"
    );
    for iface in [&w1, &w2, &d1, &l1, &o1] {
        assert!(
            failure(&["--netns", &lab.host, "firewall", "status", "--iface", iface])
                .contains("no firewall on"),
            "--check loaded a firewall on {iface}"
        );
    }
    assert!(failure(&["--netns", &lab.host, "policy", "show"]).contains("no policy applied"));
    assert_eq!(
        curl(&lb1_ns, db1, 5432).as_deref(),
        Ok("db1\n"),
        "--check changed nothing"
    );

    let applied = lab.on_host(&["policy", "apply", &v1]);
    assert_eq!(applied["checked"], false, "{applied}");
    for interface in applied["interfaces"].as_array().unwrap() {
        assert_eq!(interface["loaded_module"], true, "{applied}");
    }

    // Every allowed path works, replies included.
    assert_eq!(
        curl(&lb1_ns, web1, 80).as_deref(),
        Ok("web1\n"),
        "lb -> web1:80"
    );
    assert_eq!(
        curl(&lb1_ns, web2, 80).as_deref(),
        Ok("web2\n"),
        "lb -> web2:80"
    );
    assert_eq!(
        curl(&web1_ns, db1, 5432).as_deref(),
        Ok("db1\n"),
        "web1 -> db:5432"
    );
    assert_eq!(
        curl(&web2_ns, db1, 5432).as_deref(),
        Ok("db1\n"),
        "web2 -> db:5432"
    );
    let received = iperf(&web1_ns, db1, 5201).expect("iperf3 web1 -> db:5201");
    assert!(received > 0, "iperf3 moved {received} bytes");
    for (from, to, what) in [
        (&lb1_ns, web1, "lb pings web1"),
        (&db1_ns, web2, "db pings web2"),
        (&web2_ns, web1, "web2 pings web1"),
        (&out1_ns, web1, "out1 (through the edge) pings web1"),
    ] {
        assert!(ping(from, to), "{what}");
    }
    // IPv6: the containers find their gateway and the host its containers through
    // neighbour discovery, which the firewalls let through; then the same groups hold.
    let (web1_v6, db1_v6) = (lab.web1.address6, lab.db1.address6);
    assert!(ping(&lb1_ns, web1_v6), "lb pings web1 over IPv6");
    assert_eq!(
        curl(&lb1_ns, web1_v6, 80).as_deref(),
        Ok("web1\n"),
        "lb -> web1:80 over IPv6"
    );
    assert_eq!(
        curl(&web1_ns, db1_v6, 5432).as_deref(),
        Ok("db1\n"),
        "web1 -> db:5432 over IPv6"
    );
    let show = lab.on_host(&["policy", "show"]);
    assert!(counter(&show, &l1, NEIGHBOUR_DISCOVERY) >= 1, "{show}");
    assert!(counter(&show, &w1, NEIGHBOUR_DISCOVERY) >= 1, "{show}");
    assert!(
        counter(&show, &l1, "web allow_in #4 (line 7)") >= 1,
        "ping6 counted: {show}"
    );
    assert!(
        counter(&show, &l1, "web allow_in #1 (line 5)") >= 3,
        "{show}"
    );
    assert!(
        counter(&show, &w1, "db allow_in #1 (line 13)") >= 1,
        "{show}"
    );
    assert!(
        counter(&show, &w1, "db allow_in #2 (line 14)") >= 1,
        "{show}"
    );
    assert!(
        counter(&show, &w2, "web allow_in #3 (line 7)") >= 1,
        "{show}"
    );
    // The replies came back through the destination's veth, let in as established.
    for iface in [&w1, &w2, &d1] {
        assert!(
            counter(&show, iface, REPLIES) >= 1,
            "replies on {iface}: {show}"
        );
    }

    // Every forbidden path is dropped, and counted on the source's veth.
    let forbidden: [(&str, &str, Attempt); 10] = [
        (
            "lb -> db:5432",
            &l1,
            Box::new(|| curl(&lb1_ns, db1, 5432).is_err()),
        ),
        (
            "db -> web1:80",
            &d1,
            Box::new(|| curl(&db1_ns, web1, 80).is_err()),
        ),
        (
            "web1 -> web2:80",
            &w1,
            Box::new(|| curl(&web1_ns, web2, 80).is_err()),
        ),
        (
            "lb -> db:5201 (iperf3)",
            &l1,
            Box::new(|| iperf(&lb1_ns, db1, 5201).is_err()),
        ),
        ("lb pings db", &l1, Box::new(|| !ping(&lb1_ns, db1))),
        ("web1 pings lb", &w1, Box::new(|| !ping(&web1_ns, lb1))),
        (
            "out1 -> web1:80 (through the edge)",
            &o1,
            Box::new(|| curl(&out1_ns, web1, 80).is_err()),
        ),
        ("out1 pings lb", &o1, Box::new(|| !ping(&out1_ns, lb1))),
        (
            "lb -> db:5432 over IPv6",
            &l1,
            Box::new(|| curl(&lb1_ns, db1_v6, 5432).is_err()),
        ),
        (
            "web1 pings lb over IPv6",
            &w1,
            Box::new(|| !ping(&web1_ns, lab.lb1.address6)),
        ),
    ];
    for (what, source, attempt) in forbidden {
        let before = counter(&lab.on_host(&["policy", "show"]), source, TO_MEMBERS);
        assert!(attempt(), "{what} must be dropped");
        let after = counter(&lab.on_host(&["policy", "show"]), source, TO_MEMBERS);
        assert!(
            after > before,
            "{what}: dropped but not counted ({before} -> {after})"
        );
    }

    // explain agrees with what the traffic did.
    let explain = |from: &str, to: &str, proto: &str, port: &str| {
        lab.on_host(&[
            "policy", "explain", "--from", from, "--to", to, "--proto", proto, "--port", port,
        ])
    };
    let allowed = explain(&l1, &web1.to_string(), "tcp", "80");
    assert_eq!(allowed["verdict"], "accept", "{allowed}");
    assert_eq!(allowed["rule"], "web allow_in #1 (line 5)", "{allowed}");
    assert_eq!(allowed["from"], lb1.to_string(), "{allowed}");
    let dropped = explain(&lb1.to_string(), &d1, "tcp", "5432");
    assert_eq!(dropped["verdict"], "drop", "{dropped}");
    assert_eq!(dropped["rule"], TO_MEMBERS, "{dropped}");
    assert_eq!(dropped["ingress"], l1.as_str(), "{dropped}");
    let outside = explain(&lab.out1.address.to_string(), &w1, "tcp", "80");
    assert_eq!(outside["verdict"], "drop", "{outside}");
    assert_eq!(outside["ingress"], o1.as_str(), "{outside}");

    // A policy change under traffic: echo round trips run on a connection to 8080 while
    // v2 (web allows 8080 only, web2 leaves the group) is checked, then applied.
    let mut held = connect(&lb1_ns, SocketAddr::new(web1.into(), 8080)).expect("lb -> web1:8080");
    assert_eq!(echo(&mut held, "before").unwrap(), "before");
    let stop = Arc::new(AtomicBool::new(false));
    let (round_trips, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let mut stream = held.try_clone().unwrap();
        let (stop, round_trips, failures) = (stop.clone(), round_trips.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match echo(&mut stream, "ping") {
                    Ok(text) if text == "ping" => round_trips.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let v2 = files.0.join("v2.toml");
    std::fs::write(&v2, policy_text(&lab, &format!("\"{w1}\""), "8080")).unwrap();
    let v2 = v2.to_str().unwrap().to_string();
    let checked = lab.on_host(&["policy", "apply", &v2, "--check"]);
    assert_eq!(checked["removed"], serde_json::json!([w2]), "{checked}");
    let mut still_open =
        connect(&lb1_ns, SocketAddr::new(web1.into(), 8081)).expect("--check changed nothing");
    assert_eq!(echo(&mut still_open, "v1").unwrap(), "v1");
    drop(still_open);
    let before_switch = round_trips.load(Ordering::Relaxed);
    let switched = lab.on_host(&["policy", "apply", &v2]);
    assert_eq!(switched["removed"], serde_json::json!([w2]), "{switched}");
    assert!(
        switched["switch_window_ns"].is_u64(),
        "the window in which the interfaces disagreed is reported: {switched}"
    );
    for interface in switched["interfaces"].as_array().unwrap() {
        assert_eq!(
            interface["loaded_module"], false,
            "switched, not reloaded: {switched}"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "round trips after the switch",
        || round_trips.load(Ordering::Relaxed) > before_switch + 10,
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "echoes lost across the change"
    );
    assert_eq!(
        echo(&mut held, "after").unwrap(),
        "after",
        "the held connection survives"
    );
    assert!(
        connect(&lb1_ns, SocketAddr::new(web1.into(), 8081)).is_err(),
        "a new connection to 8081 is now forbidden"
    );
    let mut fresh =
        connect(&lb1_ns, SocketAddr::new(web1.into(), 8080)).expect("8080 still allowed");
    assert_eq!(echo(&mut fresh, "new").unwrap(), "new");
    assert!(
        failure(&["--netns", &lab.host, "firewall", "status", "--iface", &w2])
            .contains("no firewall on"),
        "web2 left the policy: its firewall goes"
    );
    let show = lab.on_host(&["policy", "show"]);
    assert_eq!(show["interfaces"].as_array().unwrap().len(), 4, "{show}");
    assert!(
        shown(&show, &l1)["dropped"].as_u64().unwrap() >= 1,
        "{show}"
    );
    drop((held, fresh));

    // One revision or none: v3 lets lb reach db on 5432, but web's rules need more masks
    // than a firewall has, so the interfaces after db's fail to prepare. Nothing switched:
    // every interface keeps its bank, the record keeps v2, lb -> db:5432 stays dropped.
    let banks = |lab: &Containers| -> Vec<u64> {
        [&d1, &l1, &o1, &w1]
            .iter()
            .map(|iface| {
                lab.on_host(&["firewall", "status", "--iface", iface])["bank"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let banks_before = banks(&lab);
    let too_many_masks: String = (16..=90)
        .map(|len| format!(", {{ from = \"fd{len:02x}::/{len}\", proto = \"tcp\", port = 80 }}"))
        .collect();
    let v3_text = policy_text(&lab, &format!("\"{w1}\""), "8080")
        .replace(
            "{ from = \"::/0\", proto = \"icmpv6\" } ]",
            &format!("{{ from = \"::/0\", proto = \"icmpv6\" }}{too_many_masks} ]"),
        )
        .replace(
            "allow_in = [ { from = \"group:web\", proto = \"tcp\", port = 5432 },",
            "allow_in = [ { from = \"group:lb\", proto = \"tcp\", port = 5432 },",
        );
    let v3 = files.0.join("v3.toml");
    std::fs::write(&v3, &v3_text).unwrap();
    let error = failure(&[
        "--netns",
        &lab.host,
        "policy",
        "apply",
        v3.to_str().unwrap(),
    ]);
    assert!(
        error.contains("distinct masks") && error.contains("no interface switched"),
        "{error}"
    );
    assert_eq!(banks(&lab), banks_before, "an interface switched: {error}");
    assert_eq!(
        lab.on_host(&["policy", "show"])["file"],
        serde_json::json!(v2),
        "the record names the running policy"
    );
    assert!(
        curl(&lb1_ns, db1, 5432).is_err(),
        "db still runs v2: lb may not reach it"
    );

    let removed = lab.on_host(&["policy", "remove"]);
    assert_eq!(removed["removed"].as_array().unwrap().len(), 4, "{removed}");
    // No pin is left: the firewalls' and the node's table (the namespace's own).
    let pins = pins_root(&lab.host);
    for iface in [&w1, &w2, &d1, &l1, &o1] {
        assert!(
            !pins.join("firewall").join(iface).exists(),
            "pins of {iface} left"
        );
    }
    assert!(
        !pins.join("conntrack").exists(),
        "the node's table outlived the last firewall"
    );
    assert_eq!(
        curl(&lb1_ns, db1, 5432).as_deref(),
        Ok("db1\n"),
        "no policy, no drops"
    );
}

/// Without root: a policy file's errors name the file and the line before anything is
/// read from the kernel, and a shadowed rule is a warning of `--check`.
#[test]
fn policy_file_errors_name_the_line() {
    let files = TempDir::new("policy-errors");
    let cases = [
        (
            "[[group]]\nname = \"web\"\nmembers = [\"10.1.0.0/24\"]\nallow_in = [\n  { from = \"group:lb\", proto = \"tcp\", port = 80 } ]\n",
            "line 5: group `web`: unknown group `lb`",
        ),
        (
            "[[group]]\nname = \"web\"\nmembers = [\"10.1.0.0/24\", \"10.1.0.0/40\"]\n",
            "line 3: group `web`: members: `10.1.0.0/40` is not an IPv4 or IPv6 CIDR",
        ),
        (
            "[[group]]\nname = \"a\"\nmembers = [\"group:b\"]\n\n[[group]]\nname = \"b\"\nmembers = [\"group:a\"]\n",
            "line 1: group `a` contains itself: a -> b -> a",
        ),
        (
            "[[group]]\nname = \"a\"\nmember = [\"x\"]\n",
            "line 3: unknown field `member`",
        ),
    ];
    for (index, (text, expected)) in cases.into_iter().enumerate() {
        let file = files.0.join(format!("bad{index}.toml"));
        std::fs::write(&file, text).unwrap();
        let error = failure(&["policy", "apply", file.to_str().unwrap(), "--check"]);
        let expected = format!("bad{index}.toml: {expected}");
        assert!(
            error.contains(&expected),
            "{error:?} should contain {expected:?}"
        );
    }
}
