//! The load balancer end to end on the segment lab, with real HTTP and UDP clients and
//! servers, the appliance running as its own process.

mod lb_common;

use lb_common::*;

#[test]
fn dsr_l2_ipv4_serves_every_connection() {
    if !lab::require_root("dsr_l2_ipv4_serves_every_connection") {
        return;
    }
    let setup = setup("la", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let counts = tally(&http_gets(&setup, true, 1000));
    assert!(
        counts.iter().all(|&c| c > 0),
        "every backend should serve: {counts:?}"
    );
    let status = appliance.status();
    assert!(
        status["vips"][0]["connections"].as_u64().unwrap() >= 1000,
        "{status}"
    );
    assert!(appliance.stop(), "the appliance should stop cleanly");
}

#[test]
fn dsr_l2_ipv6_serves_every_connection() {
    if !lab::require_root("dsr_l2_ipv6_serves_every_connection") {
        return;
    }
    let setup = setup("lb", 1);
    let _appliance = Appliance::start(
        &setup,
        &config(&setup, false, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let counts = tally(&http_gets(&setup, false, 1000));
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn nat_ipv4_and_ipv6_serve_every_connection() {
    if !lab::require_root("nat_ipv4_and_ipv6_serve_every_connection") {
        return;
    }
    for v4 in [true, false] {
        let setup = setup("lc", 1);
        let appliance = Appliance::start(&setup, &config(&setup, v4, "tcp", "nat", "", [1, 1, 1]));
        let counts = tally(&http_gets(&setup, v4, 1000));
        assert!(counts.iter().all(|&c| c > 0), "v4={v4}: {counts:?}");
        let status = appliance.status();
        assert!(status["nat_entries"].as_u64().unwrap() >= 1000, "{status}");
    }
}

#[test]
fn udp_vips_answer_over_dsr_and_nat() {
    if !lab::require_root("udp_vips_answer_over_dsr_and_nat") {
        return;
    }
    for forwarding in ["dsr-l2", "nat"] {
        let setup = setup("ld", 1);
        let _appliance = Appliance::start(
            &setup,
            &config(&setup, true, "udp", forwarding, "", [1, 1, 1]),
        );
        let vip = std::net::SocketAddr::new(setup.lab.vip(true), 80);
        let replies = lab::Lab::run_in(&setup.lab.client.namespace, move || {
            let mut replies = Vec::new();
            // Stop at the first failure: each costs a 2 s timeout.
            for i in 0..200 {
                let reply = udp_ping(vip, &format!("ping {i}"));
                let failed = reply.is_err();
                replies.push(reply);
                if failed {
                    break;
                }
            }
            replies
        })
        .unwrap();
        let failures: Vec<_> = replies.iter().filter(|r| r.is_err()).collect();
        assert!(failures.is_empty(), "{forwarding}: {failures:?}");
        assert_eq!(replies.len(), 200);
    }
}

/// 3,000 flows over weights 1:2:1 land within 10% of the weights.
#[test]
fn distribution_follows_the_weights() {
    if !lab::require_root("distribution_follows_the_weights") {
        return;
    }
    let setup = setup("le", 1);
    let _appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 2, 1]),
    );
    let counts = tally(&http_gets(&setup, true, 3000));
    for (count, share) in counts.iter().zip([0.25, 0.5, 0.25]) {
        let expected = 3000.0 * share;
        let off = (*count as f64 - expected).abs() / expected;
        assert!(off <= 0.10, "{counts:?} is more than 10% off 750/1500/750");
    }
}

/// One datagram to `target` from a fresh socket; the echo must carry it back.
fn udp_ping(target: std::net::SocketAddr, message: &str) -> Result<String, String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    socket.connect(target).map_err(|e| e.to_string())?;
    socket.send(message.as_bytes()).map_err(|e| e.to_string())?;
    let mut buffer = [0u8; 256];
    let len = socket
        .recv(&mut buffer)
        .map_err(|e| format!("{message}: {e}"))?;
    let reply = String::from_utf8_lossy(&buffer[..len]).into_owned();
    match reply.split_once(':') {
        Some((_, echoed)) if echoed == message => Ok(reply),
        _ => Err(format!("{message}: unexpected reply {reply:?}")),
    }
}
