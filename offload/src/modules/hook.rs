//! Where a chain runs: an interface and one of its hooks. XDP ingress is the main hook; the
//! TC hooks (tcx, ingress and egress) carry modules that must see outgoing traffic, or
//! traffic after the kernel's own receive processing.

use std::{fmt, str::FromStr};

use serde::Serialize;

/// One hook of an interface, each with a chain of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// XDP, in the driver (or generic): every received frame, before the kernel's stack.
    #[default]
    Xdp,
    /// tcx ingress: received packets, as socket buffers, after XDP.
    TcIngress,
    /// tcx egress: packets the interface is about to send, locally made ones included.
    TcEgress,
}

impl Hook {
    /// Every hook, in the order `--hook` lists them.
    pub const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress];

    /// Its name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }

    /// Whether its programs are TC classifiers (else XDP programs).
    pub fn is_tc(self) -> bool {
        self != Hook::Xdp
    }

    /// The folder of its chain's pins under the interface's, and the stem of its lock
    /// and history: the XDP chain keeps the name it always had.
    pub(super) fn dir_name(self) -> &'static str {
        match self {
            Hook::Xdp => "chain",
            Hook::TcIngress => "chain-tc-ingress",
            Hook::TcEgress => "chain-tc-egress",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(text: &str) -> Result<Hook, String> {
        Hook::ALL
            .into_iter()
            .find(|hook| hook.as_str() == text)
            .ok_or_else(|| format!("unknown hook {text:?}: expected xdp, tc-ingress or tc-egress"))
    }
}

/// How a chain's entry was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedAs {
    /// XDP in the driver.
    Drv,
    /// Generic XDP (the driver refused native mode; the reason is in no error, as the
    /// attach succeeded: `fastpath probe` tells why).
    Skb,
    /// A tcx link.
    Tcx,
}

impl AttachedAs {
    /// The XDP mode, for an XDP chain's entry.
    pub fn xdp_mode(self) -> Option<crate::mode::XdpMode> {
        match self {
            AttachedAs::Drv => Some(crate::mode::XdpMode::Drv),
            AttachedAs::Skb => Some(crate::mode::XdpMode::Skb),
            AttachedAs::Tcx => None,
        }
    }
}

impl fmt::Display for AttachedAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedAs::Drv => "drv",
            AttachedAs::Skb => "skb",
            AttachedAs::Tcx => "tcx",
        })
    }
}

/// A chain: an interface and the hook it runs on. A plain interface name means its XDP
/// chain.
#[derive(Clone, Copy, Debug)]
pub struct ChainAt<'a> {
    /// The interface.
    pub iface: &'a str,
    /// The hook.
    pub hook: Hook,
}

impl<'a> ChainAt<'a> {
    /// The chain on `hook` of `iface`.
    pub fn new(iface: &'a str, hook: Hook) -> ChainAt<'a> {
        ChainAt { iface, hook }
    }
}

impl<'a> From<&'a str> for ChainAt<'a> {
    fn from(iface: &'a str) -> ChainAt<'a> {
        ChainAt::new(iface, Hook::Xdp)
    }
}

impl<'a> From<&'a String> for ChainAt<'a> {
    fn from(iface: &'a String) -> ChainAt<'a> {
        ChainAt::new(iface, Hook::Xdp)
    }
}

impl fmt::Display for ChainAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hook {
            Hook::Xdp => f.write_str(self.iface),
            hook => write!(f, "{} ({hook})", self.iface),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_read_back_their_names() {
        for hook in Hook::ALL {
            assert_eq!(hook.as_str().parse::<Hook>(), Ok(hook));
        }
        assert!("tc".parse::<Hook>().unwrap_err().contains("tc-ingress"));
    }
}
