//! The `fastpath` binary as a user runs it: error paths with clear messages and non-zero
//! exits, and a full round trip across separate invocations with --netns and --json.

mod support;
use support::{fastpath, pins_root};

use std::process::{Command, Output};

use lab::{Lab, require_root as root};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failing exit whose stderr names `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let output = fastpath(args);
    assert!(!output.status.success(), "{args:?} should fail");
    let message = stderr(&output);
    assert!(
        message.contains(needle),
        "{args:?}: expected {needle:?} in {message:?}"
    );
}

#[test]
fn bad_rule_fields_are_named() {
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [
            &["xdp", "rule", "add", "--iface", "lo", "--action", "drop"][..],
            extra,
        ]
        .concat()
    }
    fails_with(&with(&["--dst", "10.0.0.300/8"]), "--dst");
    fails_with(&with(&["--src", "not-an-address"]), "--src");
    fails_with(
        &with(&["--dport", "90-80"]),
        "range start is greater than its end",
    );
    fails_with(&with(&["--dport", "99999"]), "--dport");
    fails_with(&with(&["--proto", "sctp"]), "--proto");
    fails_with(
        &["xdp", "rule", "add", "--iface", "lo", "--action", "bounce"],
        "invalid action",
    );
    fails_with(
        &["xdp", "attach", "--iface", "lo", "--mode", "turbo"],
        "--mode",
    );
    fails_with(
        &["xdp", "attach", "--iface", "lo", "--default", "tx"],
        "--default",
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn unknown_interface_and_nothing_attached_are_clear_errors() {
    root("cli errors");
    fails_with(
        &["xdp", "attach", "--iface", "nosuchif0"],
        "interface \"nosuchif0\" not found",
    );
    fails_with(
        &["xdp", "detach", "--iface", "lo"],
        "nothing attached to lo",
    );
    fails_with(
        &["xdp", "status", "--iface", "lo"],
        "nothing attached to lo",
    );
    fails_with(
        &["xdp", "rule", "list", "--iface", "lo"],
        "nothing attached to lo",
    );
    fails_with(
        &["--netns", "fp-no-such-ns", "xdp", "status", "--iface", "lo"],
        "no namespace fp-no-such-ns",
    );
    let output = fastpath(&["--json", "xdp", "detach", "--iface", "lo"]);
    assert!(!output.status.success());
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON error body");
    assert!(body["error"].as_str().unwrap().contains("nothing attached"));
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn attach_rules_status_and_detach_across_invocations_in_a_namespace() {
    root("cli round trip");
    let lab = Lab::for_test("cl");
    let ns = lab.dut.namespace.as_str();
    let iface = lab.dut.iface.as_str();
    let json = |args: &[&str]| -> serde_json::Value {
        let output = fastpath(&[&["--json", "--netns", ns], args].concat());
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("JSON output")
    };

    let attached = json(&["xdp", "attach", "--iface", iface, "--default", "pass"]);
    assert_eq!(attached["mode"], "drv");
    assert_eq!(attached["fallbacks"][0]["mode"], "hw");

    let first = json(&[
        "xdp",
        "rule",
        "add",
        "--iface",
        iface,
        "--action",
        "drop",
        "--proto",
        "udp",
        "--dst",
        "10.77.0.2",
        "--dport",
        "5000-5010",
    ]);
    let second = json(&[
        "xdp",
        "rule",
        "add",
        "--iface",
        iface,
        "--action",
        "xsk",
        "--src",
        "10.77.0.0/24",
    ]);
    assert_eq!(
        (first["id"].as_u64(), second["id"].as_u64()),
        (Some(1), Some(2))
    );
    fails_with(
        &[
            "--netns",
            ns,
            "xdp",
            "rule",
            "add",
            "--iface",
            iface,
            "--action",
            "pass",
            "--proto",
            "udp",
            "--dst",
            "10.77.0.2",
            "--dport",
            "5000-5010",
        ],
        "duplicates rule 1",
    );
    fails_with(
        &[
            "--netns", ns, "xdp", "rule", "del", "--iface", iface, "--id", "9",
        ],
        "no rule with id 9",
    );

    let rules = json(&["xdp", "rule", "list", "--iface", iface]);
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 2);
    for key in [
        "id", "proto", "dst", "dport", "src", "action", "packets", "bytes",
    ] {
        assert!(rules[0].get(key).is_some(), "rule list lacks {key}");
    }
    assert_eq!(rules[0]["dport"], "5000-5010");
    assert_eq!(rules[1]["action"], "xsk");

    let status = json(&["xdp", "status", "--iface", iface]);
    for key in ["iface", "mode", "program_id", "counters", "rules"] {
        assert!(status.get(key).is_some(), "status lacks {key}");
    }
    for key in ["pass", "drop", "xsk", "tx", "malformed"] {
        assert!(status["counters"].get(key).is_some(), "counters lack {key}");
    }
    assert_eq!(status["program_id"], attached["program_id"]);
    // Rule 1 is a /32 with a port range, rule 2 a /0 (no destination, an IPv4 source):
    // two IPv4 prefixes, too few for the per-length hashes to pay, and no IPv6 prefix.
    assert_eq!(status["prefix_lookup"]["v4"]["method"], "trie");
    assert_eq!(status["prefix_lookup"]["v4"]["prefixes"], 2);
    assert_eq!(
        status["prefix_lookup"]["v4"]["lengths"],
        serde_json::json!([32, 0])
    );
    assert_eq!(status["prefix_lookup"]["v6"]["method"], "none");
    assert_eq!(status["exact_lookup"]["v4"]["method"], "none");

    // An exact rule (host, port, protocol) goes to the IPv4 table.
    let exact = json(&[
        "xdp",
        "rule",
        "add",
        "--iface",
        iface,
        "--action",
        "drop",
        "--proto",
        "tcp",
        "--dst",
        "10.77.0.2",
        "--dport",
        "80",
    ]);
    assert_eq!(exact["id"].as_u64(), Some(3));
    let status = json(&["xdp", "status", "--iface", iface]);
    assert_eq!(
        status["exact_lookup"]["v4"],
        serde_json::json!({"method": "table", "rules": 1, "buckets": 1, "spilled": 0})
    );
    assert_eq!(status["exact_lookup"]["v6"]["method"], "none");

    let replaced = json(&["xdp", "replace", "--iface", iface]);
    assert_ne!(replaced["new_program_id"], replaced["old_program_id"]);
    json(&["xdp", "rule", "del", "--iface", iface, "--id", "1"]);
    assert_eq!(
        json(&["xdp", "rule", "list", "--iface", iface])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    json(&["xdp", "detach", "--iface", iface]);
    fails_with(
        &["--netns", ns, "xdp", "detach", "--iface", iface],
        "nothing attached",
    );
}

/// The placement planner on veth (no offload): the prefilter merges into the steering
/// program in the driver slot; listed sources are dropped and counted, others pass, and the
/// list changes at run time without a reload.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_prefilter_is_merged_on_veth_and_drops_listed_sources() {
    root("prefilter placement");
    let lab = Lab::for_test("pf");
    let ns = lab.dut.namespace.as_str();
    let iface = lab.dut.iface.as_str();
    let client = lab.client.ipv4.to_string();
    let json = |args: &[&str]| -> serde_json::Value {
        let output = fastpath(&[&["--json", "--netns", ns], args].concat());
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("JSON output")
    };
    let attach = [
        "xdp",
        "attach",
        "--iface",
        iface,
        "--prefilter-drop",
        &client,
        "--prefilter-drop",
        "fd77::99",
    ];
    let plan = json(&[&attach[..], &["--plan-only"]].concat());
    assert_eq!(plan["layout"], "merged");
    assert_eq!(plan["prefilter_mode"], serde_json::Value::Null);
    assert!(
        plan["reasons"][0]
            .as_str()
            .unwrap()
            .contains("driver veth does not offload XDP programs"),
        "{plan}"
    );
    let attached = json(&attach);
    assert_eq!(attached["mode"], "drv");
    assert_eq!(attached["plan"]["layout"], "merged");

    // Datagrams from the listed client never reach a socket on the dut.
    let receiver = Lab::udp_socket(ns, format!("{}:7000", lab.dut.ipv4).parse().unwrap()).unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let send = |count: usize| {
        let sender = Lab::udp_socket(&lab.client.namespace, "0.0.0.0:0".parse().unwrap()).unwrap();
        for _ in 0..count {
            sender.send_to(b"prefilter", (lab.dut.ipv4, 7000)).unwrap();
        }
    };
    send(20);
    let mut buffer = [0u8; 64];
    assert!(
        receiver.recv(&mut buffer).is_err(),
        "a listed source got through"
    );
    let status = json(&["xdp", "status", "--iface", iface]);
    assert_eq!(status["placements"][0]["mode"], "drv");
    // The driver slot runs the module chain's entry; steer is its module.
    assert_eq!(status["placements"][0]["program"], "chain_entry_fra");
    assert_eq!(status["modules"], serde_json::json!(["steer"]));
    assert_eq!(status["placements"].as_array().unwrap().len(), 1);
    assert_eq!(status["counters"]["prefilter"], 20);
    let entries = status["prefilter"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let client_entry = entries.iter().find(|e| e["source"] == client).unwrap();
    assert_eq!(client_entry["drops"], 20);

    // Emptied at run time: the same datagrams now arrive.
    json(&["xdp", "prefilter", "--iface", iface]);
    send(3);
    assert_eq!(receiver.recv(&mut buffer).unwrap(), 9);
    let status = json(&["xdp", "status", "--iface", iface]);
    assert_eq!(status["counters"]["prefilter"], 20);
    assert!(status["prefilter"].as_array().unwrap().is_empty());
    json(&["xdp", "detach", "--iface", iface]);
}

/// `ip netns exec NS fastpath ...` runs fastpath in a mount namespace with a fresh /sys,
/// where a bpffs would be private to the command: fastpath pins in the host's bpffs instead
/// and says so, so `ip netns exec` and `--netns` see, change and detach one attachment.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn ip_netns_exec_and_the_netns_flag_share_one_attachment() {
    root("ip netns exec");
    let lab = Lab::for_test("ie");
    let ns = lab.dut.namespace.as_str();
    let iface = lab.dut.iface.as_str();
    let top = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/sys/fs/bpf")
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    // Made on first use; other tests running alongside pin inside it.
                    .filter(|name| name != "fastpath")
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = top();
    let ip_netns_exec = |args: &[&str]| -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_fastpath"),
                "--json",
            ])
            .args(args)
            .output()
            .expect("run ip netns exec")
    };
    let netns_flag = |args: &[&str]| fastpath(&[&["--json", "--netns", ns], args].concat());
    let parse = |args: &[&str], output: Output| -> serde_json::Value {
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("JSON output")
    };
    let via_exec = |args: &[&str]| parse(args, ip_netns_exec(args));
    let via_flag = |args: &[&str]| parse(args, netns_flag(args));
    let pins = pins_root(ns).join(iface);
    let xdp_on_iface = || {
        let output = Command::new("ip")
            .args(["-n", ns, "-d", "link", "show", iface])
            .output()
            .expect("run ip link");
        String::from_utf8_lossy(&output.stdout).contains("prog/xdp")
    };

    type Run<'a> = &'a dyn Fn(&[&str]) -> serde_json::Value;
    let ways: [(Run, Run); 2] = [(&via_exec, &via_flag), (&via_flag, &via_exec)];
    for (attach, detach) in ways {
        let attach_args = ["xdp", "attach", "--iface", iface];
        let attached = attach(&attach_args);
        let program_id = attached["program_id"].as_u64().expect("program id");
        assert!(
            pins.join("chain").join("link").exists() && pins.join("prog").exists(),
            "pinned in the host's bpffs"
        );
        let rule = [
            "xdp", "rule", "add", "--iface", iface, "--action", "drop", "--proto", "udp",
            "--dport", "9",
        ];
        attach(&rule);
        for (how, status) in [
            (
                "ip netns exec",
                via_exec(&["xdp", "status", "--iface", iface]),
            ),
            ("--netns", via_flag(&["xdp", "status", "--iface", iface])),
        ] {
            assert_eq!(
                status["program_id"].as_u64(),
                Some(program_id),
                "{how}: {status}"
            );
            assert_eq!(
                status["rules"].as_array().unwrap().len(),
                1,
                "{how}: {status}"
            );
        }
        // Each says which bpffs it used: the host's, reached through /proc, under
        // `ip netns exec`.
        let status = via_exec(&["xdp", "status", "--iface", iface]);
        let bpffs = status["bpffs"].as_str().unwrap();
        assert!(
            bpffs.starts_with("/sys/fs/bpf of the host, through /proc/"),
            "{bpffs}"
        );
        let output = ip_netns_exec(&["xdp", "status", "--iface", iface]);
        assert!(
            stderr(&output).contains("bpffs: /sys/fs/bpf of the host"),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            via_flag(&["xdp", "status", "--iface", iface])["bpffs"],
            "/sys/fs/bpf"
        );
        assert!(xdp_on_iface());

        detach(&["xdp", "detach", "--iface", iface]);
        assert!(!pins.exists(), "detach removed the pins");
        assert!(!xdp_on_iface(), "detach took the program off");
        for output in [
            ip_netns_exec(&["xdp", "status", "--iface", iface]),
            netns_flag(&["xdp", "status", "--iface", iface]),
        ] {
            assert!(!output.status.success());
            assert!(
                stderr(&output).contains("nothing attached"),
                "{}",
                stderr(&output)
            );
        }
    }
    assert_eq!(top(), before, "nothing new at the top of bpffs");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // `fastpath ... | head`: the reader closes its end before fastpath has written.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(["module", "sdk"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fastpath");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait for fastpath");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}

/// Namespaces this test makes, deleted when it ends however it ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = lab::netns::delete(name);
        }
    }
}

/// Two "containers" each have an `eth0` (and an `eth0.100`, named as VLAN devices are; this
/// kernel has no 802.1Q devices, so it is a veth): fastpath run in one never sees or
/// touches what runs in the other, as users of containers expect.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn namespaces_with_the_same_interface_names_keep_their_own_attachments() {
    root("namespaces_with_the_same_interface_names");
    let prefix = format!("fpnn{:04}", std::process::id() % 10000);
    let names = Namespaces(vec![format!("{prefix}-a"), format!("{prefix}-b")]);
    for ns in &names.0 {
        let _ = lab::netns::delete(ns);
        lab::netns::create(ns).expect("create namespace");
        for args in [
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
            ][..],
            &[
                "link", "add", "eth0.100", "type", "veth", "peer", "name", "peer100",
            ],
            &["link", "set", "eth0", "up"],
            &["link", "set", "peer0", "up"],
            &["link", "set", "peer100", "up"],
            &["link", "set", "eth0.100", "up"],
        ] {
            let output = Command::new("ip")
                .arg("-n")
                .arg(ns)
                .args(args)
                .output()
                .unwrap();
            assert!(output.status.success(), "ip {args:?}: {}", stderr(&output));
        }
    }
    let (a, b) = (names.0[0].as_str(), names.0[1].as_str());
    let run = |ns: &str, args: &[&str]| -> serde_json::Value {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_fastpath"),
                "--json",
            ])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            output.status.success(),
            "{ns} {args:?}: {}",
            stderr(&output)
        );
        serde_json::from_slice(&output.stdout).expect("JSON output")
    };
    let rule_count = |ns: &str, iface: &str| {
        run(ns, &["xdp", "status", "--iface", iface])["rules"]
            .as_array()
            .expect("rules")
            .len()
    };

    let in_a = run(a, &["xdp", "attach", "--iface", "eth0"])["program_id"].as_u64();
    let in_b = run(b, &["xdp", "attach", "--iface", "eth0"])["program_id"].as_u64();
    assert!(
        in_a.is_some() && in_b.is_some() && in_a != in_b,
        "{in_a:?} {in_b:?}"
    );
    run(
        a,
        &[
            "xdp", "rule", "add", "--iface", "eth0", "--action", "drop", "--proto", "udp",
            "--dport", "9",
        ],
    );
    assert_eq!(rule_count(a, "eth0"), 1);
    assert_eq!(
        rule_count(b, "eth0"),
        0,
        "a rule added in one namespace stays there"
    );
    assert_ne!(pins_root(a), pins_root(b));
    assert!(pins_root(a).join("eth0").join("prog").exists());

    // The name has a dot, which bpffs refuses in its names.
    let vlan = run(a, &["xdp", "attach", "--iface", "eth0.100"]);
    assert!(vlan["program_id"].as_u64().is_some(), "{vlan}");
    assert_eq!(rule_count(a, "eth0.100"), 0);
    run(a, &["xdp", "detach", "--iface", "eth0.100"]);

    run(a, &["xdp", "detach", "--iface", "eth0"]);
    assert_eq!(
        run(b, &["xdp", "status", "--iface", "eth0"])["program_id"].as_u64(),
        in_b,
        "detaching in one namespace leaves the other's program"
    );
    let pins_of_b = pins_root(b);
    drop(names);
    // The next command anywhere prunes what a deleted namespace left pinned.
    fastpath(&["lab", "down"]);
    assert!(!pins_of_b.exists(), "{} left", pins_of_b.display());
}
