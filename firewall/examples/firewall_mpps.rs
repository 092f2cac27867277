//! The firewall module against nftables in packets per second on the lab, at 1,000 rules
//! (a report, not a test; root):
//! `cargo run -p firewall --example firewall_mpps [SECONDS] [ROUNDS]` (defaults 3 s, 5 rounds).
//!
//! One policy of 1,000 rules (established replies first, then a mix of source prefixes of
//! four lengths, with and without TCP/UDP port ranges, that the traffic does not match, a
//! rule in the middle and one last that it does; default drop) enforced on the device
//! under test's veth in three ways, alternating round by round in the same run:
//! - **fastpath:** the `firewall` module first in the XDP chain;
//! - **nft:** the same rules as an nftables ruleset on prerouting (after Linux's
//!   conntrack), translated by the differential test's `tests/support/nft.rs`;
//! - **neither:** no filter, the peer: what the stack takes without one.
//!
//! The generator sends live 64-byte UDP frames of one flow from the lab's client at full
//! rate. A veth takes frames from XDP only with NAPI, so `steer` (pass everything) is
//! attached to the dut in every mode; the firewall joins its chain. Three traffic cases:
//! a new flow the middle rule drops, a new flow the last rule drops, and an established
//! flow (the dut sent first) the first rule accepts. The rate is what the enforcer counted
//! per second (the firewall's or nft's per-rule counters, `steer`'s pass counter for
//! neither), split by the verdict of the rule that counted it.

