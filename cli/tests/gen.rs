//! `fastpath gen` on the lab: live frames leave the client's veth and reach the dut's XDP
//! program; the counters at both ends agree. Rates are reported, never asserted.

use std::process::{Command, Output};

use lab::{Lab, require_root};

fn fastpath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(args)
        .output()
        .expect("run fastpath")
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = fastpath(&[&["--json"], args].concat());
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
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
fn live_frames_reach_the_peer_and_the_counters_agree() {
    if !require_root("live frames generator") {
        return;
    }
    let lab = Lab::for_test("gn");
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let (client_ns, client_if) = (lab.client.namespace.as_str(), lab.client.iface.as_str());
    let dst = drop_rule_on_dut(&lab);
    let output = fastpath(&[
        "--json",
        "--netns",
        client_ns,
        "gen",
        "--iface",
        client_if,
        "--dst",
        &dst,
        "--flows",
        "8",
        "--count",
        "100000",
        "--duration",
        "10",
        "--rate",
        "200000",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // No warning: the dispatcher hold was made, so calls do not wait for RCU grace periods.
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let sent = report["sent"].as_u64().unwrap();
    assert_eq!(sent, 100_000, "{report}");
    assert!(report["mpps"].as_f64().unwrap() > 0.0);
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

/// The IMIX frames on the wire less their FCS, as the dut's rule counts them, in the order
/// the AF_XDP mode sends one cycle of the mix.
const IMIX_CYCLE: [u64; 12] = [60, 60, 60, 60, 60, 60, 60, 590, 590, 590, 590, 1514];

#[test]
fn af_xdp_mode_sends_an_imix_in_its_exact_shares() {
    if !require_root("AF_XDP TX generator") {
        return;
    }
    let lab = Lab::for_test("gx");
    let (dut_ns, dut_if) = (lab.dut.namespace.as_str(), lab.dut.iface.as_str());
    let dst = drop_rule_on_dut(&lab);
    let count = 20_000u64;
    let report = json(&[
        "--netns",
        &lab.client.namespace,
        "gen",
        "--iface",
        &lab.client.iface,
        "--dst",
        &dst,
        "--mode",
        "xsk",
        "--size",
        "imix",
        "--flows",
        "4",
        "--count",
        &count.to_string(),
        "--rate",
        "100000",
        "--duration",
        "10",
    ]);
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
fn bad_generator_input_is_named() {
    let fails = |args: &[&str], needle: &str| {
        let output = fastpath(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(
            text.contains(needle),
            "{args:?}: {needle:?} not in {text:?}"
        );
    };
    fails(
        &["gen", "--iface", "lo", "--dst", "10.0.0.1", "--flows", "0"],
        "--flows 0",
    );
    fails(
        &["gen", "--iface", "lo", "--dst", "10.0.0.1", "--rate", "0"],
        "--rate 0",
    );
    fails(
        &[
            "gen",
            "--iface",
            "lo",
            "--dst",
            "10.0.0.1",
            "--duration",
            "0",
        ],
        "--duration 0",
    );
    fails(&["gen", "--iface", "lo", "--dst", "not-an-ip"], "--dst");
    fails(
        &[
            "gen",
            "--iface",
            "lo",
            "--dst",
            "10.0.0.1",
            "--dst-mac",
            "zz",
        ],
        "invalid MAC",
    );
    if require_root("generator errors on interfaces") {
        fails(
            &["gen", "--iface", "nosuchif0", "--dst", "10.0.0.1"],
            "nosuchif0",
        );
        fails(
            &[
                "gen",
                "--iface",
                "lo",
                "--dst",
                "127.0.0.1",
                "--size",
                "9000",
            ],
            "--size 9000: frame size 9000 out of range",
        );
        fails(
            &[
                "gen",
                "--iface",
                "lo",
                "--dst",
                "127.0.0.1",
                "--size",
                "jumbo",
            ],
            "--size jumbo: expected a frame size in bytes or `imix`",
        );
        // One AF_XDP socket per queue: lo has one queue.
        fails(
            &[
                "gen",
                "--iface",
                "lo",
                "--dst",
                "127.0.0.1",
                "--mode",
                "xsk",
                "--cores",
                "0,1",
            ],
            "2 cores but lo has 1 queue(s)",
        );
    }
}
