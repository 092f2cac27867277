//! Fakes of ethtool and netdev replies in the shapes real i40e, mlx5 and nfp devices give
//! (`nic::fake`) feed profile matching, recommendations and the placement planner.

use hw_profiles::Profiles;
use nic::{
    ethtool,
    fake::{FakeNic, dev_reply, i40e, mlx5, nfp},
    xdp_features as netdev,
};
use offload::{
    mode::{ModePolicy, XdpMode},
    placement::{self, Layout, Plan, PlanInput},
};

use super::{AfXdp, Modes, ProbeReport, Trial};

/// A report as `probe` would build it from the fakes and the given trials.
fn report(nic: &mut FakeNic, features: Vec<u8>, hw: bool, zero_copy: bool) -> ProbeReport {
    let facts = ethtool::read(nic, "eth0").unwrap();
    let features = netdev::parse_dev(&features);
    let ok = |ok: bool| {
        if ok {
            Trial::passed()
        } else {
            Trial::failed("EOPNOTSUPP")
        }
    };
    let mut report = ProbeReport {
        mtu: Some(1500),
        modes: Modes {
            skb: ok(true),
            drv: ok(true),
            hw: ok(hw),
        },
        afxdp: AfXdp {
            copy: ok(true),
            zero_copy: ok(zero_copy),
        },
        ..ProbeReport::from_facts("eth0", facts, features)
    };
    report.advise(&Profiles::builtin(), 16);
    report
}

fn recommended(report: &ProbeReport, setting: &str) -> String {
    report
        .recommendations
        .iter()
        .find(|r| r.setting == setting)
        .map(|r| r.value.clone())
        .unwrap_or_default()
}

#[test]
fn i40e_matches_its_profile_and_gets_zero_copy_busy_poll_and_hardware_steering() {
    let report = report(&mut i40e(), dev_reply(0b10_1111, 1, 0, 0), false, true);
    let profile = report.profile.as_ref().unwrap();
    assert_eq!(profile.name, "i40e");
    assert!(profile.differences.is_empty(), "{:?}", profile.differences);
    assert_eq!(recommended(&report, "xdp_mode"), "drv");
    assert_eq!(recommended(&report, "zero_copy"), "on");
    assert!(recommended(&report, "busy_poll").starts_with("budget 64"));
    assert_eq!(recommended(&report, "hardware_steering"), "on");
    assert_eq!(
        recommended(&report, "queues"),
        "16",
        "16 queues on 16 cores"
    );
}

#[test]
fn mlx5_with_ntuple_off_is_told_to_turn_it_on_and_differences_are_listed() {
    // This device reports no rx-sg (an old firmware, say): one difference.
    let report = report(&mut mlx5(), dev_reply(0b100_1111, 1, 0b111, 0), false, true);
    let profile = report.profile.as_ref().unwrap();
    assert_eq!(profile.name, "mlx5_core");
    assert_eq!(
        profile.differences,
        ["xdp_features: rx-sg in the profile, not reported"]
    );
    assert_eq!(
        recommended(&report, "hardware_steering"),
        "ethtool -K eth0 ntuple on"
    );
}

#[test]
fn nfp_recommends_hw_mode_and_xdp_steering() {
    let report = report(&mut nfp(), dev_reply(0b1_1111, 1, 0, 0), true, true);
    assert_eq!(report.profile.as_ref().unwrap().name, "nfp");
    assert!(report.profile.as_ref().unwrap().differences.is_empty());
    assert_eq!(recommended(&report, "xdp_mode"), "hw");
    assert_eq!(recommended(&report, "hardware_steering"), "off");
    // The same NIC where hw mode fails (flower firmware) differs from its profile.
    let report = super::tests::report(&mut nfp(), dev_reply(0b1111, 1, 0, 0), false, true);
    let differences = &report.profile.as_ref().unwrap().differences;
    assert!(
        differences
            .iter()
            .any(|d| d.starts_with("hw mode: fails here")),
        "{differences:?}"
    );
    assert_eq!(recommended(&report, "xdp_mode"), "drv");
}

