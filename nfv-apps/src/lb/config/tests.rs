use super::*;

const GOOD: &str = r#"
interface = "eth0"
queues = [0, 1]
cores = [1]
xdp_mode = "drv"
control = "/tmp/lb.sock"

[[vip]]
address = "10.0.0.100"
port = 80
protocol = "tcp"
forwarding = "dsr-l2"

  [[vip.backend]]
  address = "10.0.1.11"

  [[vip.backend]]
  address = "10.0.1.12"
  weight = 2
  port = 8080

[[vip]]
address = "fd00::100"
port = 53
protocol = "udp"
forwarding = "nat"
snat_address = "fd00::2"
snat_ports = "20000-20099"

  [[vip.backend]]
  address = "fd00:1::11"
"#;

fn error_of(text: &str) -> ConfigError {
    Config::parse(text, "lb.toml").expect_err("the config should be refused")
}

#[test]
fn a_good_config_loads_with_defaults() {
    let config = Config::parse(GOOD, "lb.toml").unwrap();
    assert_eq!(config.queue_list(), Some(&[0, 1][..]));
    assert_eq!(config.vip.len(), 2);
    assert_eq!(config.vip[0].backend[0].weight, 1);
    assert_eq!(config.vip[0].backend[1].port, Some(8080));
    assert_eq!(*config.vip[0].maglev_size.get_ref(), DEFAULT_SIZE);
    assert_eq!(config.vip[1].snat_port_range(), (20000, 20099));
    assert_eq!(config.vip[1].key().to_string(), "[fd00::100]:53/udp");
    assert_eq!(config.control_path(), PathBuf::from("/tmp/lb.sock"));
}

#[test]
fn unknown_keys_name_their_line() {
    let text = GOOD.replace("  weight = 2\n", "  weight = 2\n  colour = \"red\"\n");
    let error = error_of(&text);
    assert_eq!(error.line, Some(20), "{error}");
    assert!(error.to_string().contains("colour"), "{error}");
    assert!(error.to_string().starts_with("lb.toml line 20:"), "{error}");
}

#[test]
fn duplicate_vips_name_the_second_and_the_first() {
    let text = format!(
        "{GOOD}\n[[vip]]\naddress = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\nsnat_address = \"10.0.0.2\"\n[[vip.backend]]\naddress = \"10.0.1.13\"\n"
    );
    let error = error_of(&text);
    assert_eq!(error.line, Some(34), "{error}");
    assert!(
        error
            .message
            .contains("duplicate VIP 10.0.0.100:80/tcp (first defined at line 9)"),
        "{error}"
    );
}

#[test]
fn all_zero_weights_are_refused() {
    let text = GOOD
        .replace(
            "  address = \"10.0.1.11\"\n",
            "  address = \"10.0.1.11\"\n  weight = 0\n",
        )
        .replace("weight = 2", "weight = 0");
    let error = error_of(&text);
    assert_eq!(error.line, Some(9), "{error}");
    assert!(
        error.message.contains("every backend has weight 0"),
        "{error}"
    );
}

#[test]
fn address_family_mismatches_are_refused() {
    let error = error_of(&GOOD.replace("fd00:1::11", "10.0.1.11"));
    assert_eq!(error.line, Some(31), "{error}");
    assert!(
        error
            .message
            .contains("backend 10.0.1.11 is IPv4 but VIP [fd00::100]:53/udp is IPv6"),
        "{error}"
    );
    let error =
        error_of(&GOOD.replace("snat_address = \"fd00::2\"", "snat_address = \"10.0.0.2\""));
    assert!(
        error.message.contains("snat_address 10.0.0.2 is IPv4"),
        "{error}"
    );
    assert_eq!(error.line, Some(27));
}

#[test]
fn bad_values_are_refused_with_their_line() {
    for (from, to, line, words) in [
        (
            "forwarding = \"dsr-l2\"",
            "forwarding = \"magic\"",
            12,
            "magic",
        ),
        ("protocol = \"tcp\"", "protocol = \"sctp\"", 11, "sctp"),
        ("port = 80\n", "port = 70000\n", 10, "70000"),
        (
            "address = \"10.0.0.100\"",
            "address = \"10.0.0.300\"",
            9,
            "invalid",
        ),
        (
            "queues = [0, 1]",
            "queues = \"some\"",
            3,
            "expected \"all\"",
        ),
        (
            "snat_ports = \"20000-20099\"",
            "snat_ports = \"9-1\"",
            28,
            "LO-HI",
        ),
    ] {
        let error = error_of(&GOOD.replace(from, to));
        assert_eq!(error.line, Some(line), "{to}: {error}");
        assert!(error.to_string().contains(words), "{to}: {error}");
    }
    let error = error_of(&GOOD.replace("snat_address = \"fd00::2\"\n", ""));
    assert!(error.message.contains("needs snat_address"), "{error}");
}

