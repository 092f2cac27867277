//! 802.1Q access and trunk ports on a topology bridge, with real traffic on the topology
//! lab: a1 and a2 on access ports of VLAN 10, b1 and b2 on access ports of VLAN 20, c1 on
//! a trunk carrying 10 and 20. Hosts of one VLAN ping and fetch from `http.server`;
//! hosts of the other VLAN never see their ARP; the trunk's frames come and go tagged.
//!
//! The lab's kernel has no 802.1Q stack (`CONFIG_VLAN_8021Q` is off, so no
//! `ip link add ... type vlan`): the trunk's end is a raw packet socket in c1 that sends
//! tagged frames and reads the tags the kernel moved into each received frame's metadata
//! (`RawSocket::receive_wire`). The kernel hosts behind the access ports answer them.
//! For ping and curl across the trunk, c1 runs what a VLAN sub-interface does, in user
//! space ([`SubInterface`]): frames of VLAN 10 from the trunk go, untagged, to a veth
//! whose other end is a host namespace of VLAN 10, and its frames come back tagged.

mod support;

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use lab::{raw::RawSocket, require_root, topology::TopologyLab, wait_until};
use support::{
    TempDir, json,
    netns::{TopologyDown, http_server, is_arp_request_for, ping_once, ping_works, run_in},
};

const NAME: &str = "vlans";
/// The station the trunk's end speaks as, on VLAN 10 and VLAN 20.
const TRUNK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x10, 0x01];
const TRUNK_IP_10: [u8; 4] = [10, 31, 1, 31];
const TRUNK_IP_20: [u8; 4] = [10, 31, 2, 31];
/// An address of subnet 1 that b1 (VLAN 20) holds: a host of VLAN 10 asking for it
/// must get no answer.
const B1_IN_SUBNET_1: &str = "10.31.1.21";

/// One bridge: a1, a2 in VLAN 10; b1, b2 in VLAN 20; c1 a trunk of both.
fn vlan_bridge(lab: &TopologyLab) -> String {
    let iface = |host: &str| lab.host(host).node_iface.clone();
    format!(
        r#"name = "{NAME}"

[[instance]]
name = "br"
kind = "bridge"
ports = {{ p1 = "{a1}", p2 = "{a2}", p3 = "{b1}", p4 = "{b2}", trunk = "{c1}" }}
vlans = {{ p1 = 10, p2 = 10, p3 = 20, p4 = 20, trunk = [10, 20] }}
"#,
        a1 = iface("a1"),
        a2 = iface("a2"),
        b1 = iface("b1"),
        b2 = iface("b2"),
        c1 = iface("c1"),
    )
}

fn bridge_counter(lab: &TopologyLab, name: &str) -> u64 {
    let shown = json(&["--netns", &lab.node, "topology", "show", "--name", NAME]);
    let bridge = shown["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|instance| instance["name"] == "br")
        .unwrap_or_else(|| panic!("no br in {shown}"))
        .clone();
    bridge["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in {bridge}"))
}

fn mac_of(lab: &TopologyLab, host: &str) -> [u8; 6] {
    let namespace = lab.host(host).host.namespace.clone();
    lab::netns::run_in(&namespace, || lab::netlink::mac("eth0"))
        .unwrap()
        .unwrap()
}

/// An ARP request from `sender` (MAC, IP) for `target`, tagged with `vlan` when given.
fn arp_request(vlan: Option<u16>, sender: ([u8; 6], [u8; 4]), target: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&sender.0);
    if let Some(vlan) = vlan {
        frame.extend_from_slice(&[0x81, 0x00]);
        frame.extend_from_slice(&vlan.to_be_bytes());
    }
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&sender.0);
    frame.extend_from_slice(&sender.1);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target);
    frame
}

/// The VLAN of a frame as on the wire (None: untagged) and the rest after the tag.
fn split_tag(frame: &[u8]) -> (Option<u16>, Vec<u8>) {
    if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        let vlan = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
        let mut rest = frame[..12].to_vec();
        rest.extend_from_slice(&frame[16..]);
        (Some(vlan), rest)
    } else {
        (None, frame.to_vec())
    }
}

