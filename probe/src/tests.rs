//! Fakes of ethtool and netdev replies in the shapes real i40e, mlx5 and nfp devices give
//! feed the parsers, profile matching, recommendations and ntuple rule handling.

use std::{collections::BTreeMap, io, net::IpAddr};

use hw_profiles::Profiles;

use nic::{
    ethtool::{self, Ethtool, RXNFC_LEN},
    ntuple::{self, FlowRule, L4, NtupleError},
    xdp_features as netdev,
};
use offload::{
    mode::{ModePolicy, XdpMode},
    placement::{self, Layout, Plan, PlanInput},
};

use super::{AfXdp, Modes, ProbeReport, Trial};

/// A NIC as its ethtool ioctl sees it: fixed facts, and an ntuple table.
struct FakeNic {
    drvinfo: [&'static str; 4],
    channels: [u32; 9],
    rss: u32,
    speed: u32,
    ntuple_on: bool,
    /// None: the driver has no ntuple filters (EOPNOTSUPP).
    capacity: Option<u32>,
    rules: BTreeMap<u32, Vec<u8>>,
}

fn put(buffer: &mut [u8], at: usize, value: u32) {
    buffer[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

impl Ethtool for FakeNic {
    fn request(&mut self, _iface: &str, buffer: &mut [u8]) -> io::Result<()> {
        let unsupported = || Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        match ethtool::u32_at(buffer, 0) {
            ethtool::GDRVINFO => {
                for (i, text) in self.drvinfo.iter().enumerate() {
                    let at = 4 + 32 * i;
                    buffer[at..at + text.len()].copy_from_slice(text.as_bytes());
                }
            }
            ethtool::GCHANNELS => {
                for (i, value) in self.channels.iter().enumerate().skip(1) {
                    put(buffer, 4 * i, *value);
                }
            }
            ethtool::GRXFHINDIR => put(buffer, 4, self.rss),
            ethtool::GSET => {
                buffer[12..14].copy_from_slice(&(self.speed as u16).to_ne_bytes());
                buffer[28..30].copy_from_slice(&((self.speed >> 16) as u16).to_ne_bytes());
            }
            ethtool::GFLAGS => put(buffer, 4, if self.ntuple_on { 1 << 27 } else { 0 }),
            ethtool::GRXCLSRLCNT => {
                let Some(capacity) = self.capacity else {
                    return unsupported();
                };
                buffer[8..16].copy_from_slice(&u64::from(capacity).to_ne_bytes());
                put(buffer, 184, self.rules.len() as u32);
            }
            ethtool::GRXCLSRLALL => {
                for (i, location) in self.rules.keys().enumerate() {
                    put(buffer, RXNFC_LEN + 4 * i, *location);
                }
            }
            ethtool::SRXCLSRLINS => {
                let location = ethtool::u32_at(buffer, 176);
                if self.capacity.is_none_or(|c| location >= c) || self.rules.contains_key(&location)
                {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                self.rules.insert(location, buffer.to_vec());
            }
            ethtool::GRXCLSRULE => {
                let location = ethtool::u32_at(buffer, 176);
                let stored = self
                    .rules
                    .get(&location)
                    .ok_or(io::Error::from_raw_os_error(libc::ENOENT))?;
                if stored.len() == buffer.len() {
                    buffer[4..].copy_from_slice(&stored[4..]);
                }
            }
            ethtool::SRXCLSRLDEL => {
                let location = ethtool::u32_at(buffer, 176);
                self.rules
                    .remove(&location)
                    .ok_or(io::Error::from_raw_os_error(libc::ENOENT))?;
            }
            _ => return unsupported(),
        }
        Ok(())
    }
}

/// An Intel XL710 on i40e, as `ethtool -i/-l/-x/-n` shows it.
fn i40e() -> FakeNic {
    FakeNic {
        drvinfo: ["i40e", "6.18.0", "9.20 0x8000d8c5 1.3353.0", "0000:3b:00.0"],
        channels: [0, 0, 0, 1, 64, 0, 0, 1, 16],
        rss: 512,
        speed: 40_000,
        ntuple_on: true,
        capacity: Some(8192),
        rules: BTreeMap::from([(0, vec![]), (2, vec![])]),
    }
}

/// A ConnectX-6 Dx on mlx5_core.
fn mlx5() -> FakeNic {
    FakeNic {
        drvinfo: [
            "mlx5_core",
            "6.18.0",
            "22.39.1002 (MT_0000000359)",
            "0000:17:00.0",
        ],
        channels: [0, 0, 0, 0, 63, 0, 0, 0, 63],
        rss: 256,
        speed: 100_000,
        ntuple_on: false,
        capacity: Some(1024),
        rules: BTreeMap::new(),
    }
}

/// An Agilio CX on nfp with the BPF firmware: no ntuple.
fn nfp() -> FakeNic {
    FakeNic {
        drvinfo: [
            "nfp",
            "6.18.0",
            "0.0.3.5 0.22 bpf-2.0.6.124 ebpf",
            "0000:04:00.0",
        ],
        channels: [0, 0, 0, 0, 8, 0, 0, 0, 8],
        rss: 128,
        speed: 25_000,
        ntuple_on: false,
        capacity: None,
        rules: BTreeMap::new(),
    }
}

/// A DEV_GET reply's attributes, as the kernel sends them for these flags.
fn dev_reply(xdp: u64, zc_segs: u32, metadata: u64, xsk: u64) -> Vec<u8> {
    [
        netdev::attribute(netdev::NETDEV_A_DEV_IFINDEX, &4u32.to_ne_bytes()),
        netdev::attribute(2, &[0; 4]), // pad
        netdev::attribute(netdev::NETDEV_A_DEV_XDP_FEATURES, &xdp.to_ne_bytes()),
        netdev::attribute(netdev::NETDEV_A_DEV_XDP_ZC_MAX_SEGS, &zc_segs.to_ne_bytes()),
        netdev::attribute(
            netdev::NETDEV_A_DEV_XDP_RX_METADATA_FEATURES,
            &metadata.to_ne_bytes(),
        ),
        netdev::attribute(netdev::NETDEV_A_DEV_XSK_FEATURES, &xsk.to_ne_bytes()),
    ]
    .concat()
}

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
fn ethtool_replies_parse_into_the_devices_facts() {
    let facts = ethtool::read(&mut i40e(), "eth0").unwrap();
    assert_eq!(facts.info.driver, "i40e");
    assert_eq!(facts.info.firmware, "9.20 0x8000d8c5 1.3353.0");
    assert_eq!(facts.info.bus_info, "0000:3b:00.0");
    let channels = facts.channels.unwrap();
    assert_eq!((channels.combined, channels.max_combined), (16, 64));
    assert_eq!(facts.rss_indirection, Some(512));
    assert_eq!(facts.speed_mbps, Some(40_000));
    assert!(facts.ntuple.enabled);
    assert_eq!(
        (facts.ntuple.capacity, facts.ntuple.rules),
        (Some(8192), Some(2))
    );
    let nfp = ethtool::read(&mut nfp(), "eth0").unwrap();
    assert_eq!(nfp.ntuple.capacity, None);
    assert!(nfp.ntuple.error.unwrap().starts_with("EOPNOTSUPP"));
}

#[test]
fn netdev_replies_parse_into_flag_names() {
    // mlx5: basic, redirect, ndo-xmit, xsk-zerocopy, rx-sg, ndo-xmit-sg; all metadata.
    let features = netdev::parse_dev(&dev_reply(0b110_1111, 1, 0b111, 0b11));
    assert_eq!(
        features.xdp_features,
        [
            "basic",
            "redirect",
            "ndo-xmit",
            "xsk-zerocopy",
            "rx-sg",
            "ndo-xmit-sg"
        ]
    );
    assert_eq!(features.zc_max_segs, Some(1));
    assert_eq!(features.rx_metadata, ["timestamp", "hash", "vlan-tag"]);
    assert_eq!(features.xsk_features, ["tx-timestamp", "tx-checksum"]);
    // A truncated reply stops at the broken attribute instead of failing.
    let reply = dev_reply(0b1, 1, 0, 0);
    assert_eq!(
        netdev::parse_dev(&reply[..reply.len() - 3]).xdp_features,
        ["basic"]
    );
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

fn rule(port: u16, queue: u32) -> FlowRule {
    FlowRule {
        protocol: L4::Udp,
        destination: "10.0.0.100".parse::<IpAddr>().unwrap(),
        port: Some(port),
        queue,
    }
}

#[test]
fn ntuple_rules_go_to_free_slots_and_are_removed_on_drop() {
    let mut nic = i40e();
    {
        let installed = ntuple::install(&mut nic, "eth0", &[rule(53, 3), rule(80, 5)]).unwrap();
        assert_eq!(installed.locations, [1, 3], "slots 0 and 2 were taken");
    }
    assert_eq!(
        nic.rules.keys().copied().collect::<Vec<_>>(),
        [0, 2],
        "ours are gone"
    );
    let installed = ntuple::install(&mut nic, "eth0", &[rule(53, 3)]).unwrap();
    let location = installed.locations[0];
    drop(installed);
    assert!(!nic.rules.contains_key(&location));
}

#[test]
fn a_dead_processs_recorded_ntuple_rules_are_removed_unless_reused() {
    let mut nic = i40e();
    let installed = ntuple::install(&mut nic, "eth0", &[rule(53, 3), rule(80, 5)]).unwrap();
    let recorded = [(1, rule(53, 3)), (3, rule(80, 5))];
    assert_eq!(installed.locations, [1, 3]);
    // The process dies: its rules stay. Someone reuses slot 3 for another rule.
    std::mem::forget(installed);
    nic.rules
        .insert(3, ntuple::encode(&rule(443, 1), 3).to_vec());
    let removed = ntuple::remove_recorded(&mut nic, "eth0", &recorded);
    assert_eq!(removed, [1], "only the slot that still holds its rule");
    assert_eq!(nic.rules.keys().copied().collect::<Vec<_>>(), [0, 2, 3]);
    // Recorded slots that are empty now are skipped.
    assert!(ntuple::remove_recorded(&mut nic, "eth0", &[(7, rule(53, 3))]).is_empty());
}

#[test]
fn an_ntuple_rule_encodes_flow_type_address_port_mask_and_queue() {
    let bytes = ntuple::encode(&rule(53, 7), 9);
    assert_eq!(ethtool::u32_at(&bytes, 16), 2, "UDP_V4_FLOW");
    assert_eq!(&bytes[24..28], &[10, 0, 0, 100], "ip4dst");
    assert_eq!(&bytes[30..32], &53u16.to_be_bytes(), "pdst");
    assert_eq!(&bytes[96..100], &[0xff; 4], "ip4dst mask");
    assert_eq!(&bytes[20..24], &[0; 4], "the source is a wildcard");
    assert_eq!(
        u64::from_ne_bytes(bytes[168..176].try_into().unwrap()),
        7,
        "queue"
    );
    assert_eq!(ethtool::u32_at(&bytes, 176), 9, "location");
    let v6 = FlowRule {
        protocol: L4::Tcp,
        destination: "fd00::1".parse().unwrap(),
        port: None,
        queue: 1,
    };
    let bytes = ntuple::encode(&v6, 0);
    assert_eq!(ethtool::u32_at(&bytes, 16), 5, "TCP_V6_FLOW");
    assert_eq!(
        bytes[36..52],
        "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(&bytes[124..128], &[0; 4], "no port, no port mask");
}

#[test]
fn ntuple_errors_say_what_is_missing() {
    let error = ntuple::install(&mut nfp(), "eth0", &[rule(53, 1)])
        .err()
        .unwrap();
    assert!(matches!(error, NtupleError::Unavailable { .. }));
    assert!(
        error.to_string().contains("steering stays in XDP"),
        "{error}"
    );
    let mut small = mlx5();
    small.capacity = Some(1);
    let error = ntuple::install(&mut small, "eth0", &[rule(1, 1), rule(2, 1)])
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "eth0: 2 ntuple rules do not fit: 1 of 1 slots are free"
    );
    assert!(small.rules.is_empty(), "nothing half-installed");
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
