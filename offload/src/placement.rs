//! The offload placement planner: where each kernel-side stage of an NF runs.
//!
//! Two stages exist: the stateless prefilter (source-address drops) and the steering program.
//! The kernel allows one program in hardware and one in the driver (or generic) slot at once
//! (`dev_xdp_attach`, net/core/dev.c), so:
//! - **split**: when the NIC offloads and the prefilter passes the static offload check, the
//!   prefilter goes to the hardware and the steering program to the driver;
//! - **merged**: otherwise the prefilter's lookups run inside the steering program, in the
//!   driver, or generically as the last resort;
//! - with no prefilter entries, only the steering program is placed.
//!
//! [`plan`] decides from facts alone (xdp-features, profile, offload check), so tests feed it
//! the shapes of real NICs; `attach` applies the plan and reports any step that fails over.

use std::fmt;

use serde::Serialize;

use crate::{
    mode::{ModeFailure, ModePolicy, XdpMode},
    offload_check,
};

/// What the planner knows about the NIC and the programs.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    /// The interface's driver as ethtool names it, for the reasons given.
    pub driver: String,
    /// `xdp-features` flags from the kernel's netdev family; empty when it reports none.
    pub xdp_features: Vec<String>,
    /// The matched profile's XDP modes, when a profile matched.
    pub profile_modes: Option<Vec<String>>,
    /// Whether the profile gives offload limits to check programs against.
    pub has_offload_limits: bool,
    /// Why the steering program cannot be offloaded (the offload check); empty when it fits.
    pub steering_unfit: Vec<String>,
    /// Why the prefilter cannot be offloaded; empty when it fits.
    pub prefilter_unfit: Vec<String>,
    /// Source addresses the prefilter drops; zero means no prefilter stage.
    pub prefilter_entries: usize,
}

/// How the stages share the interface's XDP slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only the steering program (no prefilter entries).
    SteeringOnly,
    /// Prefilter in hardware, steering in the driver (or generic) slot.
    Split,
    /// The prefilter's lookups inside the steering program.
    Merged,
}

/// The plan, printed before it is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// How the stages share the slots.
    pub layout: Layout,
    /// Where the prefilter runs as its own program (split plans only).
    pub prefilter_mode: Option<XdpMode>,
    /// The steering program's modes, tried in order.
    pub steering_modes: Vec<XdpMode>,
    /// Modes the plan rules out for the steering program, with the reason.
    pub skipped: Vec<ModeFailure>,
    /// Why the layout was chosen.
    pub reasons: Vec<String>,
}

impl PlanInput {
    /// Gathers the input from what the kernel reports and the matched profile, running the
    /// offload check on both programs of `object` against the profile's limits.
    pub fn from_facts(
        driver: &str,
        xdp_features: &[&str],
        profile: Option<&hw_profiles::Profile>,
        object: &[u8],
        prefilter_entries: usize,
    ) -> PlanInput {
        let limits = profile.and_then(|p| p.offload.as_ref());
        let unfit = |program: &str| match limits {
            Some(limits) => offload_check::check(object, program, limits).unwrap_or_else(|error| {
                vec![format!(
                    "offload check failed: {}",
                    crate::error_chain(&error)
                )]
            }),
            None => Vec::new(),
        };
        PlanInput {
            driver: driver.to_string(),
            xdp_features: xdp_features.iter().map(|f| f.to_string()).collect(),
            profile_modes: profile.map(|p| p.xdp.modes.clone()),
            has_offload_limits: limits.is_some(),
            steering_unfit: unfit("steer"),
            prefilter_unfit: unfit("prefilter"),
            prefilter_entries,
        }
    }

    /// The NIC offloads programs: the kernel says so, or (when the kernel reports no
    /// features) the profile does.
    fn offloads(&self) -> bool {
        self.has_feature("hw-offload", "hw")
    }

    fn native(&self) -> bool {
        self.has_feature("basic", "drv")
    }

    fn has_feature(&self, flag: &str, mode: &str) -> bool {
        if !self.xdp_features.is_empty() {
            return self.xdp_features.iter().any(|f| f == flag);
        }
        match &self.profile_modes {
            Some(modes) => modes.iter().any(|m| m == mode),
            // Nothing known: let the kernel decide when the mode is tried.
            None => true,
        }
    }

    fn features_text(&self) -> String {
        if self.xdp_features.is_empty() {
            "the kernel reports no xdp-features".to_string()
        } else {
            format!("xdp-features: {}", self.xdp_features.join(", "))
        }
    }
}

