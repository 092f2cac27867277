//! The steering program as the module `steer` of the IO module chain, on the lab with real
//! traffic: `xdp attach` shows up in `fastpath module list`, a user module loaded before
//! steer sees packets first, and a user module in front of a running load balancer is
//! loaded, swapped and unloaded while HTTP clients keep getting answers.

mod lb_common;
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use lab::{Lab, require_root, wait_until};
use support::{DROPPER, TempDir, failure, json, pins_root};

/// A DDoS filter as a user would put it in front of a load balancer: drops UDP floods to
/// port 19 (chargen), counts every TCP packet it lets through in `TCP_SEEN`, lets the rest
/// continue. `VERSION` is replaced to build the version a swap installs.
const DDOS_FILTER: &str = r#"
#include "module.h"
FASTPATH_MODULE("ddos", "VERSION", 1);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} TCP_SEEN SEC(".maps");

SEC("xdp.frags")
int ddos(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	if (fp->parse == FP_PARSE_IP && fp->protocol == 17 && fp->has_ports && fp->dst_port == 19)
		return fp_drop(fp);
	if (fp->parse == FP_PARSE_IP && fp->protocol == 6) {
		__u32 key = 0;
		__u64 *seen = bpf_map_lookup_elem(&TCP_SEEN, &key);
		if (seen)
			*seen += 1;
	}
	return fp_continue(ctx, fp);
}
"#;

fn names(listing: &serde_json::Value) -> Vec<String> {
    listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect()
}

fn entry<'a>(listing: &'a serde_json::Value, module: &str) -> &'a serde_json::Value {
    listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == module)
        .unwrap_or_else(|| panic!("{module} in {listing}"))
}

fn verdict(listing: &serde_json::Value, module: &str, verdict: &str) -> u64 {
    entry(listing, module)["packets"][verdict].as_u64().unwrap()
}

