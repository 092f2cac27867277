//! Faults, full tables and bad input: each ends with a clear message, a consistent data path
//! and nothing leaked (pins, XDP attachments, pid files, control sockets, lab namespaces).
//!
//! Kills at an exact phase use the test-only kill points (`offload::kill_point`): the
//! `fastpath` binary these tests run is built with them, and `FASTPATH_KILL_AT=<point>` makes
//! it SIGKILL itself there.

mod lb_common;

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{
        fs::PermissionsExt,
        net::UnixStream,
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    time::{Duration, Instant},
};

use lb_common::*;

/// Runs `fastpath ARGS` with extra environment variables.
fn fastpath(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run fastpath")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn killed(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// Waits for `condition` up to `timeout`; panics with `what` if it never holds.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where fastpath in namespace `namespace` pins for `iface`.
fn pins(namespace: &str, iface: &str) -> PathBuf {
    let iface = iface.to_string();
    lab::netns::run_in(namespace, move || {
        offload::bpffs::Bpffs::get().fastpath_dir().join(iface)
    })
    .unwrap()
}

/// `/run/fastpath` of namespace `namespace`.
fn run_dir(namespace: &str) -> PathBuf {
    lab::netns::run_in(namespace, offload::netns::run_dir).unwrap()
}

/// The program the kernel runs on `iface` in `namespace` (None: nothing attached, or no such
/// interface).
fn xdp_program(namespace: &str, iface: &str) -> Option<u32> {
    let iface = iface.to_string();
    lab::netns::run_in(namespace, move || offload::xdp_attached(&iface))
        .unwrap()
        .ok()
        .flatten()
        .map(|state| state.program_id)
}

/// Everything an appliance on the lab leaves behind when it is not running.
fn leftovers(setup: &Setup) -> Vec<String> {
    let lb = &setup.lab.lb;
    let mut left = Vec::new();
    let pins = pins(&lb.namespace, &lb.iface);
    if pins.exists() {
        left.push(format!("pins {}", pins.display()));
    }
    if let Some(id) = xdp_program(&lb.namespace, &lb.iface) {
        left.push(format!("XDP program {id} on {}", lb.iface));
    }
    let run = run_dir(&lb.namespace);
    let pid_file = run.join(format!("lb-{}.pid", lb.iface));
    if pid_file.exists() {
        left.push(format!("pid file {}", pid_file.display()));
    }
    // veth has no ntuple filters; on a NIC that has them, this records the installed ones.
    let ntuple = run.join(format!("lb-{}.ntuple", lb.iface));
    if ntuple.exists() {
        left.push(format!("ntuple record {}", ntuple.display()));
    }
    let control = PathBuf::from(format!("/run/fastpath/{}.sock", setup.lab.prefix));
    if control.exists() {
        left.push(format!("control socket {}", control.display()));
    }
    left
}

/// After a kill: the next start cleans up after the dead run and serves; a clean stop then
/// leaves nothing.
fn next_start_cleans_up_and_serves(setup: &Setup, config_text: &str, after: &str) {
    let mut appliance = Appliance::spawn(setup, config_text, &[], true);
    if let Err(error) = appliance.wait_ready() {
        panic!("after {after}: {error}");
    }
    let log = appliance.log();
    assert!(
        log.contains("did not stop cleanly; cleaning up after it"),
        "after {after}: {log}"
    );
    let counts = tally(&http_gets(setup, true, 50));
    assert_eq!(counts.iter().sum::<usize>(), 50, "after {after}");
    assert!(appliance.stop(), "after {after}: a clean stop");
    assert_eq!(leftovers(setup), Vec::<String>::new(), "after {after}");
}

/// kill -9 at each start-up phase: the dead run leaves its attachment (the pinned chain keeps
/// steer on the interface, passing the VIP's traffic to the kernel now that no socket
/// is in the XSKMAP); the next start removes it and serves, and a clean stop leaves nothing.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_kill_at_each_start_phase_is_cleaned_up_by_the_next_start() {
    lab::require_root("a_kill_at_each_start_phase_is_cleaned_up_by_the_next_start");
    let setup = setup("fa", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    for point in [
        "attach:steer-loaded",
        "lb:attached",
        "rules:defs-written",
        "lb:workers-started",
    ] {
        let mut appliance = Appliance::spawn(&setup, &text, &[("FASTPATH_KILL_AT", point)], true);
        let status = appliance.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(killed),
            "{point}: {status:?}\n{}",
            appliance.log()
        );
        let lb = &setup.lab.lb;
        assert!(
            xdp_program(&lb.namespace, &lb.iface).is_some(),
            "{point}: the pinned chain keeps steer attached"
        );
        drop(appliance);
        next_start_cleans_up_and_serves(&setup, &text, point);
    }
}

