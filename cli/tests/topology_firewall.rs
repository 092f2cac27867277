//! A `firewall` instance in a topology of the lab (`lab::topology::TopologyLab`): a1's
//! interface leads to `fw`, whose other port leads to br-a, so a1's traffic reads
//! port -> firewall -> bridge -> router -> bridge -> port, in the kernel, in one XDP run.
//! The instance judges both directions with the firewall's rules and the namespace's
//! conntrack table: what a1 opens is let through and answered; what b1 opens towards a1
//! is dropped; a `reject` rule answers with an RST. Its rules change with `topology
//! apply` under an open TCP connection, which survives; bad rules are refused naming
//! their line, with the running topology untouched.

mod support;

use std::time::Duration;

use lab::{require_root, topology::TopologyLab, wait_until};
use support::{
    TempDir, failure, json,
    netns::{
        Killed, TopologyDown, download, http_server, instance_counter, named_counter, ping_once,
        ping_works, run_in, topology_apply, topology_show,
    },
};

const NAME: &str = "fwt";

fn topology(lab: &TopologyLab) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    format!(
        r#"name = "{NAME}"

[[instance]]
name = "fw"
kind = "firewall"
ports = {{ outside = "{a1}", inside = "br-a:p1" }}
rules = "fw.toml"

[[instance]]
name = "br-a"
kind = "bridge"
ports = {{ p1 = "fw:inside", p2 = "{a2}", up = "r1:a" }}

[[instance]]
name = "br-b"
kind = "bridge"
ports = {{ p1 = "{b1}", p2 = "{b2}", up = "r1:b" }}

[[instance]]
name = "r1"
kind = "router"
ports = {{ a = "br-a:up", b = "br-b:up" }}
addresses = {{ a = ["10.31.1.1/24", "fd31:1::1/64"], b = ["10.31.2.1/24", "fd31:2::1/64"] }}
"#,
        a1 = iface("a1"),
        a2 = iface("a2"),
        b1 = iface("b1"),
        b2 = iface("b2"),
    )
}

/// a1 may ping out and reach web ports (8000, and `more_ports`); the answers come back;
/// port 8002 is rejected; everything else is dropped.
fn rules(lab: &TopologyLab, more_ports: &str) -> String {
    let a1 = &lab.host("a1").node_iface;
    format!(
        r#"default = "drop"

[[rule]]
name = "replies"
ct_state = ["established", "related"]
action = "accept"

[[rule]]
name = "neighbours"
proto = "icmpv6"
action = "accept"

[[rule]]
name = "ping-out"
proto = "icmp"
icmp_type = 8
iface = "{a1}"
action = "accept"

[[rule]]
name = "web"
proto = "tcp"
dst_port = 8000
iface = "{a1}"
action = "accept"

[[rule]]
name = "closed"
proto = "tcp"
dst_port = 8002
action = "reject"

[[rule]]
name = "seen"
proto = "tcp"
dst_port = 8001
action = "log"
log_rate = 0
{more_ports}"#
    )
}

/// The packets rule `rule` of `fw` decided, from `topology show --json`.
fn decided(lab: &TopologyLab, rule: &str) -> u64 {
    instance_counter(&topology_show(&lab.node, NAME), "fw", rule)
}

