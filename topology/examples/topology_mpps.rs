//! The topology's router against Linux's own forwarding, and its bridge against a Linux
//! bridge, in packets per second on the topology lab (a report, not a test; root):
//! `cargo run -p topology --example topology_mpps [SECONDS] [ROUNDS] [--only CASE,...]
//! [--routes N] [--destinations N]` (defaults 3 s, 5 rounds, every case, no extra routes,
//! one destination). `--only` takes the cases' names below (`router`, `linux`, `routes`,
//! `bridge`, `linux-bridge`, `wire`, `floor`).
//!
//! The generator sends live 64-byte UDP frames of one flow from host a1 at full rate.
//! Up to six ways to take them in the node namespace, alternating round by round in the same
//! run:
//! - **router:** a topology of one router joined to a1's and b1's veth peers (10.31.1.1/24,
//!   10.31.2.1/24, and one static route, 20.0.0.0/8 via b1), to b1;
//! - **router, N routes** (`--routes N`, N > 0): the same router with N more routes, /24s
//!   from 20.0.0.0/24 up via b1, written straight into its pinned trie (one generation
//!   bump after them), to b1;
//! - **Linux forwarding:** the same addresses on the same interfaces, `ip_forward=1`, no
//!   topology, to b1;
//! - **bridge:** a topology of one bridge joined to a1's and a2's veth peers, to a2;
//! - **Linux bridge:** a Linux bridge of the same two interfaces, to a2;
//! - **wire:** a topology of one instance that only joins a1's and b1's peers (the
//!   `topology_wire` object as a user module: entry, tail call, emit, redirect, nothing
//!   else), to b1: the most any topology instance can reach on this path;
//! - **dropped at a1's peer:** no forwarding at all, the most this lab carries.
//!
//! The rate is what the sink counted per second: `steer` with default action drop on the
//! sink's interface (IP dropped and counted there, ARP passed so the sink still answers
//! it), the same for the four; for the last, `steer` dropping on a1's peer. A veth takes
//! frames from XDP only when its peer runs XDP in native mode (NAPI): the sink's `steer`
//! gives the node's transmitting side that, and `steer` (pass everything, native) on
//! a1's peer, in every case, gives the generator's frames their way in; the topology
//! joins that chain after `steer` (so in native mode; a topology alone on a veth runs in
//! generic mode, `topology::apply`'s `chain_modes`). Before each round, a1 sends single
//! UDP datagrams until the sink counts one: neighbours resolved, bridges learned.
//!
//! Everything but the Linux stack's own work runs where the generator's frame lands: the
//! generator, a1's transmit, the node's receive and forwarding, and the sink's receive
//! share one CPU per frame, so the rates carry the generator's and the sink's costs too.
//!
//! Destinations: by default the frames go to b1's own address (10.31.2.11, a connected
//! route). With `--destinations N` or `--routes N` the routed cases send to 20.0.0.1 and
//! the N - 1 addresses after it instead, one after the other, frame by frame (each is a
//! different destination for the router's per-CPU look-up cache; they fall in the first
//! N / 256 /24s); Linux forwards them by a route 20.0.0.0/8 via b1, the router by its
//! static route or, in the N-routes case, by the /24s.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::maps::{Array, LpmTrie, MapData, lpm_trie::Key};
use lab::{netlink, netns, topology::TopologyLab};
use offload::{AttachOptions, mode::ModePolicy, rules::Action};
use offload_common::router::{self, Route};
use topology::TopologyFile;
use trafficgen::{GenFrame, GenMode, GenOptions, Generator, L4Kind, Template};

/// The topology's name in the node namespace.
const NAME: &str = "mpps";
/// The UDP ports of the flow (the sink drops it whatever they are).
const SOURCE_PORT: u16 = 40000;
const DESTINATION_PORT: u16 = 9;
/// The block the routed cases send to when several destinations or routes are asked for,
/// and the router's one static route to it (via b1).
const FAR_BLOCK: [u8; 4] = [20, 0, 0, 0];
/// b1's address, the next hop of the far block.
const B1: &str = "10.31.2.11";
/// The first route id of the N-routes case (the router's own take the lowest ids).
const FIRST_EXTRA_ID: u32 = 1_000;

/// What the command line asks for.
#[derive(Clone)]
struct Settings {
    seconds: f64,
    rounds: usize,
    only: Option<Vec<String>>,
    routes: u32,
    destinations: u32,
}

