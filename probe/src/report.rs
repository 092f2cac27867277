//! The report `fastpath probe` prints: device facts, trial outcomes, the matched profile and
//! the recommendations. Its JSON keys are stable (README, "fastpath probe").

use nic::{
    ethtool::{self, Channels, Ntuple},
    xdp_features,
};
use offload::mode::XdpMode;
use serde::Serialize;

use crate::trials::Trial;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeReport {
    pub iface: String,
    pub driver: String,
    pub driver_version: String,
    pub firmware: String,
    pub bus_info: String,
    pub mtu: Option<u32>,
    pub max_mtu: Option<u32>,
    pub speed_mbps: Option<u32>,
    pub queues: Queues,
    pub ntuple: Ntuple,
    pub xdp_features: Vec<&'static str>,
    pub zc_max_segs: Option<u32>,
    pub rx_metadata: Vec<&'static str>,
    pub xsk_features: Vec<&'static str>,
    /// The XDP program found on the interface before the probe, if any.
    pub existing_program: Option<ExistingProgram>,
    pub modes: Modes,
    pub afxdp: AfXdp,
    pub profile: Option<ProfileMatch>,
    pub recommendations: Vec<Recommendation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Queues {
    pub channels: Option<Channels>,
    pub rss_indirection: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExistingProgram {
    pub mode: XdpMode,
    pub id: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Modes {
    pub skb: Trial,
    pub drv: Trial,
    pub hw: Trial,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AfXdp {
    pub copy: Trial,
    pub zero_copy: Trial,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProfileMatch {
    pub name: String,
    /// Every way the interface differs from the profile.
    pub differences: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub setting: String,
    pub value: String,
    pub reason: String,
}

impl ProbeReport {
    /// The report's device facts, before any trial.
    pub(crate) fn from_facts(
        iface: &str,
        facts: ethtool::EthtoolFacts,
        features: xdp_features::NetdevFeatures,
    ) -> ProbeReport {
        ProbeReport {
            iface: iface.to_string(),
            driver: facts.info.driver,
            driver_version: facts.info.version,
            firmware: facts.info.firmware,
            bus_info: facts.info.bus_info,
            speed_mbps: facts.speed_mbps,
            queues: Queues {
                channels: facts.channels,
                rss_indirection: facts.rss_indirection,
            },
            ntuple: facts.ntuple,
            xdp_features: features.xdp_features,
            zc_max_segs: features.zc_max_segs,
            rx_metadata: features.rx_metadata,
            xsk_features: features.xsk_features,
            ..ProbeReport::default()
        }
    }
}
