//! What fastpath asks the kernel about a network interface, in one place:
//!
//! - [`ethtool`]: driver, channels, RSS, speed, ntuple state and counters (SIOCETHTOOL);
//! - [`ntuple`]: installing and removing ntuple flow-steering rules (SIOCETHTOOL);
//! - [`link`]: index, MAC, MTU and attached XDP programs (rtnetlink RTM_GETLINK);
//! - [`route`]: addresses, routes and neighbours (rtnetlink dumps);
//! - [`xdp_features`]: the `netdev` generic-netlink family's XDP and AF_XDP features.
//!
//! Everything goes through the seam in [`sys`]: an ethtool request and a netlink
//! request-reply. [`Kernel`] makes them on sockets of the caller's network namespace; tests
//! answer them with replies in the shapes real drivers and kernels give. Functions that
//! take no seam argument use [`Kernel`].

#![warn(missing_docs)]

mod errno;
mod error;
pub mod ethtool;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod link;
pub mod netlink;
pub mod ntuple;
pub mod route;
mod rtnetlink;
pub mod sys;
pub mod xdp_features;

pub use errno::explain_errno;
pub use error::NicError;
pub use link::{format_mac, ifindex, mac, mtu};
pub use route::{Route, addresses, gateway_for, neighbours, routes};
pub use sys::{Ethtool, Kernel, Netlink};

/// Every interface in the caller's network namespace except lo, by name.
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
