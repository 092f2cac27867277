//! The stateful firewall module on the lab with real traffic: a policy on the dut lets in
//! TCP to one port and ICMP echo, drops the rest (counted), lets the answers to the dut's
//! own connections in (established, through the egress tracker); the TCP state machine
//! seen through `conntrack list`; a policy change under an open connection keeps it; a
//! full table fails closed and says so.

mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use lab::{Lab, require_root, wait_until};
use support::{TempDir, failure, fastpath, json, pins_root};

/// One test at a time. Each lab's dut has a conntrack table of its own (one per network
/// namespace); running them in turn keeps each one's real traffic off the others' cores.
static NODE_TABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const OPEN_PORT: u16 = 8000;
const CLOSED_PORT: u16 = 9000;
const CLIENT_PORT: u16 = 7000;

const POLICY: &str = r#"
default = "drop"

[[rule]]
name = "replies"
ct_state = ["established", "related"]
action = "accept"

[[rule]]
name = "web"
proto = "tcp"
dst_port = 8000
action = "accept"

[[rule]]
name = "ping"
proto = "icmp"
icmp_type = 8
action = "accept"

[[rule]]
name = "ping6"
proto = "icmpv6"
icmp_type = 128
action = "accept"
"#;

/// The same without the web rule: new connections to 8000 are dropped, established ones
/// keep passing.
const NO_NEW_WEB: &str = r#"
default = "drop"

[[rule]]
name = "replies"
ct_state = ["established", "related"]
action = "accept"

[[rule]]
name = "ping"
proto = "icmp"
icmp_type = 8
action = "accept"
"#;

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

fn listen(namespace: &str, port: u16, address: &'static str) -> TcpListener {
    Lab::run_in(namespace, move || TcpListener::bind((address, port)))
        .expect("namespace")
        .expect("bind TCP")
}

/// A connection from `namespace` to `to`, or the error (a dropped SYN times out).
fn connect(namespace: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    Lab::run_in(namespace, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    })
    .expect("namespace")
}

/// Sends a line and reads the echo back.
fn echo(stream: &mut TcpStream, text: &str) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(text.as_bytes())?;
    let mut buffer = vec![0u8; text.len()];
    stream.read_exact(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

fn ping(namespace: &str, to: IpAddr) -> bool {
    let to = to.to_string();
    Lab::run_in(namespace, move || {
        Command::new("ping")
            .args(["-c", "1", "-W", "2", &to])
            .output()
            .map(|output| output.status.success())
            .unwrap_or(false)
    })
    .expect("namespace")
}

/// Removes the firewall (and the node's table) even when the test fails half way.
struct Cleanup {
    namespace: String,
    iface: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fastpath(&[
            "--netns",
            &self.namespace,
            "firewall",
            "remove",
            "--iface",
            &self.iface,
        ]);
    }
}

/// Detaches the XDP program a test attached to the client's veth.
struct ClientXdp {
    namespace: String,
    iface: String,
}

impl Drop for ClientXdp {
    fn drop(&mut self) {
        let _ = fastpath(&[
            "--netns",
            &self.namespace,
            "xdp",
            "detach",
            "--iface",
            &self.iface,
        ]);
    }
}

fn rule<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {status}"))
}

