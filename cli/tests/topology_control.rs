//! `fastpath router route add|del|show` and `fastpath bridge fdb add|del|show` on a
//! running topology of the lab (`lab::topology::TopologyLab`: hosts a1, a2 on
//! 10.31.1.0/24, b1, b2 on 10.31.2.0/24, their veth peers in a node namespace running
//! br-a, br-b and r1): a route added at run time carries real pings and counts them,
//! deleting it stops them; static stations are added and removed; each bad request is
//! refused with an error naming what is wrong.

mod support;

use lab::{require_root, topology::TopologyLab};
use support::{
    TempDir, failure, json,
    netns::{TopologyDown, ping_once, ping_works, run_in},
};

const NAME: &str = "ctl";

fn file(lab: &TopologyLab) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    format!(
        r#"name = "{NAME}"

[[instance]]
name = "br-a"
kind = "bridge"
ports = {{ p1 = "{a1}", p2 = "{a2}", up = "r1:a" }}

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

fn routes(lab: &TopologyLab) -> Vec<serde_json::Value> {
    json(&[
        "--netns", &lab.node, "router", "route", "show", "r1", "--name", NAME,
    ])
    .as_array()
    .unwrap()
    .clone()
}

fn route<'a>(routes: &'a [serde_json::Value], prefix: &str) -> Option<&'a serde_json::Value> {
    routes.iter().find(|route| route["prefix"] == prefix)
}

fn packets(lab: &TopologyLab, prefix: &str) -> u64 {
    let routes = routes(lab);
    route(&routes, prefix).unwrap_or_else(|| panic!("no route {prefix}: {routes:?}"))["packets"]
        .as_u64()
        .unwrap()
}

fn cli(lab: &TopologyLab, args: &[&str]) -> Vec<String> {
    [&["--netns", lab.node.as_str()][..], args, &["--name", NAME]]
        .concat()
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn refused(lab: &TopologyLab, args: &[&str], expected: &str) {
    let args = cli(lab, args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let error = failure(&args);
    assert!(error.contains(expected), "{args:?}: {error}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn routes_and_stations_change_while_the_topology_runs() {
    require_root("routes_and_stations_change_while_the_topology_runs");
    let lab = TopologyLab::for_test("tc");
    let _down = TopologyDown {
        namespace: lab.node.clone(),
        name: NAME,
    };
    let dir = TempDir::new("topology-control");
    let path = dir.0.join("topo.toml");
    std::fs::write(&path, file(&lab)).unwrap();
    let applied = json(&[
        "--netns",
        &lab.node,
        "topology",
        "apply",
        path.to_str().unwrap(),
    ]);
    assert_eq!(applied["revision"], 1, "{applied}");

    // The connected routes from the router's addresses, counting real traffic.
    let shown = routes(&lab);
    for prefix in ["10.31.1.0/24", "10.31.2.0/24", "fd31:1::/64", "fd31:2::/64"] {
        let found = route(&shown, prefix).unwrap_or_else(|| panic!("{prefix}: {shown:?}"));
        assert!(found["via"].is_null(), "{found}");
    }
    let a1 = lab.host("a1").host.namespace.clone();
    let b1 = lab.host("b1").host.namespace.clone();
    let before = packets(&lab, "10.31.2.0/24");
    ping_works(&a1, "10.31.2.11");
    assert!(packets(&lab, "10.31.2.0/24") >= before + 3);

    // A route added at run time: 10.99.0.0/16 via b1, which holds 10.99.0.1; a1 sends
    // that way through its gateway.
    let added = json(
        &cli(
            &lab,
            &[
                "router",
                "route",
                "add",
                "r1",
                "10.99.0.0/16",
                "--port",
                "b",
                "--via",
                "10.31.2.11",
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(added["id"].is_u64(), "{added}");
    let shown = routes(&lab);
    let new = route(&shown, "10.99.0.0/16").expect("listed");
    assert_eq!(new["via"], "10.31.2.11");
    assert_eq!(new["port"], "b");
    assert_eq!(new["id"], added["id"]);
    assert_eq!(new["packets"], 0);
    for (namespace, args) in [
        (&b1, &["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"][..]),
        (
            &a1,
            &["ip", "route", "add", "10.99.0.0/16", "via", "10.31.1.1"][..],
        ),
    ] {
        let output = run_in(namespace, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
    ping_works(&a1, "10.99.0.1");
    assert!(packets(&lab, "10.99.0.0/16") >= 3);

    // Bad requests, each refused naming what is wrong; nothing changes.
    refused(
        &lab,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.99.0.0/16",
            "--port",
            "b",
        ],
        "already routes 10.99.0.0/16",
    );
    refused(
        &lab,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.98.0.5/16",
            "--port",
            "b",
        ],
        "host bits",
    );
    refused(
        &lab,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.98.0.0/16",
            "--port",
            "zz",
        ],
        "has no port zz",
    );
    refused(
        &lab,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.98.0.0/16",
            "--port",
            "b",
            "--via",
            "fd31:2::11",
        ],
        "not of the family",
    );
    refused(
        &lab,
        &["router", "route", "del", "r1", "10.98.0.0/16"],
        "has no route",
    );
    refused(
        &lab,
        &["router", "route", "show", "br-a"],
        "is a bridge, not a router",
    );
    refused(
        &lab,
        &["router", "route", "show", "r9"],
        "has no instance r9",
    );

    // Deleted: the router has no route there any more and drops the pings.
    json(
        &cli(&lab, &["router", "route", "del", "r1", "10.99.0.0/16"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(route(&routes(&lab), "10.99.0.0/16").is_none());
    assert!(!ping_once(&a1, "10.99.0.1"), "no route, no answer");

    // Static stations.
    let fdb = |lab: &TopologyLab| {
        json(
            &cli(lab, &["bridge", "fdb", "show", "br-a"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    };
    json(
        &cli(
            &lab,
            &["bridge", "fdb", "add", "br-a", "02:00:00:00:99:99", "p2"],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let table = fdb(&lab);
    let station = table
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["mac"] == "02:00:00:00:99:99")
        .unwrap_or_else(|| panic!("added: {table}"));
    assert_eq!(station["port"], "p2");
    assert_eq!(station["is_static"], true);
    assert!(station["age_seconds"].is_null());
    refused(
        &lab,
        &["bridge", "fdb", "add", "br-a", "01:00:5e:00:00:01", "p1"],
        "multicast",
    );
    refused(
        &lab,
        &["bridge", "fdb", "add", "br-a", "02:00:00:00:99:98", "p9"],
        "has no port p9",
    );
    refused(
        &lab,
        &["bridge", "fdb", "show", "r1"],
        "is a router, not a bridge",
    );
    json(
        &cli(&lab, &["bridge", "fdb", "del", "br-a", "02:00:00:00:99:99"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let table = fdb(&lab);
    assert!(
        !table
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["mac"] == "02:00:00:00:99:99"),
        "{table}"
    );
    refused(
        &lab,
        &["bridge", "fdb", "del", "br-a", "02:00:00:00:99:99"],
        "has no entry",
    );
}
