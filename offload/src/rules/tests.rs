use super::*;

fn spec(text: &str) -> RuleSpec {
    // "action [proto P] [dst D] [dport R] [src S]"
    let mut words = text.split_whitespace();
    let mut spec = RuleSpec::new(words.next().unwrap().parse().unwrap());
    while let Some(key) = words.next() {
        let value = words.next().unwrap();
        match key {
            "proto" => spec.proto = Some(value.parse().unwrap()),
            "dst" => spec.dst = Some(parse_cidr("dst", value).unwrap()),
            "dport" => spec.dport = Some(value.parse().unwrap()),
            "src" => spec.src = Some(parse_cidr("src", value).unwrap()),
            _ => panic!("bad key {key}"),
        }
    }
    spec
}

fn rules(texts: &[&str]) -> Vec<Rule> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| Rule {
            id: index as u32 + 1,
            spec: spec(text),
        })
        .collect()
}

#[test]
fn port_ranges_parse_and_reject_bad_input() {
    assert_eq!("80".parse(), Ok(PortRange { lo: 80, hi: 80 }));
    assert_eq!("1000-2000".parse(), Ok(PortRange { lo: 1000, hi: 2000 }));
    assert_eq!(
        "9-3".parse::<PortRange>(),
        Err(RuleError::PortOrder { lo: 9, hi: 3 })
    );
    assert!(matches!(
        "70000".parse::<PortRange>(),
        Err(RuleError::PortSyntax(_))
    ));
    assert!(matches!(
        "http".parse::<PortRange>(),
        Err(RuleError::PortSyntax(_))
    ));
    let message = "9-3".parse::<PortRange>().unwrap_err().to_string();
    assert!(message.contains("--dport"), "{message}");
}

#[test]
fn cidrs_parse_clear_host_bits_and_name_the_field() {
    assert_eq!(
        parse_cidr("dst", "10.0.0.7/24").unwrap().to_string(),
        "10.0.0.0/24"
    );
    assert_eq!(
        parse_cidr("dst", "10.0.0.7").unwrap().to_string(),
        "10.0.0.7/32"
    );
    assert_eq!(parse_cidr("src", "2001:db8::1").unwrap().prefix_len(), 128);
    let error = parse_cidr("src", "10.0.0.300/8").unwrap_err();
    assert!(error.to_string().contains("--src"), "{error}");
    assert!(parse_cidr("dst", "10.0.0.0/33").is_err());
}

#[test]
fn validation_rejects_inconsistent_rules() {
    assert_eq!(
        spec("drop proto icmp dport 80").validate(),
        Err(RuleError::PortsWithoutPorts)
    );
    assert!(matches!(
        spec("drop dst 10.0.0.0/8 src 2001:db8::/32").validate(),
        Err(RuleError::FamilyMismatch { .. })
    ));
    assert_eq!(spec("drop dport 80").validate(), Ok(()));
    let mut host_bits = spec("drop dport 80");
    host_bits.dst = Some("10.0.0.7/24".parse().unwrap());
    let error = host_bits.validate().unwrap_err();
    assert!(matches!(error, RuleError::HostBits { field: "dst", .. }));
    assert_eq!(
        error.to_string(),
        "--dst 10.0.0.7/24: host bits are set past /24; did you mean 10.0.0.0/24?"
    );
}

#[test]
fn duplicates_are_refused_with_the_existing_id() {
    let existing = rules(&["drop proto tcp dst 10.0.0.1 dport 80"]);
    assert_eq!(
        check_new(&existing, &spec("pass proto tcp dst 10.0.0.1 dport 80")),
        Err(RuleError::Duplicate(1))
    );
    assert_eq!(
        check_new(&existing, &spec("pass proto tcp dst 10.0.0.1 dport 81")),
        Ok(())
    );
}

#[test]
fn ids_fill_the_lowest_gaps() {
    let mut existing = rules(&["drop dport 1", "drop dport 2", "drop dport 3"]);
    existing.remove(1);
    assert_eq!(allocate_ids(&existing, 2).unwrap(), vec![2, 4]);
}