#[test]
fn pipelined_settings_are_checked_with_their_line() {
    let with = |table: &str| {
        GOOD.replace(
            "control = \"/tmp/lb.sock\"\n",
            &format!("control = \"/tmp/lb.sock\"\n{table}"),
        )
    };
    let config = Config::parse(&with("[pipelined]\ncores = [1]\n"), "lb.toml").unwrap();
    let pipelined = config.pipelined.expect("the table is read");
    assert_eq!(*pipelined.queue_depth.get_ref(), 8, "default depth");
    let error = error_of(&with("[pipelined]\ncores = []\n"));
    assert_eq!(error.line, Some(8), "{error}");
    assert!(error.message.contains("pipelined.cores"), "{error}");
    let error = error_of(&with("[pipelined]\ncores = [1]\nqueue_depth = 0\n"));
    assert_eq!(error.line, Some(9), "{error}");
    assert!(error.message.contains("queue_depth = 0"), "{error}");
}

#[test]
fn tuning_prefilter_and_ntuple_settings_are_read_and_checked() {
    let with = |lines: &str| {
        GOOD.replace(
            "xdp_mode = \"drv\"\n",
            &format!("xdp_mode = \"drv\"\n{lines}"),
        )
    };
    let config = Config::parse(GOOD, "lb.toml").unwrap();
    assert_eq!(
        (config.batch, config.ring_size, config.frame_size),
        (None, None, None)
    );
    assert_eq!(config.ntuple, Toggle::Auto);
    let config = Config::parse(
        &with("batch = 32\nring_size = 4096\nframe_size = 2048\nprefilter = [\"192.0.2.9\"]\nntuple = \"on\"\n"),
        "lb.toml",
    )
    .unwrap();
    assert_eq!(
        (config.batch, config.ring_size, config.frame_size),
        (Some(32), Some(4096), Some(2048))
    );
    assert_eq!(config.prefilter, ["192.0.2.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(config.ntuple, Toggle::On);
    for (line, field) in [
        (
            "ring_size = 1000",
            "ring_size = 1000: expected a power of two",
        ),
        (
            "frame_size = 1500",
            "frame_size = 1500: expected 2048 or 4096",
        ),
        ("batch = 0", "batch = 0: expected 1 to 1024"),
    ] {
        let error = error_of(&with(&format!("{line}\n")));
        assert!(error.message.contains(field), "{error}");
    }
    let error = error_of(&with("prefilter = [\"10.0.0.300\"]\n"));
    assert!(error.message.contains("prefilter"), "{error}");
}

/// Found by the `lb_config` fuzz target: values the TOML reader takes that the appliance
/// cannot use. A huge prime Maglev size allocated gigabytes per VIP (1000000007: a 4 GB
/// table), or spent seconds proving itself prime (9223372036854775783); a huge connection
/// count panicked with a capacity overflow when the worker allocated its table.
#[test]
fn sizes_the_appliance_cannot_allocate_are_refused() {
    for size in ["1000000007", "9223372036854775783", "1048583"] {
        let text = GOOD.replace(
            "forwarding = \"dsr-l2\"\n",
            &format!("forwarding = \"dsr-l2\"\nmaglev_size = {size}\n"),
        );
        let started = std::time::Instant::now();
        let error = error_of(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(error.line, Some(13), "{error}");
        assert!(
            error.message.contains(&format!(
                "maglev_size = {size}: must be a prime up to 1048576"
            )),
            "{error}"
        );
    }
    let text = GOOD.replace(
        "forwarding = \"dsr-l2\"\n",
        "forwarding = \"dsr-l2\"\nmaglev_size = 1048573\n",
    );
    Config::parse(&text, "lb.toml").expect("the largest prime below the bound");
    for connections in ["0", "9223372036854775807", "16777217"] {
        let text = GOOD.replace(
            "xdp_mode = \"drv\"\n",
            &format!("xdp_mode = \"drv\"\nconnections = {connections}\n"),
        );
        let error = error_of(&text);
        assert!(
            error.message.contains(&format!(
                "connections = {connections}: expected 1 to 16777216 flows per worker"
            )),
            "{error}"
        );
    }
}