fn placement(report: &ProbeReport, entries: usize, policy: &str) -> Plan {
    let profiles = Profiles::builtin();
    let profile = profiles.for_driver(&report.driver);
    let input = PlanInput::from_facts(
        &report.driver,
        &report.xdp_features,
        profile,
        offload::STEER_OBJECT,
        entries,
    );
    placement::plan(policy.parse().unwrap(), &input)
}

#[test]
fn the_planner_splits_on_nfp_merges_on_i40e_and_mlx5() {
    // nfp offloads: prefilter in hardware, steering in the driver (the steering program,
    // with its LPM tries and redirect, never goes to the card).
    let nfp = report(&mut nfp(), dev_reply(0b1_1111, 1, 0, 0), true, true);
    let plan = placement(&nfp, 3, "auto");
    assert_eq!(plan.layout, Layout::Split);
    assert_eq!(plan.prefilter_mode, Some(XdpMode::Hw));
    assert_eq!(plan.steering_modes, [XdpMode::Drv, XdpMode::Skb]);
    let hw_skip = &plan.skipped[0];
    assert_eq!(hw_skip.mode, XdpMode::Hw);
    assert!(hw_skip.reason.contains("lpm_trie"), "{}", hw_skip.reason);

    // i40e and mlx5 have native XDP but no offload: one merged driver program.
    for nic in [
        report(&mut i40e(), dev_reply(0b10_1111, 1, 0, 0), false, true),
        report(&mut mlx5(), dev_reply(0b100_1111, 1, 0b111, 0), false, true),
    ] {
        let plan = placement(&nic, 3, "auto");
        assert_eq!(plan.layout, Layout::Merged, "{}", nic.driver);
        assert_eq!(plan.prefilter_mode, None);
        assert_eq!(plan.steering_modes, [XdpMode::Drv, XdpMode::Skb]);
        assert!(
            plan.reasons[0].contains("does not offload XDP programs"),
            "{:?}",
            plan.reasons
        );
        assert!(plan.to_string().contains("prefilter  -> inside steer"));
    }
}

#[test]
fn the_planner_falls_back_to_skb_and_honours_a_named_mode() {
    // A driver whose kernel reports only generic support (no `basic` flag): skb only.
    let mut nic = report(&mut i40e(), dev_reply(0, 0, 0, 0), false, false);
    nic.xdp_features = vec!["ndo-xmit"];
    let plan = placement(&nic, 1, "auto");
    assert_eq!(plan.layout, Layout::Merged);
    assert_eq!(plan.steering_modes, [XdpMode::Skb]);
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.mode == XdpMode::Drv && s.reason.contains("has no native XDP"))
    );
    assert!(plan.reasons.iter().any(|r| r.contains("last resort")));

    // On nfp, `--mode drv` keeps both stages in one program, and a named mode is tried even
    // where the facts say it will fail (the kernel's answer is the authority).
    let nfp = report(&mut nfp(), dev_reply(0b1_1111, 1, 0, 0), true, true);
    let plan = placement(&nfp, 1, "drv");
    assert_eq!(plan.layout, Layout::Merged);
    assert!(plan.reasons[0].contains("--mode drv"), "{:?}", plan.reasons);
    let plan = placement(&nic, 1, "drv");
    assert_eq!(plan.steering_modes, [XdpMode::Drv]);
    // No entries: no prefilter stage at all.
    assert_eq!(placement(&nfp, 0, "auto").layout, Layout::SteeringOnly);
}

#[test]
fn the_planner_merges_when_the_prefilter_does_not_fit_the_card() {
    let nfp = report(&mut nfp(), dev_reply(0b1_1111, 1, 0, 0), true, true);
    let profiles = Profiles::builtin();
    let mut input = PlanInput::from_facts(
        "nfp",
        &nfp.xdp_features,
        profiles.by_name("nfp"),
        offload::STEER_OBJECT,
        2,
    );
    assert!(
        input.prefilter_unfit.is_empty(),
        "{:?}",
        input.prefilter_unfit
    );
    input.prefilter_unfit = vec!["map X: key plus value is 80 bytes, the NIC allows 64".into()];
    let plan = placement::plan(ModePolicy::Auto, &input);
    assert_eq!(plan.layout, Layout::Merged);
    assert!(plan.reasons[0].contains("80 bytes"), "{:?}", plan.reasons);
}