/// kill -9 in the middle of a reload (after the rules of a removed VIP went, and after the
/// rules matched the new config while the workers still ran the old tables) and of a hot
/// swap: the control client gets a clear error, and the next start cleans up and serves.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_kill_mid_reload_or_mid_swap_is_cleaned_up_by_the_next_start() {
    lab::require_root("a_kill_mid_reload_or_mid_swap_is_cleaned_up_by_the_next_start");
    let setup = setup("fb", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    // A second VIP (UDP) that the reloads below remove.
    let vip = setup.lab.vip(true);
    let b1 = setup.lab.backends[0].ipv4;
    let two_vips = format!(
        "{text}[[vip]]\naddress = \"{vip}\"\nport = 53\nprotocol = \"udp\"\nforwarding = \"dsr-l2\"\n[[vip.backend]]\naddress = \"{b1}\"\n"
    );
    let b1 = b1.to_string();
    let vip_arg = format!("{vip}:80/tcp");
    let cases: [(&str, &[&str]); 3] = [
        ("lb:rules-pruned", &["reload"]),
        ("lb:reload-rules-synced", &["reload"]),
        (
            "lb:swap",
            &["backend", "drain", "--vip", &vip_arg, "--backend", &b1],
        ),
    ];
    for (point, command) in cases {
        let mut appliance =
            Appliance::spawn(&setup, &two_vips, &[("FASTPATH_KILL_AT", point)], true);
        appliance.wait_ready().unwrap();
        std::fs::write(&appliance.config, &text).unwrap();
        let (ok, out, err) = appliance.control(command);
        assert!(!ok, "{point}: {out}");
        assert!(
            err.contains("closed the connection without a response"),
            "{point}: {err}"
        );
        let status = appliance.wait_exit(Duration::from_secs(20));
        assert!(status.is_some_and(killed), "{point}: {status:?}");
        drop(appliance);
        next_start_cleans_up_and_serves(&setup, &text, point);
    }
}