/// Whether `frame` (untagged) is an ARP reply from `sender` to `to`.
fn is_arp_reply(frame: &[u8], sender: [u8; 4], to: [u8; 6]) -> bool {
    frame.len() >= 42
        && frame[0..6] == to
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == sender
}

/// The frames `socket` receives (as on the wire) until none came for `quiet`.
fn drain(socket: &RawSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(frame) = socket.receive_wire(quiet).unwrap() {
        frames.push(frame);
    }
    frames
}

/// Sends `request` from the trunk until a frame `wanted` comes back, within 10 s; the
/// frame as on the wire.
fn ask_on_trunk(
    trunk: &RawSocket,
    request: &[u8],
    what: &str,
    wanted: impl Fn(Option<u16>, &[u8]) -> bool,
) -> Vec<u8> {
    let mut found = None;
    wait_until(Duration::from_secs(10), what, || {
        trunk.send(request).unwrap();
        let round = std::time::Instant::now() + Duration::from_secs(1);
        while let Some(frame) = trunk
            .receive_wire(round.saturating_duration_since(std::time::Instant::now()))
            .unwrap()
        {
            let (vlan, rest) = split_tag(&frame);
            if wanted(vlan, &rest) {
                found = Some(frame);
                return true;
            }
        }
        false
    });
    found.unwrap()
}

/// A VLAN sub-interface in user space: between `trunk` (tagged frames) and `access`
/// (a veth to a host of `vlan`), frames of `vlan` lose their tag one way and gain it
/// the other. Checksums a sender left to offload are finished on the way, as a NIC
/// would (`wire::checksum::complete_partial`): a packet socket sees them unfinished.
struct SubInterface {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl SubInterface {
    fn start(namespace: &str, trunk: &str, access: &str, vlan: u16) -> SubInterface {
        let stop = Arc::new(AtomicBool::new(false));
        let open = |iface: &str| Arc::new(RawSocket::open(namespace, iface).unwrap());
        let (trunk, access) = (open(trunk), open(access));
        let untag = {
            let (stop, trunk, access) = (stop.clone(), trunk.clone(), access.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(frame) = trunk.receive_wire(Duration::from_millis(100)).unwrap()
                    else {
                        continue;
                    };
                    if let (Some(tag), rest) = split_tag(&frame)
                        && tag == vlan
                    {
                        let _ = access.send(&finished(rest));
                    }
                }
            })
        };
        let tag = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(frame) = access.receive(Duration::from_millis(100)).unwrap() else {
                        continue;
                    };
                    let frame = finished(frame);
                    let mut tagged = frame[..12].to_vec();
                    tagged.extend_from_slice(&[0x81, 0x00]);
                    tagged.extend_from_slice(&vlan.to_be_bytes());
                    tagged.extend_from_slice(&frame[12..]);
                    let _ = trunk.send(&tagged);
                }
            })
        };
        SubInterface {
            stop,
            threads: vec![untag, tag],
        }
    }
}

