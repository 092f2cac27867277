//! XDP attach modes and the policy that picks one: `auto` tries hw, then drv, then skb, and
//! the report says why each higher mode failed.

use std::{fmt, str::FromStr};

use serde::Serialize;

/// Where an XDP program runs; each is its own slot on an interface (`dev_xdp_attach`,
/// net/core/dev.c), shown and parsed as "hw", "drv" and "skb".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Offloaded to the NIC.
    Hw,
    /// Native, in the driver.
    Drv,
    /// Generic, on the socket buffer.
    Skb,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Hw => "hw",
            XdpMode::Drv => "drv",
            XdpMode::Skb => "skb",
        })
    }
}

/// Which modes an attach may try, parsed from `--mode` (auto, hw, drv or skb).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModePolicy {
    /// hw, then drv, then skb.
    Auto,
    /// This mode alone, with no fallback; the planner tries it even where the facts say it
    /// will fail, so the kernel's refusal is the one reported.
    Only(XdpMode),
}

impl ModePolicy {
    /// The modes the policy allows, in the order they are tried.
    pub fn candidates(self) -> Vec<XdpMode> {
        match self {
            ModePolicy::Auto => vec![XdpMode::Hw, XdpMode::Drv, XdpMode::Skb],
            ModePolicy::Only(mode) => vec![mode],
        }
    }
}

impl FromStr for ModePolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(ModePolicy::Auto),
            "hw" => Ok(ModePolicy::Only(XdpMode::Hw)),
            "drv" => Ok(ModePolicy::Only(XdpMode::Drv)),
            "skb" => Ok(ModePolicy::Only(XdpMode::Skb)),
            _ => Err(format!(
                "invalid --mode {text:?}: expected auto, hw, drv or skb"
            )),
        }
    }
}

/// A mode that was tried and failed, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModeFailure {
    /// The mode.
    pub mode: XdpMode,
    /// Why it failed (the error and its causes on one line, see [`crate::error_chain`]),
    /// or why the plan skipped it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_hardware_then_native_then_generic() {
        assert_eq!(
            ModePolicy::Auto.candidates(),
            vec![XdpMode::Hw, XdpMode::Drv, XdpMode::Skb]
        );
    }

    #[test]
    fn policy_parsing_names_the_field() {
        assert_eq!(
            "skb".parse::<ModePolicy>(),
            Ok(ModePolicy::Only(XdpMode::Skb))
        );
        assert!("fast".parse::<ModePolicy>().unwrap_err().contains("--mode"));
    }
}
