//! The load balancer end to end on the segment lab, with real HTTP and UDP clients and
//! servers, the appliance running as its own process.

mod lb_common;

use lb_common::*;

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn dsr_l2_ipv4_serves_every_connection() {
    lab::require_root("dsr_l2_ipv4_serves_every_connection");
    let setup = setup("la", 1);
    // A prefilter entry that matches no client: placed (merged on veth), never in the way.
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let appliance = Appliance::start(&setup, &format!("prefilter = [\"192.0.2.200\"]\n{text}"));
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
    // Tuning came from the veth profile, the prefilter merged into steer, no ntuple on veth.
    let log: Vec<&str> = status["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let has = |needle: &str| log.iter().any(|line| line.contains(needle));
    assert!(has("profile: veth (driver veth)"), "{log:?}");
    assert!(has("batch 64 (profile veth)"), "{log:?}");
    assert!(has("prefilter  -> inside steer"), "{log:?}");
    assert!(
        has("ntuple: not used") || has("no ntuple filters"),
        "{log:?}"
    );
    assert_eq!(status["prefilter"][0][0], "192.0.2.200");
    assert_eq!(status["prefilter"][0][1], 0);
    assert!(appliance.stop(), "the appliance should stop cleanly");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn dsr_l2_ipv6_serves_every_connection() {
    lab::require_root("dsr_l2_ipv6_serves_every_connection");
    let setup = setup("lb", 1);
    let _appliance = Appliance::start(
        &setup,
        &config(&setup, false, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let counts = tally(&http_gets(&setup, false, 1000));
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn nat_ipv4_and_ipv6_serve_every_connection() {
    lab::require_root("nat_ipv4_and_ipv6_serve_every_connection");
    for v4 in [true, false] {
        let setup = setup("lc", 1);
        let appliance = Appliance::start(&setup, &config(&setup, v4, "tcp", "nat", "", [1, 1, 1]));
        let counts = tally(&http_gets(&setup, v4, 1000));
        assert!(counts.iter().all(|&c| c > 0), "v4={v4}: {counts:?}");
        let status = appliance.status();
        // Every connection went through the NAT. Entries of closed connections may already
        // be gone, so the table size is only checked to be non-zero.
        assert!(
            status["vips"][0]["connections"].as_u64().unwrap() >= 1000,
            "{status}"
        );
        assert!(status["nat_entries"].as_u64().unwrap() > 0, "{status}");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn udp_vips_answer_over_dsr_and_nat() {
    lab::require_root("udp_vips_answer_over_dsr_and_nat");
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
#[ignore = "needs root: run by `cargo xtask test`"]
fn distribution_follows_the_weights() {
    lab::require_root("distribution_follows_the_weights");
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

fn open_requests(setup: &Setup, count: usize) -> lab::services::PendingRequests {
    let target = std::net::SocketAddr::new(setup.lab.vip(true), 80);
    lab::Lab::run_in(&setup.lab.client.namespace, move || {
        lab::services::PendingRequests::open(target, count, std::time::Duration::from_secs(3))
    })
    .unwrap()
    .expect("open connections")
}

fn finish(open: lab::services::PendingRequests) -> Vec<Result<String, String>> {
    open.finish(std::time::Duration::from_secs(3))
}

fn backend_connections(status: &serde_json::Value, backend: usize) -> u64 {
    status["vips"][0]["backends"][backend]["connections"]
        .as_u64()
        .unwrap()
}

/// `drain` keeps established flows on the drained backend and sends new flows elsewhere.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn draining_keeps_established_connections() {
    lab::require_root("draining_keeps_established_connections");
    let setup = setup("lf", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let open = open_requests(&setup, 60);
    let on_b3 = backend_connections(&appliance.status(), 2);
    assert!(on_b3 > 0, "some connections should have gone to b3");
    let vip = format!("{}:80/tcp", setup.lab.vip(true));
    let b3 = setup.lab.backends[2].ipv4.to_string();
    let (ok, _, err) = appliance.control(&["backend", "drain", "--vip", &vip, "--backend", &b3]);
    assert!(ok, "drain failed: {err}");
    let finished = finish(open);
    let served = tally(&finished);
    assert_eq!(
        served[2] as u64, on_b3,
        "every established connection on b3 completes"
    );
    let after = tally(&http_gets(&setup, true, 300));
    assert_eq!(
        after[2], 0,
        "a draining backend takes no new flows: {after:?}"
    );
    let status = appliance.status();
    assert_eq!(
        status["vips"][0]["backends"][2]["state"], "draining",
        "{status}"
    );
}

/// `remove` moves the removed backend's flows; flows on the other backends are untouched.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn removing_a_backend_leaves_the_others_connections_intact() {
    lab::require_root("removing_a_backend_leaves_the_others_connections_intact");
    let setup = setup("lg", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let open = open_requests(&setup, 60);
    let on_b3 = backend_connections(&appliance.status(), 2);
    let vip = format!("{}:80/tcp", setup.lab.vip(true));
    let b3 = setup.lab.backends[2].ipv4.to_string();
    let (ok, _, err) = appliance.control(&["backend", "remove", "--vip", &vip, "--backend", &b3]);
    assert!(ok, "remove failed: {err}");
    let finished = finish(open);
    let completed: Vec<&String> = finished.iter().flatten().collect();
    assert!(
        completed.iter().all(|body| *body != "b3"),
        "no flow reaches a removed backend"
    );
    // The flows that were on b3 moved to a backend that never saw their handshake (so they
    // break, as with any L4 balancer); all the others complete.
    assert_eq!(completed.len() as u64, 60 - on_b3, "{finished:?}");
    let status = appliance.status();
    assert_eq!(status["vips"][0]["backends"].as_array().unwrap().len(), 2);
}

/// Reloads (weights change, a backend comes and goes) and hot swaps while a client keeps
/// connecting: not one connection fails.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn reload_under_load_fails_no_connection() {
    lab::require_root("reload_under_load_fails_no_connection");
    let setup = setup("lh", 1);
    let first = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 0]);
    let appliance = Appliance::start(&setup, &first);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = std::net::SocketAddr::new(setup.lab.vip(true), 80);
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = {
        let stop = stop.clone();
        let requests = requests.clone();
        let namespace = setup.lab.client.namespace.clone();
        std::thread::spawn(move || {
            lab::Lab::run_in(&namespace, move || {
                let mut results = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && results.len() < 20_000 {
                    results.push(lab::services::http_get(
                        target,
                        std::time::Duration::from_secs(3),
                    ));
                    requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                results
            })
            .unwrap()
        })
    };
    // Each configuration serves 20 requests before the next: connections run across every
    // reload, however slow the machine.
    let made = || requests.load(std::sync::atomic::Ordering::Relaxed);
    let serve_some = || {
        let from = made();
        let timeout = std::time::Duration::from_secs(30);
        lab::wait_until(timeout, "20 requests under this configuration", || {
            made() >= from + 20
        });
    };
    let weights = [[1, 2, 1], [3, 1, 1], [1, 1, 0], [2, 2, 2]];
    for (round, weights) in weights.iter().enumerate() {
        serve_some();
        std::fs::write(
            &appliance.config,
            config(&setup, true, "tcp", "dsr-l2", "", *weights),
        )
        .unwrap();
        let (ok, out, err) = appliance.control(&["reload"]);
        assert!(ok, "reload {round} failed: {err} {out}");
    }
    serve_some();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = client.join().unwrap();
    // Every request answered (tally panics on any failure).
    let served = tally(&results);
    assert!(
        served[2] > 0,
        "b3, weighted in by a reload, should serve: {served:?}"
    );
    let status = appliance.status();
    let swaps = status["workers"][0]["swaps"].as_u64().unwrap();
    assert!(swaps >= 4, "each reload hot-swaps the chain: {swaps} swaps");
}

/// Malformed frames to the VIP are counted and dropped, and the appliance keeps serving.
/// The steering program already refuses a bad TCP header (counted as `malformed`, passed to
/// the kernel, which drops it); a fragment passes its checks and is dropped by the load
/// balancer, counted by reason.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn malformed_packets_are_counted_and_dropped() {
    lab::require_root("malformed_packets_are_counted_and_dropped");
    use nfv_apps::lb::packet::checksum;
    let setup = setup("li", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let lb_mac = setup.lab.lb.read_mac().unwrap();
    let client_mac = setup.lab.client.read_mac().unwrap();
    let spec = lab::frame::FrameSpec {
        src_mac: client_mac,
        dst_mac: lb_mac,
        src_ip: "10.79.0.1".parse().unwrap(),
        dst_ip: lab::segment::VIP4.parse().unwrap(),
        src_port: 40000,
        dst_port: 80,
    };
    let tcp = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut frame = lab::frame::udp_frame(&spec, 64);
        frame[14 + 9] = 6;
        frame[14 + 20 + 12] = 5 << 4;
        edit(&mut frame);
        frame[24..26].fill(0);
        let sum = checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        frame
    };
    let frames = [
        tcp(&|f| f[14 + 20 + 12] = 2 << 4), // TCP data offset below 5 words
        tcp(&|f| f[16..18].copy_from_slice(&30u16.to_be_bytes())), // 10-byte TCP header
        // A first fragment: one policy in XDP and in the LB, so it is forwarded like any
        // packet of its flow (it used to pass XDP and be dropped by the LB's parser).
        tcp(&|f| f[14 + 6] = 0x20),
    ];
    let socket =
        lab::raw::RawSocket::open(&setup.lab.client.namespace, &setup.lab.client.iface).unwrap();
    for frame in &frames {
        for _ in 0..10 {
            socket.send(frame).unwrap();
        }
    }
    lab::wait_until(
        std::time::Duration::from_secs(10),
        "the frames counted",
        || {
            let status = appliance.status();
            // Worker stats are published a little after the shared counters.
            status["steering"]["malformed"] == 20
                && status["fragments"] == 10
                && status["workers"][0]["tx_packets"] == 10
        },
    );
    let status = appliance.status();
    assert_eq!(status["steering"]["malformed"], 20, "{status}");
    assert_eq!(status["fragments"], 10, "{status}");
    assert_eq!(status["workers"][0]["tx_packets"], 10, "{status}");
    let drops = status["workers"][0]["drops"].as_object().unwrap();
    assert!(
        drops.keys().all(|reason| !reason.starts_with("malformed")),
        "XDP and the LB share one parsing policy: {status}"
    );
    // How busy the worker is: its busy cycles over the cycles it has been serving, so a
    // worker that mostly polls an empty ring reads as mostly idle.
    let worker = &status["workers"][0];
    let (busy, serving) = (
        worker["busy_cycles"].as_u64().unwrap(),
        worker["serving_cycles"].as_u64().unwrap(),
    );
    assert!(busy > 0 && busy < serving, "{worker}");
    let percent = worker["busy_percent"].as_f64().unwrap();
    assert!(
        (percent - 100.0 * busy as f64 / serving as f64).abs() < 1e-6,
        "{worker}"
    );
    tally(&http_gets(&setup, true, 100));
}

/// With nat on two queues, a reply that arrives on the other queue than its flow's first
/// packet still finds its state.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn nat_replies_find_their_state_on_any_queue() {
    lab::require_root("nat_replies_find_their_state_on_any_queue");
    let setup = setup("lj", 2);
    let text = config(
        &setup,
        true,
        "tcp",
        "nat",
        "queues = \"all\"\ncores = [0, 1]\n",
        [1, 1, 1],
    );
    let appliance = Appliance::start(&setup, &text);
    tally(&http_gets(&setup, true, 400));
    let status = appliance.status();
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "two workers and the total: {status}");
    for worker in &workers[..2] {
        assert!(
            worker["rx_packets"].as_u64().unwrap() > 0,
            "both queues carry traffic: {status}"
        );
    }
    assert!(
        status["cross_queue_replies"].as_u64().unwrap() > 0,
        "{status}"
    );
}

/// dsr-ipip: the backend receives the client's packet whole inside an outer header from the
/// load balancer to the backend (checked byte for byte; this kernel has no ipip device to
/// decapsulate).
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn dsr_ipip_encapsulates_correctly() {
    lab::require_root("dsr_ipip_encapsulates_correctly");
    for v4 in [true, false] {
        let setup = setup("lk", 1);
        let _appliance = Appliance::start(
            &setup,
            &config(&setup, v4, "udp", "dsr-ipip", "", [1, 1, 1]),
        );
        let captures = backend_captures(&setup);
        let vip = std::net::SocketAddr::new(setup.lab.vip(v4), 80);
        let source = lab::Lab::run_in(&setup.lab.client.namespace, move || {
            let socket =
                std::net::UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
            socket.send_to(b"encapsulate me", vip).unwrap();
            socket.local_addr().unwrap().port()
        })
        .unwrap();
        let (outer_len, proto_at, proto) = if v4 {
            (20, 14 + 9, 4)
        } else {
            (40, 14 + 6, 41)
        };
        let mut found = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while found.is_none() && std::time::Instant::now() < deadline {
            for (i, capture) in captures.iter().enumerate() {
                while let Ok(Some(frame)) = capture.receive(std::time::Duration::from_millis(10)) {
                    if frame.len() > proto_at && frame[proto_at] == proto {
                        found = Some((i, frame));
                    }
                }
            }
        }
        let (backend, frame) = found.expect("an encapsulated frame reached a backend");
        let lb = if v4 {
            setup.lab.lb.ipv4
        } else {
            setup.lab.lb.ipv6
        };
        let target = if v4 {
            setup.lab.backends[backend].ipv4
        } else {
            setup.lab.backends[backend].ipv6
        };
        let bytes = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        let outer = &frame[14..14 + outer_len];
        let inner = &frame[14 + outer_len..];
        let (src, dst) = if v4 {
            (&outer[12..16], &outer[16..20])
        } else {
            (&outer[8..24], &outer[24..40])
        };
        assert_eq!(
            (src, dst),
            (&bytes(lb)[..], &bytes(target)[..]),
            "outer addresses, v4={v4}"
        );
        let inner_len = if v4 {
            assert_eq!(
                nfv_apps::lb::packet::checksum(outer),
                0,
                "outer IPv4 checksum"
            );
            assert_eq!(
                u16::from_be_bytes([outer[2], outer[3]]) as usize,
                outer_len + inner.len()
            );
            u16::from_be_bytes([inner[2], inner[3]]) as usize
        } else {
            assert_eq!(
                u16::from_be_bytes([outer[4], outer[5]]) as usize,
                inner.len()
            );
            40 + u16::from_be_bytes([inner[4], inner[5]]) as usize
        };
        assert_eq!(inner_len, inner.len(), "the inner packet is whole");
        let l4 = if v4 { 20 } else { 40 };
        let (inner_src, inner_dst) = if v4 {
            (&inner[12..16], &inner[16..20])
        } else {
            (&inner[8..24], &inner[24..40])
        };
        let client = if v4 {
            setup.lab.client.ipv4
        } else {
            setup.lab.client.ipv6
        };
        assert_eq!(
            (inner_src, inner_dst),
            (&bytes(client)[..], &bytes(vip.ip())[..])
        );
        assert_eq!(u16::from_be_bytes([inner[l4], inner[l4 + 1]]), source);
        assert_eq!(u16::from_be_bytes([inner[l4 + 2], inner[l4 + 3]]), 80);
        assert_eq!(&inner[l4 + 8..], b"encapsulate me");
    }
}

/// A config error stops the start with the message naming the line; nothing is attached.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn config_errors_name_the_line() {
    lab::require_root("config_errors_name_the_line");
    let path = std::env::temp_dir().join(format!("fp-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "interface = \"lo\"\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"dsr-l2\"\nsnat_address = \"fd00::1\"\n[[vip.backend]]\naddress = \"10.0.0.2\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(["lb", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("line 7: snat_address fd00::1 is IPv6 but VIP 10.0.0.1:80/tcp is IPv4"),
        "{stderr}"
    );
}

/// After kill -9, the next start cleans what the dead run left (program, pins, socket file)
/// and serves.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_killed_appliance_does_not_block_the_next_start() {
    lab::require_root("a_killed_appliance_does_not_block_the_next_start");
    let setup = setup("ll", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let mut first = Appliance::start(&setup, &text);
    first.kill();
    let _second = Appliance::start(&setup, &text);
    tally(&http_gets(&setup, true, 100));
}

/// Pipelined mode: the worker hands batches to two stage threads by flow; every connection
/// completes, both stages do work, and a hot swap (a drain) reaches every stage.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn pipelined_mode_serves_every_connection_and_swaps_on_every_stage() {
    lab::require_root("pipelined_mode_serves_every_connection_and_swaps_on_every_stage");
    let setup = setup("lm", 1);
    let extra = "[pipelined]\ncores = [0, 1]\nqueue_depth = 8\n";
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", extra, [1, 1, 1]),
    );
    let counts = tally(&http_gets(&setup, true, 1000));
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    let status = appliance.status();
    let stages = status["workers"][0]["stages"]
        .as_array()
        .expect("stage stats");
    assert_eq!(stages.len(), 2, "{status}");
    for stage in stages {
        assert!(
            stage["packets"].as_u64().unwrap() > 0,
            "idle stage: {stage}"
        );
    }
    let lb_packets = status["workers"][0]["functions"][0]["packets"]
        .as_u64()
        .unwrap();
    let stage_packets: u64 = stages.iter().map(|s| s["packets"].as_u64().unwrap()).sum();
    assert_eq!(lb_packets, stage_packets, "function stats sum the stages");

    let vip = format!("{}:80/tcp", setup.lab.vip(true));
    let b1 = setup.lab.backends[0].ipv4.to_string();
    let (ok, _, err) = appliance.control(&["backend", "drain", "--vip", &vip, "--backend", &b1]);
    assert!(ok, "drain failed: {err}");
    let after = tally(&http_gets(&setup, true, 300));
    assert_eq!(after[0], 0, "both stages run the new tables: {after:?}");
    assert!(appliance.stop(), "the appliance should stop cleanly");
}

/// Active health checks: a backend whose port refuses is taken out after `fall` failures and
/// brought back after `rise` successes once a server listens, with no failed request.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn health_checks_take_a_dead_backend_out_and_bring_it_back() {
    lab::require_root("health_checks_take_a_dead_backend_out_and_bring_it_back");
    let setup = setup("ln", 1);
    // nat, so that b3 can listen on a port of its own (81), where nothing runs yet.
    let mut text = config(&setup, true, "tcp", "nat", "", [1, 1, 1]);
    text = text.replacen(
        "[[vip.backend]]",
        "[vip.health_check]\ninterval_ms = 100\ntimeout_ms = 200\nrise = 2\nfall = 2\n[[vip.backend]]",
        1,
    );
    let b3 = setup.lab.backends[2].ipv4;
    text = text.replace(
        &format!("address = \"{b3}\"\n"),
        &format!("address = \"{b3}\"\nport = 81\n"),
    );
    let appliance = Appliance::start(&setup, &text);
    let health = |appliance: &Appliance| appliance.status()["vips"][0]["backends"][2].clone();
    let wait_for = |healthy: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while health(&appliance)["healthy"] != healthy {
            assert!(
                std::time::Instant::now() < deadline,
                "b3 never became healthy={healthy}: {}",
                health(&appliance)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for(false);
    let results = http_gets(&setup, true, 300);
    assert!(
        results.iter().all(Result::is_ok),
        "a dead backend got traffic"
    );
    assert_eq!(tally(&results)[2], 0);

    let _late = lab::services::Servers::start(&setup.lab.backends[2].namespace, "b3", 81, &[b3])
        .expect("a server on b3:81");
    wait_for(true);
    let results = http_gets(&setup, true, 300);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(tally(&results)[2] > 0, "b3 is back in rotation");
}
