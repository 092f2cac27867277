//! XDP attach modes and the policy that picks one: `auto` tries hw, then drv, then skb, and
//! the report says why each higher mode failed.

use std::{fmt, str::FromStr};

use serde::Serialize;

use crate::error_chain::error_chain;

#[cfg(test)]
use crate::OffloadError;

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

/// Trying one mode: the seam between the policy and the kernel. Tests use a fake.
pub trait ModeAttempt {
    /// Why a mode failed.
    type Error: std::error::Error;
    /// Attaches in `mode`; returns the program id, or why the mode failed.
    fn try_mode(&mut self, mode: XdpMode) -> Result<u32, Self::Error>;
}

/// The outcome of a successful policy run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeChoice {
    /// The first mode that worked.
    pub mode: XdpMode,
    /// The kernel's id of the program attached in it.
    pub program_id: u32,
    /// The higher modes that were tried first, and why they failed.
    pub failed: Vec<ModeFailure>,
}

/// Tries `modes` in order and stops at the first that works.
pub fn choose_mode(
    modes: &[XdpMode],
    attempt: &mut impl ModeAttempt,
) -> Result<ModeChoice, Vec<ModeFailure>> {
    let mut failed = Vec::new();
    for &mode in modes {
        match attempt.try_mode(mode) {
            Ok(program_id) => {
                return Ok(ModeChoice {
                    mode,
                    program_id,
                    failed,
                });
            }
            Err(error) => failed.push(ModeFailure {
                mode,
                reason: error_chain(&error),
            }),
        }
    }
    Err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the modes it is told to, with a fixed reason, and records the order tried.
    struct FakeKernel {
        failing: Vec<XdpMode>,
        tried: Vec<XdpMode>,
    }

    impl ModeAttempt for FakeKernel {
        type Error = OffloadError;

        fn try_mode(&mut self, mode: XdpMode) -> Result<u32, OffloadError> {
            self.tried.push(mode);
            if self.failing.contains(&mode) {
                Err(OffloadError::ModeRefused {
                    mode,
                    driver: "fake".into(),
                    source: Box::new(OffloadError::syscall(
                        "bpf_link_create",
                        std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                    )),
                })
            } else {
                Ok(42)
            }
        }
    }

    fn fake(failing: &[XdpMode]) -> FakeKernel {
        FakeKernel {
            failing: failing.to_vec(),
            tried: vec![],
        }
    }

    #[test]
    fn auto_tries_hw_then_drv_and_reports_why_hw_failed() {
        let mut kernel = fake(&[XdpMode::Hw]);
        let choice = choose_mode(&ModePolicy::Auto.candidates(), &mut kernel).unwrap();
        assert_eq!(choice.mode, XdpMode::Drv);
        assert_eq!(choice.program_id, 42);
        assert_eq!(kernel.tried, vec![XdpMode::Hw, XdpMode::Drv]);
        assert_eq!(
            choice.failed,
            vec![ModeFailure {
                mode: XdpMode::Hw,
                reason: "hardware offload refused by driver fake: bpf_link_create failed: \
                         Operation not supported (os error 95)"
                    .into()
            }]
        );
    }

    #[test]
    fn auto_lands_on_skb_when_hw_and_drv_fail() {
        let mut kernel = fake(&[XdpMode::Hw, XdpMode::Drv]);
        let choice = choose_mode(&ModePolicy::Auto.candidates(), &mut kernel).unwrap();
        assert_eq!(choice.mode, XdpMode::Skb);
        assert_eq!(choice.failed.len(), 2);
    }

    #[test]
    fn auto_prefers_hw_when_it_works() {
        let mut kernel = fake(&[]);
        let choice = choose_mode(&ModePolicy::Auto.candidates(), &mut kernel).unwrap();
        assert_eq!(choice.mode, XdpMode::Hw);
        assert!(choice.failed.is_empty());
    }

    #[test]
    fn forced_mode_does_not_fall_back() {
        let mut kernel = fake(&[XdpMode::Drv]);
        let failures = choose_mode(&[XdpMode::Drv], &mut kernel).unwrap_err();
        assert_eq!(kernel.tried, vec![XdpMode::Drv]);
        assert!(
            failures[0]
                .reason
                .starts_with("native XDP unsupported by driver fake: bpf_link_create failed"),
            "{}",
            failures[0].reason
        );
    }

    #[test]
    fn all_modes_failing_returns_every_reason() {
        let mut kernel = fake(&[XdpMode::Hw, XdpMode::Drv, XdpMode::Skb]);
        let failures = choose_mode(&ModePolicy::Auto.candidates(), &mut kernel).unwrap_err();
        assert_eq!(failures.len(), 3);
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