/// Places the stages under `policy` (auto, or one mode the user insists on).
pub fn plan(policy: ModePolicy, input: &PlanInput) -> Plan {
    let allowed = policy.candidates();
    let mut skipped = Vec::new();
    let mut steering_modes = Vec::new();
    for mode in allowed.iter().copied() {
        match steering_obstacle(mode, input) {
            // A mode the user named is tried anyway: the kernel's answer is the authority.
            Some(reason) if policy == ModePolicy::Auto => {
                skipped.push(ModeFailure { mode, reason });
            }
            _ => steering_modes.push(mode),
        }
    }

    let mut reasons = Vec::new();
    let layout = if input.prefilter_entries == 0 {
        reasons.push("no prefilter entries: only the steering program is placed".to_string());
        Layout::SteeringOnly
    } else if let Some(why_not) = split_obstacle(policy, input) {
        reasons.push(format!(
            "prefilter merged into the steering program: {why_not}"
        ));
        Layout::Merged
    } else {
        reasons.push(format!(
            "driver {} offloads and the prefilter passes the offload check: prefilter in \
             hardware, steering in the driver",
            input.driver
        ));
        Layout::Split
    };
    if layout == Layout::Split {
        // The hardware slot now holds the prefilter.
        if steering_modes.contains(&XdpMode::Hw) {
            steering_modes.retain(|mode| *mode != XdpMode::Hw);
            skipped.push(ModeFailure {
                mode: XdpMode::Hw,
                reason: "the hardware slot holds the prefilter".to_string(),
            });
        }
    }
    if steering_modes.first() == Some(&XdpMode::Skb) {
        reasons.push(
            "generic (skb) XDP is the last resort: it runs after the kernel has built an skb"
                .to_string(),
        );
    }
    Plan {
        layout,
        prefilter_mode: (layout == Layout::Split).then_some(XdpMode::Hw),
        steering_modes,
        skipped,
        reasons,
    }
}

/// Why the steering program should not be tried in `mode` on this NIC.
fn steering_obstacle(mode: XdpMode, input: &PlanInput) -> Option<String> {
    match mode {
        XdpMode::Hw if !input.offloads() => Some(format!(
            "driver {} does not offload XDP programs ({})",
            input.driver,
            input.features_text()
        )),
        XdpMode::Hw if !input.steering_unfit.is_empty() => Some(format!(
            "the steering program cannot be offloaded: {}",
            input.steering_unfit.join("; ")
        )),
        XdpMode::Drv if !input.native() => Some(format!(
            "driver {} has no native XDP ({})",
            input.driver,
            input.features_text()
        )),
        _ => None,
    }
}

/// Why the prefilter cannot go to the hardware with steering beside it in the driver.
fn split_obstacle(policy: ModePolicy, input: &PlanInput) -> Option<String> {
    if let ModePolicy::Only(mode) = policy
        && mode != XdpMode::Hw
    {
        return Some(format!("--mode {mode} keeps both stages in one slot"));
    }
    if !input.offloads() {
        return Some(format!(
            "driver {} does not offload XDP programs ({})",
            input.driver,
            input.features_text()
        ));
    }
    if !input.has_offload_limits {
        return Some(format!(
            "no profile gives driver {}'s offload limits, so the prefilter cannot be checked",
            input.driver
        ));
    }
    if !input.prefilter_unfit.is_empty() {
        return Some(format!(
            "the prefilter cannot be offloaded: {}",
            input.prefilter_unfit.join("; ")
        ));
    }
    if !input.native() {
        return Some(format!(
            "driver {} has no native XDP slot for the steering program",
            input.driver
        ));
    }
    None
}

impl fmt::Display for Plan {
    /// The plan as the user reads it before it is applied.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modes: Vec<String> = self.steering_modes.iter().map(|m| m.to_string()).collect();
        writeln!(f, "placement plan ({:?}):", self.layout)?;
        if let Some(mode) = self.prefilter_mode {
            writeln!(f, "  prefilter  -> {mode}")?;
        } else if self.layout == Layout::Merged {
            writeln!(f, "  prefilter  -> inside steer")?;
        }
        writeln!(f, "  steer      -> {}", modes.join(", then "))?;
        for skip in &self.skipped {
            writeln!(f, "  steer not in {}: {}", skip.mode, skip.reason)?;
        }
        for reason in &self.reasons {
            writeln!(f, "  why: {reason}")?;
        }
        Ok(())
    }
}
