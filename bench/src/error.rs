//! What a benchmark run can fail with.

use std::{io, path::PathBuf};

use afxdp::XskError;
use lab::LabError;
use nfv_apps::lb::error::LbError;
use offload::OffloadError;
use trafficgen::GenError;

use crate::socket::XskApp;

/// Everything the runner and the measurements can fail with: a request that cannot run
/// (found before any traffic), then what fails while running. Causes are kept as sources.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No `--profile`.
    #[error("--profile is required (e.g. --profile veth)")]
    NoProfile,
    /// No built-in profile has that name.
    #[error("--profile {name}: unknown profile (known: {known})")]
    UnknownProfile {
        /// The name given.
        name: String,
        /// The profiles' names.
        known: String,
    },
    /// No `--app`.
    #[error("--app is required: rxdrop, l2fwd, lb, xdp-drop or xdp-tx")]
    NoApp,
    /// `--zero-copy` on a profile whose driver has no zero-copy AF_XDP.
    #[error(
        "--zero-copy: profile {profile} cannot run {app} in zero-copy mode ({drivers} has no \
         zero-copy AF_XDP); drop --zero-copy to measure copy mode"
    )]
    NoZeroCopy {
        /// The profile.
        profile: String,
        /// The app.
        app: &'static str,
        /// The profile's drivers.
        drivers: String,
    },
    /// `--zero-copy`: the runner binds copy-mode sockets only.
    #[error("--zero-copy: the runner binds copy-mode sockets only so far")]
    CopyModeOnly,
    /// `--sizes` or `--cores` without a value.
    #[error("--sizes and --cores need at least one value")]
    EmptyLists,
    /// A frame size outside 64 to 1518 bytes.
    #[error("--sizes {0}: frame sizes go from 64 to 1518 bytes")]
    FrameSizeRange(usize),
    /// A core count of 0 or above the CPUs of the machine.
    #[error("--cores {cores}: this machine has {cpus} CPUs")]
    TooManyCores {
        /// The count given.
        cores: usize,
        /// The machine's CPUs.
        cpus: usize,
    },
    /// A trial duration outside (0, 600] seconds.
    #[error("--duration {0}: expected more than 0 and at most 600 s")]
    DurationRange(f64),
    /// A warm-up outside [0, 60] seconds.
    #[error("--warmup {0}: expected 0 to 60 s")]
    WarmupRange(f64),
    /// A search resolution outside (0, 1).
    #[error("--resolution {0}: expected a fraction between 0 and 1")]
    ResolutionRange(f64),
    /// A flow count outside 1 to 64000.
    #[error("--flows {0}: expected 1 to 64000")]
    FlowsRange(u32),
    /// Interfaces given with the veth profile, which builds its own.
    #[error("--tx-iface/--rx-iface: the veth profile builds its own lab; leave them out")]
    VethTakesNoInterfaces,
    /// A real profile without its interface pair.
    #[error("{flag} is required with profile {profile} (a real NIC pair)")]
    NoInterface {
        /// The missing flag.
        flag: &'static str,
        /// The profile.
        profile: String,
    },
    /// A named interface that does not exist.
    #[error("{flag} {iface}: no such interface")]
    NoSuchInterface {
        /// The flag.
        flag: &'static str,
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: nic::NicError,
    },
    /// The generator's frame for a size could not be built.
    #[error("--sizes {size}")]
    Frame {
        /// The frame size.
        size: usize,
        /// Why.
        #[source]
        source: GenError,
    },
    /// `--app lb` with a sender that has no IPv4 address to be the backend.
    #[error("--app lb: {iface} has no IPv4 address to stand as the backend")]
    NoBackendAddress {
        /// The sender's interface.
        iface: String,
    },
    /// A results.json of another schema version.
    #[error("{}: schema {found} (this fastpath reads {expected})", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its schema.
        found: u32,
        /// This build's schema.
        expected: u32,
    },
    /// A results.json that is not valid.
    #[error("{}", path.display())]
    ResultsJson {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}", path.display())]
    File {
        /// What was done to it.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Drawing a plot failed (the plotting library says why).
    #[error("plot {0}")]
    Plot(String),
    /// Turning IPv6 off on a lab interface failed.
    #[error("disable IPv6 on {iface} in {namespace}")]
    QuietIpv6 {
        /// The interface.
        iface: String,
        /// Its namespace.
        namespace: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The steering program's counters could not be read.
    #[error("the steering program on {iface}")]
    SteeringCounters {
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: OffloadError,
    },
    /// A trial of the search failed.
    #[error("{label}: search trial")]
    SearchTrial {
        /// The row.
        label: String,
        /// Why.
        #[source]
        source: Box<BenchError>,
    },
    /// The AF_XDP sink did not come up.
    #[error("the {app:?} sink did not come up within 10 s")]
    SinkTimeout {
        /// The app.
        app: XskApp,
    },
    /// The AF_XDP sink stopped as soon as it started.
    #[error("the {app:?} sink stopped at once")]
    SinkStopped {
        /// The app.
        app: XskApp,
        /// Why.
        #[source]
        source: Option<Box<BenchError>>,
    },
    /// The sink's thread panicked.
    #[error("the sink thread panicked")]
    SinkPanicked,
    /// Binding an AF_XDP socket failed.
    #[error("bind an AF_XDP socket on {iface} queue {queue}")]
    Bind {
        /// The interface.
        iface: String,
        /// The queue.
        queue: u32,
        /// Why.
        #[source]
        source: XskError,
    },
    /// The load balancer under test did not start.
    #[error("start the load balancer")]
    LoadBalancer(#[source] LbError),
    /// The xsk-rs peer asked for outside the veth lab.
    #[error("the xsk-rs peer runs only on the veth lab (it takes a namespace)")]
    PeerNeedsLab,
    /// The xsk-rs peer could not be run.
    #[error("run the xsk-rs peer {}", binary.display())]
    PeerSpawn {
        /// The peer binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The xsk-rs peer exited with an error.
    #[error("the xsk-rs peer failed: {stderr}")]
    PeerFailed {
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The xsk-rs peer's output is not its summary.
    #[error("the xsk-rs peer's output {output:?} is not its summary with a packet count")]
    PeerOutput {
        /// What it wrote to stdout.
        output: String,
        /// Why.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The steer fixture's probe packet got the wrong verdict.
    #[error("{path} probe got verdict {verdict}, expected {expected}")]
    ProbeVerdict {
        /// The file.
        path: String,
        /// The verdict it got.
        verdict: u32,
        /// This build's schema.
        expected: u32,
    },
    /// Attaching, steering or reading counters failed.
    #[error(transparent)]
    Offload(#[from] OffloadError),
    /// Reading an interface's facts (index, MAC, addresses) failed.
    #[error(transparent)]
    Nic(#[from] nic::NicError),
    /// The traffic generator failed.
    #[error(transparent)]
    Generator(#[from] GenError),
    /// An AF_XDP socket failed.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// The lab (namespaces, veths, netlink) failed.
    #[error(transparent)]
    Lab(#[from] LabError),
}
