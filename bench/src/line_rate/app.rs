//! The apps a line-rate run measures, and how its search judges a trial.

use offload::rules::Action;

use crate::socket::XskApp;

/// The app under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchApp {
    /// AF_XDP: receive and drop.
    Rxdrop,
    /// AF_XDP: receive, swap MACs, send back.
    L2fwd,
    /// The L4 load balancer appliance.
    Lb,
    /// In-kernel bound: the steering program drops everything.
    XdpDrop,
    /// In-kernel bound: the steering program bounces everything (XDP_TX).
    XdpTx,
}

impl BenchApp {
    /// The app's name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BenchApp::Rxdrop => "rxdrop",
            BenchApp::L2fwd => "l2fwd",
            BenchApp::Lb => "lb",
            BenchApp::XdpDrop => "xdp-drop",
            BenchApp::XdpTx => "xdp-tx",
        }
    }

    /// Apps whose frames come back to the sender, where they are counted.
    pub(super) fn forwards(self) -> bool {
        matches!(self, BenchApp::L2fwd | BenchApp::XdpTx | BenchApp::Lb)
    }

    /// The default action of the steering program the runner attaches on the device
    /// under test; None for the load balancer, which attaches its own.
    pub(super) fn dut_action(self) -> Option<Action> {
        match self {
            BenchApp::XdpDrop => Some(Action::Drop),
            BenchApp::XdpTx => Some(Action::Tx),
            BenchApp::Rxdrop | BenchApp::L2fwd => Some(Action::Xsk),
            BenchApp::Lb => None,
        }
    }

    pub(super) fn sink(self) -> Option<XskApp> {
        match self {
            BenchApp::Rxdrop => Some(XskApp::Rxdrop),
            BenchApp::L2fwd => Some(XskApp::L2fwd),
            _ => None,
        }
    }

    /// The in-kernel app that bounds this one.
    pub(super) fn kernel_bound(self) -> Option<BenchApp> {
        match self {
            BenchApp::Rxdrop => Some(BenchApp::XdpDrop),
            BenchApp::L2fwd | BenchApp::Lb => Some(BenchApp::XdpTx),
            BenchApp::XdpDrop | BenchApp::XdpTx => None,
        }
    }

    /// Apps the xsk-rs peer also implements.
    pub(super) fn has_peer(self) -> bool {
        matches!(self, BenchApp::Rxdrop | BenchApp::L2fwd)
    }
}

/// How the RFC 2544 search judges a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchKind {
    /// No drop rate: no frame lost.
    Ndr,
    /// Partial drop rate: a small loss allowed.
    Pdr,
    /// No search: saturation and the load points only.
    None,
}
