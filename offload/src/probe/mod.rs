//! `fastpath probe`: what an interface can do for this data path. Identity and queues from
//! ethtool, XDP features from the `netdev` netlink family, trials of each attach mode and of
//! AF_XDP binds, the matching profile with every difference, and recommendations.
//!
//! The JSON keys of [`ProbeReport`] are stable (README, "fastpath probe").

pub mod advice;
pub mod ethtool;
pub mod netdev;
pub mod ntuple;
pub mod offload_check;
pub mod trials;

use std::io;

use hw_profiles::Profiles;
use serde::Serialize;

use crate::{mode::XdpMode, xdp_state};
pub use advice::{Recommendation, compare, recommend};
pub use ethtool::{Channels, Ntuple};
pub use trials::Trial;

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

/// An errno's name and meaning, e.g. "EOPNOTSUPP: operation not supported by the driver".
pub fn explain_errno(error: &io::Error) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    let meaning = match code {
        libc::EOPNOTSUPP => "EOPNOTSUPP: the driver does not support it",
        libc::EINVAL => "EINVAL: the driver or kernel refused the arguments",
        libc::EBUSY => "EBUSY: already in use",
        libc::EPERM => "EPERM: needs root (CAP_NET_ADMIN, CAP_BPF)",
        libc::ENODEV => "ENODEV: no such device",
        libc::ENOENT => "ENOENT: not found",
        libc::ENOMEM => "ENOMEM: out of memory (or locked-memory limit)",
        libc::EEXIST => "EEXIST: a program is already attached in this mode",
        _ => return error.to_string(),
    };
    meaning.to_string()
}

/// Probes `iface` in the current network namespace. With a program already attached, the
/// trials are skipped unless `force`; with `force` they run beside it (a mode it occupies
/// reports busy) and never replace it.
pub fn probe(iface: &str, force: bool, profiles: &Profiles) -> io::Result<ProbeReport> {
    let ifindex = afxdp::netdev::ifindex(iface)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {iface}")))?;
    let facts = ethtool::read(&mut ethtool::Ioctl, iface)?;
    let features = netdev::read(ifindex).unwrap_or_default();
    let (mtu, max_mtu) = xdp_state::mtus(ifindex).unwrap_or((None, None));
    let existing = xdp_state::query(ifindex)
        .ok()
        .flatten()
        .map(|state| ExistingProgram {
            mode: state.mode,
            id: state.program_id,
        });
    let mut report = ProbeReport {
        mtu,
        max_mtu,
        existing_program: existing,
        ..ProbeReport::from_facts(iface, facts, features)
    };
    run_trials(&mut report, ifindex, force);
    report.advise(profiles, available_cores());
    Ok(report)
}

impl ProbeReport {
    /// The report's device facts, before any trial.
    fn from_facts(
        iface: &str,
        facts: ethtool::EthtoolFacts,
        features: netdev::NetdevFeatures,
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

    /// Matches the driver's profile and recommends settings, once the trials have run.
    fn advise(&mut self, profiles: &Profiles, cores: usize) {
        let profile = profiles.for_driver(&self.driver);
        self.profile = profile.map(|p| ProfileMatch {
            name: p.name.clone(),
            differences: compare(self, p),
        });
        self.recommendations = recommend(self, profile, cores);
    }
}

fn run_trials(report: &mut ProbeReport, ifindex: u32, force: bool) {
    let iface = report.iface.clone();
    let driver = report.driver.clone();
    if let Some(existing) = &report.existing_program
        && !force
    {
        let why = format!(
            "not tried: program {} is attached in {} mode (--force tries beside it)",
            existing.id, existing.mode
        );
        report.modes = Modes {
            skb: Trial::failed(&why),
            drv: Trial::failed(&why),
            hw: Trial::failed(&why),
        };
        report.afxdp = AfXdp {
            copy: Trial::failed(&why),
            zero_copy: Trial::failed(&why),
        };
        return;
    }
    let occupied = report.existing_program.as_ref().map(|p| p.mode);
    let trial = |mode: XdpMode| match occupied {
        // skb and drv share one slot; hw has its own.
        Some(busy) if (busy == XdpMode::Hw) == (mode == XdpMode::Hw) => Trial::failed(format!(
            "not tried: the existing program holds the {busy} slot (it is never replaced)"
        )),
        _ => trials::attach(ifindex, &driver, mode),
    };
    report.modes = Modes {
        skb: trial(XdpMode::Skb),
        drv: trial(XdpMode::Drv),
        hw: trial(XdpMode::Hw),
    };
    report.afxdp = AfXdp {
        copy: trials::bind(&iface, false),
        zero_copy: trials::bind(&iface, true),
    };
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every interface in the current namespace except lo, by name.
pub fn interfaces() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            let name = std::ffi::CStr::from_ptr((*entry).if_name).to_string_lossy();
            if name != "lo" {
                names.push(name.into_owned());
            }
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

#[cfg(test)]
mod tests;