fn tcp_entry(list: &serde_json::Value, port: u16) -> Option<serde_json::Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|entry| {
            entry["proto"] == "tcp" && (entry["dst_port"] == port || entry["src_port"] == port)
        })
        .cloned()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_stateful_policy_lets_in_what_it_allows_and_the_answers_and_drops_the_rest() {
    require_root("the firewall module on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall");
    let policy = files.0.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let closed = files.0.join("no-new-web.toml");
    std::fs::write(&closed, NO_NEW_WEB).unwrap();
    let lab = Lab::for_test("fw");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let wait = |what: &str, condition: &mut dyn FnMut() -> bool| {
        wait_until(Duration::from_secs(10), what, condition)
    };
    serve_echo(listen(&ns, OPEN_PORT, "0.0.0.0"));
    serve_echo(listen(&ns, CLOSED_PORT, "0.0.0.0"));
    serve_echo(listen(&client_ns, CLIENT_PORT, "0.0.0.0"));
    let dut = lab.dut.ipv4;
    let client = lab.client.ipv4;

    // Without the firewall both ports answer: what the firewall drops later is its doing.
    let mut before =
        connect(&client_ns, SocketAddr::new(dut, CLOSED_PORT)).expect("port 9000 open");
    assert_eq!(echo(&mut before, "hello").unwrap(), "hello");
    drop(before);

    // A bad rules file is refused naming its line; nothing is loaded.
    let bad = files.0.join("bad.toml");
    std::fs::write(
        &bad,
        "default = \"drop\"\n\n[[rule]]\nsrc = \"10.0.0.300/8\"\naction = \"accept\"\n",
    )
    .unwrap();
    let error = failure(&[
        "--netns",
        &ns,
        "firewall",
        "apply",
        "--iface",
        &iface,
        bad.to_str().unwrap(),
    ]);
    assert!(
        error.contains("bad.toml: line 3: rule `rule 1`: src: `10.0.0.300/8`"),
        "{error}"
    );

    // --check changes nothing.
    let checked = on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(checked["checked"], true, "{checked}");
    assert_eq!(checked["rules"], 4, "{checked}");
    assert!(
        failure(&["--netns", &ns, "firewall", "status", "--iface", &iface])
            .contains("no firewall on")
    );

    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    let applied = on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    assert_eq!(applied["loaded_module"], true, "{applied}");
    let modules = on_dut(&["module", "list", "--iface", &iface]);
    assert_eq!(modules["modules"][0]["name"], "firewall", "{modules}");

    // Allowed: TCP to 8000, both ways, and ping.
    let mut web = connect(&client_ns, SocketAddr::new(dut, OPEN_PORT))
        .expect("port 8000 through the firewall");
    assert_eq!(echo(&mut web, "through").unwrap(), "through");
    assert!(ping(&client_ns, dut), "ping through the firewall");
    // IPv6: echo allowed, TCP to 9000 dropped (the lab's neighbours are static, so no
    // neighbour discovery needs letting in).
    let dut6 = lab.dut.ipv6;
    assert!(ping(&client_ns, dut6), "ping6 through the firewall");
    assert!(
        connect(&client_ns, SocketAddr::new(dut6, CLOSED_PORT)).is_err(),
        "port 9000 over IPv6 must be dropped"
    );
    // Dropped and counted: TCP to 9000.
    let refused = connect(&client_ns, SocketAddr::new(dut, CLOSED_PORT));
    assert!(refused.is_err(), "port 9000 must be dropped");
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    assert!(
        status["default"]["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        rule(&status, "web")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        rule(&status, "ping")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        rule(&status, "replies")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );

    // The dut's own connection out: its answers come back established.
    let mut out =
        connect(&ns, SocketAddr::new(client, CLIENT_PORT)).expect("the dut's connection out");
    assert_eq!(echo(&mut out, "outbound").unwrap(), "outbound");

    // A related ICMP error: the dut's datagram to a port nobody listens on comes back as
    // "port unreachable", which quotes it; the firewall lets it in as related, so the
    // dut's socket learns the port is closed (a dropped error would leave it waiting).
    let refused_by = SocketAddr::new(client, 9);
    let udp = Lab::run_in(&ns, move || {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
        socket.connect(refused_by)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send(b"anyone?")?;
        let mut buffer = [0u8; 16];
        socket.recv(&mut buffer).map(|_| ())
    })
    .expect("namespace");
    assert_eq!(
        udp.map_err(|error| error.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the port-unreachable error must come through as related"
    );

    // The state machine through `conntrack list`.
    let list = on_dut(&["conntrack", "list"]);
    let entry = tcp_entry(&list, OPEN_PORT).unwrap_or_else(|| panic!("no entry for 8000: {list}"));
    assert_eq!(entry["state"], "established", "{list}");
    assert_eq!(
        entry["src"],
        client.to_string(),
        "the client opened it: {list}"
    );
    assert_eq!(entry["replied"], true, "{list}");
    let entry =
        tcp_entry(&list, CLIENT_PORT).unwrap_or_else(|| panic!("no entry for 7000: {list}"));
    assert_eq!(entry["src"], dut.to_string(), "the dut opened it: {list}");
    assert_eq!(entry["state"], "established", "{list}");
    assert!(
        tcp_entry(&list, CLOSED_PORT).is_none(),
        "a dropped SYN makes no entry: {list}"
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["proto"] == "icmp"),
        "the echo is tracked: {list}"
    );
    drop(out);
    wait("the dut's connection to leave established", &mut || {
        tcp_entry(&on_dut(&["conntrack", "list"]), CLIENT_PORT).is_some_and(|entry| {
            ["fin-wait", "close-wait", "last-ack", "time-wait"]
                .contains(&entry["state"].as_str().unwrap_or(""))
        })
    });

    // A connection the client refuses (nobody listens on 7001): its RST, the flow's only
    // answer, comes in as established and ends the entry at once (as Linux's conntrack
    // does: kernel_agrees.rs's an_rst_as_the_only_answer_ends_the_flow).
    let refused = connect(&ns, SocketAddr::new(client, CLIENT_PORT + 1));
    assert_eq!(
        refused.map(|_| ()).map_err(|error| error.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the client's RST comes back through the firewall"
    );
    let list = on_dut(&["conntrack", "list"]);
    assert_eq!(tcp_entry(&list, CLIENT_PORT + 1), None, "{list}");

    // A policy change under the open connection: it keeps passing, new ones to 8000 do not.
    let switched = on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        closed.to_str().unwrap(),
    ]);
    assert_eq!(switched["loaded_module"], false, "{switched}");
    assert_ne!(switched["bank"], applied["bank"], "{switched}");
    assert_eq!(echo(&mut web, "still here").unwrap(), "still here");
    assert!(
        connect(&client_ns, SocketAddr::new(dut, OPEN_PORT)).is_err(),
        "new connections to 8000 dropped"
    );
    drop(web);

    // A full table fails closed: a limit of one entry, then two new flows.
    let flushed = on_dut(&["conntrack", "flush"]);
    assert!(flushed["removed"].as_u64().unwrap() >= 1, "{flushed}");
    let tiny = files.0.join("tiny.toml");
    std::fs::write(&tiny, format!("{POLICY}\n[conntrack]\nlimit = 1\n")).unwrap();
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        tiny.to_str().unwrap(),
    ]);
    let mut first =
        connect(&client_ns, SocketAddr::new(dut, OPEN_PORT)).expect("the one flow the table holds");
    assert_eq!(echo(&mut first, "one").unwrap(), "one");
    assert!(
        connect(&client_ns, SocketAddr::new(dut, OPEN_PORT)).is_err(),
        "a second flow is refused"
    );
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    let table = &status["conntrack"];
    assert_eq!(table["full"], true, "{status}");
    assert_eq!(table["limit"], 1, "{status}");
    assert!(table["refused_full"].as_u64().unwrap() >= 1, "{status}");
    let text = String::from_utf8_lossy(
        &fastpath(&["--netns", &ns, "firewall", "status", "--iface", &iface]).stdout,
    )
    .into_owned();
    assert!(text.contains("FULL: new flows are dropped"), "{text}");
    // The flow the table holds keeps working.
    assert_eq!(echo(&mut first, "two").unwrap(), "two");
    drop(first);

    on_dut(&["firewall", "remove", "--iface", &iface]);
    let root = pins_root(&ns);
    assert!(
        !root.join("conntrack").exists() && !root.join("firewall").exists(),
        "pins left"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_firewall_runs_in_front_of_steer_and_outlives_it() {
    require_root("the firewall module beside steer");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-steer");
    let policy = files.0.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let lab = Lab::for_test("fs");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let names = || -> Vec<String> {
        on_dut(&["module", "list", "--iface", &iface])["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|module| module["name"].as_str().unwrap().to_string())
            .collect()
    };
    serve_echo(listen(&ns, OPEN_PORT, "0.0.0.0"));
    let dut = lab.dut.ipv4;

    on_dut(&["xdp", "attach", "--iface", &iface]);
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    assert_eq!(names(), ["firewall", "steer"]);
    let mut web = connect(&client_ns, SocketAddr::new(dut, OPEN_PORT)).expect("through both");
    assert_eq!(echo(&mut web, "both").unwrap(), "both");
    // steer continues what no rule of its claims: it saw the packets the firewall let on.
    let listing = on_dut(&["module", "list", "--iface", &iface]);
    let steer = listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|module| module["name"] == "steer")
        .unwrap();
    assert!(
        steer["packets"]["continue"].as_u64().unwrap() >= 1,
        "{listing}"
    );

    // steer goes; the firewall keeps the chain and the connection.
    on_dut(&["xdp", "detach", "--iface", &iface]);
    assert_eq!(names(), ["firewall"]);
    assert_eq!(echo(&mut web, "still").unwrap(), "still");
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    assert!(
        rule(&status, "web")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
}

const REJECTING: &str = r#"
default = "accept"

[[rule]]
name = "tcp-reject"
proto = "tcp"
dst_port = 9000
action = "reject"

[[rule]]
name = "udp-reject"
proto = "udp"
dst_port = 9001
action = "reject"
"#;

/// A connected UDP socket's error once the port-unreachable answer to its datagrams has
/// come back (datagrams are sent again until then, within a deadline).
fn udp_error(namespace: &str, to: SocketAddr) -> Option<std::io::ErrorKind> {
    Lab::run_in(namespace, move || {
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = std::net::UdpSocket::bind(any).unwrap();
        socket.connect(to).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut error = None;
        wait_until(
            Duration::from_secs(10),
            "an ICMP error on the socket",
            || {
                if let Err(failed) = socket.send(b"knock") {
                    error = Some(failed.kind());
                    return true;
                }
                match socket.recv(&mut [0u8; 64]) {
                    Err(failed)
                        if !matches!(
                            failed.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        error = Some(failed.kind());
                        true
                    }
                    _ => false,
                }
            },
        );
        error
    })
    .expect("namespace")
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn reject_answers_with_a_reset_or_a_port_unreachable_the_client_socket_sees() {
    require_root("the firewall's reject on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-reject");
    let policy = files.0.join("reject.toml");
    std::fs::write(&policy, REJECTING).unwrap();
    let lab = Lab::for_test("fr");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    // The answers leave the dut by XDP_TX: the client's veth takes frames from XDP only with
    // NAPI, which an XDP program of its own gives it (a NIC has it anyway): `steer` with no
    // rules passes everything.
    let client_iface = lab.client.iface.clone();
    let on_client = |args: &[&str]| json(&[&["--netns", client_ns.as_str()], args].concat());
    on_client(&["xdp", "attach", "--iface", &client_iface]);
    let _client_xdp = ClientXdp {
        namespace: client_ns.clone(),
        iface: client_iface.clone(),
    };
    // Listeners on both ports (IPv6 sockets take IPv4 too): any refusal the client sees is
    // the firewall's.
    serve_echo(listen(&ns, CLOSED_PORT, "::"));
    let _udp_listener = Lab::run_in(&ns, || std::net::UdpSocket::bind(("::", CLOSED_PORT + 1)))
        .expect("namespace")
        .expect("bind UDP");
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    for dut in [lab.dut.ipv4, lab.dut.ipv6] {
        let refused = connect(&client_ns, SocketAddr::new(dut, CLOSED_PORT));
        assert_eq!(
            refused.map(|_| ()).map_err(|error| error.kind()),
            Err(std::io::ErrorKind::ConnectionRefused),
            "{dut}: the firewall's RST refuses the connection"
        );
        assert_eq!(
            udp_error(&client_ns, SocketAddr::new(dut, CLOSED_PORT + 1)),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{dut}: the firewall's port unreachable reaches the connected UDP socket"
        );
    }
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    for name in ["tcp-reject", "udp-reject"] {
        assert!(
            rule(&status, name)["packets"].as_u64().unwrap() >= 2,
            "{name} counts IPv4 and IPv6: {status}"
        );
    }
}

const FRAGMENTS: &str = r#"
default = "drop"

[[rule]]
name = "replies"
ct_state = ["established", "related"]
action = "accept"

[[rule]]
name = "neighbours"
proto = "icmpv6"
action = "accept"

[[rule]]
name = "udp-open"
proto = "udp"
dst_port = 5000
action = "accept"

[[rule]]
name = "udp-closed"
proto = "udp"
dst_port = 5001
action = "drop"
"#;

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_fragmented_datagram_goes_where_its_first_fragment_goes() {
    require_root("fragments through the firewall on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-fragments");
    let policy = files.0.join("fragments.toml");
    std::fs::write(&policy, FRAGMENTS).unwrap();
    let lab = Lab::for_test("ff");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    let bind = |port: u16| {
        Lab::run_in(&ns, move || std::net::UdpSocket::bind(("::", port)))
            .expect("namespace")
            .expect("bind UDP")
    };
    let (open, closed) = (bind(5000), bind(5001));
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    // 3000 bytes: three fragments each at the lab's MTU of 1500, IPv4 and IPv6.
    let datagram: Vec<u8> = (0..3000u32).map(|index| index as u8).collect();
    let targets = [lab.dut.ipv4, lab.dut.ipv6];
    Lab::run_in(&client_ns, {
        let datagram = datagram.clone();
        move || {
            for dut in targets {
                let any = if dut.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = std::net::UdpSocket::bind(any).unwrap();
                // The forbidden one first: once the allowed one has arrived, it had its
                // chance.
                socket.send_to(&datagram, (dut, 5001)).unwrap();
                socket.send_to(&datagram, (dut, 5000)).unwrap();
            }
        }
    })
    .expect("namespace");
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in targets {
        let mut buffer = vec![0u8; 4000];
        let (length, from) = open.recv_from(&mut buffer).expect("the allowed datagram");
        assert_eq!(
            &buffer[..length],
            &datagram[..],
            "the whole datagram from {from}"
        );
    }
    closed.set_nonblocking(true).unwrap();
    assert_eq!(
        closed
            .recv_from(&mut [0u8; 4000])
            .map(|_| ())
            .map_err(|error| error.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "no fragment of the forbidden datagrams got through"
    );
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    for name in ["udp-open", "udp-closed"] {
        assert_eq!(
            rule(&status, name)["packets"],
            6,
            "{name}: three fragments of each datagram, IPv4 and IPv6: {status}"
        );
    }
    assert_eq!(status["conntrack"]["orphan_fragments"], 0, "{status}");
}

const LOGGING: &str = r#"
default = "accept"

[[rule]]
name = "log-web"
proto = "tcp"
dst_port = 8000
action = "log"
log_rate = 1000

[[rule]]
name = "web"
proto = "tcp"
dst_port = 8000
action = "accept"
"#;

/// The entries `fastpath firewall log --json` prints: at most `count`, within `timeout`.
fn log_entries(namespace: &str, iface: &str, count: usize, timeout: u32) -> Vec<serde_json::Value> {
    let output = fastpath(&[
        "--netns",
        namespace,
        "firewall",
        "log",
        "--iface",
        iface,
        "--json",
        "--count",
        &count.to_string(),
        "--timeout",
        &timeout.to_string(),
    ]);
    assert!(
        output.status.success(),
        "firewall log: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn log_rules_and_a_full_table_reach_firewall_log() {
    require_root("the firewall's log on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-log");
    let policy = files.0.join("log.toml");
    std::fs::write(&policy, LOGGING).unwrap();
    let tiny = files.0.join("tiny.toml");
    std::fs::write(&tiny, format!("{LOGGING}\n[conntrack]\nlimit = 1\n")).unwrap();
    let lab = Lab::for_test("fl");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    serve_echo(listen(&ns, OPEN_PORT, "0.0.0.0"));
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    let dut = SocketAddr::new(lab.dut.ipv4, OPEN_PORT);
    // The log rule decides nothing: the connection goes on to `web`.
    let mut web = connect(&client_ns, dut).expect("the web rule accepts after the log rule");
    assert_eq!(echo(&mut web, "logged").unwrap(), "logged");
    let entries = log_entries(&ns, &iface, 1, 10);
    let first = entries.first().expect("a log entry for the connection");
    assert_eq!(first["kind"], "rule", "{first}");
    assert_eq!(first["rule"], "log-web", "{first}");
    assert_eq!(first["verdict"], "accept", "{first}");
    assert_eq!(first["proto"], "tcp", "{first}");
    assert_eq!(first["dst_port"], OPEN_PORT, "{first}");
    assert_eq!(first["src"], lab.client.ipv4.to_string(), "{first}");
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    for name in ["log-web", "web"] {
        assert!(
            rule(&status, name)["packets"].as_u64().unwrap() >= 1,
            "{name}: {status}"
        );
    }
    drop(web);

    // A full table: the refused flow shows in the log.
    on_dut(&["conntrack", "flush"]);
    on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        tiny.to_str().unwrap(),
    ]);
    let mut held = connect(&client_ns, dut).expect("the one flow the table holds");
    assert_eq!(echo(&mut held, "held").unwrap(), "held");
    assert!(
        connect(&client_ns, dut).is_err(),
        "a second flow is refused"
    );
    let mut seen = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "a conntrack-full entry in the log",
        || {
            seen.extend(log_entries(&ns, &iface, 1, 1));
            seen.iter().any(|entry| entry["kind"] == "conntrack-full")
        },
    );
    let full = seen
        .iter()
        .find(|entry| entry["kind"] == "conntrack-full")
        .unwrap();
    assert_eq!(full["verdict"], "drop", "{full}");
    assert_eq!(full["dst_port"], OPEN_PORT, "{full}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_rule_added_in_place_takes_effect_in_the_running_bank() {
    require_root("firewall rule add on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-rule-add");
    let policy = files.0.join("no-web.toml");
    std::fs::write(&policy, NO_NEW_WEB).unwrap();
    let web = files.0.join("web.toml");
    std::fs::write(
        &web,
        "[[rule]]\nname = \"web\"\nproto = \"tcp\"\ndst_port = 8000\naction = \"accept\"\n",
    )
    .unwrap();
    let two = files.0.join("two.toml");
    std::fs::write(&two, format!("{NO_NEW_WEB}\n[[rule]]\naction = \"drop\"\n")).unwrap();
    let lab = Lab::for_test("fa");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    serve_echo(listen(&ns, OPEN_PORT, "0.0.0.0"));
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let applied = on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    let dut = SocketAddr::new(lab.dut.ipv4, OPEN_PORT);
    assert!(
        connect(&client_ns, dut).is_err(),
        "no rule lets 8000 in yet"
    );
    // A file of more than one rule is refused, naming it.
    let error = failure(&[
        "--netns",
        &ns,
        "firewall",
        "rule",
        "add",
        "--iface",
        &iface,
        two.to_str().unwrap(),
    ]);
    assert!(error.contains("exactly one [[rule]]"), "{error}");
    let added = on_dut(&[
        "firewall",
        "rule",
        "add",
        "--iface",
        &iface,
        web.to_str().unwrap(),
    ]);
    assert_eq!(added["name"], "web", "{added}");
    assert_eq!(added["position"], 3, "{added}");
    assert_eq!(added["entries"], 1, "{added}");
    let mut stream = connect(&client_ns, dut).expect("the added rule lets 8000 in");
    assert_eq!(echo(&mut stream, "added").unwrap(), "added");
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    assert_eq!(
        status["bank"], applied["bank"],
        "the running bank changed: {status}"
    );
    assert!(
        rule(&status, "web")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
}

/// The web rule with a shadowed twin after it that drops what it accepts.
const WEB_AND_ITS_TWIN: &str = r#"
default = "drop"

[[rule]]
name = "replies"
ct_state = ["established", "related"]
action = "accept"

[[rule]]
name = "web"
proto = "tcp"
dst_port = 8000
action = "accept"

[[rule]]
name = "ping"
proto = "icmp"
icmp_type = 8
action = "accept"

[[rule]]
name = "no web"
proto = "tcp"
dst_port = 8000
action = "drop"
"#;

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_rule_deleted_in_place_hands_its_match_on_and_keeps_flows_and_counters() {
    require_root("firewall rule del on the lab");
    let _one_at_a_time = NODE_TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let files = TempDir::new("firewall-rule-del");
    let policy = files.0.join("web.toml");
    std::fs::write(&policy, WEB_AND_ITS_TWIN).unwrap();
    let lab = Lab::for_test("fe");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let client_ns = lab.client.namespace.clone();
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        iface: iface.clone(),
    };
    serve_echo(listen(&ns, OPEN_PORT, "0.0.0.0"));
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let applied = on_dut(&[
        "firewall",
        "apply",
        "--iface",
        &iface,
        policy.to_str().unwrap(),
    ]);
    let dut = SocketAddr::new(lab.dut.ipv4, OPEN_PORT);
    let mut before = connect(&client_ns, dut).expect("the web rule lets 8000 in");
    assert_eq!(echo(&mut before, "before").unwrap(), "before");
    assert!(ping(&client_ns, lab.dut.ipv4), "the ping rule lets echo in");
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    let pings = rule(&status, "ping")["packets"].as_u64().unwrap();
    assert!(pings >= 1, "{status}");

    // A rule that is not there is a clear error, by name and by number.
    for missing in ["nope", "9"] {
        let error = failure(&[
            "--netns", &ns, "firewall", "rule", "del", "--iface", &iface, "--rule", missing,
        ]);
        assert!(
            error.contains(&format!("no rule `{missing}`")) && error.contains(&iface),
            "{error}"
        );
    }

    let deleted = on_dut(&[
        "firewall", "rule", "del", "--iface", &iface, "--rule", "web",
    ]);
    assert_eq!(deleted["name"], "web", "{deleted}");
    assert_eq!(deleted["position"], 2, "{deleted}");
    assert_eq!(
        deleted["entries_replaced"], 1,
        "the twin takes the match: {deleted}"
    );
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    assert_eq!(status["bank"], applied["bank"], "a new bank: {status}");
    let names: Vec<&str> = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["replies", "ping", "no web"], "{status}");
    assert!(
        rule(&status, "ping")["packets"].as_u64().unwrap() >= pings,
        "the other rules keep their counters: {status}"
    );
    // The connection opened under the deleted rule goes on (established); a new one meets
    // the twin, which drops and counts it.
    assert_eq!(echo(&mut before, "after").unwrap(), "after");
    assert!(
        connect(&client_ns, dut).is_err(),
        "the twin drops new connections to 8000"
    );
    let status = on_dut(&["firewall", "status", "--iface", &iface]);
    assert!(
        rule(&status, "no web")["packets"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // By number (status's numbering counts the deleted rule): the twin goes too, and its
    // match with it; the default still drops.
    let deleted = on_dut(&["firewall", "rule", "del", "--iface", &iface, "--rule", "4"]);
    assert_eq!(deleted["name"], "no web", "{deleted}");
    assert_eq!(deleted["entries_removed"], 1, "{deleted}");
    let error = failure(&[
        "--netns", &ns, "firewall", "rule", "del", "--iface", &iface, "--rule", "web",
    ]);
    assert!(error.contains("no rule `web`"), "{error}");
    assert!(connect(&client_ns, dut).is_err(), "the default drops 8000");
    assert_eq!(echo(&mut before, "still").unwrap(), "still");
}
