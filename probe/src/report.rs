//! The report `fastpath probe` prints: device facts, trial outcomes, the matched profile and
//! the recommendations. Its JSON keys are stable (README, "fastpath probe").

use nic::{
    ethtool::{self, Channels, Ntuple},
    xdp_features,
};
use offload::mode::XdpMode;
use serde::Serialize;

use crate::trials::Trial;

/// Everything `fastpath probe` found out about one interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The interface probed.
    pub iface: String,
    /// Its driver (ETHTOOL_GDRVINFO).
    pub driver: String,
    /// The driver's version.
    pub driver_version: String,
    /// The firmware version.
    pub firmware: String,
    /// Where the device sits, e.g. a PCI address.
    pub bus_info: String,
    /// The MTU.
    pub mtu: Option<u32>,
    /// The largest MTU the driver allows.
    pub max_mtu: Option<u32>,
    /// The link speed, when the driver knows it.
    pub speed_mbps: Option<u32>,
    /// Channels and RSS table.
    pub queues: Queues,
    /// The ntuple filters.
    pub ntuple: Ntuple,
    /// The kernel's `xdp-features` flags for the device.
    pub xdp_features: Vec<&'static str>,
    /// The most fragments a zero-copy AF_XDP frame may have.
    pub zc_max_segs: Option<u32>,
    /// The RX metadata kfuncs the driver implements.
    pub rx_metadata: Vec<&'static str>,
    /// The AF_XDP TX metadata features.
    pub xsk_features: Vec<&'static str>,
    /// The XDP program found on the interface before the probe, if any.
    pub existing_program: Option<ExistingProgram>,
    /// The attach trials.
    pub modes: Modes,
    /// The AF_XDP bind trials.
    pub afxdp: AfXdp,
    /// The matching profile, if one matched.
    pub profile: Option<ProfileMatch>,
    /// What to run on this interface.
    pub recommendations: Vec<Recommendation>,
}

/// The device's queues.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Queues {
    /// The channel counts, when the driver reports them.
    pub channels: Option<Channels>,
    /// The RSS indirection table's size.
    pub rss_indirection: Option<u32>,
}

/// An XDP program the probe found attached (and left alone).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExistingProgram {
    /// The slot it runs in.
    pub mode: XdpMode,
    /// The kernel's program id.
    pub id: u32,
}

/// The attach trial of each XDP mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Modes {
    /// Generic XDP.
    pub skb: Trial,
    /// Native XDP, in the driver.
    pub drv: Trial,
    /// Offloaded to the NIC.
    pub hw: Trial,
}

/// The AF_XDP bind trials on queue 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AfXdp {
    /// Copy mode.
    pub copy: Trial,
    /// Zero-copy mode.
    pub zero_copy: Trial,
}

/// The profile matching the driver, and how the device differs from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProfileMatch {
    /// The profile's name.
    pub name: String,
    /// Every way the interface differs from the profile.
    pub differences: Vec<String>,
}

/// A setting to use, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// What to set, e.g. "xdp_mode".
    pub setting: String,
    /// The value, or the command that sets it.
    pub value: String,
    /// Why.
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
