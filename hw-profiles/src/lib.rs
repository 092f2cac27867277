//! NIC profiles as data. Each profile is a TOML file (`profiles/*.toml`, embedded at build
//! time) holding what a driver's XDP and AF_XDP support looks like, its speeds, queue
//! limits, default tuning, known quirks and, for offload-capable NICs, the offload limits.
//! Users add or override profiles with a directory of their own files.
//!
//! A data crate in layer 1 (see docs/architecture.md): it depends on no other fastpath
//! crate, and capability probing (`probe`), the appliance, the benchmarks and the
//! CLI read it.
//!
//! Entry points: [`Profiles::builtin`] or [`Profiles::with_dir`] to load, then
//! [`Profiles::for_driver`] (by the driver name ethtool reports) or [`Profiles::by_name`];
//! [`pick`] chooses each tuning value between a config, the profile and a default.
//! Line rates are computed, not stored: see [`line_rate_mpps`].
#![warn(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};

mod line_rate;

pub use line_rate::{WIRE_OVERHEAD, line_rate_mpps};

/// The profiles shipped with fastpath, from the drivers' and vendors' published facts.
const BUILTIN: [(&str, &str); 10] = [
    ("veth.toml", include_str!("../profiles/veth.toml")),
    (
        "virtio_net.toml",
        include_str!("../profiles/virtio_net.toml"),
    ),
    ("i40e.toml", include_str!("../profiles/i40e.toml")),
    ("ice.toml", include_str!("../profiles/ice.toml")),
    ("ixgbe.toml", include_str!("../profiles/ixgbe.toml")),
    ("mlx5_core.toml", include_str!("../profiles/mlx5_core.toml")),
    ("nfp.toml", include_str!("../profiles/nfp.toml")),
    ("ena.toml", include_str!("../profiles/ena.toml")),
    ("bnxt_en.toml", include_str!("../profiles/bnxt_en.toml")),
    ("igc.toml", include_str!("../profiles/igc.toml")),
];

/// A profile that cannot be read or parsed, or breaks a rule of [`Profile::parse`].
#[derive(Debug, thiserror::Error)]
#[error("profile {file}: {message}")]
pub struct ProfileError {
    /// The profile file (or, for a directory that cannot be listed, the directory).
    pub file: String,
    /// What is wrong, naming the TOML key and line when known.
    pub message: String,
}

/// One NIC profile: the contents of one `profiles/*.toml` file. Unknown keys are refused, so
/// a typo in a user's profile is an error rather than a silently ignored setting.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The name users pass to `--profile`, usually the driver's.
    pub name: String,
    /// Driver names (as ethtool reports them) this profile describes.
    pub drivers: Vec<String>,
    /// One line saying which NICs these are, for `fastpath` listings.
    pub description: String,
    /// Where the facts come from.
    pub source: String,
    /// What XDP and AF_XDP support the driver has.
    pub xdp: Xdp,
    /// Channel, RSS and ntuple limits.
    pub queues: Queues,
    /// Link speeds in Gbit/s.
    pub speeds_gbps: Vec<f64>,
    /// Starting values for AF_XDP runs on this NIC; [`pick`] lets a config override each.
    pub tuning: Tuning,
    /// Known driver or hardware behaviours a user should know about, as sentences (may be
    /// empty).
    #[serde(default)]
    pub quirks: Vec<String>,
    /// Present when the NIC runs XDP programs itself (hw mode).
    pub offload: Option<OffloadLimits>,
}

/// A driver's XDP and AF_XDP support.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Xdp {
    /// Attach modes that work: "skb", "drv", "hw".
    pub modes: Vec<String>,
    /// AF_XDP zero-copy binding (`XDP_ZEROCOPY`) is supported.
    pub zero_copy: bool,
    /// Multi-buffer (frags) packets in drv mode.
    pub multi_buffer: bool,
    /// XDP RX metadata kfuncs: "timestamp", "hash", "vlan-tag".
    pub rx_metadata: Vec<String>,
    /// The `xdp-features` flags the kernel reports for this driver.
    pub features: Vec<String>,
}