impl Settings {
    fn parse() -> Result<Settings> {
        let mut settings = Settings {
            seconds: 3.0,
            rounds: 5,
            only: None,
            routes: 0,
            destinations: 1,
        };
        let mut positional = 0;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--only" => {
                    settings.only = Some(value("--only")?.split(',').map(str::to_string).collect())
                }
                "--routes" => settings.routes = value("--routes")?.parse().context("--routes")?,
                "--destinations" => {
                    settings.destinations =
                        value("--destinations")?.parse().context("--destinations")?
                }
                _ if positional == 0 => {
                    settings.seconds = arg.parse().context("SECONDS")?;
                    positional += 1;
                }
                _ if positional == 1 => {
                    settings.rounds = arg.parse().context("ROUNDS")?;
                    positional += 1;
                }
                _ => bail!("unexpected argument {arg:?}"),
            }
        }
        if settings.destinations == 0 {
            bail!("--destinations: at least 1");
        }
        Ok(settings)
    }

    /// Whether the routed cases send to the far block rather than to b1's address.
    fn far(&self) -> bool {
        self.routes > 0 || self.destinations > 1
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Router,
    /// The router with `--routes` more routes.
    RouterRoutes,
    LinuxForwarding,
    Bridge,
    LinuxBridge,
    /// A topology instance that only forwards: the topology's own cost.
    Wire,
    /// No forwarding: `steer` drops at a1's peer, the most this lab carries.
    Floor,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Router => "router",
            Case::RouterRoutes => "router, N routes",
            Case::LinuxForwarding => "Linux forwarding",
            Case::Bridge => "bridge",
            Case::LinuxBridge => "Linux bridge",
            Case::Wire => "wire (an instance that only forwards)",
            Case::Floor => "dropped at a1's peer",
        }
    }

    /// Its name for `--only`.
    fn key(self) -> &'static str {
        match self {
            Case::Router => "router",
            Case::RouterRoutes => "routes",
            Case::LinuxForwarding => "linux",
            Case::Bridge => "bridge",
            Case::LinuxBridge => "linux-bridge",
            Case::Wire => "wire",
            Case::Floor => "floor",
        }
    }

    /// Whether the frames are routed (or, for the floor, addressed as if).
    fn routed(self) -> bool {
        matches!(
            self,
            Case::Router | Case::RouterRoutes | Case::LinuxForwarding | Case::Wire | Case::Floor
        )
    }

    /// The host the datagrams go to: b1 behind the router, a2 on the bridge.
    fn sink(self) -> &'static str {
        if self.routed() { "b1" } else { "a2" }
    }

    /// Where they are counted: the sink's interface, or a1's peer in the node.
    fn counted_at(self, lab: &TopologyLab) -> (String, String) {
        match self {
            Case::Floor => (lab.node.clone(), lab.host("a1").node_iface.clone()),
            _ => {
                let host = &lab.host(self.sink()).host;
                (host.namespace.clone(), host.iface.clone())
            }
        }
    }
}

/// The topology file of `case` (router or bridge), joined to the node's interfaces.
fn topology_text(lab: &TopologyLab, case: Case) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    match case {
        Case::Router | Case::RouterRoutes => format!(
            "name = \"{NAME}\"\n\n[[instance]]\nname = \"r1\"\nkind = \"router\"\n\
             ports = {{ a = \"{a1}\", b = \"{b1}\" }}\n\
             addresses = {{ a = [\"10.31.1.1/24\"], b = [\"10.31.2.1/24\"] }}\n\
             routes = [{{ to = \"{far}/8\", via = \"{B1}\" }}]\n",
            far = std::net::Ipv4Addr::from(FAR_BLOCK),
            a1 = iface("a1"),
            b1 = iface("b1"),
        ),
        Case::Wire => format!(
            "name = \"{NAME}\"\n\n[[instance]]\nname = \"w\"\nmodule = \"{object}\"\n\
             ports = {{ a = \"{a1}\", b = \"{b1}\" }}\n",
            object = wire_object().display(),
            a1 = iface("a1"),
            b1 = iface("b1"),
        ),
        _ => format!(
            "name = \"{NAME}\"\n\n[[instance]]\nname = \"br\"\nkind = \"bridge\"\n\
             ports = {{ p1 = \"{a1}\", p2 = \"{a2}\" }}\n",
            a1 = iface("a1"),
            a2 = iface("a2"),
        ),
    }
}

