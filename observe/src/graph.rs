//! The tunnel graph behind the web page: VTEPs as nodes, tunnels as edges with their rate
//! and health, built from every tracer's snapshot.
//!
//! Several tracers may see the same tunnel (host 1's XDP ingress and host 2's TC egress
//! both see 2 -> 1; the ports of a bridge each see the direction their host sends). Each
//! sees a direction whole or not at all, so a tunnel's direction is the **largest** count
//! any tracer has for it, never their sum (which would count a packet once per tracer).
//!
//! Health needs a past: [`History`] keeps the graph's samples of the last
//! [`WINDOW`] and judges each tunnel from them:
//! - `one-way`: traffic in one direction only over the window (or, until the window
//!   spans [`RATE_SPAN`], over everything counted so far: a page polling fast, or just
//!   opened, must not judge a direction on a few milliseconds);
//! - `collapsed`: its rate fell under [`COLLAPSE_FRACTION`] of its peak in the window,
//!   a peak of at least [`COLLAPSE_MIN_PACKETS_PER_SECOND`];
//! - `idle`: no packet over the window;
//! - `ok`: none of these.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::IpAddr,
    time::Duration,
};

use serde::Serialize;

use crate::tunnels::{Flow, TraceSnapshot};

/// How far back health looks.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The span a rate is taken over at least: shorter spans (two browsers polling a few
/// milliseconds apart) would see bursts and gaps instead of a rate.
pub const RATE_SPAN: Duration = Duration::from_secs(1);
/// A rate under this fraction of the window's peak is a collapse.
pub const COLLAPSE_FRACTION: f64 = 0.1;
/// Peaks below this many packets per second are noise, not a rate that can collapse.
pub const COLLAPSE_MIN_PACKETS_PER_SECOND: f64 = 10.0;
/// Samples closer than this to the previous one kept are not kept (many pages polling
/// at once would fill the history with near copies).
const SAMPLE_SPACING: Duration = Duration::from_millis(250);

/// What identifies a tunnel: kind, VNI, the lower VTEP, the higher one.
pub type TunnelId = (&'static str, u32, IpAddr, IpAddr);

/// One tunnel's counts, merged over the tracers that see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelCounts {
    /// a -> b (a is the lower VTEP address).
    pub a_to_b: Flow,
    /// b -> a.
    pub b_to_a: Flow,
    /// Inner addresses seen behind a.
    pub inner_a: BTreeSet<IpAddr>,
    /// Inner addresses seen behind b.
    pub inner_b: BTreeSet<IpAddr>,
}

/// Every tunnel any tracer sees, each direction the largest count of any tracer.
pub fn merge(snapshots: &[TraceSnapshot]) -> BTreeMap<TunnelId, TunnelCounts> {
    let mut merged: BTreeMap<TunnelId, TunnelCounts> = BTreeMap::new();
    for snapshot in snapshots {
        for tunnel in &snapshot.tunnels {
            let id = (tunnel.kind, tunnel.vni, tunnel.outer_a, tunnel.outer_b);
            let counts = merged.entry(id).or_default();
            for (merged, seen) in [
                (&mut counts.a_to_b, tunnel.a_to_b),
                (&mut counts.b_to_a, tunnel.b_to_a),
            ] {
                if seen.packets > merged.packets {
                    *merged = seen;
                }
            }
            for pair in &tunnel.pairs {
                counts.inner_a.extend(pair.inner_a);
                counts.inner_b.extend(pair.inner_b);
            }
        }
    }
    merged
}

/// A tunnel's health, as the page colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Traffic both ways, at a steady rate.
    Ok,
    /// Traffic in one direction only.
    OneWay,
    /// The rate fell far under its recent peak.
    Collapsed,
    /// No traffic in the window.
    Idle,
}

/// A VTEP: a node of the graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vtep {
    /// Its underlay address.
    pub address: IpAddr,
    /// The inner addresses seen behind it, on any tunnel.
    pub inner: Vec<IpAddr>,
}

/// A tunnel: an edge of the graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    /// "vxlan" or "geneve".
    pub kind: &'static str,
    /// The VNI.
    pub vni: u32,
    /// The lower VTEP.
    pub a: IpAddr,
    /// The higher VTEP.
    pub b: IpAddr,
    /// a -> b since the tracers started.
    pub a_to_b: Flow,
    /// b -> a since the tracers started.
    pub b_to_a: Flow,
    /// Bytes per second, both directions, over the last [`RATE_SPAN`] or more (none until
    /// two samples that far apart).
    pub bytes_per_second: Option<f64>,
    /// Packets per second, both directions, likewise.
    pub packets_per_second: Option<f64>,
    /// Its health.
    pub health: Health,
}

/// The graph as `/api/graph` serves it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Graph {
    /// The VTEPs, by address.
    pub vteps: Vec<Vtep>,
    /// The tunnels, by (kind, VNI, a, b).
    pub tunnels: Vec<Edge>,
    /// Seconds of past the health was judged on (0 for the first sample).
    pub window_seconds: f64,
    /// Tracers that could not be read (their tunnels are missing from the graph).
    pub errors: Vec<String>,
}

