//! `fastpath demo`: the main job for now. Builds a lab, attaches the steering program to the
//! dut, installs rules, sends real UDP traffic from the client namespace, and prints what the
//! program counted next to what the dut's sockets received.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use lab::Lab;
use offload::{
    AttachOptions, Steering,
    mode::ModePolicy,
    rules::{Action, RuleSpec},
};

use crate::{output, xdp_cmd};

const PASS_PORT: u16 = 9000;
const DROP_PORT: u16 = 9999;
const TX_PORT: u16 = 7;

pub fn run(packets: u64, as_json: bool) -> anyhow::Result<()> {
    if packets == 0 || packets > 1_000_000 {
        bail!("--packets must be between 1 and 1000000");
    }
    Lab::teardown_on_signals();
    let say = |text: &str| {
        if !as_json {
            println!("{text}");
        }
    };
    say("building the lab (namespaces fpdemo-*)...");
    let lab = Lab::up("fpdemo").context("build the demo lab")?;
    let dut_ns = lab.dut.namespace.clone();
    let iface = lab.dut.iface.clone();

    let attachment = Lab::run_in(&dut_ns, {
        let iface = iface.clone();
        move || {
            offload::attach(&AttachOptions {
                iface,
                policy: ModePolicy::Auto,
                default_action: Action::Pass,
            })
        }
    })??;
    for fallback in &attachment.fallbacks {
        say(&format!(
            "  {} mode unavailable: {}",
            fallback.mode, fallback.reason
        ));
    }
    say(&format!(
        "attached steer to {} in {} mode (program id {})",
        iface, attachment.mode, attachment.program_id
    ));

    let dut_ip = lab.dut.ipv4;
    Lab::run_in(&dut_ns, {
        let iface = iface.clone();
        move || -> anyhow::Result<()> {
            let mut steering = Steering::open(&iface)?;
            let rule = |action: Action, port: u16| -> anyhow::Result<RuleSpec> {
                let mut spec = RuleSpec::new(action);
                spec.proto = Some("udp".parse()?);
                spec.dst = Some(dut_ip.into());
                spec.dport = Some(port.to_string().parse()?);
                Ok(spec)
            };
            steering.add_rules(&[rule(Action::Drop, DROP_PORT)?, rule(Action::Tx, TX_PORT)?])?;
            Ok(())
        }
    })??;
    say(&format!(
        "rules: udp {dut_ip}:{DROP_PORT} drop, udp {dut_ip}:{TX_PORT} tx; everything else passes"
    ));

    // A server in the dut counts what the kernel stack received on the pass port.
    let server = Lab::udp_socket(&dut_ns, SocketAddr::new(dut_ip, PASS_PORT))?;
    let receiver = std::thread::spawn(move || count_datagrams(server, packets));
    let client = Lab::udp_socket(&lab.client.namespace, "0.0.0.0:0".parse()?)?;
    say(&format!(
        "sending {packets} UDP datagrams to each of ports {PASS_PORT}, {DROP_PORT}, {TX_PORT} from {}...",
        lab.client.namespace
    ));
    let started = Instant::now();
    for _ in 0..packets {
        for port in [PASS_PORT, DROP_PORT, TX_PORT] {
            send(&client, SocketAddr::new(dut_ip, port))?;
        }
    }
    let received = receiver.join().expect("receiver thread")?;
    let elapsed = started.elapsed();

    let status = Lab::run_in(&dut_ns, {
        let iface = iface.clone();
        move || offload::status(&iface)
    })??;
    if as_json {
        output::json(&serde_json::json!({
            "attachment": attachment,
            "sent_per_port": packets,
            "received_on_pass_port": received,
            "status": status,
        }));
    } else {
        println!();
        xdp_cmd::print_status(&status, false);
        println!(
            "\nthe dut's UDP server received {received} of {packets} datagrams on port {PASS_PORT}; {} seconds",
            elapsed.as_secs_f64()
        );
    }
    Lab::run_in(&dut_ns, move || offload::detach(&iface))??;
    say("detached; tearing the lab down");
    drop(lab);
    Ok(())
}

/// Sends one datagram, retrying briefly when the socket buffer is full.
fn send(socket: &UdpSocket, to: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..100 {
        match socket.send_to(b"fastpath demo payload", to) {
            Ok(_) => return Ok(()),
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(error) => return Err(error.into()),
        }
    }
    bail!("socket buffer stayed full sending to {to}")
}

fn count_datagrams(socket: UdpSocket, expected: u64) -> anyhow::Result<u64> {
    // The sender outruns one receiver thread; a large buffer keeps the stack from dropping.
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(16 << 20))?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buffer = [0u8; 2048];
    let mut received = 0;
    while received < expected {
        match socket.recv_from(&mut buffer) {
            Ok(_) => received += 1,
            Err(_) => break, // quiet for 500 ms: the sender is done
        }
    }
    Ok(received)
}
