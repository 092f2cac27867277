//! The tunnel graph page of `fastpath serve` in a real browser: headless Chromium from
//! Debian loads it on the VXLAN lab while traffic crosses the mesh, and the DOM it
//! rendered must show the lab's VTEPs, the tunnels between them with their health, and
//! a VTEP's inner endpoints; a screenshot is saved under target/.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lab::{
    Lab,
    vxlan::{Underlay, VxlanLab},
};
use support::serve::{Server, Tracers};

/// The inner UDP port the lab's hosts send to.
const INNER_PORT: u16 = 9200;

/// Inner UDP datagrams from each (from, to) host pair, round after round until stopped:
/// the graph needs live traffic for its rates. The receivers' sockets stay open and
/// unread, so no ICMP error ever travels back.
struct Traffic {
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(lab: &VxlanLab, pairs: &[(usize, usize)]) -> Traffic {
        let mut receivers = Vec::new();
        let mut flows = Vec::new();
        for &(from, to) in pairs {
            let (source, target) = (&lab.hosts[from - 1].vxlan, &lab.hosts[to - 1].vxlan);
            let destination = SocketAddr::new(target.ipv4, INNER_PORT);
            if !receivers
                .iter()
                .any(|(address, _): &(SocketAddr, _)| *address == destination)
            {
                let receiver = Lab::udp_socket(&target.namespace, destination).unwrap();
                receivers.push((destination, receiver));
            }
            let socket =
                Lab::udp_socket(&source.namespace, SocketAddr::new(source.ipv4, 0)).unwrap();
            flows.push((socket, destination));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sender = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let _receivers = receivers;
                while !stop.load(Ordering::Relaxed) {
                    for (socket, destination) in &flows {
                        socket.send_to(&[0x5a; 100], destination).unwrap();
                    }
                    // A pace, not a wait for something: about 100 datagrams a second per pair.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Traffic {
            stop,
            sender: Some(sender),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

/// Headless Chromium in `namespace` (where the server listens on its loopback) on `url`,
/// with `extra` arguments; its standard output. Virtual time lets the page's timers run
/// ahead (several polls) before the DOM is dumped.
fn chromium(namespace: &str, url: &str, profile: &Path, extra: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .env("HOME", profile)
        .output()
        .expect("run chromium (`cargo xtask setup` installs it)");
    assert!(
        output.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every start tag `<name ...>` of `html`, as its text.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    html.match_indices(&open)
        .map(|(start, _)| {
            let end = html[start..]
                .find('>')
                .map_or(html.len(), |end| start + end);
            &html[start..end]
        })
        .collect()
}

/// The value of `attribute` in a start tag.
fn attribute<'a>(tag: &'a str, attribute: &str) -> Option<&'a str> {
    let key = format!(" {attribute}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// A tunnel as drawn.
struct Drawn {
    a: String,
    b: String,
    health: String,
    /// Bytes per second, once the server has a rate.
    rate: Option<f64>,
    width: f64,
}

/// What the rendered page shows: VTEP addresses, the tunnels, the selected VTEP's inner
/// endpoints.
struct Rendered {
    vteps: Vec<String>,
    tunnels: Vec<Drawn>,
    inner: Vec<String>,
}

fn rendered(dom: &str) -> Rendered {
    let vteps = tags(dom, "g")
        .into_iter()
        .filter_map(|tag| attribute(tag, "data-vtep").map(str::to_string))
        .collect();
    let tunnels = tags(dom, "line")
        .into_iter()
        .filter_map(|tag| {
            Some(Drawn {
                a: attribute(tag, "data-a")?.to_string(),
                b: attribute(tag, "data-b")?.to_string(),
                health: attribute(tag, "data-health")?.to_string(),
                rate: attribute(tag, "data-bytes-per-second")?.parse().ok(),
                width: attribute(tag, "stroke-width")?.parse().ok()?,
            })
        })
        .collect();
    let inner = tags(dom, "li")
        .into_iter()
        .filter(|tag| attribute(tag, "class") == Some("inner"))
        .filter_map(|tag| {
            let start = dom.find(tag)? + tag.len() + 1;
            let end = dom[start..].find('<')? + start;
            Some(dom[start..end].to_string())
        })
        .collect();
    Rendered {
        vteps,
        tunnels,
        inner,
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_tunnel_graph_shows_the_labs_vteps_and_tunnels_in_chromium() {
    lab::require_root("trace_web");
    let lab = VxlanLab::for_test("tw", Underlay::V4, 4789);
    // The tracer on every port of the underlay's bridge: the whole mesh, from one place.
    let segment = lab.namespace("ul");
    let ports: Vec<String> = (1..=3).map(|host| lab.bridge_port(host)).collect();
    let chains: Vec<(&str, &str)> = ports.iter().map(|port| (port.as_str(), "xdp")).collect();
    let tracers = Tracers::load(&segment, &chains);
    // Both ways between 1 and 2 and between 1 and 3; 2 -> 3 only, one way.
    let _traffic = Traffic::start(&lab, &[(1, 2), (2, 1), (1, 3), (3, 1), (2, 3)]);
    let vtep = |host: usize| lab.hosts[host - 1].underlay.ipv4.to_string();
    lab::wait_until(
        Duration::from_secs(10),
        "the tracers see every direction",
        || {
            let seen: Vec<serde_json::Value> = ports
                .iter()
                .map(|port| tracers.snapshot(port, "xdp"))
                .collect();
            seen.iter().all(|snapshot| {
                snapshot["tunnels"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty())
            })
        },
    );
    let server = Server::start(&segment, &[]);
    let profile = std::env::temp_dir().join(format!("fastpath-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap();
    let page = server.url(&format!("/?vtep={}", vtep(1)));

    let expected_vteps: Vec<String> = (1..=3).map(vtep).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let shown = loop {
        let dom = chromium(&segment, &page, &profile, &["--dump-dom"]);
        let shown = rendered(&dom);
        // Rates come once the server has a sample a second old: a later load has them.
        if shown.vteps.len() >= 3
            && shown.tunnels.len() >= 3
            && shown.tunnels.iter().all(|tunnel| tunnel.rate.is_some())
        {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page never drew 3 VTEPs and 3 tunnels with their rates: {dom}"
        );
    };
    let mut vteps = shown.vteps.clone();
    vteps.sort();
    assert_eq!(vteps, expected_vteps, "the nodes are the lab's VTEPs");
    let tunnel = |one: usize, other: usize| {
        shown
            .tunnels
            .iter()
            .find(|tunnel| (&tunnel.a, &tunnel.b) == (&vtep(one), &vtep(other)))
            .unwrap_or_else(|| panic!("no tunnel {one} - {other}"))
    };
    let health = |one: usize, other: usize| tunnel(one, other).health.clone();
    // Live traffic on every tunnel: each has a rate, and is drawn wider than an idle one.
    for (one, other) in [(1, 2), (1, 3), (2, 3)] {
        let drawn = tunnel(one, other);
        assert!(
            drawn.rate.is_some_and(|rate| rate > 0.0) && drawn.width > 2.0,
            "{one} - {other}: rate {:?}, width {}",
            drawn.rate,
            drawn.width
        );
    }
    assert_eq!(health(2, 3), "one-way", "2 -> 3 carries traffic one way");
    for (one, other) in [(1, 2), (1, 3)] {
        assert_ne!(
            health(one, other),
            "one-way",
            "{one} <-> {other} carries traffic both ways"
        );
    }
    assert_eq!(
        shown.inner,
        [lab.hosts[0].vxlan.ipv4.to_string()],
        "VTEP 1's inner endpoints"
    );

    let screenshot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-web-graph.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(
        &segment,
        &page,
        &profile,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,800",
        ],
    );
    let bytes = std::fs::read(&screenshot).expect("chromium saved the screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    println!("screenshot of the tunnel graph: {}", screenshot.display());
    let _ = std::fs::remove_dir_all(&profile);
}
