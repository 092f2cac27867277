//! The lab on a real kernel: built, reachable end to end, torn down. Needs root.

use std::{net::SocketAddr, time::Duration};

use lab::{Lab, netns, require_root};

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_default_topology_carries_udp_from_client_to_backend_and_is_removed_on_drop() {
    require_root("lab topology");
    let prefix = format!("fpl{}", std::process::id() % 10000);
    let namespaces;
    {
        let lab = Lab::up(&prefix).expect("lab up");
        namespaces = netns::list(&format!("{prefix}-"));
        assert_eq!(namespaces.len(), 5, "{namespaces:?}");
        // The root namespace got nothing: no lab interface is visible here.
        assert!(lab::netlink::index(&lab.dut.iface).is_err());

        let backend = &lab.backends[0];
        let server =
            Lab::udp_socket(&backend.namespace, SocketAddr::new(backend.ipv4, 9000)).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let client = Lab::udp_socket(&lab.client.namespace, "0.0.0.0:0".parse().unwrap()).unwrap();
        client
            .send_to(b"hello lab", SocketAddr::new(backend.ipv4, 9000))
            .unwrap();
        let mut buffer = [0u8; 64];
        let (length, from) = server
            .recv_from(&mut buffer)
            .expect("datagram routed through the dut");
        assert_eq!(&buffer[..length], b"hello lab");
        assert_eq!(from.ip(), lab.client.ipv4);

        // IPv6 across the same path.
        let server6 =
            Lab::udp_socket(&backend.namespace, SocketAddr::new(backend.ipv6, 9001)).unwrap();
        server6
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let client6 = Lab::udp_socket(&lab.client.namespace, "[::]:0".parse().unwrap()).unwrap();
        client6
            .send_to(b"hello v6", SocketAddr::new(backend.ipv6, 9001))
            .unwrap();
        let (length, _) = server6.recv_from(&mut buffer).expect("IPv6 datagram");
        assert_eq!(&buffer[..length], b"hello v6");
        assert!(!lab.client.mac.is_empty() && !lab.dut.mac.is_empty());
    }
    for namespace in namespaces {
        assert!(!netns::exists(&namespace), "{namespace} left behind");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_second_lab_with_the_same_prefix_is_refused_with_a_clear_error() {
    require_root("lab twice");
    let prefix = format!("fpd{}", std::process::id() % 10000);
    let _lab = Lab::up(&prefix).expect("lab up");
    let error = Lab::up(&prefix).unwrap_err().to_string();
    assert!(
        error.contains("already exists") && error.contains("lab down"),
        "{error}"
    );
}