/// Where the `wire` case's object is written for the topology file to name.
fn wire_object() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fastpath-topology-wire-{}.o", std::process::id()))
}

/// The name of the Linux bridge of the Linux bridge rounds.
fn linux_bridge(lab: &TopologyLab) -> String {
    format!("{}-br", lab.prefix)
}

/// Puts `case` in place in the node namespace.
fn set_up(lab: &TopologyLab, case: Case, routes: u32) -> Result<()> {
    let a1 = lab.host("a1").node_iface.clone();
    // Every case: `steer` first on a1's peer, in native mode (see the module's doc);
    // passing all, or for the floor dropping all.
    let steer_on = a1.clone();
    let attached = netns::run_in(&lab.node, move || {
        offload::attach(&AttachOptions {
            iface: steer_on,
            policy: ModePolicy::Auto,
            default_action: if case == Case::Floor {
                Action::Drop
            } else {
                Action::Pass
            },
            prefilter: Vec::new(),
        })
    })??;
    if attached.mode != offload::mode::XdpMode::Drv {
        bail!(
            "steer runs on {} in {} mode: the generator needs native",
            attached.iface,
            attached.mode
        );
    }
    match case {
        Case::Router | Case::RouterRoutes | Case::Bridge | Case::Wire => {
            let text = topology_text(lab, case);
            let extra = if case == Case::RouterRoutes {
                routes
            } else {
                0
            };
            netns::run_in(&lab.node, move || -> Result<()> {
                let file = TopologyFile::parse(Path::new("topology_mpps.toml"), &text, |iface| {
                    topology::ifindex(iface).is_ok()
                })?;
                topology::apply(&file, false)?;
                if extra > 0 {
                    let started = Instant::now();
                    load_routes(extra)?;
                    eprintln!(
                        "loaded {extra} routes in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(())
            })??;
        }
        Case::Floor => {}
        Case::LinuxForwarding => {}
        Case::LinuxBridge => lab.linux_bridge(&linux_bridge(lab))?,
    }
    Ok(())
}

/// Writes `count` /24 routes from 20.0.0.0/24 up, out port `b` (1) via b1, into the
/// running router's pinned IPv4 trie, then bumps its routes generation once (as
/// `topology` does after a batch). Straight into the trie: `router route add` reads the
/// whole trie per route to find a free id.
fn load_routes(count: u32) -> Result<()> {
    let dir = topology::pins::instance_dir(NAME, "r1");
    let trie_path = dir.join(router::maps::ROUTES_V4);
    let mut trie: LpmTrie<MapData, [u8; 4], Route> = LpmTrie::try_from(aya::maps::Map::LpmTrie(
        MapData::from_pin(&trie_path).with_context(|| format!("{}", trie_path.display()))?,
    ))?;
    let mut next_hop = [0u8; 16];
    next_hop[..4].copy_from_slice(&B1.parse::<std::net::Ipv4Addr>()?.octets());
    let base = u32::from_be_bytes(FAR_BLOCK);
    for k in 0..count {
        let route = Route {
            port: 1,
            id: FIRST_EXTRA_ID + k,
            flags: 0,
            _pad: 0,
            next_hop,
        };
        let prefix = (base + (k << 8)).to_be_bytes();
        trie.insert(&Key::new(24, prefix), route, 0)
            .with_context(|| format!("route {k} into {}", trie_path.display()))?;
    }
    let generation_path = dir.join(router::maps::ROUTES_GENERATION);
    let mut generation: Array<MapData, u64> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(&generation_path)
            .with_context(|| format!("{}", generation_path.display()))?,
    ))?;
    let now = generation.get(&0, 0)?;
    generation.set(0, now.wrapping_add(1), 0)?;
    Ok(())
}

/// Takes `case` away again.
fn tear_down(lab: &TopologyLab, case: Case) -> Result<()> {
    let a1 = lab.host("a1").node_iface.clone();
    let bridge = linux_bridge(lab);
    netns::run_in(&lab.node, move || -> Result<()> {
        match case {
            Case::Router | Case::RouterRoutes | Case::Bridge | Case::Wire => {
                topology::down(NAME)?;
            }
            Case::LinuxForwarding | Case::Floor => {}
            Case::LinuxBridge => {
                // The ports leave the bridge with it.
                netlink::delete_link(&bridge)?;
            }
        }
        offload::detach(&a1)?;
        Ok(())
    })?
}

