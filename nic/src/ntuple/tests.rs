use std::net::IpAddr;

use super::*;
use crate::fake::{i40e, mlx5, nfp};

fn rule(port: u16, queue: u32) -> FlowRule {
    FlowRule {
        protocol: L4::Udp,
        destination: "10.0.0.100".parse::<IpAddr>().unwrap(),
        port: Some(port),
        queue,
    }
}

#[test]
fn ntuple_rules_go_to_free_slots_and_are_removed_on_drop() {
    let mut nic = i40e();
    {
        let installed = install(&mut nic, "eth0", &[rule(53, 3), rule(80, 5)]).unwrap();
        assert_eq!(installed.locations, [1, 3], "slots 0 and 2 were taken");
    }
    assert_eq!(
        nic.rules.keys().copied().collect::<Vec<_>>(),
        [0, 2],
        "ours are gone"
    );
    let installed = install(&mut nic, "eth0", &[rule(53, 3)]).unwrap();
    let location = installed.locations[0];
    drop(installed);
    assert!(!nic.rules.contains_key(&location));
}

#[test]
fn a_dead_processs_recorded_ntuple_rules_are_removed_unless_reused() {
    let mut nic = i40e();
    let installed = install(&mut nic, "eth0", &[rule(53, 3), rule(80, 5)]).unwrap();
    let recorded = [(1, rule(53, 3)), (3, rule(80, 5))];
    assert_eq!(installed.locations, [1, 3]);
    // The process dies: its rules stay. Someone reuses slot 3 for another rule.
    std::mem::forget(installed);
    nic.rules.insert(3, encode(&rule(443, 1), 3).to_vec());
    let removed = remove_recorded(&mut nic, "eth0", &recorded);
    assert_eq!(removed, [1], "only the slot that still holds its rule");
    assert_eq!(nic.rules.keys().copied().collect::<Vec<_>>(), [0, 2, 3]);
    // Recorded slots that are empty now are skipped.
    assert!(remove_recorded(&mut nic, "eth0", &[(7, rule(53, 3))]).is_empty());
}

#[test]
fn an_ntuple_rule_encodes_flow_type_address_port_mask_and_queue() {
    let bytes = encode(&rule(53, 7), 9);
    assert_eq!(u32_at(&bytes, 16), 2, "UDP_V4_FLOW");
    assert_eq!(&bytes[24..28], &[10, 0, 0, 100], "ip4dst");
    assert_eq!(&bytes[30..32], &53u16.to_be_bytes(), "pdst");
    assert_eq!(&bytes[96..100], &[0xff; 4], "ip4dst mask");
    assert_eq!(&bytes[20..24], &[0; 4], "the source is a wildcard");
    assert_eq!(
        u64::from_ne_bytes(bytes[168..176].try_into().unwrap()),
        7,
        "queue"
    );
    assert_eq!(u32_at(&bytes, 176), 9, "location");
    let v6 = FlowRule {
        protocol: L4::Tcp,
        destination: "fd00::1".parse().unwrap(),
        port: None,
        queue: 1,
    };
    let bytes = encode(&v6, 0);
    assert_eq!(u32_at(&bytes, 16), 5, "TCP_V6_FLOW");
    assert_eq!(
        bytes[36..52],
        "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(&bytes[124..128], &[0; 4], "no port, no port mask");
}

#[test]
fn ntuple_errors_say_what_is_missing() {
    let error = install(&mut nfp(), "eth0", &[rule(53, 1)]).err().unwrap();
    assert!(matches!(error, NtupleError::Unavailable { .. }));
    assert!(
        error.to_string().contains("steering stays in XDP"),
        "{error}"
    );
    let mut small = mlx5();
    small.capacity = Some(1);
    let error = install(&mut small, "eth0", &[rule(1, 1), rule(2, 1)])
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "eth0: 2 ntuple rules do not fit: 1 of 1 slots are free"
    );
    assert!(small.rules.is_empty(), "nothing half-installed");
}
