//! The network lab: network namespaces joined by veth pairs (and a bridge where a segment is
//! shared), with addresses, routes and static neighbours, all made through netlink.
//!
//! Test and demo support, outside the layers (see docs/architecture.md): production crates do
//! not depend on it; tests take it as a dev-dependency, and the CLI (`fastpath lab`, the
//! demos) and the line-rate benchmarks use it directly.
//!
//! Entry points:
//! - [`Lab`]: the default client / dut / backends topology ([`Lab::up`], [`Lab::for_test`],
//!   [`Lab::down`]);
//! - [`segment::LbLab`]: one bridged segment for the load balancer;
//! - [`vxlan::VxlanLab`]: three hosts on a bridged underlay with VXLAN devices, for the
//!   tunnel tracer;
//! - [`topology::TopologyLab`]: hosts in three subnets, their veth peers in one node
//!   namespace, for topologies (bridges and routers in the kernel);
//! - [`Lab::run_in`] / [`netns::run_in`] to run code inside a lab namespace, and
//!   [`raw::RawSocket`], [`Lab::udp_socket`] and [`services`] (HTTP and UDP echo servers,
//!   clients) to send and receive there;
//! - [`require_root`] and [`wait_until`] for tests.
//!
//! Safety rules (docs/architecture.md and the lab section of the README): every endpoint lives in a namespace the lab created, the
//! root namespace gets nothing, no namespace has a route out of the machine, and a [`Lab`] is
//! torn down on drop and on SIGINT/SIGTERM (see [`Lab::teardown_on_signals`]).
#![warn(missing_docs)]

pub mod frame;
pub mod netlink;
pub mod netns;
pub mod raw;
pub mod segment;
pub mod services;
pub mod topology;
pub mod vxlan;

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{Mutex, Once},
};

use serde::Serialize;

/// Every lab namespace starts with this; `fastpath lab down --all` removes them all.
pub const LAB_PREFIX: &str = "fp";
/// The prefix of the default lab (`fastpath lab up`).
pub const DEFAULT_PREFIX: &str = "fp";

/// What can go wrong making, using or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A namespace the lab would create already exists (the name is given): a stale lab, or
    /// another process's.
    #[error("namespace {0} already exists (run `fastpath lab down` to remove a stale lab)")]
    Exists(String),
    /// The named namespace does not exist.
    #[error("no namespace {0} (is the lab up? `fastpath lab up`)")]
    NoNamespace(String),
    /// No interface of this name in the namespace the call ran in.
    #[error("no interface {0}")]
    NoInterface(String),
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done ("mkdir /run/netns", "bind UDP socket"...).
        what: &'static str,
        /// The error it returned.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request was refused.
    #[error("netlink {what} failed: {message}")]
    Netlink {
        /// The request that failed ("create veth pair", "add route"...).
        what: &'static str,
        /// The netlink error as text.
        message: String,
    },
    /// A request the lab refuses before doing anything, e.g. a prefix that does not start with
    /// [`LAB_PREFIX`] or is longer than 8 bytes.
    #[error("{0}")]
    Invalid(String),
    /// A question about an interface (MAC, index) failed.
    #[error(transparent)]
    Nic(#[from] nic::NicError),
}

impl LabError {
    fn io(what: &'static str, source: std::io::Error) -> Self {
        LabError::Io { what, source }
    }
    fn errno(what: &'static str, errno: nix::errno::Errno) -> Self {
        LabError::Io {
            what,
            source: std::io::Error::from_raw_os_error(errno as i32),
        }
    }
}

/// One end of a link: its namespace, interface, addresses and MAC.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// The namespace the interface lives in (`<prefix>-<role>`).
    pub namespace: String,
    /// The interface name (at most 15 bytes, the kernel's limit).
    pub iface: String,
    /// The interface's IPv4 address (a /24 in the lab).
    pub ipv4: IpAddr,
    /// The interface's IPv6 address (a /64 in the lab).
    pub ipv6: IpAddr,
    /// The MAC address as colon-separated hex. Filled in only where the lab installs static
    /// neighbours (the client and the dut); empty elsewhere, where [`Endpoint::read_mac`] asks
    /// the kernel.
    pub mac: String,
}

