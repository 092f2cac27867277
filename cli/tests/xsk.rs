//! `fastpath xsk` on the lab: l2fwd sends every packet back with the MACs swapped, and
//! forced zero-copy on veth fails with a clear message.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lab::{
    Lab,
    frame::{FrameSpec, frame_tag, tagged_udp_frame},
    raw::RawSocket,
};

const PORT: u16 = 4792;

fn lab_for(test: &str, tag: &str) -> Lab {
    lab::require_root(test);
    Lab::for_test(tag)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn l2fwd_returns_every_packet_with_the_macs_swapped() {
    let lab = lab_for("l2fwd_returns_every_packet", "cf");
    let forwarder = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args([
            "--netns",
            &lab.dut.namespace,
            "xsk",
            "l2fwd",
            "--iface",
            &lab.dut.iface,
        ])
        // Stopped by SIGINT once every packet is back; the duration only bounds a failed test.
        .args(["--copy", "--duration", "60", "--quiet", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start l2fwd");
    let client = RawSocket::open(&lab.client.namespace, &lab.client.iface).unwrap();
    let spec = FrameSpec {
        src_mac: lab.client.read_mac().unwrap(),
        dst_mac: lab.dut.read_mac().unwrap(),
        src_ip: "10.77.0.1".parse().unwrap(),
        dst_ip: "10.77.0.2".parse().unwrap(),
        src_port: PORT,
        dst_port: PORT,
    };
    // Wait until the forwarder answers, then send the real burst.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        client.send(&tagged_udp_frame(&spec, 64, u32::MAX)).unwrap();
        while let Some(frame) = client.receive(Duration::from_millis(200)).unwrap() {
            ready |= frame_tag(&frame, PORT) == Some(u32::MAX);
        }
    }
    assert!(ready, "l2fwd never answered");

    const COUNT: u32 = 500;
    let mut seen = vec![false; COUNT as usize];
    for tag in 0..COUNT {
        let sent = tagged_udp_frame(&spec, 64 + (tag as usize % 1400), tag);
        client.send(&sent).unwrap();
    }
    // Until every packet is back, or nothing arrives for 5 s.
    while !seen.iter().all(|&back| back) {
        let Some(frame) = client.receive(Duration::from_secs(5)).unwrap() else {
            break;
        };
        let Some(tag) = frame_tag(&frame, PORT) else {
            continue;
        };
        if tag == u32::MAX {
            continue;
        }
        let mut expected = tagged_udp_frame(&spec, 64 + (tag as usize % 1400), tag);
        pipeline::xsk_apps::swap_macs(&mut expected);
        assert_eq!(
            frame, expected,
            "packet {tag} must come back with only the MACs swapped"
        );
        seen[tag as usize] = true;
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "packets not returned: {missing:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(forwarder.id() as i32, libc::SIGINT) };
    let output = forwarder.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary["packets"].as_u64().unwrap() >= COUNT as u64);
    assert_eq!(summary["mode"], "copy");
    for key in ["bytes", "seconds", "mpps", "stats"] {
        assert!(summary.get(key).is_some(), "JSON summary lacks {key}");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn forced_zero_copy_on_veth_fails_with_the_driver_named() {
    let lab = lab_for("forced_zero_copy_on_veth", "cz");
    let output = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args([
            "--netns",
            &lab.dut.namespace,
            "xsk",
            "rxdrop",
            "--iface",
            &lab.dut.iface,
        ])
        .args(["--zero-copy", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("zero-copy not supported by driver veth"),
        "{message}"
    );
}