/// A NIC's queue limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Queues {
    /// The most combined channels the driver offers.
    pub max_combined: u32,
    /// RSS indirection table entries (0: no RSS).
    pub rss_indirection: u32,
    /// The NIC takes ethtool ntuple (flow director) rules.
    pub ntuple: bool,
    /// How many ntuple rules the NIC holds (0 when `ntuple` is false).
    pub ntuple_rules: u32,
}

/// Default AF_XDP tuning for a NIC.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Descriptors per AF_XDP ring.
    pub ring_size: u32,
    /// Descriptors handled per receive or transmit call (the batch size of the RX/TX loops).
    pub batch: u32,
    /// UMEM frame size: 2048 or 4096.
    pub frame_size: u32,
    /// SO_BUSY_POLL_BUDGET; 0: no busy polling.
    pub busy_poll_budget: u32,
    /// /sys/class/net/IF/napi_defer_hard_irqs.
    pub napi_defer_hard_irqs: u32,
    /// /sys/class/net/IF/gro_flush_timeout, in nanoseconds.
    pub gro_flush_timeout: u64,
}

/// What a NIC's own processor accepts in an offloaded program.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadLimits {
    /// Map kinds it can hold: "array", "hash".
    pub map_kinds: Vec<String>,
    /// The largest key plus value, in bytes.
    pub max_key_value_bytes: u32,
    /// About how many BPF instructions fit.
    pub max_instructions: u32,
    /// Helpers it implements, by name as in `bpf_func_id` without the prefix.
    pub helpers: Vec<String>,
    /// The offloaded program can return `XDP_REDIRECT`.
    pub redirect: bool,
    /// Packets can reach AF_XDP sockets from the offloaded program.
    pub af_xdp: bool,
    /// The offload loader accepts programs and maps with BTF.
    pub btf: bool,
}

impl Profile {
    /// Parses one profile; an error names the file and the key at fault.
    pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
        let error = |message: String| ProfileError {
            file: file.to_string(),
            message,
        };
        let describe = |e: &toml::de::Error| {
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            format!("{at}{}", e.message().trim())
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| error(describe(&e)))?;
        // The path names the key at fault ("tuning.batch"), which the TOML message alone
        // does not for a value of the wrong type.
        let profile: Profile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let message = describe(e.inner());
            error(if key == "." {
                message
            } else {
                format!("{key}: {message}")
            })
        })?;
        profile.check().map_err(error)?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), String> {
        const MODES: [&str; 3] = ["skb", "drv", "hw"];
        if let Some(mode) = self.xdp.modes.iter().find(|m| !MODES.contains(&m.as_str())) {
            return Err(format!("xdp.modes: unknown mode {mode:?} (skb, drv or hw)"));
        }
        if self.drivers.is_empty() {
            return Err("drivers: at least one driver name".into());
        }
        if self.speeds_gbps.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err("speeds_gbps: every speed must be above 0".into());
        }
        if ![2048, 4096].contains(&self.tuning.frame_size) {
            return Err(format!(
                "tuning.frame_size = {}: 2048 or 4096",
                self.tuning.frame_size
            ));
        }
        if !self.tuning.ring_size.is_power_of_two() {
            return Err(format!(
                "tuning.ring_size = {}: a power of two",
                self.tuning.ring_size
            ));
        }
        if self.xdp.modes.iter().any(|m| m == "hw") != self.offload.is_some() {
            return Err("offload: present exactly when xdp.modes has \"hw\"".into());
        }
        Ok(())
    }

    /// Whether the profile lists XDP attach `mode` ("skb", "drv" or "hw").
    pub fn supports(&self, mode: &str) -> bool {
        self.xdp.modes.iter().any(|m| m == mode)
    }

    /// (speed in Gbit/s, Mpps at 64 B, Mpps at 1518 B) for each speed.
    pub fn line_rates(&self) -> Vec<(f64, f64, f64)> {
        self.speeds_gbps
            .iter()
            .map(|&gbps| (gbps, line_rate_mpps(gbps, 64), line_rate_mpps(gbps, 1518)))
            .collect()
    }
}