/// `count` UDP datagrams from the client namespace to `dst`:9.
fn udp_to_port_9(lab: &Lab, count: u64) {
    let dst = lab.dut.ipv4;
    lab::netns::run_in(&lab.client.namespace, move || {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).expect("bind UDP");
        for _ in 0..count {
            socket
                .send_to(b"steer chain", (dst, 9))
                .expect("send a datagram");
        }
    })
    .expect("client namespace");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn xdp_attach_is_the_module_steer_and_a_module_before_it_sees_packets_first() {
    require_root("xdp attach on the module chain");
    let objects = TempDir::new("steer-chain-dropper");
    let dropper = objects.module("dropper", DROPPER);
    let lab = Lab::for_test("sx");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let listing = || on_dut(&["module", "list", "--iface", &iface]);

    let attached = on_dut(&["xdp", "attach", "--iface", &iface]);
    let list = listing();
    assert_eq!(names(&list), ["steer"], "{list}");
    assert_eq!(
        entry(&list, "steer")["program_id"],
        attached["program_id"],
        "{list}"
    );
    assert_eq!(
        entry(&list, "steer")["version"],
        env!("CARGO_PKG_VERSION"),
        "{list}"
    );
    // steer drops UDP to port 9 with a rule, so every datagram to it meets the rule's
    // counter: the rule's packets are what reached steer.
    on_dut(&[
        "xdp", "rule", "add", "--iface", &iface, "--action", "drop", "--proto", "udp", "--dport",
        "9",
    ]);
    let rule_packets = || -> u64 {
        on_dut(&["xdp", "status", "--iface", &iface])["rules"][0]["packets"]
            .as_u64()
            .unwrap()
    };
    let wait = |what: &str, condition: &dyn Fn() -> bool| {
        wait_until(Duration::from_secs(10), what, condition)
    };
    udp_to_port_9(&lab, 10);
    wait("steer's rule to count 10 datagrams", &|| {
        rule_packets() == 10
    });
    assert_eq!(verdict(&listing(), "steer", "drop"), 10);

    // The dropper before steer: port 9 no longer reaches steer.
    let loaded = on_dut(&[
        "module", "load", "--iface", &iface, &dropper, "--before", "steer",
    ]);
    assert!(loaded["attached"].is_null(), "joined the chain: {loaded}");
    assert_eq!(names(&listing()), ["dropper", "steer"]);
    let status = on_dut(&["xdp", "status", "--iface", &iface]);
    assert_eq!(status["modules"], serde_json::json!(["dropper", "steer"]));
    udp_to_port_9(&lab, 10);
    wait("the dropper to drop 10 datagrams", &|| {
        verdict(&listing(), "dropper", "drop") == 10
    });
    assert_eq!(rule_packets(), 10, "no datagram got past the dropper");
    assert_eq!(verdict(&listing(), "steer", "drop"), 10);

    // Unloaded: steer sees port 9 again.
    on_dut(&["module", "unload", "--iface", &iface, "dropper"]);
    udp_to_port_9(&lab, 10);
    wait("steer's rule to count 20 datagrams", &|| {
        rule_packets() == 20
    });

    // `xdp detach` takes steer out and leaves the user's module (and the chain) running.
    on_dut(&[
        "module", "load", "--iface", &iface, &dropper, "--before", "steer",
    ]);
    on_dut(&["xdp", "detach", "--iface", &iface]);
    assert_eq!(names(&listing()), ["dropper"]);
    let error = failure(&["--netns", &ns, "xdp", "status", "--iface", &iface]);
    assert!(error.contains("nothing attached"), "{error}");
    on_dut(&["module", "unload", "--iface", &iface, "dropper"]);
    let pins = pins_root(&ns).join(&iface);
    assert!(!pins.exists(), "{} left", pins.display());
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_user_module_in_front_of_the_lb_is_loaded_swapped_and_unloaded_while_it_serves() {
    require_root("a user module in front of the load balancer");
    let objects = TempDir::new("steer-chain-ddos");
    let ddos = objects.module("ddos", &DDOS_FILTER.replace("VERSION", "1.0.0"));
    let ddos_v2 = objects.module("ddos_v2", &DDOS_FILTER.replace("VERSION", "2.0.0"));
    let setup = lb_common::setup("sy", 1);
    let appliance = lb_common::Appliance::start(
        &setup,
        &lb_common::config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let (ns, iface) = (setup.lab.lb.namespace.clone(), setup.lab.lb.iface.clone());
    let module = |args: &[&str]| json(&[&["--netns", ns.as_str(), "module"], args].concat());
    let listing = || module(&["list", "--iface", &iface]);
    assert_eq!(names(&listing()), ["steer"]);

    // Real HTTP clients, one connection per request, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let target = std::net::SocketAddr::new(setup.lab.vip(true), 80);
    let client = {
        let (stop, requests) = (stop.clone(), requests.clone());
        let namespace = setup.lab.client.namespace.clone();
        std::thread::spawn(move || {
            lab::Lab::run_in(&namespace, move || {
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed) && results.len() < 20_000 {
                    results.push(lab::services::http_get(target, Duration::from_secs(3)));
                    requests.fetch_add(1, Ordering::Relaxed);
                }
                results
            })
            .unwrap()
        })
    };
    // Each step lets 20 requests complete, however slow the machine.
    let serve_some = |step: &str| {
        let from = requests.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(30), step, || {
            requests.load(Ordering::Relaxed) >= from + 20
        });
    };
    let tcp_seen = || -> u64 {
        let value = module(&[
            "map",
            "--iface",
            &iface,
            "ddos",
            "TCP_SEEN",
            "get",
            "00 00 00 00",
        ]);
        value["entries"][0]["value"]
            .as_array()
            .expect("a per-CPU value")
            .iter()
            .map(|cpu| {
                let bytes: Vec<u8> = cpu
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .map(|byte| u8::from_str_radix(byte, 16).unwrap())
                    .collect();
                u64::from_le_bytes(bytes.try_into().unwrap())
            })
            .sum()
    };

    serve_some("20 requests through steer alone");
    module(&["load", "--iface", &iface, &ddos, "--before", "steer"]);
    assert_eq!(names(&listing()), ["ddos", "steer"]);
    serve_some("20 requests through the filter");
    let seen_v1 = tcp_seen();
    assert!(seen_v1 > 0, "the filter counted the clients' TCP");
    let list = listing();
    assert!(verdict(&list, "ddos", "continue") > 0, "{list}");
    assert!(verdict(&list, "steer", "xsk") > 0, "{list}");

    let swapped = module(&["swap", "--iface", &iface, "ddos", &ddos_v2]);
    assert_eq!(swapped["new_version"], "2.0.0", "{swapped}");
    assert_eq!(swapped["maps"]["kept"], serde_json::json!(["TCP_SEEN"]));
    serve_some("20 requests through the swapped filter");
    assert!(tcp_seen() > seen_v1, "the count survived the swap and grew");

    module(&["unload", "--iface", &iface, "ddos"]);
    assert_eq!(names(&listing()), ["steer"]);
    serve_some("20 requests after the filter left");
    stop.store(true, Ordering::Relaxed);
    let results = client.join().unwrap();
    // Every request answered: tally panics on any failure.
    let served = lb_common::tally(&results);
    assert!(served.iter().sum::<usize>() >= 80, "{served:?}");
    assert!(appliance.stop(), "the appliance should stop cleanly");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_chain_file_keeps_and_moves_steer_and_never_drops_it_unnoticed() {
    require_root("chain apply with the built-in steer");
    let objects = TempDir::new("steer-chain-apply");
    objects.module("dropper", DROPPER);
    let lab = Lab::for_test("sa");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| json(&[&["--netns", ns.as_str()], args].concat());
    let listing = || on_dut(&["module", "list", "--iface", &iface]);
    let chain_file = |name: &str, text: &str| {
        let path = objects.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let apply_failure =
        |file: &str| failure(&["--netns", &ns, "chain", "apply", "--iface", &iface, file]);

    let attached = on_dut(&["xdp", "attach", "--iface", &iface]);
    let in_front = chain_file(
        "front.toml",
        "[[module]]\nfile = \"dropper.o\"\n\n[[module]]\nbuiltin = \"steer\"\n",
    );
    let applied = on_dut(&["chain", "apply", "--iface", &iface, &in_front]);
    assert_eq!(names(&listing()), ["dropper", "steer"], "{applied}");
    // steer is kept as it runs: the same program, its rules and counters untouched.
    assert_eq!(
        entry(&listing(), "steer")["program_id"],
        attached["program_id"]
    );
    assert_eq!(applied["changes"][1]["change"], "moved", "{applied}");

    let error = apply_failure(&chain_file(
        "without.toml",
        "[[module]]\nfile = \"dropper.o\"\n",
    ));
    assert!(error.contains("runs the built-in module steer"), "{error}");
    let error = apply_failure(&chain_file(
        "unknown.toml",
        "\n[[module]]\nbuiltin = \"nat\"\n",
    ));
    assert!(error.contains("unknown.toml line 3"), "{error}");
    assert!(error.contains("no built-in module \"nat\""), "{error}");
    let error = apply_failure(&chain_file(
        "both.toml",
        "[[module]]\nbuiltin = \"steer\"\nfile = \"dropper.o\"\n",
    ));
    assert!(error.contains("either a `file` or a `builtin`"), "{error}");
    assert_eq!(names(&listing()), ["dropper", "steer"]);

    // Without steer running, a file cannot bring it in: `xdp attach` does.
    on_dut(&["xdp", "detach", "--iface", &iface]);
    let error = apply_failure(&in_front);
    assert!(error.contains("does not run on"), "{error}");
    on_dut(&["module", "unload", "--iface", &iface, "dropper"]);
}
