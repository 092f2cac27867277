//! The crate layers of docs/architecture.md, enforced: a crate may depend (normal or build
//! dependency) only on crates of a lower layer. `lab` builds namespaces and veths for tests
//! and demos, so production crates take it as a dev-dependency only; the CLI (`fastpath lab`,
//! the demo) and the line-rate runner are the exceptions. Reads `cargo metadata`.

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;

/// Each workspace crate's layer; arrows point down only.
const LAYERS: &[(&str, u8)] = &[
    ("wire", 1),
    ("offload-common", 1),
    ("nic", 1),
    ("hw-profiles", 1),
    ("afxdp", 2),
    ("offload", 2),
    ("lab", 2),
    ("pipeline", 3),
    ("probe", 3),
    ("trafficgen", 3),
    ("nfv-apps", 4),
    ("bench", 4),
    ("firewall", 4),
    ("observe", 4),
    ("topology", 4),
    ("fastpath", 5),
    ("xtask", 6),
];

/// Edges inside one layer, each with its reason; any other edge must point down.
const SIDEWAYS: &[(&str, &str, &str)] = &[
    (
        "offload-common",
        "wire",
        "the kernel ABI shares wire's stamp and constants",
    ),
    (
        "bench",
        "nfv-apps",
        "the line-rate runner measures the load balancer as a subject",
    ),
    (
        "observe",
        "firewall",
        "the metrics read each firewall's status and the node's conntrack",
    ),
    (
        "observe",
        "nfv-apps",
        "the metrics ask each load balancer for its stats over its control socket",
    ),
    (
        "topology",
        "firewall",
        "a firewall instance's rules are compiled and switched by the firewall crate",
    ),
    (
        "topology",
        "nfv-apps",
        "an lb instance's Maglev tables are built by the load balancer's own Maglev code",
    ),
];

/// Crates allowed to take `lab` as a normal dependency.
const LAB_USERS: &[&str] = &["fastpath", "bench"];

fn workspace() -> Vec<Value> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    metadata["packages"].as_array().expect("packages").clone()
}

/// (crate, dependency) for every normal and build dependency between workspace crates.
fn internal_edges(packages: &[Value]) -> Vec<(String, String)> {
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("package name");
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let target = dependency["name"].as_str().expect("dependency name");
            let dev = dependency["kind"].as_str() == Some("dev");
            if names.contains(&target) && !dev {
                edges.push((name.to_string(), target.to_string()));
            }
        }
    }
    edges
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let layers: BTreeMap<_, _> = LAYERS.iter().copied().collect();
    let packages = workspace();
    let missing: Vec<&str> = packages
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|name| !layers.contains_key(name))
        .collect();
    assert!(
        missing.is_empty(),
        "crates without a layer: {missing:?}; add them to LAYERS and docs/architecture.md"
    );
}

#[test]
fn dependencies_point_down_only() {
    let layers: BTreeMap<_, _> = LAYERS.iter().copied().collect();
    let mut upward = Vec::new();
    for (from, to) in internal_edges(&workspace()) {
        let (Some(&high), Some(&low)) = (layers.get(from.as_str()), layers.get(to.as_str())) else {
            continue; // named by every_workspace_crate_has_a_layer
        };
        let lab_exception = to == "lab" && LAB_USERS.contains(&from.as_str());
        let sideways = SIDEWAYS.iter().any(|(a, b, _)| (*a, *b) == (&from, &to));
        if low >= high && !lab_exception && !sideways {
            upward.push(format!("{from} (layer {high}) -> {to} (layer {low})"));
        }
    }
    assert!(
        upward.is_empty(),
        "dependencies that do not point down: {upward:#?}"
    );
}

#[test]
fn production_crates_use_the_lab_only_in_tests() {
    for (from, to) in internal_edges(&workspace()) {
        assert!(
            to != "lab" || LAB_USERS.contains(&from.as_str()),
            "{from} depends on lab outside its tests; make it a dev-dependency"
        );
    }
}
