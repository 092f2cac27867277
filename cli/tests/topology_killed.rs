//! `topology apply` killed (SIGKILL) on either side of its switch, on the topology lab: the
//! kernel runs one revision or the other, never a mix, and the next command finishes the
//! apply (after the switch) or takes back what it staged (before). The kill comes from
//! the test-only kill points (`offload::kill_point`), at the exact points a signal could land.

mod support;

use std::{os::unix::process::ExitStatusExt, process::Command};

use lab::{require_root, topology::TopologyLab};
use support::{
    TempDir, json,
    netns::{TopologyDown, ping_works, run_in, topology_apply, topology_show},
};

const NAME: &str = "killed";

/// br-a (a1, a2) and r1, with the other side's bridge `far` on the interface of `far_host`,
/// a static route `10.31.9.0/24` when `route`, and br-x on c1 when `extra`.
fn topology(lab: &TopologyLab, far_host: &str, route: bool, extra: bool) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    let mut text = format!(
        r#"name = "{NAME}"

[[instance]]
name = "br-a"
kind = "bridge"
ports = {{ p1 = "{a1}", p2 = "{a2}", up = "r1:a" }}

[[instance]]
name = "r1"
kind = "router"
ports = {{ a = "br-a:up", b = "far:up" }}
addresses = {{ a = ["10.31.1.1/24"], b = ["10.31.2.1/24"] }}
{routes}
[[instance]]
name = "far"
kind = "bridge"
ports = {{ p1 = "{far}", up = "r1:b" }}
"#,
        a1 = iface("a1"),
        a2 = iface("a2"),
        far = iface(far_host),
        routes = if route {
            "routes = [{ to = \"10.31.9.0/24\", via = \"10.31.2.11\" }]\n"
        } else {
            ""
        },
    );
    if extra {
        text.push_str(&format!(
            "\n[[instance]]\nname = \"br-x\"\nkind = \"bridge\"\nports = {{ p1 = \"{}\" }}\n",
            iface("c1")
        ));
    }
    text
}

/// `topology apply` of `path`, killed at `point`.
fn apply_killed_at(lab: &TopologyLab, path: &std::path::Path, point: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(["--netns", &lab.node, "topology", "apply"])
        .arg(path)
        .env("FASTPATH_KILL_AT", point)
        .status()
        .expect("run fastpath");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed at {point}: {status}"
    );
}

fn shown(lab: &TopologyLab) -> serde_json::Value {
    topology_show(&lab.node, NAME)
}

fn instances(shown: &serde_json::Value) -> Vec<String> {
    shown["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["name"].as_str().unwrap().to_string())
        .collect()
}

/// Whether an XDP program is attached to the node's interface of `host`.
fn has_xdp(lab: &TopologyLab, host: &str) -> bool {
    let iface = &lab.host(host).node_iface;
    let output = run_in(&lab.node, &["ip", "link", "show", "dev", iface]);
    String::from_utf8_lossy(&output.stdout).contains("xdp")
}

fn routes(lab: &TopologyLab) -> Vec<String> {
    let rows = json(&[
        "--netns", &lab.node, "router", "route", "show", "r1", "--name", NAME,
    ]);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row["prefix"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_apply_killed_on_either_side_of_its_switch_is_finished_or_taken_back() {
    require_root("an_apply_killed_on_either_side_of_its_switch_is_finished_or_taken_back");
    let lab = TopologyLab::for_test("tk");
    let _down = TopologyDown {
        namespace: lab.node.clone(),
        name: NAME,
    };
    let dir = TempDir::new("topology-killed");
    let path = dir.0.join("topo.toml");
    std::fs::write(&path, topology(&lab, "b1", true, false)).unwrap();
    let applied = topology_apply(&lab.node, &path);
    assert_eq!(applied["revision"], 1);
    let a1 = lab.host("a1").host.namespace.clone();
    ping_works(&a1, "10.31.2.11");
    assert!(routes(&lab).contains(&"10.31.9.0/24".to_string()));

    // Killed right after the switch: the far bridge moves from b1 to b2 and the route
    // goes, but the record is not written.
    std::fs::write(&path, topology(&lab, "b2", false, false)).unwrap();
    apply_killed_at(&lab, &path, "topology:after-switch");
    // The kernel runs revision 2, and `show` says so, with the far bridge on b2's interface.
    let now = shown(&lab);
    assert_eq!(now["revision"], 2, "{now}");
    let far = now["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|instance| instance["name"] == "far")
        .unwrap()
        .clone();
    assert_eq!(
        far["ports"][0]["peer"],
        lab.host("b2").node_iface.as_str(),
        "{far}"
    );
    ping_works(&a1, "10.31.2.12");
    // What the apply had left to do (b1's interface left, the dropped route removed) is
    // done by the next command that changes the topology.
    assert!(has_xdp(&lab, "b1"), "not finished yet");
    let again = topology_apply(&lab.node, &path);
    assert_eq!(again["unfinished"], serde_json::json!([]), "{again}");
    assert!(!has_xdp(&lab, "b1"), "b1's interface left the topology");
    assert!(!routes(&lab).contains(&"10.31.9.0/24".to_string()));
    let revision = shown(&lab)["revision"].as_u64().unwrap();
    ping_works(&a1, "10.31.2.12");

    // Killed right before the switch: br-x on c1 was staged (its program, c1's chain) and
    // never ran. The running revision stands, and the next command takes br-x back.
    std::fs::write(&path, topology(&lab, "b2", false, true)).unwrap();
    apply_killed_at(&lab, &path, "topology:before-switch");
    let now = shown(&lab);
    assert_eq!(now["revision"].as_u64(), Some(revision), "{now}");
    assert!(!instances(&now).contains(&"br-x".to_string()), "{now}");
    assert!(has_xdp(&lab, "c1"), "staged, not taken back yet");
    ping_works(&a1, "10.31.2.12");
    let down = json(&["--netns", &lab.node, "topology", "down", "--name", NAME]);
    assert!(!has_xdp(&lab, "c1"), "c1's staged chain went: {down}");
    for host in ["a1", "a2", "b2"] {
        assert!(!has_xdp(&lab, host), "{host} left at down");
    }
    assert!(
        !support::pins_root(&lab.node)
            .join("topology")
            .join(NAME)
            .exists(),
        "no pin of the topology is left"
    );
}