#[test]
fn host_port_rules_go_to_the_exact_hash_others_to_the_tries() {
    let compiled = compile(&rules(&[
        "drop proto tcp dst 10.0.0.1 dport 80",
        "drop proto tcp dst 10.0.0.0/24 dport 80",
        "drop dst 10.0.0.1 dport 443",
        "drop proto udp dst 2001:db8::1 dport 53",
    ]))
    .unwrap();
    assert_eq!(compiled.exact.len(), 2);
    let key = ExactKey {
        addr: address_bytes("10.0.0.1".parse().unwrap()),
        dport: 80,
        proto: proto::TCP,
        family: FAMILY_V4,
    };
    assert_eq!(compiled.exact[&key].rule_id, 1);
    // 10.0.0.0/24 and 10.0.0.1/32 (rule 3 has no protocol, so it is chained).
    assert_eq!(compiled.prefixes_v4.len(), 2);
    assert!(compiled.prefixes_v6.is_empty());
}

#[test]
fn a_source_rule_on_the_same_host_keeps_a_host_rule_out_of_the_hash() {
    let compiled = compile(&rules(&[
        "drop proto tcp dst 10.0.0.1 dport 80",
        "pass dst 10.0.0.1 src 172.16.0.0/12",
    ]))
    .unwrap();
    assert!(compiled.exact.is_empty());
    let chain = &compiled.prefixes_v4[&(32, [10, 0, 0, 1])];
    assert_eq!(chain.len, 2);
    assert_eq!(chain.entries[0].rule_id, 2, "the source rule ranks first");
}

#[test]
fn chains_hold_covering_rules_in_priority_order() {
    let compiled = compile(&rules(&[
        "drop dst 10.0.0.0/8",
        "tx dst 10.1.0.0/16 dport 1-100",
        "pass dst 10.1.0.0/16 proto udp dport 5",
        "xsk dst 10.1.0.0/16 dport 5",
        "drop dst 10.1.0.0/16 src 192.168.0.0/16",
    ]))
    .unwrap();
    let chain = &compiled.prefixes_v4[&(16, [10, 1, 0, 0])];
    let order: Vec<u32> = chain.entries[..chain.len as usize]
        .iter()
        .map(|entry| entry.rule_id)
        .collect();
    // source first; one port with protocol, one port any protocol; 100 ports; then /8.
    assert_eq!(order, vec![5, 3, 4, 2, 1]);
    let wide = &compiled.prefixes_v4[&(8, [10, 0, 0, 0])];
    assert_eq!(wide.len, 1);
}

#[test]
fn family_less_rules_apply_to_both_tries() {
    let compiled = compile(&rules(&["drop proto tcp dport 22"])).unwrap();
    assert_eq!(compiled.prefixes_v4[&(0, [0; 4])].len, 1);
    assert_eq!(compiled.prefixes_v6[&(0, [0; 16])].len, 1);
    assert_eq!(
        compiled.prefixes_v6[&(0, [0; 16])].entries[0].proto,
        proto::TCP
    );
}

#[test]
fn icmp_rules_use_icmpv6_on_ipv6() {
    let compiled = compile(&rules(&["drop proto icmp dst 2001:db8::/32"])).unwrap();
    let chain = compiled.prefixes_v6.values().next().unwrap();
    assert_eq!(chain.entries[0].proto, proto::ICMPV6);
}

#[test]
fn too_many_rules_over_one_prefix_is_an_error_naming_it() {
    let texts: Vec<String> = (0..=MAX_CHAIN)
        .map(|port| format!("drop dst 10.0.0.0/8 dport {}-{}", port, port + 1))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let error = compile(&rules(&refs)).unwrap_err();
    assert!(matches!(error, RuleError::ChainTooLong { count, .. } if count == MAX_CHAIN + 1));
    assert!(error.to_string().contains("10.0.0.0/8"));
}

#[test]
fn definitions_round_trip() {
    for rule in rules(&[
        "drop proto tcp dst 10.0.0.1 dport 80",
        "xsk dst 2001:db8::/48 dport 1000-2000 src 2001:db8:1::/64",
        "pass proto icmp",
        "tx src 192.168.0.0/16",
    ]) {
        assert_eq!(
            from_def(&to_def(&rule)),
            Some(rule.clone()),
            "{}",
            rule.spec
        );
    }
}

#[test]
fn ten_thousand_rules_compile() {
    let many: Vec<Rule> = (0..10_000u32)
        .map(|index| Rule {
            id: index + 1,
            spec: RuleSpec {
                dst: Some(
                    IpNet::new(IpAddr::from([10, (index >> 8) as u8, index as u8, 0]), 24).unwrap(),
                ),
                ..spec("drop proto udp dport 53")
            },
        })
        .collect();
    let compiled = compile(&many).unwrap();
    assert_eq!(compiled.prefixes_v4.len(), 10_000);
}