/// `fastpath xdp` killed at each phase: attach (steer loaded into the chain, its program
/// pin not yet made), a rule change (records written, match maps not), replace (the chain
/// runs the new steer, the pin names the old one). Each time the next command works and the data path follows
/// the rules listed; a detach leaves nothing.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_killed_xdp_command_leaves_an_attachment_the_next_command_can_use() {
    lab::require_root("a_killed_xdp_command_leaves_an_attachment_the_next_command_can_use");
    let setup = setup("fc", 1);
    let lb = setup.lab.lb.clone();
    let xdp = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--netns", &lb.namespace, "--json", "xdp"];
        all.extend_from_slice(args);
        fastpath(&all, env)
    };
    let iface = lb.iface.as_str();
    let kill_at = |point| [("FASTPATH_KILL_AT", point)];

    // Attach, killed with steer in the chain and its program pin not made: it runs and is
    // fastpath's; a second attach says so, and a replace completes its pins.
    let output = xdp(
        &["attach", "--iface", iface],
        &kill_at("attach:steer-loaded"),
    );
    assert!(killed(output.status), "{}", said(&output));
    assert!(xdp_program(&lb.namespace, iface).is_some());
    let output = xdp(&["attach", "--iface", iface], &[]);
    assert!(!output.status.success());
    assert!(
        said(&output).contains("already has fastpath's program attached"),
        "{}",
        said(&output)
    );
    let output = xdp(&["replace", "--iface", iface], &[]);
    assert!(
        output.status.success(),
        "replace after a kill: {}",
        said(&output)
    );
    let output = xdp(&["status", "--iface", iface], &[]);
    assert!(output.status.success(), "{}", said(&output));
    let output = xdp(&["detach", "--iface", iface], &[]);
    assert!(output.status.success(), "{}", said(&output));
    // Killed again, then detached.
    let output = xdp(
        &["attach", "--iface", iface],
        &kill_at("attach:steer-loaded"),
    );
    assert!(killed(output.status), "{}", said(&output));
    let output = xdp(&["detach", "--iface", iface], &[]);
    assert!(
        output.status.success(),
        "detach after a kill: {}",
        said(&output)
    );
    assert!(xdp_program(&lb.namespace, iface).is_none());
    assert!(!pins(&lb.namespace, iface).exists());
    let output = xdp(&["attach", "--iface", iface], &[]);
    assert!(output.status.success(), "{}", said(&output));

    // A rule add killed between its record and its match entries.
    let dst = lb.ipv4.to_string();
    let rule = |port: &str| {
        [
            "rule", "add", "--iface", iface, "--action", "drop", "--proto", "udp", "--dst", &dst,
            "--dport", port,
        ]
        .map(String::from)
    };
    let args = rule("7001");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = xdp(&args, &kill_at("rules:defs-written"));
    assert!(killed(output.status), "{}", said(&output));
    let args = rule("7002");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = xdp(&args, &[]);
    assert!(output.status.success(), "{}", said(&output));
    // One killed with its exact table written to the idle bank, before the switch (after
    // a command that finished: a pending repair would be killed there first).
    let args = rule("7003");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = xdp(&args, &kill_at("rules:exact-table-written"));
    assert!(killed(output.status), "{}", said(&output));
    // The next change adds a prefix rule (no exact rule changes): it still finishes the
    // exact table the killed command staged.
    let output = xdp(
        &[
            "rule",
            "add",
            "--iface",
            iface,
            "--action",
            "drop",
            "--proto",
            "udp",
            "--dst",
            "10.99.0.0/16",
            "--dport",
            "7004",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", said(&output));
    // Every rule is listed, and each drops what it matches.
    for port in 7001..=7003 {
        send_datagrams(&setup, port, 10);
    }
    let rule_packets = || -> Vec<(u16, u64)> {
        let output = xdp(&["status", "--iface", iface], &[]);
        assert!(output.status.success(), "{}", said(&output));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let port = r["dport"].as_str().unwrap().parse().unwrap();
                (port, r["packets"].as_u64().unwrap())
            })
            .collect()
    };
    wait_for(
        "every rule to count 10 packets",
        Duration::from_secs(5),
        || {
            let mut rules = rule_packets();
            rules.sort();
            rules == [(7001, 10), (7002, 10), (7003, 10), (7004, 0)]
        },
    );

    // Replace, killed with the chain switched to the new steer and the old program still
    // pinned. steer runs as a module of the chain: the kernel's XDP program (the chain's
    // entry) stays, steer's program id is the one that changes.
    let steer_program = || -> u64 {
        let output = xdp(&["status", "--iface", iface], &[]);
        assert!(output.status.success(), "{}", said(&output));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status["program_id"].as_u64().expect("steer's program id")
    };
    let before = steer_program();
    let entry = xdp_program(&lb.namespace, iface).unwrap();
    let output = xdp(
        &["replace", "--iface", iface],
        &kill_at("replace:steer-swapped"),
    );
    assert!(killed(output.status), "{}", said(&output));
    assert_ne!(steer_program(), before, "the chain runs the new steer");
    assert_eq!(xdp_program(&lb.namespace, iface), Some(entry));
    let output = xdp(&["replace", "--iface", iface], &[]);
    assert!(
        output.status.success(),
        "replace after a kill: {}",
        said(&output)
    );
    // Rules and counters carried over.
    send_datagrams(&setup, 7001, 10);
    wait_for(
        "rule 7001 to count 20 packets",
        Duration::from_secs(5),
        || rule_packets().contains(&(7001, 20)),
    );
    let output = xdp(&["detach", "--iface", iface], &[]);
    assert!(output.status.success(), "{}", said(&output));
    assert!(xdp_program(&lb.namespace, iface).is_none());
    assert!(!pins(&lb.namespace, iface).exists());
}