impl Endpoint {
    /// The interface's MAC address, read through netlink inside its namespace.
    pub fn read_mac(&self) -> Result<[u8; 6], LabError> {
        let iface = self.iface.clone();
        Ok(netns::run_in(&self.namespace, move || {
            netlink::mac(&iface)
        })??)
    }
}

/// The default topology:
///
/// ```text
///  client ns                 dut ns                          lan ns          backend ns
///  <p>-c0 10.77.0.1 ---- <p>-d0 10.77.0.2
///  fd77::1                   fd77::2
///                            <p>-d1 10.78.0.1 ---- <p>-l1 [bridge <p>-br] <p>-l2 ---- <p>-b1e 10.78.0.11
///                                                                         <p>-l3 ---- <p>-b2e 10.78.0.12
/// ```
///
/// The device under test (dut) routes between the client and the backends.
#[derive(Debug, Serialize)]
pub struct Lab {
    /// The lab's prefix: every namespace is `<prefix>-<role>`, every interface `<prefix>-<name>`.
    pub prefix: String,
    /// The client's interface, in `<prefix>-client`.
    pub client: Endpoint,
    /// The dut's interface facing the client: where XDP programs go.
    pub dut: Endpoint,
    /// The dut's interface on the backend LAN (the bridge in `<prefix>-lan`).
    pub dut_lan: Endpoint,
    /// The two backends' interfaces, in `<prefix>-b1` and `<prefix>-b2`.
    pub backends: Vec<Endpoint>,
    namespaces: Namespaces,
}

static LIVE_LABS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The namespaces of one lab: `<prefix>-<role>` each, made together, registered for the
/// signal teardown, and removed on drop unless kept.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Namespaces {
    names: Vec<String>,
    #[serde(skip)]
    prefix: String,
    #[serde(skip)]
    keep: bool,
}

impl Namespaces {
    /// Checks the prefix and that no namespace exists yet, then creates them all; on a
    /// failure, drop removes whatever was made.
    fn create(prefix: &str, roles: &[&str]) -> Result<Namespaces, LabError> {
        if !prefix.starts_with(LAB_PREFIX) || prefix.len() > 8 {
            return Err(LabError::Invalid(format!(
                "lab prefix {prefix:?} must start with {LAB_PREFIX:?} and be at most 8 bytes"
            )));
        }
        let names: Vec<String> = roles
            .iter()
            .map(|role| format!("{prefix}-{role}"))
            .collect();
        if let Some(taken) = names.iter().find(|name| netns::exists(name)) {
            return Err(LabError::Exists(taken.clone()));
        }
        LIVE_LABS.lock().unwrap().push(prefix.to_string());
        let namespaces = Namespaces {
            names,
            prefix: prefix.to_string(),
            keep: false,
        };
        for name in &namespaces.names {
            netns::create(name)?;
        }
        Ok(namespaces)
    }

    fn keep(&mut self) {
        self.keep = true;
        LIVE_LABS
            .lock()
            .unwrap()
            .retain(|prefix| prefix != &self.prefix);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for name in &self.names {
            let _ = netns::delete(name);
        }
        LIVE_LABS
            .lock()
            .unwrap()
            .retain(|prefix| prefix != &self.prefix);
    }
}