/// One sample of every tunnel, with the rates it had then.
#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    tunnels: BTreeMap<TunnelId, TunnelCounts>,
    packets_per_second: BTreeMap<TunnelId, f64>,
}

/// The samples of the last [`WINDOW`]: what rates and health are judged on.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

fn packets(counts: &TunnelCounts) -> u64 {
    counts.a_to_b.packets + counts.b_to_a.packets
}

fn bytes(counts: &TunnelCounts) -> u64 {
    counts.a_to_b.bytes + counts.b_to_a.bytes
}

impl History {
    /// Adds the tracers' snapshots taken at `at` (any clock that only goes forward: the
    /// server's uptime) and returns the graph with rates and health.
    pub fn sample(&mut self, at: Duration, snapshots: &[TraceSnapshot]) -> Graph {
        let tunnels = merge(snapshots);
        while self
            .samples
            .front()
            .is_some_and(|oldest| at.saturating_sub(oldest.at) > WINDOW)
        {
            self.samples.pop_front();
        }
        // The rate: against the newest sample at least RATE_SPAN old.
        let base = self
            .samples
            .iter()
            .rev()
            .find(|sample| at.saturating_sub(sample.at) >= RATE_SPAN);
        // The window: from the oldest sample, once it is far enough back to judge on.
        let oldest = self
            .samples
            .front()
            .filter(|oldest| at.saturating_sub(oldest.at) >= RATE_SPAN);
        let mut edges = Vec::new();
        let mut rates = BTreeMap::new();
        let mut vteps: BTreeMap<IpAddr, BTreeSet<IpAddr>> = BTreeMap::new();
        for (id, counts) in &tunnels {
            let (kind, vni, a, b) = *id;
            vteps.entry(a).or_default().extend(&counts.inner_a);
            vteps.entry(b).or_default().extend(&counts.inner_b);
            let rate = base.map(|base| {
                let before = base.tunnels.get(id).cloned().unwrap_or_default();
                let seconds = at.saturating_sub(base.at).as_secs_f64();
                (
                    bytes(counts).saturating_sub(bytes(&before)) as f64 / seconds,
                    packets(counts).saturating_sub(packets(&before)) as f64 / seconds,
                )
            });
            if let Some((_, packets_per_second)) = rate {
                rates.insert(*id, packets_per_second);
            }
            let peak = self
                .samples
                .iter()
                .filter_map(|sample| sample.packets_per_second.get(id))
                .copied()
                .fold(None, |peak: Option<f64>, rate| {
                    Some(peak.map_or(rate, |peak| peak.max(rate)))
                });
            let since = oldest
                .and_then(|oldest| oldest.tunnels.get(id).cloned())
                .unwrap_or_default();
            let window = if oldest.is_some() {
                (
                    counts.a_to_b.packets.saturating_sub(since.a_to_b.packets),
                    counts.b_to_a.packets.saturating_sub(since.b_to_a.packets),
                )
            } else {
                (counts.a_to_b.packets, counts.b_to_a.packets)
            };
            let health = judge(window, rate.map(|(_, packets)| packets), peak);
            edges.push(Edge {
                kind,
                vni,
                a,
                b,
                a_to_b: counts.a_to_b,
                b_to_a: counts.b_to_a,
                bytes_per_second: rate.map(|(bytes, _)| bytes),
                packets_per_second: rate.map(|(_, packets)| packets),
                health,
            });
        }
        let window_seconds =
            oldest.map_or(0.0, |oldest| at.saturating_sub(oldest.at).as_secs_f64());
        if self
            .samples
            .back()
            .is_none_or(|newest| at.saturating_sub(newest.at) >= SAMPLE_SPACING)
        {
            self.samples.push_back(Sample {
                at,
                tunnels,
                packets_per_second: rates,
            });
        }
        Graph {
            vteps: vteps
                .into_iter()
                .map(|(address, inner)| Vtep {
                    address,
                    inner: inner.into_iter().collect(),
                })
                .collect(),
            tunnels: edges,
            window_seconds,
            errors: Vec::new(),
        }
    }
}

