use super::*;
use crate::stats;

fn accounting(rate_pps: f64, offered: u64, received: u64) -> Accounting {
    Accounting {
        rate_pps,
        seconds: 1.0,
        offered,
        refused_by_driver: Some(offered - received),
        reached_dut: received,
        received,
        ..Accounting::default()
    }
}

fn sample() -> Results {
    let samples: Vec<u64> = (1..=1000).map(|i| i * 100).collect();
    let rows = [(64, 1, 2.0), (1518, 1, 0.8), (64, 2, 3.5)]
        .into_iter()
        .map(|(size, cores, mpps)| Row {
            app: "rxdrop".into(),
            frame_size: size,
            cores,
            line_rate_mpps: Some(line_rate_mpps(10.0, size as u32)),
            saturation: accounting(mpps * 1.2e6, (mpps * 1.2e6) as u64, (mpps * 1e6) as u64),
            throughput: Some(Throughput {
                criterion: Criterion::Ndr,
                rate_pps: mpps * 1e6,
                trials: vec![accounting(mpps * 1e6, 10, 10).trial()],
            }),
            points: [0.1, 0.5, 0.9]
                .into_iter()
                .map(|fraction| LoadPoint {
                    fraction,
                    rate_pps: fraction * mpps * 1e6,
                    accounting: accounting(fraction * mpps * 1e6, 100, 100),
                    latency: Some(stats::latency(samples.clone())),
                    latency_cdf: stats::cdf(samples.clone(), 50),
                    cpu_busy: vec![0.5, 1.0],
                    cycles_per_packet: Some(120.0),
                })
                .collect(),
            references: vec![Reference {
                name: "xsk-rs".into(),
                mpps: mpps / 2.0,
            }],
            notes: vec![],
        })
        .collect();
    Results {
        schema: SCHEMA_VERSION,
        machine: Machine {
            hostname: "lab".into(),
            cpus: 2,
            cpu_model: "test cpu".into(),
            memory_gib: 24.0,
            kernel: "6.18".into(),
        },
        profile: "veth".into(),
        line_rate_gbps: Some(10.0),
        git_revision: Some("abc123".into()),
        started_unix: 1,
        settings: RunSettings {
            app: "rxdrop".into(),
            sizes: vec![64, 1518],
            cores: vec![1, 2],
            duration_s: 1.0,
            warmup_s: 0.5,
            search: "ndr".into(),
            resolution: 0.02,
            flows: 1,
            tx_iface: "c0".into(),
            rx_iface: "d0".into(),
        },
        rows,
    }
}

#[test]
fn results_round_trip_through_json() {
    let results = sample();
    let text = serde_json::to_string_pretty(&results).unwrap();
    let back: Results = serde_json::from_str(&text).unwrap();
    assert_eq!(back, results);
    // The documented top-level keys are there.
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "schema",
        "machine",
        "profile",
        "line_rate_gbps",
        "git_revision",
        "settings",
        "rows",
    ] {
        assert!(value.get(key).is_some(), "no {key} in results.json");
    }
    assert_eq!(value["machine"]["kernel"], "6.18");
}

#[test]
fn markdown_has_every_row_with_line_rate_percentages_and_ratios() {
    let text = markdown(&sample());
    // 2.0 Mpps of 64 B frames is 2.0 / 14.88 = 13.4% of 10 Gbit/s.
    assert!(text.contains("| 64 | 1 | 2.000 | 13.4% |"), "{text}");
    assert!(
        text.contains("xsk-rs 2.00"),
        "saturation/peer ratio: {text}"
    );
    assert!(text.contains("| 1518 | 1 | 0.800 |"), "{text}");
    assert!(text.contains("| 64 | 2 | 50% |"), "{text}");
    assert!(text.contains("p99.9 us"));
}

#[test]
fn the_three_svg_plots_are_written() {
    let dir = std::env::temp_dir().join(format!("fastpath-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_plots(&sample(), &dir).unwrap();
    for name in PLOTS {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.starts_with("<svg"), "{name} is not an SVG");
        assert!(
            text.contains("<polyline") || text.contains("<path"),
            "{name} has no line"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_gives_ratios_row_by_row() {
    let a = sample();
    let mut b = sample();
    b.rows[0].throughput.as_mut().unwrap().rate_pps *= 1.5;
    b.rows.pop();
    let text = compare(&a, &b);
    assert!(
        text.contains("| rxdrop | 64 | 1 | 2.000 | 3.000 | 1.50 |"),
        "{text}"
    );
    assert!(
        text.contains("| rxdrop | 1518 | 1 | 0.800 | 0.800 | 1.00 |"),
        "{text}"
    );
    // A row only A has is listed without a ratio.
    assert!(
        text.contains("| rxdrop | 64 | 2 | 3.500 | - | - |"),
        "{text}"
    );
}