/// A set of profiles: the built-in ones, plus a user's.
#[derive(Clone, Debug)]
pub struct Profiles {
    /// Every profile, built-in ones first; a user profile of the same name replaces the
    /// built-in one.
    pub profiles: Vec<Profile>,
}

impl Profiles {
    /// The profiles compiled into fastpath (`profiles/*.toml`).
    pub fn builtin() -> Profiles {
        let profiles = BUILTIN
            .iter()
            .map(|(file, text)| Profile::parse(text, file).expect("built-in profiles are valid"))
            .collect();
        Profiles { profiles }
    }

    /// The built-in profiles plus every `*.toml` in `dir`; a user profile replaces a
    /// built-in one of the same name.
    pub fn with_dir(dir: &Path) -> Result<Profiles, ProfileError> {
        let error = |message: String| ProfileError {
            file: dir.display().to_string(),
            message,
        };
        let mut profiles = Profiles::builtin();
        let entries = std::fs::read_dir(dir).map_err(|e| error(format!("cannot read: {e}")))?;
        let mut paths: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ProfileError {
                file: file.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let profile = Profile::parse(&text, &file)?;
            profiles.profiles.retain(|p| p.name != profile.name);
            profiles.profiles.push(profile);
        }
        Ok(profiles)
    }

    /// The profile of that name (what `--profile` takes).
    pub fn by_name(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile for a driver, as ethtool names it.
    pub fn for_driver(&self, driver: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .rev() // user profiles, pushed last, win
            .find(|p| p.drivers.iter().any(|d| d == driver))
    }

    /// The names of all profiles, in the order they are held.
    pub fn names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests;

/// A tuning value and where it came from, for the log ("batch 64 (profile veth)").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The chosen value.
    pub value: T,
    /// Where it came from: "config", "profile NAME" or the built-in default.
    pub source: String,
}

impl<T: std::fmt::Display> std::fmt::Display for Sourced<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.value, self.source)
    }
}

/// Picks a setting: the config's value when given, else the matched profile's, else the
/// built-in default. The source says which.
pub fn pick<T: Copy>(
    config: Option<T>,
    profile: Option<&Profile>,
    from_profile: impl Fn(&Tuning) -> T,
    builtin: T,
) -> Sourced<T> {
    match (config, profile) {
        (Some(value), _) => Sourced {
            value,
            source: "config".into(),
        },
        (None, Some(profile)) => Sourced {
            value: from_profile(&profile.tuning),
            source: format!("profile {}", profile.name),
        },
        (None, None) => Sourced {
            value: builtin,
            source: "built-in default, no profile matched".into(),
        },
    }
}

/// The AF_XDP sizes a socket is bound with, each with where it came from: the appliance and
/// the line-rate runner choose them alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketTuning {
    /// Descriptors per ring operation.
    pub batch: Sourced<u32>,
    /// Entries per ring.
    pub ring_size: Sourced<u32>,
    /// UMEM frame size in bytes.
    pub frame_size: Sourced<u32>,
}

impl SocketTuning {
    /// Values given (a config's) win; the rest come from `profile`, else the built-in
    /// defaults: batch 64, 2048 ring entries, 4096-byte frames.
    pub fn pick(
        batch: Option<u32>,
        ring_size: Option<u32>,
        frame_size: Option<u32>,
        profile: Option<&Profile>,
    ) -> SocketTuning {
        SocketTuning {
            batch: pick(batch, profile, |t| t.batch, 64),
            ring_size: pick(ring_size, profile, |t| t.ring_size, 2048),
            frame_size: pick(frame_size, profile, |t| t.frame_size, 4096),
        }
    }
}