/// UDP datagrams from the client to the load balancer's own address.
fn send_datagrams(setup: &Setup, port: u16, count: usize) {
    let target = std::net::SocketAddr::new(setup.lab.lb.ipv4, port);
    lab::Lab::run_in(&setup.lab.client.namespace, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..count {
            socket.send_to(b"fault", target).unwrap();
        }
    })
    .unwrap();
}

/// `fastpath lb reload` killed after sending its request: the appliance still applies it,
/// answers the next command and stops cleanly.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_killed_control_client_does_not_disturb_the_appliance() {
    lab::require_root("a_killed_control_client_does_not_disturb_the_appliance");
    let setup = setup("fd", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    std::fs::write(
        &appliance.config,
        config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 0]),
    )
    .unwrap();
    let control = appliance.control.to_string_lossy().into_owned();
    let output = fastpath(
        &["lb", "reload", "--control", &control],
        &[("FASTPATH_KILL_AT", "control:request-sent")],
    );
    assert!(killed(output.status), "{}", said(&output));
    wait_for("the reload to apply", Duration::from_secs(5), || {
        appliance.status()["vips"][0]["backends"][2]["weight"] == 0
    });
    let counts = tally(&http_gets(&setup, true, 100));
    assert_eq!(counts[2], 0, "b3 has weight 0 now: {counts:?}");
    assert!(appliance.stop());
    assert_eq!(leftovers(&setup), Vec::<String>::new());
}

/// A connection table smaller than the flows: the oldest flows are evicted and counted,
/// and every connection is served.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_full_connection_table_evicts_counts_and_serves() {
    lab::require_root("a_full_connection_table_evicts_counts_and_serves");
    let setup = setup("fe", 1);
    let appliance = Appliance::start(
        &setup,
        &config(
            &setup,
            true,
            "tcp",
            "dsr-l2",
            "connections = 16\n",
            [1, 1, 1],
        ),
    );
    let counts = tally(&http_gets(&setup, true, 200));
    assert_eq!(counts.iter().sum::<usize>(), 200);
    let status = appliance.status();
    assert_eq!(status["conntrack_capacity"], 16, "{status}");
    let evictions = status["conntrack_evictions"].as_u64().unwrap();
    assert!(evictions >= 200 - 16, "{evictions} evictions: {status}");
}

/// SNAT ports run out: new connections are dropped and counted (`nat ports exhausted`), the
/// open ones complete, and once their entries expire new connections are served again.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn exhausted_nat_ports_drop_and_count_until_ports_free_up() {
    lab::require_root("exhausted_nat_ports_drop_and_count_until_ports_free_up");
    let setup = setup("ff", 1);
    let mut text = config(&setup, true, "tcp", "nat", "", [1, 1, 1]);
    text = text.replacen(
        "[[vip.backend]]",
        "snat_ports = \"20000-20009\"\n[[vip.backend]]",
        1,
    );
    let appliance = Appliance::start(&setup, &text);
    let target = std::net::SocketAddr::new(setup.lab.vip(true), 80);
    let open = lab::Lab::run_in(&setup.lab.client.namespace, move || {
        lab::services::PendingRequests::open(target, 10, Duration::from_secs(3))
    })
    .unwrap()
    .expect("10 connections take the 10 ports");
    // Short attempts: the held requests must finish within the servers' 5 s read timeout.
    let refused = lab::services::http_gets(
        &setup.lab.client.namespace,
        target,
        2,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(
        refused.iter().all(Result::is_err),
        "no port is left: {refused:?}"
    );
    let status = appliance.status();
    let drops = status["workers"][0]["drops"]["nat ports exhausted"]
        .as_u64()
        .unwrap_or(0);
    assert!(drops >= 2, "each refused SYN is counted: {status}");
    let finished = open.finish(Duration::from_secs(3));
    assert_eq!(tally(&finished).iter().sum::<usize>(), 10);
    // Closed connections give their ports back 10 s after their FIN.
    wait_for("the NAT entries to expire", Duration::from_secs(30), || {
        appliance.status()["nat_entries"] == 0
    });
    assert_eq!(
        tally(&http_gets(&setup, true, 10)).iter().sum::<usize>(),
        10
    );
}

