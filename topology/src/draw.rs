//! `topology draw`: the running topology as Graphviz DOT and as an SVG drawn here (no
//! Graphviz needed): instances as boxes, interfaces as rounded boxes below the instance
//! they feed, each link labelled with its ports and packet counts.

use std::{collections::HashMap, fmt::Write as _};

use crate::show::Shown;

/// The topology as a DOT graph.
pub fn dot(shown: &Shown) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {:?} {{", shown.name);
    let _ = writeln!(
        out,
        "  label={:?};",
        format!("topology {} (revision {})", shown.name, shown.revision)
    );
    let _ = writeln!(out, "  node [fontname=\"sans-serif\"];");
    for instance in &shown.instances {
        let _ = writeln!(
            out,
            "  {:?} [shape=box, label={:?}];",
            instance.name,
            format!(
                "{}\n{} {}",
                instance.name,
                instance.kind.name(),
                instance.version
            )
        );
    }
    for instance in &shown.instances {
        for port in &instance.ports {
            match port.peer.split_once(':') {
                Some((other, other_port)) => {
                    // Each link once: from its smaller side.
                    if (other, other_port) < (instance.name.as_str(), port.name.as_str()) {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "  {:?} -- {:?} [taillabel={:?}, headlabel={:?}, label={:?}];",
                        instance.name,
                        other,
                        port.name,
                        other_port,
                        format!("{} pkts", port.tx_packets)
                    );
                }
                None => {
                    let node = format!("iface:{}", port.peer);
                    let _ = writeln!(out, "  {node:?} [shape=ellipse, label={:?}];", port.peer);
                    let _ = writeln!(
                        out,
                        "  {:?} -- {node:?} [taillabel={:?}, label={:?}];",
                        instance.name,
                        port.name,
                        format!("rx {} tx {}", port.rx_packets, port.tx_packets)
                    );
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

const BOX_WIDTH: f64 = 150.0;
const BOX_HEIGHT: f64 = 50.0;
const COLUMN: f64 = 230.0;
const IFACE_WIDTH: f64 = 110.0;
const IFACE_HEIGHT: f64 = 30.0;

/// The topology as an SVG image: instances on a row, interfaces below them.
pub fn svg(shown: &Shown) -> String {
    let ifaces_of = |index: usize| -> Vec<(&str, &str, u64, u64)> {
        shown.instances[index]
            .ports
            .iter()
            .filter(|port| !port.peer.contains(':'))
            .map(|port| {
                (
                    port.name.as_str(),
                    port.peer.as_str(),
                    port.rx_packets,
                    port.tx_packets,
                )
            })
            .collect()
    };
    // Each instance gets a column wide enough for its interfaces.
    let mut x = 20.0;
    let mut centres: HashMap<&str, f64> = HashMap::new();
    let mut columns = Vec::new();
    for (index, instance) in shown.instances.iter().enumerate() {
        let width = COLUMN.max(ifaces_of(index).len() as f64 * (IFACE_WIDTH + 10.0));
        centres.insert(instance.name.as_str(), x + width / 2.0);
        columns.push((x, width));
        x += width;
    }
    let width = x + 20.0;
    let height = 390.0;
    let box_y = 130.0;
    let iface_y = 300.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        out,
        "<text x=\"20\" y=\"30\" font-size=\"16\">topology {} (revision {})</text>",
        escape(&shown.name),
        shown.revision
    );
    // Links between instances, drawn as arcs above the boxes so they do not cross them.
    for instance in &shown.instances {
        for port in &instance.ports {
            let Some((other, other_port)) = port.peer.split_once(':') else {
                continue;
            };
            if (other, other_port) < (instance.name.as_str(), port.name.as_str()) {
                continue;
            }
            let (Some(&from), Some(&to)) =
                (centres.get(instance.name.as_str()), centres.get(other))
            else {
                continue;
            };
            let mid = (from + to) / 2.0;
            // Longer links arc higher, so their labels stay apart.
            let lift =
                (box_y - 25.0 - ((to - from).abs() / COLUMN - 1.0).max(0.0) * 16.0).max(45.0);
            let _ = writeln!(
                out,
                "<path d=\"M {from} {box_y} Q {mid} {lift} {to} {box_y}\" fill=\"none\" stroke=\"#336\" stroke-width=\"2\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\" fill=\"#336\">{}:{} – {}:{} ({} / {} pkts)</text>",
                lift + 8.0,
                escape(&instance.name),
                escape(&port.name),
                escape(other),
                escape(other_port),
                port.tx_packets,
                port.rx_packets
            );
        }
    }
    for (index, instance) in shown.instances.iter().enumerate() {
        let centre = centres[instance.name.as_str()];
        let left = centre - BOX_WIDTH / 2.0;
        let fill = match instance.kind {
            crate::Kind::Bridge => "#dde8ff",
            crate::Kind::Router => "#ffe8cc",
            _ => "#e8e8e8",
        };
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{box_y}\" width=\"{BOX_WIDTH}\" height=\"{BOX_HEIGHT}\" rx=\"4\" fill=\"{fill}\" stroke=\"black\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{centre}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            box_y + 20.0,
            escape(&instance.name)
        );
        let _ = writeln!(
            out,
            "<text x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{} {}</text>",
            box_y + 38.0,
            instance.kind.name(),
            escape(&instance.version)
        );
        let ifaces = ifaces_of(index);
        let (column_x, column_width) = columns[index];
        let step = column_width / ifaces.len().max(1) as f64;
        for (at, (port, iface, rx, tx)) in ifaces.iter().enumerate() {
            let iface_centre = column_x + step * (at as f64 + 0.5);
            let _ = writeln!(
                out,
                "<line x1=\"{centre}\" y1=\"{}\" x2=\"{iface_centre}\" y2=\"{iface_y}\" stroke=\"#555\"/>",
                box_y + BOX_HEIGHT
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                (centre + iface_centre) / 2.0,
                (box_y + BOX_HEIGHT + iface_y) / 2.0,
                escape(port)
            );
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{iface_y}\" width=\"{IFACE_WIDTH}\" height=\"{IFACE_HEIGHT}\" rx=\"12\" fill=\"#f4f4f4\" stroke=\"#555\"/>",
                iface_centre - IFACE_WIDTH / 2.0
            );
            let _ = writeln!(
                out,
                "<text x=\"{iface_centre}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                iface_y + 19.0,
                escape(iface)
            );
            let _ = writeln!(
                out,
                "<text x=\"{iface_centre}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#555\">rx {rx} tx {tx}</text>",
                iface_y + IFACE_HEIGHT + 14.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Kind,
        show::{ShownInstance, ShownPort},
    };

    fn port(name: &str, peer: &str) -> ShownPort {
        ShownPort {
            name: name.into(),
            number: 0,
            peer: peer.into(),
            rx_packets: 3,
            rx_bytes: 0,
            tx_packets: 4,
            tx_bytes: 0,
            drops: 0,
            mac: None,
        }
    }

    fn shown() -> Shown {
        let instance = |name: &str, kind, ports| ShownInstance {
            name: name.into(),
            id: 0,
            kind,
            version: "0.1.0".into(),
            module: None,
            program_id: None,
            ports,
            counters: Vec::new(),
        };
        Shown {
            name: "lab".into(),
            revision: 2,
            bank: 0,
            instances: vec![
                instance(
                    "br-a",
                    Kind::Bridge,
                    vec![port("p1", "veth-a1"), port("up", "r1:a")],
                ),
                instance("r1", Kind::Router, vec![port("a", "br-a:up")]),
            ],
            ifaces: vec!["veth-a1".into()],
            counters: Vec::new(),
        }
    }

    #[test]
    fn the_dot_graph_has_each_link_once_and_each_interface() {
        let dot = dot(&shown());
        assert_eq!(dot.matches(" -- ").count(), 2, "{dot}");
        assert!(
            dot.contains("\"br-a\" -- \"r1\" [taillabel=\"up\", headlabel=\"a\""),
            "{dot}"
        );
        assert!(dot.contains("\"iface:veth-a1\" [shape=ellipse"), "{dot}");
    }

    #[test]
    fn the_svg_draws_every_instance_and_interface() {
        let svg = svg(&shown());
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3,
            "two instances, one interface"
        );
        assert_eq!(svg.matches("<path ").count(), 1, "one instance link");
        assert!(svg.contains(">veth-a1</text>"));
    }
}
