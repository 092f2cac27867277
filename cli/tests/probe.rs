//! `fastpath probe` on the lab's veth, for real: trials, profile, and an existing program
//! left alone.

use std::process::Command;

use lab::Lab;

fn probe(lab: &Lab, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args([
            "--netns",
            &lab.dut.namespace,
            "--json",
            "probe",
            &lab.dut.iface,
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    reports[0].clone()
}

fn fastpath(lab: &Lab, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(["--netns", &lab.dut.namespace])
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn program_id(report: &serde_json::Value) -> u64 {
    report["existing_program"]["id"]
        .as_u64()
        .expect("a program")
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn probe_on_veth_reports_the_trials_and_the_veth_profile() {
    lab::require_root("probe_on_veth_reports_the_trials_and_the_veth_profile");
    let lab = Lab::for_test("pr");
    let report = probe(&lab, &[]);
    assert_eq!(report["iface"], lab.dut.iface.as_str());
    assert_eq!(report["driver"], "veth");
    assert_eq!(report["modes"]["skb"]["ok"], true, "{report}");
    assert_eq!(report["modes"]["drv"]["ok"], true, "{report}");
    assert_eq!(report["modes"]["hw"]["ok"], false);
    let hw_error = report["modes"]["hw"]["error"].as_str().unwrap();
    assert!(
        hw_error.contains("does not support BPF hardware offload"),
        "{hw_error}"
    );
    assert_eq!(report["afxdp"]["copy"]["ok"], true, "{report}");
    assert_eq!(report["afxdp"]["zero_copy"]["ok"], false);
    assert!(
        report["afxdp"]["zero_copy"]["error"]
            .as_str()
            .unwrap()
            .contains("veth")
    );
    assert_eq!(report["profile"]["name"], "veth");
    let features = report["xdp_features"].as_array().unwrap();
    assert!(features.iter().any(|f| f == "basic"), "{report}");
    assert!(
        report["ntuple"]["error"].as_str().is_some(),
        "veth has no ntuple"
    );
    assert!(report["existing_program"].is_null());
    let recommended = |setting: &str| {
        report["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["setting"] == setting)
            .map(|r| r["value"].as_str().unwrap().to_string())
    };
    assert_eq!(recommended("xdp_mode").as_deref(), Some("drv"));
    assert_eq!(recommended("zero_copy").as_deref(), Some("off"));
    assert_eq!(recommended("hardware_steering").as_deref(), Some("off"));
    // Nothing stays attached after the trials.
    assert!(probe(&lab, &[])["existing_program"].is_null());
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn an_existing_program_is_left_alone_and_force_never_replaces_it() {
    lab::require_root("an_existing_program_is_left_alone_and_force_never_replaces_it");
    let lab = Lab::for_test("ps");
    fastpath(&lab, &["xdp", "attach", "--iface", &lab.dut.iface]);
    let report = probe(&lab, &[]);
    let id = program_id(&report);
    for trial in [&report["modes"]["drv"], &report["afxdp"]["copy"]] {
        assert_eq!(trial["ok"], false);
        assert!(
            trial["error"].as_str().unwrap().contains("--force"),
            "{trial}"
        );
    }
    let forced = probe(&lab, &["--force"]);
    assert_eq!(program_id(&forced), id, "the program was not replaced");
    let drv = forced["modes"]["drv"]["error"].as_str().unwrap();
    assert!(drv.contains("never replaced"), "{drv}");
    assert_eq!(forced["afxdp"]["copy"]["ok"], true, "{forced}");
    assert_eq!(
        program_id(&probe(&lab, &[])),
        id,
        "still attached after --force"
    );
    fastpath(&lab, &["xdp", "detach", "--iface", &lab.dut.iface]);
}