/// A full steering rule table: a reload that needs one more rule fails with the limit named
/// and applies nothing, the appliance keeps serving its old config, and the CLI's own `rule
/// add` is refused the same way.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_full_rule_table_refuses_a_reload_and_the_appliance_keeps_serving() {
    lab::require_root("a_full_rule_table_refuses_a_reload_and_the_appliance_keeps_serving");
    let setup = setup("fg", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let appliance = Appliance::start(&setup, &text);
    let iface = setup.lab.lb.iface.clone();
    // Another operator's rules fill the table (exact rules: one host, one port each).
    // Opened in the appliance's namespace, where its pins are; the maps work from anywhere.
    let mut steering = {
        let iface = iface.clone();
        lab::netns::run_in(&setup.lab.lb.namespace, move || {
            offload::Steering::open(&iface)
        })
        .unwrap()
        .unwrap()
    };
    let taken = steering.rules().unwrap().len();
    let fill: Vec<offload::rules::RuleSpec> = (0..(16383 - taken) as u32)
        .map(|i| offload::rules::RuleSpec {
            proto: Some(offload::rules::Protocol::Udp),
            dst: Some(offload::rules::IpNet::from(std::net::IpAddr::from([
                192,
                0,
                (2 + i / 60000) as u8,
                1,
            ]))),
            dport: Some(offload::rules::PortRange {
                lo: 1 + (i % 60000) as u16,
                hi: 1 + (i % 60000) as u16,
            }),
            ..offload::rules::RuleSpec::new(offload::rules::Action::Drop)
        })
        .collect();
    steering.add_rules(&fill).unwrap();
    // One more VIP needs one more rule.
    let vip = setup.lab.vip(true);
    let b1 = setup.lab.backends[0].ipv4;
    std::fs::write(
        &appliance.config,
        format!(
            "{text}[[vip]]\naddress = \"{vip}\"\nport = 81\nprotocol = \"tcp\"\nforwarding = \"dsr-l2\"\n[[vip.backend]]\naddress = \"{b1}\"\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = appliance.control(&["reload"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("too many rules: at most 16383 are supported")
            && err.contains("nothing was applied"),
        "{err}"
    );
    let status = appliance.status();
    assert_eq!(status["vips"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(
        tally(&http_gets(&setup, true, 50)).iter().sum::<usize>(),
        50
    );
    let output = fastpath(
        &[
            "--netns",
            &setup.lab.lb.namespace,
            "xdp",
            "rule",
            "add",
            "--iface",
            &iface,
            "--action",
            "drop",
            "--proto",
            "udp",
            "--dst",
            "192.0.2.250",
            "--dport",
            "9",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        said(&output).contains("too many rules: at most 16383 are supported"),
        "{}",
        said(&output)
    );
    assert!(appliance.stop());
    assert_eq!(leftovers(&setup), Vec::<String>::new());
}

/// The interface deleted under a running appliance: it notices, says so, exits non-zero
/// without a panic, and leaves no pins, pid file or control socket.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_deleted_interface_stops_the_appliance_with_a_clear_message() {
    lab::require_root("a_deleted_interface_stops_the_appliance_with_a_clear_message");
    let setup = setup("fh", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let mut appliance = Appliance::spawn(&setup, &text, &[], true);
    appliance.wait_ready().unwrap();
    tally(&http_gets(&setup, true, 20));
    let iface = setup.lab.lb.iface.clone();
    lab::netns::run_in(&setup.lab.lb.namespace, move || {
        lab::netlink::delete_link(&iface)
    })
    .unwrap()
    .unwrap();
    let status = appliance.wait_exit(Duration::from_secs(10));
    let log = appliance.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{status:?}\n{log}");
    assert!(
        log.contains(&format!("interface {} (ifindex", setup.lab.lb.iface))
            && log.contains("is gone: deleted, or moved out of this network namespace"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(leftovers(&setup), Vec::<String>::new());
    let lock = run_dir(&setup.lab.lb.namespace).join(format!("{}.lock", setup.lab.lb.iface));
    assert!(
        !lock.exists(),
        "the rule lock of a vanished interface goes too"
    );
}

/// A backend's namespace vanishes: health checks take it out, the control socket answers
/// all along, and every request is served by the others.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_vanished_backend_is_taken_out_by_health_checks_without_a_hang() {
    lab::require_root("a_vanished_backend_is_taken_out_by_health_checks_without_a_hang");
    let mut setup = setup("fi", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]).replacen(
        "[[vip.backend]]",
        "[vip.health_check]\ninterval_ms = 100\ntimeout_ms = 200\nrise = 2\nfall = 2\n[[vip.backend]]",
        1,
    );
    let appliance = Appliance::start(&setup, &text);
    let counts = tally(&http_gets(&setup, true, 60));
    assert!(counts[2] > 0, "{counts:?}");
    setup.vanish_backend(2);
    wait_for("b3 to be marked down", Duration::from_secs(10), || {
        let asked = Instant::now();
        let status = appliance.status();
        // No hang: the appliance answers at once while a check waits on the dead backend.
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "status took {:?}",
            asked.elapsed()
        );
        status["vips"][0]["backends"][2]["healthy"] == false
    });
    let status = appliance.status();
    let b3 = setup.lab.backends[2].ipv4;
    assert!(
        status["events"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with(&format!("health: backend {b3} "))),
        "{status}"
    );
    let counts = tally(&http_gets(&setup, true, 200));
    assert_eq!(counts[2], 0);
    assert_eq!(counts[0] + counts[1], 200);
    assert!(appliance.stop());
    drop(setup);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends `request` on a fresh connection and returns the response line.
fn ask(control: &Path, request: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// The control socket hit with garbage, a 10 MB line, 200 concurrent clients beside silent
/// ones, and a non-root peer: each gets an error or its answer, the appliance's memory does
/// not grow with the big line, and it serves traffic throughout.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_control_socket_survives_garbage_a_huge_line_a_crowd_and_a_stranger() {
    lab::require_root("the_control_socket_survives_garbage_a_huge_line_a_crowd_and_a_stranger");
    let setup = setup("fj", 1);
    let text = config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]);
    let mut appliance = Appliance::spawn(&setup, &text, &[], true);
    appliance.wait_ready().unwrap();
    let control = appliance.control.clone();

    for garbage in [
        &b"\x00\x01\x02 not json\n"[..],
        b"{\"command\":\"reboot\"}\n",
        b"{\"command\":\"backend\",\"action\":\"explode\",\"vip\":\"x\",\"backend\":\"10.0.0.1\"}\n",
        b"\n",
    ] {
        let response = ask(&control, garbage);
        assert_eq!(response["ok"], false, "{response}");
        assert!(response["error"].as_str().is_some(), "{response}");
    }

    let rss_before = rss_kib(appliance.pid());
    let stream = UnixStream::connect(&control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&vec![b'{'; 10 << 20]).is_ok());
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert!(
        !sender.join().unwrap(),
        "the appliance stops reading at the limit"
    );
    let response: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        response["error"],
        "request too long: a request line may hold at most 65536 bytes"
    );
    let rss_after = rss_kib(appliance.pid());
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    // 200 clients at once, beside 20 that connect and say nothing.
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&control).unwrap())
        .collect();
    let crowd: Vec<_> = (0..200)
        .map(|_| {
            let control = control.clone();
            std::thread::spawn(move || ask(&control, b"{\"command\":\"status\"}\n"))
        })
        .collect();
    for client in crowd {
        let response = client.join().unwrap();
        assert_eq!(response["ok"], true, "{response}");
    }
    drop(silent);

    // A non-root peer: the socket's mode refuses it first; with the mode loosened, the
    // appliance refuses it itself and logs who it was.
    let control_arg = control.to_string_lossy().into_owned();
    let as_nobody = || {
        Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .args(["lb", "status", "--control", &control_arg])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let output = as_nobody();
    assert!(!output.status.success());
    assert!(
        said(&output).contains("the control socket is for root and the appliance's own user"),
        "{}",
        said(&output)
    );
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = as_nobody();
    assert!(!output.status.success());
    assert!(
        said(&output).contains(
            "permission denied: this control socket takes requests from root and uid 0 only, not uid 65534"
        ),
        "{}",
        said(&output)
    );
    wait_for("the refusal in the log", Duration::from_secs(5), || {
        appliance
            .log()
            .contains("control: refused a client with uid 65534")
    });

    assert_eq!(
        tally(&http_gets(&setup, true, 50)).iter().sum::<usize>(),
        50
    );
    assert!(appliance.stop());
    assert_eq!(leftovers(&setup), Vec::<String>::new());
}
