//! `fastpath probe`: what an interface can do for this data path. Identity and queues from
//! ethtool, XDP features from the `netdev` netlink family (both through `nic`), trials of
//! each attach mode and of AF_XDP binds, the matching profile with every difference, and
//! recommendations.
//!
//! The JSON keys of [`ProbeReport`] are stable (README, "fastpath probe").

#![warn(missing_docs)]

pub mod advice;
mod report;
pub mod trials;

use hw_profiles::Profiles;
use nic::{
    Kernel, NicError, ethtool,
    link::{self, Link},
    xdp_features,
};
use offload::mode::XdpMode;

pub use advice::{compare, recommend};
pub use nic::{
    ethtool::{Channels, Ntuple},
    explain_errno, interfaces,
};
pub use report::{
    AfXdp, ExistingProgram, Modes, ProbeReport, ProfileMatch, Queues, Recommendation,
};
pub use trials::Trial;

/// Why an interface could not be probed at all (a failed trial is part of the report).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No interface of that name in this network namespace.
    #[error("no interface {0}")]
    NoInterface(String),
    /// The driver answered no ethtool request.
    #[error(transparent)]
    Ethtool(NicError),
}

/// Probes `iface` in the current network namespace. With a program already attached, the
/// trials are skipped unless `force`; with `force` they run beside it (a mode it occupies
/// reports busy) and never replace it.
pub fn probe(iface: &str, force: bool, profiles: &Profiles) -> Result<ProbeReport, ProbeError> {
    let ifindex = nic::ifindex(iface).map_err(|_| ProbeError::NoInterface(iface.to_string()))?;
    let facts = ethtool::read(&mut Kernel, iface).map_err(ProbeError::Ethtool)?;
    let features = xdp_features::read(&mut Kernel, ifindex).unwrap_or_default();
    let (mtu, max_mtu) = link::mtus(&mut Kernel, Link::Index(ifindex)).unwrap_or((None, None));
    let existing = link::xdp_program(&mut Kernel, Link::Index(ifindex))
        .ok()
        .flatten()
        .map(|program| ExistingProgram {
            mode: program.slot.into(),
            id: program.program_id,
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

#[cfg(test)]
mod tests;