/// `curl` from a1 to b1's `port`: its exit code (0 fetched, 7 refused, 28 timed out).
fn curl(lab: &TopologyLab, host: &str, port: u16) -> Option<i32> {
    let url = format!("http://{host}:{port}/hello.txt");
    run_in(
        &lab.host("a1").host.namespace,
        &["curl", "-s", "-o", "/dev/null", "-m", "2", &url],
    )
    .status
    .code()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_firewall_instance_guards_a_port_of_the_topology() {
    require_root("a_firewall_instance_guards_a_port_of_the_topology");
    let lab = TopologyLab::for_test("tf");
    let _down = TopologyDown {
        namespace: lab.node.clone(),
        name: NAME,
    };
    let dir = TempDir::new("topology-firewall");
    let topology_path = dir.0.join("topo.toml");
    let rules_path = dir.0.join("fw.toml");
    std::fs::write(&topology_path, topology(&lab)).unwrap();
    std::fs::write(&rules_path, rules(&lab, "")).unwrap();
    let applied = topology_apply(&lab.node, &topology_path);
    assert_eq!(applied["revision"], 1, "{applied}");

    let a1 = lab.host("a1").host.namespace.clone();
    let b1 = lab.host("b1").host.namespace.clone();
    // a1 pings out over IPv4 and IPv6 (ARP passes the firewall; ND by the rule).
    ping_works(&a1, "10.31.2.11");
    ping_works(&a1, "fd31:2::11");
    assert!(decided(&lab, "ping-out") >= 1);
    assert!(decided(&lab, "replies") >= 1);
    // b1 opens nothing towards a1, but reaches a2, which the firewall does not guard.
    assert!(
        !ping_once(&b1, "10.31.1.11"),
        "b1's ping crossed the firewall"
    );
    ping_works(&b1, "10.31.1.12");
    let dropped = decided(&lab, "default");
    assert!(dropped >= 1, "b1's echo request counted by the default");

    // Web servers on b1, one per port (8002 listens too: its refusal is the firewall's).
    let www = dir.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello through the firewall\n").unwrap();
    std::fs::write(www.join("large.bin"), vec![7u8; 1 << 20]).unwrap();
    let _servers: Vec<Killed> = [8000, 8001, 8002]
        .iter()
        .map(|port| http_server(&b1, *port, "::", &www))
        .collect();
    wait_until(Duration::from_secs(10), "http.server answers a1", || {
        curl(&lab, "10.31.2.11", 8000) == Some(0)
    });
    assert_eq!(curl(&lab, "[fd31:2::11]", 8000), Some(0), "IPv6 web");
    // Bulk TCP over both families: the sender's 64 KB segments cross the topology
    // (handed to TC past the egress MTU) and arrive whole.
    for host in ["10.31.2.11", "[fd31:2::11]"] {
        let output = download(&a1, &format!("http://{host}:8000/large.bin"), "10", None)
            .output()
            .unwrap();
        assert!(output.status.success(), "{host}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "1048576", "{host}");
    }
    let shown = topology_show(&lab.node, NAME);
    let handed = named_counter(&shown["counters"], "handed_to_tc");
    assert!(handed > Some(0), "large segments went through TC: {shown}");
    // The instance tracks in the namespace's table: `conntrack list` shows a1's flows.
    let flows = json(&["--netns", &lab.node, "conntrack", "list"]);
    let to_web = flows.as_array().unwrap().iter().any(|flow| {
        flow["proto"] == "tcp"
            && flow["src"] == "10.31.1.11"
            && flow["dst"] == "10.31.2.11"
            && flow["dst_port"] == 8000
    });
    assert!(to_web, "a1's flow to b1:8000 in conntrack: {flows}");
    assert_eq!(curl(&lab, "10.31.2.11", 8001), Some(28), "8001 is dropped");
    assert!(decided(&lab, "default") > dropped);
    // The instance's status and log, read as an interface firewall's are.
    let instance = ["--instance", "fw", "--name", NAME];
    let status = json(&[&["--netns", &lab.node, "firewall", "status"][..], &instance].concat());
    assert_eq!(status["iface"], format!("{NAME}/fw"), "{status}");
    let web = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["name"] == "web")
        .unwrap_or_else(|| panic!("no rule web: {status}"));
    assert!(web["packets"].as_u64() >= Some(1), "{status}");
    let log = support::fastpath(
        &[
            &["--netns", &lab.node, "--json", "firewall", "log"][..],
            &instance,
            &["--count", "1", "--timeout", "5"],
        ]
        .concat(),
    );
    let first: serde_json::Value = serde_json::from_slice(
        log.stdout
            .split(|byte| *byte == b'\n')
            .next()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|error| panic!("{error}: {log:?}"));
    assert_eq!(
        (first["rule"].as_str(), first["dst_port"].as_u64()),
        (Some("seen"), Some(8001)),
        "{first}"
    );
    assert_eq!(curl(&lab, "10.31.2.11", 8002), Some(7), "8002 is rejected");
    assert_eq!(
        curl(&lab, "[fd31:2::11]", 8002),
        Some(7),
        "8002 is rejected (v6)"
    );
    assert!(decided(&lab, "closed") >= 2);

    // The same file again: the rules running are kept, counters and all.
    let web = decided(&lab, "web");
    assert_eq!(topology_apply(&lab.node, &topology_path)["revision"], 2);
    assert!(decided(&lab, "web") >= web, "the kept rules' counters");

    // New rules under an open connection: a slow download from b1 goes on through the
    // switch (conntrack is kept), and port 8001 opens.
    // Not `Killed`: its output is read; curl's own time limit ends it.
    let download = download(&a1, "http://10.31.2.11:8000/large.bin", "30", Some("200k"))
        .spawn()
        .unwrap();
    let more =
        "\n[[rule]]\nname = \"web-2\"\nproto = \"tcp\"\ndst_port = 8001\naction = \"accept\"\n";
    std::fs::write(&rules_path, rules(&lab, more)).unwrap();
    assert_eq!(topology_apply(&lab.node, &topology_path)["revision"], 3);
    let output = download.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the download across the switch: {output:?} {}",
        topology_show(&lab.node, NAME)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1048576");
    assert_eq!(curl(&lab, "10.31.2.11", 8001), Some(0), "8001 opened");

    // Bad rules: refused naming the rules file's line; the topology runs on.
    let bad = rules(
        &lab,
        "\n[[rule]]\nname = \"bad\"\nproto = \"tcp\"\ndst_port = 70000\naction = \"accept\"\n",
    );
    std::fs::write(&rules_path, bad).unwrap();
    let error = failure(&[
        "--netns",
        &lab.node,
        "topology",
        "apply",
        topology_path.to_str().unwrap(),
    ]);
    assert!(
        error.contains("fw.toml: line ") && error.contains("rule `bad`: dst_port"),
        "{error}"
    );
    let shown = topology_show(&lab.node, NAME);
    assert_eq!(shown["revision"], 3, "{shown}");
    assert_eq!(
        curl(&lab, "10.31.2.11", 8001),
        Some(0),
        "still the running rules"
    );
}
