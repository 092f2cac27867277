//! `fastpath bench`: a short real run on its own veth lab (counters consistent, a non-zero
//! rate, the report files written), and the errors a user can make. Rates are never
//! asserted.

use std::process::{Command, Output};

use benches::report::{PLOTS, Results, Row};
use lab::require_root;

fn fastpath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(args)
        .output()
        .expect("run fastpath")
}

fn error_of(args: &[&str]) -> String {
    let output = fastpath(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A short run of `app` on its own veth lab (prefix `tag` + pid): the results printed and
/// written agree, every trial accounts for every frame, the report and plots are written
/// and the lab is gone afterwards.
fn short_run(app: &str, tag: &str) -> Results {
    let prefix = format!("{tag}{:04}", std::process::id() % 10000);
    let out = std::env::temp_dir().join(format!("{prefix}-out"));
    let output = fastpath(&[
        "--json",
        "bench",
        "--profile",
        "veth",
        "--app",
        app,
        "--sizes",
        "64",
        "--cores",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--search",
        "none",
        "--lab-prefix",
        &prefix,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Results = serde_json::from_slice(&output.stdout).expect("results on stdout");
    let written: Results =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(written.profile, "veth");
    assert_eq!(written.settings.app, app);
    let row = &written.rows[0];
    let mut trials = vec![row.saturation];
    trials.extend(row.points.iter().map(|p| p.accounting));
    assert_eq!(trials.len(), 4, "saturation and three load points");
    for trial in &trials {
        assert!(trial.offered > 0 && trial.received > 0, "{trial:?}");
        assert_eq!(trial.unaccounted, 0, "a frame went missing: {trial:?}");
        assert_eq!(
            trial.offered,
            trial.refused_by_driver.unwrap() + trial.reached_dut,
            "{trial:?}"
        );
    }
    assert!(row.saturation.received_mpps() > 0.0);
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| 64 | 1 |")
    );
    for plot in PLOTS {
        assert!(out.join(plot).exists(), "no {plot}");
    }
    assert!(!std::path::Path::new(&format!("/run/netns/{prefix}-dut")).exists());
    std::fs::remove_dir_all(&out).unwrap();
    written
}

fn reference(row: &Row, name: &str) -> f64 {
    row.references
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no {name} reference in {:?}", row.references))
        .mpps
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_short_rxdrop_run_accounts_for_every_frame() {
    require_root("bench runner");
    let results = short_run("rxdrop", "fpbn");
    let row = &results.rows[0];
    // Below saturation the sink read the send stamps.
    let latency = row.points[0].latency.expect("latency at 10% load");
    assert!(latency.samples > 0 && latency.p50_ns > 0 && latency.p50_ns <= latency.max_ns);
    // The in-kernel bound ran in the same run.
    assert!(reference(row, "xdp-drop") > 0.0);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_short_lb_run_counts_what_the_balancer_sends_back() {
    require_root("bench runner, load balancer");
    let results = short_run("lb", "fpbb");
    let row = &results.rows[0];
    // The appliance's worker took the frames from its socket and they came back to the
    // sender: received counts frames back at the sender.
    let saturation = row.saturation;
    assert!(
        saturation.received <= saturation.reached_dut,
        "{saturation:?}"
    );
    assert_eq!(
        saturation.other_verdicts, 0,
        "the VIP rule sent every frame to the socket"
    );
    assert!(reference(row, "xdp-tx") > 0.0);
    assert!(row.references.iter().all(|r| r.name != "xsk-rs"));
}

#[test]
fn bad_bench_input_is_refused_before_any_traffic() {
    let unknown = error_of(&["bench", "--profile", "nosuchnic", "--app", "rxdrop"]);
    assert!(
        unknown.contains("--profile nosuchnic: unknown profile") && unknown.contains("veth"),
        "{unknown}"
    );
    let zero_copy = error_of(&[
        "bench",
        "--profile",
        "veth",
        "--app",
        "rxdrop",
        "--zero-copy",
    ]);
    assert!(
        zero_copy.contains("profile veth cannot run rxdrop in zero-copy mode"),
        "{zero_copy}"
    );
    let missing = error_of(&[
        "bench",
        "--profile",
        "i40e",
        "--app",
        "rxdrop",
        "--tx-iface",
        "fpnosuch0",
        "--rx-iface",
        "fpnosuch1",
    ]);
    assert!(
        missing.contains("--tx-iface fpnosuch0: no such interface"),
        "{missing}"
    );
    let no_ifaces = error_of(&["bench", "--profile", "i40e", "--app", "xdp-drop"]);
    assert!(
        no_ifaces.contains("--tx-iface is required with profile i40e"),
        "{no_ifaces}"
    );
    let size = error_of(&[
        "bench",
        "--profile",
        "veth",
        "--app",
        "xdp-drop",
        "--sizes",
        "40",
    ]);
    assert!(size.contains("--sizes 40"), "{size}");
}

#[test]
fn compare_prints_ratios_of_two_result_files() {
    let dir = std::env::temp_dir().join(format!("fpbench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    let error = error_of(&["bench", "compare", broken.to_str().unwrap(), "b.json"]);
    assert!(error.contains("broken.json"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