/// What the sink of `case` has dropped (counted) so far.
fn sunk(lab: &TopologyLab, case: Case) -> Result<u64> {
    let (namespace, iface) = case.counted_at(lab);
    Ok(netns::run_in(&namespace, move || {
        offload::status(&iface).map(|status| status.counters.drop)
    })??)
}

/// Sends single datagrams from a1 to the sink until the sink counts one (the path's
/// neighbours resolved, the bridges' tables learned), for at most 10 s. To the sink's own
/// address: the far block's next hop is the sink, so its neighbour is the same.
fn warm_up(lab: &TopologyLab, case: Case) -> Result<()> {
    let destination = SocketAddr::new(lab.host(case.sink()).host.ipv4, DESTINATION_PORT);
    let socket: UdpSocket = netns::run_in(&lab.host("a1").host.namespace, || {
        UdpSocket::bind(("0.0.0.0", 0))
    })??;
    let before = sunk(lab, case)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sunk(lab, case)? == before {
        if Instant::now() > deadline {
            bail!(
                "{}: no datagram reached {} in 10 s",
                case.name(),
                case.sink()
            );
        }
        // Unanswered: the sink drops it. Errors (no neighbour yet) are retried.
        let _ = socket.send_to(b"warm-up", destination);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The frame of `case`: a1 to its gateway's MAC (routed) or to a2's (bridged).
fn frame(lab: &TopologyLab, case: Case, far: bool) -> Result<GenFrame> {
    let a1 = &lab.host("a1");
    let sink = &lab.host(case.sink()).host;
    let dst = if far && case.routed() {
        IpAddr::from([FAR_BLOCK[0], FAR_BLOCK[1], FAR_BLOCK[2], 1])
    } else {
        sink.ipv4
    };
    let dst_mac = if case.routed() {
        // A router port on an interface answers with that interface's MAC; Linux too.
        let iface = a1.node_iface.clone();
        netns::run_in(&lab.node, move || netlink::mac(&iface))??
    } else {
        sink.read_mac()?
    };
    Ok(Template {
        src_mac: a1.host.read_mac()?,
        dst_mac,
        src: a1.host.ipv4,
        dst,
        l4: L4Kind::Udp,
        dst_port: DESTINATION_PORT,
        src_port: SOURCE_PORT,
        frame_size: 64,
    }
    .build()?)
}

/// One round of `seconds`: Mpps the sink counted, Mpps the generator sent. `destinations`
/// destination addresses from the frame's up, frame by frame, from core 0.
fn run(
    lab: &TopologyLab,
    case: Case,
    frame: &GenFrame,
    seconds: f64,
    destinations: u32,
) -> Result<(f64, f64)> {
    warm_up(lab, case)?;
    let before = sunk(lab, case)?;
    let host = lab.host("a1").host.clone();
    let frame = frame.clone();
    let report = netns::run_in(&host.namespace, move || -> Result<_> {
        let duration = Duration::from_secs_f64(seconds);
        if destinations == 1 {
            return Ok(Generator::one_flow_at_full_rate(
                &host.iface,
                frame,
                duration,
            )?);
        }
        let mut space = frame.flow_space();
        space.dst_count = destinations;
        let options = GenOptions {
            iface: host.iface.clone(),
            ifindex: topology::ifindex(&host.iface)?,
            mode: GenMode::LiveFrames,
            space,
            frames: vec![(frame, 1)],
            flows: destinations,
            rate_pps: None,
            duration,
            count: None,
            cores: vec![0],
        };
        let started = Instant::now();
        let mut report = Generator::for_mode(GenMode::LiveFrames)?
            .run(&options, &std::sync::atomic::AtomicBool::new(false))?;
        report.seconds = report
            .seconds
            .min(started.elapsed().as_secs_f64())
            .max(1e-9);
        Ok(report)
    })??;
    let elapsed = report.seconds;
    let after = sunk(lab, case)?;
    Ok(((after - before) as f64 / elapsed / 1e6, report.mpps))
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The node's Linux side: the router's addresses on a1's and b1's peers and forwarding
/// on. In the topology rounds the topology takes every frame before Linux sees it.
fn linux_router(lab: &TopologyLab) -> Result<()> {
    lab.linux_forwarding()?;
    netns::run_in(&lab.node, move || -> Result<()> {
        netlink::add_route(IpAddr::from(FAR_BLOCK), 8, B1.parse()?)?;
        Ok(())
    })?
}

/// Takes the sinks' `steer` off when the run ends, passed or failed: its pins would
/// outlive the lab's namespaces (until `fastpath lab down` prunes them).
struct Sinks<'a>(&'a TopologyLab);

impl Drop for Sinks<'_> {
    fn drop(&mut self) {
        for name in ["b1", "a2"] {
            let host = self.0.host(name).host.clone();
            let _ = netns::run_in(&host.namespace, move || offload::detach(&host.iface));
        }
    }
}

/// Attaches the sinks' `steer`: default action drop, counted.
fn sinks(lab: &TopologyLab) -> Result<()> {
    for name in ["b1", "a2"] {
        let host = lab.host(name).host.clone();
        let attached = netns::run_in(&host.namespace, move || {
            offload::attach(&AttachOptions {
                iface: host.iface,
                policy: ModePolicy::Auto,
                default_action: Action::Drop,
                prefilter: Vec::new(),
            })
        })??;
        eprintln!("sink {name}: steer (drop) in {} mode", attached.mode);
    }
    Ok(())
}

fn main() -> Result<()> {
    let settings = Settings::parse()?;
    let (seconds, rounds) = (settings.seconds, settings.rounds);
    if !nix::unistd::geteuid().is_root() {
        bail!("topology_mpps needs root (it builds a lab of network namespaces)");
    }
    let all = [
        Case::Router,
        Case::RouterRoutes,
        Case::LinuxForwarding,
        Case::Bridge,
        Case::LinuxBridge,
        Case::Wire,
        Case::Floor,
    ];
    if let Some(only) = &settings.only
        && let Some(unknown) = only
            .iter()
            .find(|name| all.iter().all(|case| case.key() != *name))
    {
        bail!(
            "--only: no case {unknown:?} (router, routes, linux, bridge, linux-bridge, wire, floor)"
        );
    }
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|case| *case != Case::RouterRoutes || settings.routes > 0)
        .filter(|case| {
            settings
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|name| name == case.key()))
        })
        .collect();
    std::fs::write(
        wire_object(),
        offload::modules::builtin::TOPOLOGY_WIRE_OBJECT,
    )
    .context("write the wire case's object")?;
    lab::Lab::teardown_on_signals();
    let lab = TopologyLab::up(&format!("fptm{:04}", std::process::id() % 10000))?;
    let _sinks = Sinks(&lab);
    sinks(&lab)?;
    linux_router(&lab)?;
    let frames = cases
        .iter()
        .map(|case| frame(&lab, *case, settings.far()))
        .collect::<Result<Vec<_>>>()?;
    eprintln!("load average before: {}", load_average());
    let mut rates = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for (at, case) in cases.iter().copied().enumerate() {
            set_up(&lab, case, settings.routes)?;
            let destinations = if case.routed() {
                settings.destinations
            } else {
                1
            };
            let rate = run(&lab, case, &frames[at], seconds, destinations);
            tear_down(&lab, case)?;
            let (rate, sent) = rate?;
            eprintln!(
                "round {round}, {}: {rate:.3} Mpps counted ({sent:.3} Mpps sent)",
                case.name()
            );
            rates[at].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|values| median(values)).collect();
    let median_of = |case: Case| cases.iter().position(|c| *c == case).map(|at| medians[at]);
    println!(
        "64-byte UDP frames, {} destination(s), {} extra route(s), median of {rounds} rounds of \
         {seconds} s, Mpps counted; load average after: {}",
        settings.destinations,
        settings.routes,
        load_average()
    );
    for (case, median) in cases.iter().zip(&medians) {
        println!("{}: {median:.3} Mpps", case.name());
    }
    for (ours, peer) in [
        (Case::Router, Case::LinuxForwarding),
        (Case::RouterRoutes, Case::LinuxForwarding),
        (Case::RouterRoutes, Case::Router),
        (Case::Bridge, Case::LinuxBridge),
        (Case::Wire, Case::LinuxForwarding),
        (Case::Router, Case::Wire),
        (Case::Router, Case::Floor),
    ] {
        if let (Some(ours_rate), Some(peer_rate)) = (median_of(ours), median_of(peer)) {
            println!(
                "{} against {}: {:.2}×",
                ours.name(),
                peer.name(),
                ours_rate / peer_rate
            );
        }
    }
    let _ = std::fs::remove_file(wire_object());
    Ok(())
}