use std::{
    fmt::Write as _,
    net::{IpAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use anyhow::{Result, bail};
use firewall::Policy;
use lab::Lab;
use offload::{AttachOptions, mode::ModePolicy, rules::Action};
use offload_common::firewall::verdict;
use trafficgen::{GenFrame, Generator, L4Kind, Template};

#[path = "../tests/support/nft.rs"]
mod nft;

const RULES: usize = 1000;
/// The rule (0-based) the "middle" case matches; the "last" case matches the last rule.
const MIDDLE: usize = RULES / 2;
/// Destination ports: the middle rule's, the last rule's, and the established flow's.
const MIDDLE_PORT: u16 = 7;
const LAST_PORT: u16 = 9;
const ESTABLISHED_PORT: u16 = 5001;
/// The client's source port in every case.
const CLIENT_PORT: u16 = 40000;

/// The policy: `RULES` rules, default drop. The filler rules match sources in
/// 172.16.0.0/12 and 192.168.0.0/16 (the lab's client is 10.77.0.1): /32, /24 and /16
/// sources, alone or with a TCP or UDP destination port range, accept and drop.
fn policy_text() -> String {
    let mut text = String::from(
        "default = \"drop\"\n\n[[rule]]\nname = \"replies\"\n\
         ct_state = [\"established\", \"related\"]\naction = \"accept\"\n",
    );
    for index in 1..RULES - 1 {
        let (a, b) = ((index / 256) as u8, (index % 256) as u8);
        let _ = write!(text, "\n[[rule]]\nname = \"r{index}\"\n");
        if index == MIDDLE {
            let _ = writeln!(
                text,
                "src = \"10.77.0.0/24\"\nproto = \"udp\"\ndst_port = {MIDDLE_PORT}\naction = \"drop\""
            );
            continue;
        }
        let (src, ports) = match index % 6 {
            0 => (format!("192.168.{a}.{b}/32"), None),
            1 => (
                format!("172.16.{b}.0/24"),
                Some(("tcp", 1000 + index % 500, 0)),
            ),
            2 => (
                format!("172.{}.0.0/16", 16 + b % 16),
                Some(("udp", 2000, 2100)),
            ),
            3 => (format!("192.168.{b}.0/24"), None),
            4 => (format!("172.20.{a}.{b}/32"), Some(("tcp", 443, 0))),
            _ => (format!("172.{}.0.0/16", 16 + b % 16), None),
        };
        let _ = writeln!(text, "src = \"{src}\"");
        if let Some((protocol, low, high)) = ports {
            let _ = writeln!(text, "proto = \"{protocol}\"");
            if high == 0 {
                let _ = writeln!(text, "dst_port = {low}");
            } else {
                let _ = writeln!(text, "dst_port = \"{low}-{high}\"");
            }
        }
        let action = if index % 2 == 0 { "accept" } else { "drop" };
        let _ = writeln!(text, "action = \"{action}\"");
    }
    let _ = write!(
        text,
        "\n[[rule]]\nname = \"last\"\nsrc = \"10.77.0.0/24\"\nproto = \"udp\"\n\
         dst_port = {LAST_PORT}\naction = \"drop\"\n"
    );
    text
}

/// A 64-byte (on the wire) IPv4/UDP frame from the client to the dut's `port` (without
/// a UDP checksum, as the generator sends IPv4 UDP: its stamp changes the payload).
fn frame(lab: &Lab, port: u16, dut_mac: [u8; 6], client_mac: [u8; 6]) -> Result<GenFrame> {
    Ok(Template {
        src_mac: client_mac,
        dst_mac: dut_mac,
        src: lab.client.ipv4,
        dst: lab.dut.ipv4,
        l4: L4Kind::Udp,
        dst_port: port,
        src_port: CLIENT_PORT,
        frame_size: 64,
    }
    .build()?)
}

#[derive(Clone, Copy, PartialEq)]
enum Enforcer {
    Fastpath,
    Nft,
    Neither,
}

impl Enforcer {
    fn name(self) -> &'static str {
        match self {
            Enforcer::Fastpath => "fastpath",
            Enforcer::Nft => "nft",
            Enforcer::Neither => "neither",
        }
    }
}

/// Packets the enforcer has counted so far: (delivered, dropped).
fn counted(lab: &Lab, enforcer: Enforcer, accepts: &[bool]) -> Result<(u64, u64)> {
    let split = |counts: &[u64]| {
        counts
            .iter()
            .zip(accepts)
            .fold((0, 0), |(delivered, dropped), (count, accept)| {
                if *accept {
                    (delivered + count, dropped)
                } else {
                    (delivered, dropped + count)
                }
            })
    };
    let namespace = lab.dut.namespace.clone();
    let iface = lab.dut.iface.clone();
    Ok(match enforcer {
        Enforcer::Nft => split(&nft::counters(&namespace)),
        Enforcer::Fastpath => split(&Lab::run_in(&namespace, move || -> Result<Vec<u64>> {
            let status = firewall::status(&iface)?;
            let mut counts: Vec<u64> = status.rules.iter().map(|rule| rule.packets).collect();
            counts.push(status.default.packets);
            Ok(counts)
        })??),
        Enforcer::Neither => Lab::run_in(&namespace, move || -> Result<_> {
            Ok((offload::status(&iface)?.counters.pass, 0))
        })??,
    })
}

/// One round of `seconds`: Mpps delivered and dropped.
fn run(
    lab: &Lab,
    enforcer: Enforcer,
    accepts: &[bool],
    frame: &GenFrame,
    seconds: f64,
) -> Result<(f64, f64)> {
    let before = counted(lab, enforcer, accepts)?;
    let (iface, frame) = (lab.client.iface.clone(), frame.clone());
    let report = Lab::run_in(&lab.namespace("client"), move || {
        Generator::one_flow_at_full_rate(&iface, frame, Duration::from_secs_f64(seconds))
    })??;
    let elapsed = report.seconds;
    let after = counted(lab, enforcer, accepts)?;
    Ok((
        (after.0 - before.0) as f64 / elapsed / 1e6,
        (after.1 - before.1) as f64 / elapsed / 1e6,
    ))
}

/// Puts `enforcer` in place on the dut (and takes the others away).
fn enforce(lab: &Lab, enforcer: Enforcer, policy: &Policy, ruleset: &str) -> Result<()> {
    let namespace = lab.dut.namespace.clone();
    let iface = lab.dut.iface.clone();
    let policy = policy.clone();
    Lab::run_in(&namespace, move || -> Result<()> {
        match enforcer {
            Enforcer::Fastpath => {
                firewall::apply(&iface, &policy, false)?;
            }
            _ => match firewall::remove(&iface) {
                Ok(()) | Err(firewall::FirewallError::NotLoaded { .. }) => {}
                Err(error) => return Err(error.into()),
            },
        }
        Ok(())
    })??;
    if enforcer == Enforcer::Nft {
        nft::load(&namespace, ruleset.to_string());
    } else {
        nft::delete(&namespace);
    }
    Ok(())
}

/// Makes the established case's flow established for both enforcers: the dut sends first
/// (its egress is tracked by the firewall's egress tracker and by Linux's conntrack), so
/// the client's frames are the answers. The socket stays open for the round.
fn open_flow(lab: &Lab) -> Result<UdpSocket> {
    let (local, remote) = (lab.dut.ipv4, lab.client.ipv4);
    Lab::run_in(&lab.dut.namespace, move || -> Result<UdpSocket> {
        let socket = UdpSocket::bind((local, ESTABLISHED_PORT))?;
        socket.send_to(b"open", (remote, CLIENT_PORT))?;
        Ok(socket)
    })?
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(Ok(3.0), |text| text.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |text| text.parse())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("firewall_mpps needs root (it builds a lab of network namespaces)");
    }
    Lab::teardown_on_signals();
    let lab = Lab::up(&format!("fpfw{:04}", std::process::id() % 10000))?;
    let policy = Policy::parse(Path::new("firewall_mpps.toml"), &policy_text())?;
    let mut accepts: Vec<bool> = policy
        .rules
        .iter()
        .map(|rule| rule.verdict == verdict::ACCEPT)
        .collect();
    accepts.push(policy.default_verdict == verdict::ACCEPT);
    let IpAddr::V4(client) = lab.client.ipv4 else {
        bail!("the lab's client has no IPv4 address")
    };
    let ruleset = nft::ruleset(&policy, &[&format!("ip saddr {client}")]);
    let dut_iface = lab.dut.iface.clone();
    let attached = Lab::run_in(&lab.dut.namespace, move || {
        offload::attach(&AttachOptions {
            iface: dut_iface,
            policy: ModePolicy::Auto,
            default_action: Action::Pass,
            prefilter: Vec::new(),
        })
    })??;
    eprintln!(
        "steer (pass) on {} in {} mode; {} rules",
        attached.iface,
        attached.mode,
        policy.rules.len()
    );
    let (dut_mac, client_mac) = (lab.dut.read_mac()?, lab.client.read_mac()?);
    let cases = [
        ("new flow, middle rule drops", MIDDLE_PORT),
        ("new flow, last rule drops", LAST_PORT),
        ("established flow, first rule accepts", ESTABLISHED_PORT),
    ];
    let enforcers = [Enforcer::Fastpath, Enforcer::Nft, Enforcer::Neither];
    let result = (|| -> Result<()> {
        // The masks the module probes per packet (its cost follows them, not the rules).
        enforce(&lab, Enforcer::Fastpath, &policy, &ruleset)?;
        let iface = lab.dut.iface.clone();
        let masks = Lab::run_in(&lab.dut.namespace, move || firewall::status(&iface))??.masks;
        let mut table = String::new();
        for (case, port) in cases {
            let frame = frame(&lab, port, dut_mac, client_mac)?;
            // Per enforcer: delivered and dropped Mpps of each round.
            let mut rates = vec![(Vec::new(), Vec::new()); enforcers.len()];
            for round in 0..rounds {
                for (at, enforcer) in enforcers.iter().enumerate() {
                    enforce(&lab, *enforcer, &policy, &ruleset)?;
                    let _flow = if port == ESTABLISHED_PORT {
                        Some(open_flow(&lab)?)
                    } else {
                        None
                    };
                    let (delivered, dropped) = run(&lab, *enforcer, &accepts, &frame, seconds)?;
                    eprintln!(
                        "{case}, round {round}, {}: {delivered:.3} Mpps delivered, {dropped:.3} Mpps dropped",
                        enforcer.name()
                    );
                    rates[at].0.push(delivered);
                    rates[at].1.push(dropped);
                }
            }
            let medians: Vec<(f64, f64)> = rates
                .iter_mut()
                .map(|(delivered, dropped)| (median(delivered), median(dropped)))
                .collect();
            let total = |at: usize| medians[at].0 + medians[at].1;
            let _ = writeln!(
                table,
                "| {case} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} | {:.1}× |",
                medians[0].0,
                medians[0].1,
                medians[1].0,
                medians[1].1,
                medians[2].0,
                total(0) / total(1)
            );
        }
        println!(
            "{RULES} rules ({masks} masks), median of {rounds} rounds of {seconds} s, Mpps delivered / dropped:"
        );
        println!("| traffic | fastpath | nft | neither (delivered) | fastpath / nft |");
        println!("|---|---:|---:|---:|---:|");
        print!("{table}");
        Ok(())
    })();
    // Whatever happened, nothing stays: the firewall, the nft table and `steer`.
    let _ = enforce(&lab, Enforcer::Neither, &policy, &ruleset);
    let dut_iface = lab.dut.iface.clone();
    Lab::run_in(&lab.dut.namespace, move || offload::detach(&dut_iface))??;
    result
}