impl Lab {
    /// The name of this lab's namespace for `role` ("client", "dut", "lan", "b1", "b2").
    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds the default topology with namespaces `<prefix>-client`, `-dut`, `-lan`, `-b1`,
    /// `-b2`. Prefixes must start with "fp" and keep interface names within 15 bytes.
    pub fn up(prefix: &str) -> Result<Lab, LabError> {
        let namespaces = Namespaces::create(prefix, &["client", "dut", "lan", "b1", "b2"])?;
        let names = &namespaces.names;
        // From here on, a failure tears down whatever was made.
        let mut lab = Lab {
            prefix: prefix.to_string(),
            client: endpoint(&names[0], format!("{prefix}-c0"), "10.77.0.1", "fd77::1"),
            dut: endpoint(&names[1], format!("{prefix}-d0"), "10.77.0.2", "fd77::2"),
            dut_lan: endpoint(&names[1], format!("{prefix}-d1"), "10.78.0.1", "fd78::1"),
            backends: vec![
                endpoint(&names[3], format!("{prefix}-b1e"), "10.78.0.11", "fd78::11"),
                endpoint(&names[4], format!("{prefix}-b2e"), "10.78.0.12", "fd78::12"),
            ],
            namespaces,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let prefix = self.prefix.clone();
        let lan = self.namespace("lan");
        veth_pair(&self.client, &self.dut, 1)?;
        let bridge = format!("{prefix}-br");
        netns::run_in(&lan, {
            let bridge = bridge.clone();
            move || netlink::add_bridge(&bridge)
        })??;
        let lan_ports = [
            format!("{prefix}-l1"),
            format!("{prefix}-l2"),
            format!("{prefix}-l3"),
        ];
        let lan_ends = [
            self.dut_lan.clone(),
            self.backends[0].clone(),
            self.backends[1].clone(),
        ];
        for (port, end) in lan_ports.iter().zip(&lan_ends) {
            let bridge_side = Endpoint {
                namespace: lan.clone(),
                iface: port.clone(),
                ipv4: end.ipv4,
                ipv6: end.ipv6,
                mac: String::new(),
            };
            veth_pair(&bridge_side, end, 1)?;
            let (port, bridge) = (port.clone(), bridge.clone());
            netns::run_in(&lan, move || {
                netlink::enslave(&port, &bridge)?;
                netlink::set_up(&port)
            })??;
        }
        for end in [
            &self.client,
            &self.dut,
            &self.dut_lan,
            &self.backends[0],
            &self.backends[1],
        ] {
            configure(end)?;
        }
        // Routes stay inside the lab: the client reaches the backends through the dut, the
        // backends reach the client the same way. No default route anywhere.
        let via_dut = (self.dut.ipv4, self.dut.ipv6);
        netns::run_in(&self.client.namespace, move || {
            netlink::add_route("10.78.0.0".parse().unwrap(), 24, via_dut.0)?;
            netlink::add_route("fd78::".parse().unwrap(), 64, via_dut.1)
        })??;
        let via_lan = (self.dut_lan.ipv4, self.dut_lan.ipv6);
        for backend in &self.backends {
            netns::run_in(&backend.namespace, move || {
                netlink::add_route("10.77.0.0".parse().unwrap(), 24, via_lan.0)?;
                netlink::add_route("fd77::".parse().unwrap(), 64, via_lan.1)
            })??;
        }
        netns::run_in(&self.dut.namespace, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .and_then(|()| std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1"))
        })?
        .map_err(|e| LabError::io("enable forwarding in the dut", e))?;
        // Static neighbours between client and dut, so traffic flows without waiting for ARP.
        neighbours(&mut self.client, &mut self.dut)?;
        Ok(())
    }

    /// Leaves the lab in place when dropped (for `fastpath lab up`).
    pub fn keep(mut self) {
        self.namespaces.keep();
    }

    /// Removes the lab with this prefix, whether or not this process made it.
    pub fn down(prefix: &str) -> Result<Vec<String>, LabError> {
        let namespaces = netns::list(&format!("{prefix}-"));
        for namespace in &namespaces {
            netns::delete(namespace)?;
        }
        Ok(namespaces)
    }

    /// Tears down every lab of this process on SIGINT or SIGTERM, then exits with 130/143.
    pub fn teardown_on_signals() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            use signal_hook::{consts::*, iterator::Signals};
            let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
                return;
            };
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    for prefix in LIVE_LABS.lock().unwrap().iter() {
                        let _ = Lab::down(prefix);
                    }
                    std::process::exit(128 + signal);
                }
            });
        });
    }

    /// A lab for one test: the prefix is "fp", the test's two-letter `tag` and the process id,
    /// so tests (and test binaries) running in parallel never share names. A leftover lab of
    /// the same prefix is removed first, and Ctrl-C tears labs down.
    pub fn for_test(tag: &str) -> Lab {
        assert_eq!(tag.len(), 2, "test tags are two letters");
        Lab::teardown_on_signals();
        let prefix = format!("fp{tag}{:04}", std::process::id() % 10000);
        let _ = Lab::down(&prefix);
        Lab::up(&prefix).expect("lab up")
    }

    /// A UDP socket bound in namespace `namespace` (it stays in that namespace).
    pub fn udp_socket(namespace: &str, bind: SocketAddr) -> Result<UdpSocket, LabError> {
        netns::run_in(namespace, move || UdpSocket::bind(bind))?
            .map_err(|e| LabError::io("bind UDP socket", e))
    }

    /// Runs `work` inside `namespace`.
    pub fn run_in<T: Send + 'static>(
        namespace: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LabError> {
        netns::run_in(namespace, work)
    }
}

