use super::*;

const LAB: &str = r#"name = "lab"

[[instance]]
name = "br-a"
kind = "bridge"
ports = { p1 = "veth-a1", p2 = "veth-a2", up = "r1:a" }
vlans = { p1 = 10, p2 = [20, 10] }
fdb = [{ mac = "02:00:00:00:00:01", port = "p2", vlan = 20 }]

[[instance]]
name = "r1"
kind = "router"
ports = { a = "br-a:up", b = "br-b:up" }
addresses = { a = ["10.1.0.1/24", "fd01::1/64"], b = ["10.2.0.1/24", "fd02::1/64"] }
routes = [{ to = "10.9.0.7/16", via = "10.2.0.254" }, { to = "fd09::/48", port = "a" }]

[[instance]]
name = "br-b"
kind = "bridge"
ports = { up = "r1:b", p1 = "veth-b1" }
aging = 60
"#;

fn parse(text: &str) -> Result<TopologyFile, TopologyError> {
    TopologyFile::parse(Path::new("/etc/topo.toml"), text, |iface| {
        iface.starts_with("veth")
    })
}

/// The error's line and message.
fn error(text: &str) -> (usize, String) {
    match parse(text) {
        Err(TopologyError::File { line, message, .. }) => (line, message),
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn the_lab_topology_reads_with_ports_in_file_order() {
    let file = parse(LAB).unwrap();
    assert_eq!(file.name, "lab");
    let names: Vec<&str> = file.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["br-a", "r1", "br-b"]);
    let br_b = file.instance("br-b").unwrap();
    let ports: Vec<&str> = br_b.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ports, ["up", "p1"], "file order, not sorted");
    assert_eq!(br_b.bridge.aging_seconds, 60);
    let br_a = file.instance("br-a").unwrap();
    assert_eq!(br_a.kind, Kind::Bridge);
    assert_eq!(br_a.line, 3);
    assert_eq!(br_a.ports[0].line, 6);
    assert_eq!(
        br_a.bridge.vlans,
        [
            ("p1".to_string(), PortVlans::Access(10)),
            ("p2".to_string(), PortVlans::Trunk(vec![10, 20]))
        ]
    );
    assert_eq!(br_a.bridge.fdb[0].mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(br_a.bridge.aging_seconds, DEFAULT_AGING_SECONDS);
    let r1 = file.instance("r1").unwrap();
    assert_eq!(r1.router.addresses.len(), 4);
    assert_eq!(r1.router.routes[0].to.to_string(), "10.9.0.0/16");
    assert_eq!(
        r1.router.routes[0].port, "b",
        "the port whose subnet holds via"
    );
    assert_eq!(r1.router.routes[1].port, "a");
    assert_eq!(
        br_a.ports[2].peer,
        Peer::Instance {
            instance: "r1".into(),
            port: "a".into()
        }
    );
    let ifaces: Vec<&str> = file
        .ifaces()
        .into_iter()
        .map(|(iface, _, _)| iface)
        .collect();
    assert_eq!(ifaces, ["veth-a1", "veth-a2", "veth-b1"]);
}

#[test]
fn module_paths_are_relative_to_the_file() {
    let file = parse(
        "[[instance]]\nname = \"x\"\nmodule = \"mods/x.o\"\nports = { in = \"veth1\" }\n\
         [[instance]]\nname = \"r\"\nkind = \"router\"\nmodule = \"/abs/router-v2.o\"\nports = { a = \"veth2\" }\n",
    )
    .unwrap();
    assert_eq!(file.name, DEFAULT_NAME);
    assert_eq!(file.instances[0].kind, Kind::Module);
    assert_eq!(
        file.instances[0].module.as_deref(),
        Some(Path::new("/etc/mods/x.o"))
    );
    assert_eq!(file.instances[1].kind, Kind::Router);
    assert_eq!(
        file.instances[1].module.as_deref(),
        Some(Path::new("/abs/router-v2.o"))
    );
}

#[test]
fn a_port_connected_twice_names_both_lines() {
    let text = LAB.replace(
        "ports = { up = \"r1:b\", p1 = \"veth-b1\" }",
        "ports = { up = \"r1:a\", p1 = \"veth-b1\" }",
    );
    let (line, message) = error(&text);
    assert_eq!(line, 20, "{message}");
    assert!(
        message.contains("the port r1:a is connected twice: by br-a:up (line 6) and by br-b:up"),
        "{message}"
    );
}

#[test]
fn links_that_do_not_agree_are_refused() {
    // br-a:up -> r1:a, but r1:a -> br-b:up (and br-b:up -> r1:b): nobody links to r1:a
    // twice, the two sides disagree.
    let text = LAB.replace("ports = { a = \"br-a:up\"", "ports = { a = \"br-b:p1\"");
    let (line, message) = error(&text);
    assert_eq!(line, 6, "{message}");
    assert!(
        message.contains("br-a:up: links to r1:a, but r1:a links to br-b:p1 (line 13)"),
        "{message}"
    );
}

#[test]
fn a_link_to_an_unknown_instance_or_port_is_refused() {
    let (line, message) = error(&LAB.replace("up = \"r1:a\"", "up = \"r2:a\""));
    assert_eq!(line, 6);
    assert!(message.contains("unknown instance \"r2\""), "{message}");
    let (line, message) = error(&LAB.replace("up = \"r1:a\"", "up = \"r1:c\""));
    assert_eq!(line, 6);
    assert!(
        message.contains("r1 has no port \"c\" (its ports: a, b)"),
        "{message}"
    );
}

#[test]
fn an_interface_used_twice_or_missing_is_refused() {
    let (line, message) = error(&LAB.replace("p1 = \"veth-b1\"", "p1 = \"veth-a2\""));
    assert_eq!(line, 20);
    assert!(
        message.contains("the interface veth-a2 is already used by br-a:p2 (line 6)"),
        "{message}"
    );
    let (line, message) = error(&LAB.replace("p1 = \"veth-b1\"", "p1 = \"eth9\""));
    assert_eq!(line, 20);
    assert!(
        message.contains("no interface eth9 in this network namespace"),
        "{message}"
    );
}

#[test]
fn bad_addresses_name_their_line() {
    for (bad, expected) in [
        ("10.1.0.300/24", "is not an address with its prefix length"),
        ("10.1.0.1", "is not an address with its prefix length"),
        ("10.1.0.0/24", "is the network address of 10.1.0.0/24"),
        ("10.1.0.255/24", "is the broadcast address"),
        ("10.2.0.9/16", "overlaps the prefix of port"),
    ] {
        let (line, message) = error(&LAB.replace("\"10.1.0.1/24\"", &format!("{bad:?}")));
        assert_eq!(line, 14, "{bad}: {message}");
        assert!(message.contains(expected), "{bad}: {message}");
    }
    let (line, message) = error(&LAB.replace("via = \"10.2.0.254\"", "via = \"10.7.0.1\""));
    assert_eq!(line, 15);
    assert!(
        message.contains("the next hop 10.7.0.1 is in no port's subnet"),
        "{message}"
    );
    let (_, message) = error(&LAB.replace("via = \"10.2.0.254\"", "via = \"fd02::9\""));
    assert!(message.contains("not of the family"), "{message}");
}

#[test]
fn a_loop_of_instance_links_is_refused_and_a_chain_is_not() {
    let looped = r#"
[[instance]]
name = "a"
kind = "bridge"
ports = { x = "b:x", y = "b:y" }
[[instance]]
name = "b"
kind = "bridge"
ports = { x = "a:x", y = "a:y" }
"#;
    let (line, message) = error(looped);
    assert_eq!(line, 5, "{message}");
    assert!(message.contains("a:y -> b:y closes a loop"), "{message}");
    let triangle = r#"
[[instance]]
name = "a"
kind = "bridge"
ports = { b = "b:a", c = "c:a", host = "veth1" }
[[instance]]
name = "b"
kind = "router"
ports = { a = "a:b", c = "c:b" }
[[instance]]
name = "c"
kind = "bridge"
ports = { a = "a:c", b = "b:c" }
"#;
    assert!(error(triangle).1.contains("closes a loop"));
    // bridge - router - bridge is a chain, not a loop
    parse(LAB).unwrap();
}

#[test]
fn a_path_longer_than_the_hop_limit_is_refused() {
    let mut text = String::new();
    let count = MAX_HOPS + 1;
    for at in 0..count {
        let mut ports = Vec::new();
        if at > 0 {
            ports.push(format!("left = \"i{}:right\"", at - 1));
        }
        if at + 1 < count {
            ports.push(format!("right = \"i{}:left\"", at + 1));
        }
        text += &format!(
            "[[instance]]\nname = \"i{at}\"\nkind = \"bridge\"\nports = {{ {} }}\n",
            ports.join(", ")
        );
    }
    let (line, message) = error(&text);
    assert_eq!(line, 1);
    assert!(
        message.contains(&format!("would cross {count} instances")),
        "{message}"
    );
}

#[test]
fn other_mistakes_name_their_line() {
    for (text, line, expected) in [
        (
            "[[instance]]\nname = \"x\"\nports = { a = \"veth1\" }\n",
            1,
            "names a `kind`",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"switch\"\nports = { a = \"veth1\" }\n",
            3,
            "unknown kind \"switch\"",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\ncolor = 1\n",
            5,
            "unknown field `color`",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\naddresses = { a = [\"10.0.0.1/24\"] }\n",
            5,
            "`addresses` is a setting of the router kind",
        ),
        (
            "[[instance]]\nname = \"x y\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\n",
            2,
            "letters, digits",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\", a = \"veth2\" }\n",
            4,
            "duplicate key",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"\" }\n",
            4,
            "neither an interface name",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\nvlans = { a = 4095 }\n",
            5,
            "not a VLAN id",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\nfdb = [{ mac = \"01:00:5e:00:00:01\", port = \"a\" }]\n",
            5,
            "group address",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\", b = \"veth2\" }\nvlans = { a = 10, b = [20] }\nfdb = [\n{ mac = \"02:00:00:00:00:01\", port = \"a\", vlan = 10 },\n{ mac = \"02:00:00:00:00:02\", port = \"b\", vlan = 10 }]\n",
            8,
            "port b does not carry VLAN 10",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\", up = \"r:a\" }\nvlans = { a = 10,\nup = [10] }\n[[instance]]\nname = \"r\"\nkind = \"router\"\nports = { a = \"x:up\" }\n",
            6,
            "up leads to another instance",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\", b = \"veth2\" }\nvlans = { a = 10 }\nfdb = [{ mac = \"02:00:00:00:00:02\", port = \"b\", vlan = 10 }]\n",
            6,
            "port b does not carry VLAN 10",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\nfdb = [{ mac = \"02:00\", port = \"a\" }]\n",
            5,
            "not a MAC address",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth1\" }\n[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"veth2\" }\n",
            5,
            "already used on line 1",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"router\"\nports = { a = \"veth1\" }\naddresses = { b = [\"10.0.0.1/24\"] }\n",
            5,
            "does not have",
        ),
        (
            "[[instance]]\nname = \"x\"\nkind = \"bridge\"\nports = { a = \"x:a\" }\n",
            4,
            "cannot link to itself",
        ),
    ] {
        let (got_line, message) = error(text);
        assert!(message.contains(expected), "{text}: {message}");
        assert_eq!(got_line, line, "{text}: {message}");
    }
}

#[test]
fn a_firewall_instance_has_two_ports_and_its_rules() {
    let firewall = |ports: &str, rules: &str| {
        format!("[[instance]]\nname = \"fw\"\nkind = \"firewall\"\nports = {{ {ports} }}\n{rules}")
    };
    let file = parse(&firewall(
        "outside = \"veth-x\", inside = \"veth-y\"",
        "rules = \"fw.toml\"\n",
    ))
    .unwrap();
    assert_eq!(file.instances[0].kind, Kind::Firewall);
    assert_eq!(file.instances[0].rules, Some(PathBuf::from("/etc/fw.toml")));

    let (line, message) = error(&firewall("outside = \"veth-x\"", "rules = \"fw.toml\"\n"));
    assert_eq!(line, 1);
    assert!(message.contains("exactly two ports"), "{message}");
    let (_, message) = error(&firewall("a = \"veth-x\", b = \"veth-y\"", ""));
    assert!(message.contains("names its `rules` file"), "{message}");
    let (line, message) = error(
        "[[instance]]\nname = \"br\"\nkind = \"bridge\"\nports = { p1 = \"veth-x\" }\nrules = \"fw.toml\"\n",
    );
    assert_eq!(line, 5);
    assert!(
        message.contains("`rules` is a setting of the firewall kind"),
        "{message}"
    );
}

#[test]
fn an_lb_instance_has_two_ports_and_checked_vips() {
    let lb = |vips: &str| {
        format!(
            "[[instance]]\nname = \"lb\"\nkind = \"lb\"\nports = {{ clients = \"veth-x\", servers = \"veth-y\" }}\nvips = [\n{vips}\n]\n"
        )
    };
    let file = parse(&lb(concat!(
        "{ address = \"10.9.0.10\", port = 80, backends = [\"10.2.0.11:8000\", \"10.2.0.12\"] },\n",
        "{ address = \"fd09::10\", port = 53, protocol = \"udp\", backends = [{ address = \"fd02::11\", weight = 3 }, \"[fd02::12]:5353\"] },",
    )))
    .unwrap();
    let vips = &file.instances[0].lb.vips;
    assert_eq!(file.instances[0].kind, Kind::Lb);
    assert_eq!(vips.len(), 2);
    assert_eq!((vips[0].line, vips[0].port, vips[0].protocol), (6, 80, 6));
    let backends: Vec<String> = vips[0]
        .backends
        .iter()
        .map(|backend| format!("{}*{}", backend.address, backend.weight))
        .collect();
    // A backend without a port takes the VIP's.
    assert_eq!(backends, ["10.2.0.11:8000*1", "10.2.0.12:80*1"]);
    assert_eq!(vips[1].protocol, 17);
    assert_eq!(vips[1].backends[0].address.to_string(), "[fd02::11]:53");
    assert_eq!(vips[1].backends[0].weight, 3);

    for (vips, line, expected) in [
        (
            "{ address = \"10.9.0.300\", port = 80, backends = [\"10.2.0.11\"] }",
            6,
            "\"10.9.0.300\" is not an address",
        ),
        (
            "{ address = \"10.9.0.10\", port = 0, backends = [\"10.2.0.11\"] }",
            6,
            "port 0 is not 1 to 65535",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, protocol = \"sctp\", backends = [\"10.2.0.11\"] }",
            6,
            "\"sctp\" is not tcp or udp",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, backends = [] }",
            6,
            "has 0 backends",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, backends = [\"fd02::11\"] }",
            6,
            "not of the VIP's family",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, backends = [\"10.2.0.11\", \"10.2.0.11:80\"] }",
            6,
            "10.2.0.11:80 is given twice",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, backends = [\"10.2.0.11\"] },\n{ address = \"10.9.0.10\", port = 80, backends = [\"10.2.0.12\"] }",
            7,
            "10.9.0.10:80/tcp is given twice (line 6)",
        ),
        (
            "{ address = \"10.9.0.10\", port = 80, backends = [\"10.2.0.11:x\"] }",
            6,
            "is not a backend",
        ),
    ] {
        let (got_line, message) = error(&lb(vips));
        assert!(message.contains(expected), "{vips}: {message}");
        assert_eq!(got_line, line, "{vips}: {message}");
    }
    let (line, message) = error(
        "[[instance]]\nname = \"lb\"\nkind = \"lb\"\nports = { a = \"veth-x\" }\nvips = []\n",
    );
    assert_eq!(line, 1);
    assert!(
        message.contains("an lb instance has exactly two ports"),
        "{message}"
    );
    let (_, message) = error(
        "[[instance]]\nname = \"lb\"\nkind = \"lb\"\nports = { a = \"veth-x\", b = \"veth-y\" }\n",
    );
    assert!(message.contains("names its `vips`"), "{message}");
    let (line, message) = error(
        "[[instance]]\nname = \"br\"\nkind = \"bridge\"\nports = { p1 = \"veth-x\" }\nvips = []\n",
    );
    assert_eq!(line, 5);
    assert!(
        message.contains("`vips` is a setting of the lb kind"),
        "{message}"
    );
}