/// A tunnel's health from its packets each way over the window, its packet rate now and
/// its peak rate in the window.
fn judge(window: (u64, u64), rate: Option<f64>, peak: Option<f64>) -> Health {
    if let (Some(rate), Some(peak)) = (rate, peak)
        && peak >= COLLAPSE_MIN_PACKETS_PER_SECOND
        && rate < peak * COLLAPSE_FRACTION
    {
        return Health::Collapsed;
    }
    match window {
        (0, 0) => Health::Idle,
        (0, _) | (_, 0) => Health::OneWay,
        _ => Health::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnels::{InnerPair, Tunnel};
    use offload::modules::Hook;

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A tracer's snapshot with one tunnel 10.0.0.1 <-> 10.0.0.2 and its counts.
    fn seen(a_to_b: u64, b_to_a: u64) -> TraceSnapshot {
        let flow = |packets| Flow {
            packets,
            bytes: packets * 100,
        };
        TraceSnapshot {
            iface: "u".into(),
            hook: Hook::Xdp,
            tunnel_packets: a_to_b + b_to_a,
            malformed_packets: 0,
            other_packets: 0,
            pairs: 1,
            evictions: 0,
            tunnels: vec![Tunnel {
                kind: "vxlan",
                vni: 7,
                outer_a: address("10.0.0.1"),
                outer_b: address("10.0.0.2"),
                a_to_b: flow(a_to_b),
                b_to_a: flow(b_to_a),
                bytes_per_second: None,
                pairs: vec![InnerPair {
                    inner_a: Some(address("192.168.0.1")),
                    inner_b: Some(address("192.168.0.2")),
                    protocol: 17,
                    port_a: 0,
                    port_b: 0,
                    a_to_b: flow(a_to_b),
                    b_to_a: flow(b_to_a),
                }],
            }],
        }
    }

    fn seconds(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn tracers_seeing_the_same_direction_are_not_added_up() {
        let merged = merge(&[seen(10, 0), seen(10, 4), seen(0, 4)]);
        let counts = merged.values().next().unwrap();
        assert_eq!(counts.a_to_b.packets, 10);
        assert_eq!(counts.b_to_a.packets, 4);
        assert_eq!(counts.inner_a, BTreeSet::from([address("192.168.0.1")]));
    }

    #[test]
    fn vteps_are_nodes_with_their_inner_endpoints() {
        let graph = History::default().sample(seconds(0), &[seen(3, 3)]);
        assert_eq!(graph.vteps.len(), 2);
        assert_eq!(graph.vteps[1].address, address("10.0.0.2"));
        assert_eq!(graph.vteps[1].inner, [address("192.168.0.2")]);
        assert_eq!(graph.tunnels.len(), 1);
        assert_eq!(graph.tunnels[0].health, Health::Ok);
        assert_eq!(graph.tunnels[0].bytes_per_second, None);
    }

    #[test]
    fn rates_come_from_a_sample_at_least_a_second_old() {
        let mut history = History::default();
        history.sample(seconds(0), &[seen(0, 0)]);
        let graph = history.sample(Duration::from_millis(500), &[seen(50, 50)]);
        assert_eq!(graph.tunnels[0].packets_per_second, None);
        // Against the newest sample a second old or more: the one at 0.5 s.
        let graph = history.sample(Duration::from_millis(1500), &[seen(100, 100)]);
        assert_eq!(graph.tunnels[0].packets_per_second, Some(100.0));
        assert_eq!(graph.tunnels[0].bytes_per_second, Some(10_000.0));
        assert_eq!(graph.tunnels[0].health, Health::Ok);
    }

    #[test]
    fn traffic_one_way_is_marked() {
        let mut history = History::default();
        assert_eq!(
            history.sample(seconds(0), &[seen(5, 0)]).tunnels[0].health,
            Health::OneWay
        );
        // Both ways since the start, one way in the window.
        let mut history = History::default();
        history.sample(seconds(0), &[seen(5, 5)]);
        let graph = history.sample(seconds(1), &[seen(5, 9)]);
        assert_eq!(graph.tunnels[0].health, Health::OneWay);
    }

    #[test]
    fn a_collapsed_rate_is_marked_and_a_quiet_tunnel_is_idle() {
        let mut history = History::default();
        let mut total = 0;
        for second in 0..4 {
            history.sample(seconds(second), &[seen(total, total)]);
            total += 500;
        }
        // 1000 packets/s, then 2 in a second.
        let graph = history.sample(seconds(4), &[seen(total - 499, total - 499)]);
        assert_eq!(graph.tunnels[0].health, Health::Collapsed);
        // A tunnel that never ran fast does not collapse: it is idle once quiet.
        let mut history = History::default();
        for second in 0..3 {
            history.sample(seconds(second), &[seen(2, 2)]);
        }
        assert_eq!(
            history.sample(seconds(3), &[seen(2, 2)]).tunnels[0].health,
            Health::Idle
        );
    }

    #[test]
    fn a_window_shorter_than_the_rate_span_judges_on_the_totals() {
        let mut history = History::default();
        history.sample(seconds(0), &[seen(5, 5)]);
        let graph = history.sample(Duration::from_millis(10), &[seen(6, 5)]);
        assert_eq!(graph.tunnels[0].health, Health::Ok);
        assert_eq!(graph.window_seconds, 0.0);
    }

    #[test]
    fn samples_older_than_the_window_are_forgotten() {
        let mut history = History::default();
        history.sample(seconds(0), &[seen(5, 0)]);
        history.sample(seconds(5), &[seen(5, 5)]);
        let graph = history.sample(seconds(12), &[seen(5, 5)]);
        assert_eq!(graph.window_seconds, 7.0);
        assert_eq!(graph.tunnels[0].health, Health::Idle);
    }
}