fn endpoint(namespace: &str, iface: String, ipv4: &str, ipv6: &str) -> Endpoint {
    Endpoint {
        namespace: namespace.to_string(),
        iface,
        ipv4: ipv4.parse().unwrap(),
        ipv6: ipv6.parse().unwrap(),
        mac: String::new(),
    }
}

/// A veth pair created inside `a`'s namespace, its peer moved straight into `b`'s: no end
/// ever appears in the root namespace.
fn veth_pair(a: &Endpoint, b: &Endpoint, queues: u32) -> Result<(), LabError> {
    let peer_ns = File::open(netns::path(&b.namespace))
        .map_err(|_| LabError::NoNamespace(b.namespace.clone()))?;
    let (name, peer) = (a.iface.clone(), b.iface.clone());
    netns::run_in(&a.namespace, move || {
        netlink::add_veth(&name, &peer, peer_ns.as_raw_fd(), queues)
    })?
}

fn configure(end: &Endpoint) -> Result<(), LabError> {
    let end = end.clone();
    netns::run_in(&end.namespace.clone(), move || -> Result<(), LabError> {
        // IPv6 duplicate address detection would hold the addresses back for a second.
        let dad = format!("/proc/sys/net/ipv6/conf/{}/accept_dad", end.iface);
        let _ = std::fs::write(dad, "0");
        netlink::add_address(&end.iface, end.ipv4, 24)?;
        netlink::add_address(&end.iface, end.ipv6, 64)?;
        netlink::set_up(&end.iface)
    })?
}

fn neighbours(a: &mut Endpoint, b: &mut Endpoint) -> Result<(), LabError> {
    let (mac_a, mac_b) = (a.read_mac()?, b.read_mac()?);
    a.mac = format_mac(mac_a);
    b.mac = format_mac(mac_b);
    for (from, to, mac) in [(a.clone(), b.clone(), mac_b), (b.clone(), a.clone(), mac_a)] {
        netns::run_in(&from.namespace, move || {
            netlink::add_neighbour(&from.iface, to.ipv4, mac)?;
            netlink::add_neighbour(&from.iface, to.ipv6, mac)
        })??;
    }
    Ok(())
}

/// Fails a test that needs root when it runs without it. Such tests are also marked
/// `#[ignore = "needs root"]`, so a plain `cargo test` lists them as ignored rather than
/// passed; `cargo xtask test` runs them with `--include-ignored`, as root.
pub fn require_root(test: &str) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "{test} needs root (BPF, netlink, namespaces): run `cargo xtask test` as root"
    );
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` if `timeout` passes
/// first. Tests wait on the state an assertion needs this way, never with a fixed sleep: a
/// loaded machine only makes them slower, not wrong.
pub fn wait_until(timeout: std::time::Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A MAC address as text (the `nic` crate's, re-exported for the lab's users).
pub use nic::format_mac;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_outside_the_lab_namespace_are_refused() {
        assert!(matches!(Lab::up("prod"), Err(LabError::Invalid(_))));
        assert!(matches!(
            Lab::up("fp-much-too-long"),
            Err(LabError::Invalid(_))
        ));
    }

    #[test]
    fn wait_until_returns_once_the_condition_holds_and_panics_at_the_deadline() {
        let mut polls = 0;
        wait_until(std::time::Duration::from_secs(5), "three polls", || {
            polls += 1;
            polls == 3
        });
        assert_eq!(polls, 3);
        let timed_out = std::panic::catch_unwind(|| {
            wait_until(std::time::Duration::from_millis(30), "never", || false)
        })
        .unwrap_err();
        let message = timed_out.downcast_ref::<String>().unwrap();
        assert!(message.contains("waiting for never"), "{message}");
    }
}
