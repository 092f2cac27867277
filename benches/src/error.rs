//! What a benchmark run can fail with.

use std::{io, path::PathBuf};

use afxdp::XskError;
use lab::LabError;
use nfv_apps::lb::appliance::LbError;
use offload::OffloadError;
use trafficgen::GenError;

/// Everything the runner and the measurements can fail with: a request that cannot run
/// (found before any traffic), then what fails while running. Causes are kept as sources.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--profile is required (e.g. --profile veth)")]
    NoProfile,
    #[error("--profile {name}: unknown profile (known: {known})")]
    UnknownProfile { name: String, known: String },
    #[error("--app is required: rxdrop, l2fwd, lb, xdp-drop or xdp-tx")]
    NoApp,
    #[error(
        "--zero-copy: profile {profile} cannot run {app} in zero-copy mode ({drivers} has no \
         zero-copy AF_XDP); drop --zero-copy to measure copy mode"
    )]
    NoZeroCopy {
        profile: String,
        app: &'static str,
        drivers: String,
    },
    #[error("--zero-copy: the runner binds copy-mode sockets only so far")]
    CopyModeOnly,
    #[error("--sizes and --cores need at least one value")]
    EmptyLists,
    #[error("--sizes {0}: frame sizes go from 64 to 1518 bytes")]
    FrameSizeRange(usize),
    #[error("--cores {cores}: this machine has {cpus} CPUs")]
    TooManyCores { cores: usize, cpus: usize },
    #[error("--duration {0}: expected more than 0 and at most 600 s")]
    DurationRange(f64),
    #[error("--warmup {0}: expected 0 to 60 s")]
    WarmupRange(f64),
    #[error("--resolution {0}: expected a fraction between 0 and 1")]
    ResolutionRange(f64),
    #[error("--flows {0}: expected 1 to 64000")]
    FlowsRange(u32),
    #[error("--tx-iface/--rx-iface: the veth profile builds its own lab; leave them out")]
    VethTakesNoInterfaces,
    #[error("{flag} is required with profile {profile} (a real NIC pair)")]
    NoInterface { flag: &'static str, profile: String },
    #[error("{flag} {iface}: no such interface")]
    NoSuchInterface {
        flag: &'static str,
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("--sizes {size}")]
    Frame {
        size: usize,
        #[source]
        source: GenError,
    },
    #[error("--app lb: {iface} has no IPv4 address to stand as the backend")]
    NoBackendAddress { iface: String },
    #[error("{}: schema {found} (this fastpath reads {expected})", path.display())]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{}", path.display())]
    ResultsJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} {}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("plot {0}")]
    Plot(String),
    #[error("disable IPv6 on {iface} in {namespace}")]
    QuietIpv6 {
        iface: String,
        namespace: String,
        #[source]
        source: io::Error,
    },
    #[error("the steering program on {iface}")]
    SteeringCounters {
        iface: String,
        #[source]
        source: OffloadError,
    },
    #[error("{label}: search trial")]
    SearchTrial {
        label: String,
        #[source]
        source: Box<BenchError>,
    },
    #[error("the {app} sink did not come up within 10 s")]
    SinkTimeout { app: &'static str },
    #[error("the {app} sink stopped at once")]
    SinkStopped {
        app: &'static str,
        #[source]
        source: Option<Box<BenchError>>,
    },
    #[error("the sink thread panicked")]
    SinkPanicked,
    #[error("bind an AF_XDP socket on {iface} queue {queue}")]
    Bind {
        iface: String,
        queue: u32,
        #[source]
        source: XskError,
    },
    #[error("start the load balancer")]
    LoadBalancer(#[source] LbError),
    #[error("the xsk-rs peer runs only on the veth lab (it takes a namespace)")]
    PeerNeedsLab,
    #[error("run the xsk-rs peer {}", binary.display())]
    PeerSpawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the xsk-rs peer failed: {stderr}")]
    PeerFailed { stderr: String },
    #[error("the xsk-rs peer's output {output:?} is not its summary with a packet count")]
    PeerOutput {
        output: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("{path} probe got verdict {verdict}, expected {expected}")]
    ProbeVerdict {
        path: String,
        verdict: u32,
        expected: u32,
    },
    #[error(transparent)]
    Offload(#[from] OffloadError),
    #[error(transparent)]
    Generator(#[from] GenError),
    #[error(transparent)]
    Xsk(#[from] XskError),
    #[error(transparent)]
    Lab(#[from] LabError),
}
