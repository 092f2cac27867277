//! How a probed interface differs from its profile, and what to run on it: each
//! recommendation carries its reason.

use hw_profiles::Profile;

use crate::{
    report::{ProbeReport, Recommendation},
    trials::Trial,
};

fn advise(setting: &str, value: impl ToString, reason: impl Into<String>) -> Recommendation {
    Recommendation {
        setting: setting.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Whether a trial ran (a "not tried" outcome says nothing about the device).
fn tried(trial: &Trial) -> bool {
    trial.ok
        || !trial
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("not tried")
}

/// Every difference between what was measured and what the profile says.
pub fn compare(report: &ProbeReport, profile: &Profile) -> Vec<String> {
    let mut differences = Vec::new();
    let modes = [
        ("skb", &report.modes.skb),
        ("drv", &report.modes.drv),
        ("hw", &report.modes.hw),
    ];
    for (mode, trial) in modes {
        if tried(trial) && trial.ok != profile.supports(mode) {
            differences.push(format!(
                "{mode} mode: {} here, the profile says {}",
                if trial.ok { "works" } else { "fails" },
                if profile.supports(mode) {
                    "it works"
                } else {
                    "it does not"
                }
            ));
        }
    }
    let zero_copy = &report.afxdp.zero_copy;
    if tried(zero_copy) && zero_copy.ok != profile.xdp.zero_copy {
        differences.push(format!(
            "zero-copy: {} here, the profile says {}",
            if zero_copy.ok { "binds" } else { "fails" },
            if profile.xdp.zero_copy {
                "it binds"
            } else {
                "it does not"
            }
        ));
    }
    let mut flags = |what: &str, measured: &[&str], expected: &[String]| {
        for flag in measured {
            if !expected.iter().any(|e| e == flag) {
                differences.push(format!("{what}: {flag} reported, not in the profile"));
            }
        }
        for flag in expected {
            if !measured.contains(&flag.as_str()) {
                differences.push(format!("{what}: {flag} in the profile, not reported"));
            }
        }
    };
    // An old kernel without the netdev family reports nothing: no comparison then.
    if !report.xdp_features.is_empty() {
        flags("xdp_features", &report.xdp_features, &profile.xdp.features);
        flags("rx_metadata", &report.rx_metadata, &profile.xdp.rx_metadata);
    }
    if let Some(channels) = &report.queues.channels
        && channels.max_combined > profile.queues.max_combined
    {
        differences.push(format!(
            "queues: max combined {} here, the profile says at most {}",
            channels.max_combined, profile.queues.max_combined
        ));
    }
    let ntuple_here = report.ntuple.capacity.is_some() || report.ntuple.enabled;
    if ntuple_here != profile.queues.ntuple {
        differences.push(format!(
            "ntuple: {} here, the profile says {}",
            if ntuple_here {
                "available"
            } else {
                "unavailable"
            },
            if profile.queues.ntuple {
                "available"
            } else {
                "unavailable"
            }
        ));
    }
    differences
}

/// What to run on the interface, from the trials, the device's facts and the profile's
/// tuning defaults.
pub fn recommend(
    report: &ProbeReport,
    profile: Option<&Profile>,
    cores: usize,
) -> Vec<Recommendation> {
    let mut advice = Vec::new();
    let modes = &report.modes;
    advice.push(if modes.hw.ok {
        advise(
            "xdp_mode",
            "hw",
            "the NIC runs the program itself; keep the steering (redirect) part in drv",
        )
    } else if modes.drv.ok {
        advise(
            "xdp_mode",
            "drv",
            "native XDP works; generic (skb) mode costs an skb per packet",
        )
    } else if modes.skb.ok {
        advise(
            "xdp_mode",
            "skb",
            format!(
                "only generic XDP attached; drv failed: {}",
                modes.drv.error.as_deref().unwrap_or("?")
            ),
        )
    } else {
        advise("xdp_mode", "none", "no attach mode worked here")
    });
    advice.push(if report.afxdp.zero_copy.ok {
        advise(
            "zero_copy",
            "on",
            "the driver binds AF_XDP in zero-copy mode",
        )
    } else {
        advise(
            "zero_copy",
            "off",
            format!(
                "copy mode: zero-copy bind failed ({})",
                report.afxdp.zero_copy.error.as_deref().unwrap_or("?")
            ),
        )
    });
    let source = |name: &str| match profile {
        Some(p) => format!("profile {} default", p.name),
        None => format!(
            "no profile for driver {}: generic {name} default",
            report.driver
        ),
    };
    let tuning = profile.map(|p| p.tuning.clone());
    let ring = tuning.as_ref().map_or(2048, |t| t.ring_size);
    let batch = tuning.as_ref().map_or(64, |t| t.batch);
    let frame = tuning.as_ref().map_or(4096, |t| t.frame_size);
    advice.push(advise("ring_size", ring, source("ring")));
    advice.push(advise("batch", batch, source("batch")));
    advice.push(advise("frame_size", frame, source("frame size")));
    // 256 bytes of XDP headroom sit in front of each packet in its frame.
    if let Some(mtu) = report.mtu
        && mtu + 14 + 256 > frame
    {
        let sg = report.xdp_features.contains(&"rx-sg");
        advice.push(advise(
            "multi_buffer",
            if sg { "on" } else { "lower the MTU" },
            format!(
                "MTU {mtu} does not fit a {frame}-byte frame; {}",
                if sg {
                    "the driver takes multi-buffer packets"
                } else {
                    "the driver has no multi-buffer XDP"
                }
            ),
        ));
    }
    match &tuning {
        Some(t) if t.busy_poll_budget > 0 && report.afxdp.zero_copy.ok => advice.push(advise(
            "busy_poll",
            format!(
                "budget {}, napi_defer_hard_irqs {}, gro_flush_timeout {}",
                t.busy_poll_budget, t.napi_defer_hard_irqs, t.gro_flush_timeout
            ),
            "at high rates, preferred busy polling replaces interrupts with the app's polls",
        )),
        _ => advice.push(advise(
            "busy_poll",
            "off",
            "no zero-copy or no profile budget: interrupts and need_wakeup cost less here",
        )),
    }
    let queues = report
        .queues
        .channels
        .as_ref()
        .map(|c| c.combined.max(c.rx))
        .filter(|&q| q > 0)
        .unwrap_or(1) as usize;
    let use_queues = queues.min(cores).max(1);
    advice.push(advise(
        "queues",
        use_queues,
        format!("{queues} RX queues, {cores} cores: one queue per core, no more"),
    ));
    advice.push(advise(
        "cores",
        format!("{use_queues} worker core(s)"),
        "one pinned worker per queue; keep the IRQ of each queue on its worker's core",
    ));
    let ntuple = &report.ntuple;
    advice.push(if ntuple.enabled && ntuple.capacity.is_some() {
        advise(
            "hardware_steering",
            "on",
            format!(
                "ntuple is on with {} rule slots: the NIC steers flows to the AF_XDP queues",
                ntuple.capacity.unwrap_or(0)
            ),
        )
    } else if ntuple.capacity.is_some() {
        advise(
            "hardware_steering",
            format!("ethtool -K {} ntuple on", report.iface),
            "the NIC has ntuple filters, but the feature is off",
        )
    } else {
        advise(
            "hardware_steering",
            "off",
            format!(
                "no ntuple filters ({}): steering stays in XDP",
                ntuple.error.as_deref().unwrap_or("not offered")
            ),
        )
    });
    advice
}
