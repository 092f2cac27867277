//! `fastpath bench`: a short real run on its own veth lab (counters consistent, a non-zero
//! rate, the report files written), and the errors a user can make. Rates are never
//! asserted.

mod support;

use bench::report::{PLOTS, Results, Row};
use lab::require_root;
use support::fastpath;

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

/// Two real runs of `fastpath bench --profile veth --app rxdrop --sizes 64,512,1518 --cores
/// 1,2` on the same VM: the one committed in bench/results (revision 7aba8a5) and the one
/// it replaced (revision 66fc2c3, before the generator held its program in the XDP
/// dispatcher; committed in 580afc7, kept as a test file).
const OLDER_RXDROP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rxdrop-veth-66fc2c36c6bf.json"
);
const NEWER_RXDROP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../bench/results/veth/rxdrop/results.json"
);

#[test]
fn compare_prints_ratios_of_two_result_files() {
    let output = fastpath(&["bench", "compare", OLDER_RXDROP, NEWER_RXDROP]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let read = |path: &str| -> Results {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (older, newer) = (read(OLDER_RXDROP), read(NEWER_RXDROP));
    assert_ne!(older.git_revision, newer.git_revision, "two distinct runs");
    // One line per row of A, each with B's figures for the same app, size and cores.
    let lines: Vec<&str> = printed.lines().skip(2).collect();
    assert_eq!(lines.len(), older.rows.len(), "{printed}");
    for (line, row) in lines.iter().zip(&older.rows) {
        let b = newer
            .rows
            .iter()
            .find(|r| {
                (r.app.as_str(), r.frame_size, r.cores)
                    == (row.app.as_str(), row.frame_size, row.cores)
            })
            .unwrap();
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let mpps = |text: &str| text.parse::<f64>().unwrap();
        assert_eq!(
            cells[..3],
            [
                row.app.as_str(),
                &row.frame_size.to_string(),
                &row.cores.to_string()
            ]
        );
        assert!(
            (mpps(cells[3]) - row.headline_mpps()).abs() < 5e-4,
            "{line}"
        );
        assert!((mpps(cells[4]) - b.headline_mpps()).abs() < 5e-4, "{line}");
        assert!(
            (mpps(cells[6]) - row.saturation.received_mpps()).abs() < 5e-4,
            "{line}"
        );
        assert!(
            (mpps(cells[7]) - b.saturation.received_mpps()).abs() < 5e-4,
            "{line}"
        );
    }
    // The figures of the two runs, as `bench compare` prints them: the generator fix raised
    // 64 B saturation from 0.662 to 6.858 Mpps; the older run found no NDR with two
    // generator cores (0 Mpps), so that ratio is "-".
    assert!(
        printed.contains("| rxdrop | 64 | 1 | 0.662 | 1.401 | 2.12 | 0.662 | 6.858 | 10.35 |"),
        "{printed}"
    );
    assert!(
        printed.contains("| rxdrop | 64 | 2 | 0.000 | 0.192 | - | 2.289 | 2.779 | 1.21 |"),
        "{printed}"
    );
}

#[test]
fn compare_names_a_result_file_it_cannot_read() {
    let dir = std::env::temp_dir().join(format!("fpbench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    let error = error_of(&["bench", "compare", broken.to_str().unwrap(), NEWER_RXDROP]);
    assert!(error.contains("broken.json"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
