//! The two ends of a run: the generator's interface and the device under test's, each
//! perhaps in a namespace of the lab.

use std::net::IpAddr;

use crate::error::BenchError;

/// Where the traffic goes: the generator's side and the device under test's side.
#[derive(Clone, Debug)]
pub(crate) struct Ends {
    pub tx_namespace: Option<String>,
    pub tx_iface: String,
    /// The interfaces' IPv4 addresses, if they have one.
    pub tx_address: Option<IpAddr>,
    pub rx_namespace: Option<String>,
    pub rx_iface: String,
    pub rx_address: Option<IpAddr>,
}

/// Runs `work` inside `namespace`, or here when there is none.
pub(crate) fn in_namespace<T: Send + 'static>(
    namespace: &Option<String>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BenchError> {
    match namespace {
        Some(namespace) => Ok(lab::netns::run_in(namespace, work)?),
        None => Ok(work()),
    }
}