impl Drop for SubInterface {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `frame` with a TCP or UDP checksum left to offload finished.
fn finished(mut frame: Vec<u8>) -> Vec<u8> {
    if let Ok(Some(headers)) = wire::parse(&frame) {
        wire::checksum::complete_partial(&mut frame, &headers);
    }
    frame
}

/// A namespace of the test's own, deleted when the test ends.
struct Namespace(String);

impl Namespace {
    fn create(name: String) -> Namespace {
        let _ = lab::netns::delete(&name);
        lab::netns::create(&name).unwrap();
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = lab::netns::delete(&self.0);
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `fastpath topology apply FILE` in the lab's node; what it printed.
fn apply(lab: &TopologyLab, file: &std::path::Path) -> serde_json::Value {
    json(&[
        "--netns",
        &lab.node,
        "topology",
        "apply",
        file.to_str().unwrap(),
    ])
}

fn fdb_has(fdb: &serde_json::Value, vlan: u16, mac: [u8; 6], port: &str) -> bool {
    let mac = nic::link::format_mac(mac);
    fdb.as_array()
        .unwrap()
        .iter()
        .any(|row| row["vlan"] == vlan && row["mac"] == mac && row["port"] == port)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn access_and_trunk_ports_keep_vlans_apart() {
    require_root("access_and_trunk_ports_keep_vlans_apart");
    let lab = TopologyLab::for_test("tv");
    let _down = TopologyDown {
        namespace: lab.node.clone(),
        name: NAME,
    };
    let dir = TempDir::new("topology-vlan");
    let file = dir.0.join("topo.toml");
    std::fs::write(&file, vlan_bridge(&lab)).unwrap();
    let applied = apply(&lab, &file);
    assert_eq!(applied["revision"], 1, "{applied}");
    let (a1, a2, b1, b2) = (
        lab.host("a1").host.namespace.clone(),
        lab.host("a2").host.namespace.clone(),
        lab.host("b1").host.namespace.clone(),
        lab.host("b2").host.namespace.clone(),
    );
    let c1 = lab.host("c1").host.namespace.clone();

    // Access to access, inside each VLAN: ICMP and TCP.
    ping_works(&a1, "10.31.1.12");
    ping_works(&b2, "10.31.2.11");
    let _server = http_server(&a2, 8431, "10.31.1.12", &dir.0);
    wait_until(Duration::from_secs(10), "curl a1 -> a2", || {
        run_in(
            &a1,
            &["curl", "-sf", "-m", "2", "http://10.31.1.12:8431/topo.toml"],
        )
        .status
        .success()
    });
    let fetched = run_in(
        &a1,
        &["curl", "-sf", "-m", "5", "http://10.31.1.12:8431/topo.toml"],
    );
    assert_eq!(
        String::from_utf8_lossy(&fetched.stdout),
        vlan_bridge(&lab),
        "the file, over TCP inside VLAN 10"
    );

    // Across VLANs: b1 holds an address of subnet 1, but a1's ARP for it is flooded in
    // VLAN 10 only: no answer, b1 never sees it, the trunk sees it tagged 10.
    assert!(
        run_in(
            &b1,
            &[
                "ip",
                "addr",
                "add",
                &format!("{B1_IN_SUBNET_1}/24"),
                "dev",
                "eth0"
            ]
        )
        .status
        .success()
    );
    let b1_wire = RawSocket::open(&b1, "eth0").unwrap();
    let trunk = RawSocket::open(&c1, "eth0").unwrap();
    let target: [u8; 4] = B1_IN_SUBNET_1.parse::<Ipv4Addr>().unwrap().octets();
    let crossed = run_in(
        &a1,
        &[
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
            B1_IN_SUBNET_1,
        ],
    );
    assert!(
        !crossed.status.success(),
        "a host of VLAN 10 reached one of VLAN 20: {}",
        String::from_utf8_lossy(&crossed.stdout)
    );
    let seen_by_b1 = drain(&b1_wire, Duration::from_millis(300));
    assert!(
        !seen_by_b1
            .iter()
            .any(|frame| is_arp_request_for(&split_tag(frame).1, target)),
        "b1 (VLAN 20) saw VLAN 10's ARP request"
    );
    let on_trunk = drain(&trunk, Duration::from_millis(300));
    let a1_mac = mac_of(&lab, "a1");
    let request_on_trunk = on_trunk
        .iter()
        .map(|frame| split_tag(frame))
        .find(|(_, rest)| is_arp_request_for(rest, target) && rest[6..12] == a1_mac)
        .expect("a1's ARP request flooded to the trunk");
    assert_eq!(
        request_on_trunk.0,
        Some(10),
        "leaves the trunk tagged with VLAN 10"
    );

    // From the trunk: a tagged ARP request on VLAN 10 reaches a1 (the flood pops the tag
    // on its access port) and a1's answer comes back tagged 10 (unicast, the tag pushed).
    let a1_ip = [10, 31, 1, 11];
    let reply = ask_on_trunk(
        &trunk,
        &arp_request(Some(10), (TRUNK_MAC, TRUNK_IP_10), a1_ip),
        "a1 answers the trunk's ARP on VLAN 10",
        |vlan, rest| vlan == Some(10) && is_arp_reply(rest, a1_ip, TRUNK_MAC),
    );
    assert_eq!(split_tag(&reply).1[6..12], a1_mac);
    // And on VLAN 20, b1 answers for its own address there.
    let b1_ip = [10, 31, 2, 11];
    ask_on_trunk(
        &trunk,
        &arp_request(Some(20), (TRUNK_MAC, TRUNK_IP_20), b1_ip),
        "b1 answers the trunk's ARP on VLAN 20",
        |vlan, rest| vlan == Some(20) && is_arp_reply(rest, b1_ip, TRUNK_MAC),
    );
    // A question on VLAN 20 for a1's address gets no answer: a1 is in VLAN 10.
    trunk
        .send(&arp_request(Some(20), (TRUNK_MAC, TRUNK_IP_20), a1_ip))
        .unwrap();
    let answers = drain(&trunk, Duration::from_millis(500));
    assert!(
        !answers
            .iter()
            .any(|frame| is_arp_reply(&split_tag(frame).1, a1_ip, TRUNK_MAC)),
        "a1 answered on VLAN 20"
    );

    // Refused on the way in, counted and not learned: a VLAN the trunk does not carry,
    // an untagged frame on the trunk, a tagged frame on an access port. (c1's kernel
    // sends untagged IPv6 of its own to the trunk, refused too: the counter is a lower
    // bound, the FDB says which frames.)
    let refused = bridge_counter(&lab, "vlan_refused");
    let refused_macs = [
        [0x02, 0, 0, 0, 0x30, 1],
        [0x02, 0, 0, 0, 0x30, 2],
        [0x02, 0, 0, 0, 0x30, 3],
    ];
    trunk
        .send(&arp_request(
            Some(30),
            (refused_macs[0], TRUNK_IP_10),
            a1_ip,
        ))
        .unwrap();
    trunk
        .send(&arp_request(None, (refused_macs[1], TRUNK_IP_10), a1_ip))
        .unwrap();
    let a2_wire = RawSocket::open(&a2, "eth0").unwrap();
    a2_wire
        .send(&arp_request(
            Some(10),
            (refused_macs[2], [10, 31, 1, 12]),
            a1_ip,
        ))
        .unwrap();
    wait_until(Duration::from_secs(5), "three frames refused", || {
        bridge_counter(&lab, "vlan_refused") >= refused + 3
    });
    // Frames sent after them on the same ports, accepted: once these are learned, the
    // refused ones were judged.
    let accepted_macs = [[0x02, 0, 0, 0, 0x31, 1], [0x02, 0, 0, 0, 0x31, 2]];
    trunk
        .send(&arp_request(
            Some(10),
            (accepted_macs[0], TRUNK_IP_10),
            a1_ip,
        ))
        .unwrap();
    a2_wire
        .send(&arp_request(
            None,
            (accepted_macs[1], [10, 31, 1, 12]),
            a1_ip,
        ))
        .unwrap();
    let fdb_now = || {
        json(&[
            "--netns", &lab.node, "bridge", "fdb", "show", "br", "--name", NAME,
        ])
    };
    wait_until(
        Duration::from_secs(5),
        "the accepted frames learned",
        || {
            let fdb = fdb_now();
            fdb_has(&fdb, 10, accepted_macs[0], "trunk")
                && fdb_has(&fdb, 10, accepted_macs[1], "p2")
        },
    );
    let fdb = fdb_now();
    for mac in refused_macs {
        let text = nic::link::format_mac(mac);
        assert!(
            !fdb.as_array()
                .unwrap()
                .iter()
                .any(|row| row["mac"] == text.as_str()),
            "a refused frame's source {text} was learned: {fdb}"
        );
    }

    // The FDB: each station on its VLAN and port, the trunk's station on both VLANs,
    // nothing of VLAN 10 learned on VLAN 20.
    assert!(fdb_has(&fdb, 10, a1_mac, "p1"), "{fdb}");
    assert!(fdb_has(&fdb, 10, mac_of(&lab, "a2"), "p2"), "{fdb}");
    assert!(fdb_has(&fdb, 20, mac_of(&lab, "b1"), "p3"), "{fdb}");
    assert!(fdb_has(&fdb, 20, mac_of(&lab, "b2"), "p4"), "{fdb}");
    assert!(fdb_has(&fdb, 10, TRUNK_MAC, "trunk"), "{fdb}");
    assert!(fdb_has(&fdb, 20, TRUNK_MAC, "trunk"), "{fdb}");
    // A static entry at run time on a VLAN its port does not carry is refused.
    let refused_add = support::failure(&[
        "--netns",
        &lab.node,
        "bridge",
        "fdb",
        "add",
        "br",
        "02:00:00:00:00:77",
        "p1",
        "--vlan",
        "20",
        "--name",
        NAME,
    ]);
    assert!(
        refused_add.contains("port p1 does not carry VLAN 20"),
        "{refused_add}"
    );
    let a1_text = nic::link::format_mac(a1_mac);
    assert!(
        !fdb.as_array()
            .unwrap()
            .iter()
            .any(|row| row["mac"] == a1_text.as_str() && row["vlan"] != 10),
        "a1 learned outside VLAN 10: {fdb}"
    );

    // Across the trunk, ping and curl: host t10 behind c1's VLAN-10 sub-interface.
    drop(trunk);
    let t10 = Namespace::create(format!("{}-t10", lab.prefix));
    ip(&[
        "-n", &c1, "link", "add", "v10", "type", "veth", "peer", "name", "eth0", "netns", &t10.0,
    ]);
    ip(&["-n", &c1, "link", "set", "v10", "up"]);
    ip(&["-n", &t10.0, "addr", "add", "10.31.1.41/24", "dev", "eth0"]);
    ip(&["-n", &t10.0, "link", "set", "eth0", "up"]);
    let _sub = SubInterface::start(&c1, "eth0", "v10", 10);
    ping_works(&a1, "10.31.1.41");
    ping_works(&t10.0, "10.31.1.12");
    let fetched = run_in(
        &t10.0,
        &["curl", "-sf", "-m", "5", "http://10.31.1.12:8431/topo.toml"],
    );
    assert_eq!(
        String::from_utf8_lossy(&fetched.stdout),
        vlan_bridge(&lab),
        "the file, over TCP from the trunk's VLAN 10 to an access port"
    );
    let t10_mac = lab::netns::run_in(&t10.0, || lab::netlink::mac("eth0"))
        .unwrap()
        .unwrap();
    let fdb = fdb_now();
    assert!(fdb_has(&fdb, 10, t10_mac, "trunk"), "{fdb}");
    // And t10 still cannot reach VLAN 20's b1 at its subnet-1 address.
    assert!(!ping_once(&t10.0, B1_IN_SUBNET_1));

    // The same bridge applied without `vlans`: kept, no longer VLAN-aware, it floods
    // a1's ARP to every port and a1 reaches b1 as on any plain bridge.
    let plain = vlan_bridge(&lab).replace(
        "vlans = { p1 = 10, p2 = 10, p3 = 20, p4 = 20, trunk = [10, 20] }\n",
        "",
    );
    assert!(!plain.contains("\nvlans ="), "{plain}");
    std::fs::write(&file, plain).unwrap();
    let applied = apply(&lab, &file);
    assert_eq!(applied["revision"], 2, "{applied}");
    ping_works(&a1, B1_IN_SUBNET_1);
}
