//! `nfv_apps::lb::packet::parse` on any frame, then the NAT rewrites on what it accepts.
//! Checked: what parse accepts lies inside the frame; both endpoint rewrites leave a frame
//! that parses to the new endpoints; checksums valid before (computed from scratch) are
//! still valid after the incremental updates, and a UDP/IPv4 "no checksum" stays so. A
//! later fragment carries no ports: only its addresses are rewritten.

#![no_main]

use fastpath_fuzz::{ipv4_header_valid, transport_checksum_valid};
use libfuzzer_sys::fuzz_target;
use nfv_apps::lb::packet::{ETH_LEN, address, parse, rewrite_endpoint};

fuzz_target!(|frame: &[u8]| {
    let Ok(parsed) = parse(frame) else {
        return;
    };
    assert!(parsed.l3 >= ETH_LEN && parsed.l4 >= parsed.l3 + 20);
    assert!(
        parsed.l3_end <= frame.len(),
        "the IP packet inside the frame"
    );
    let later = parsed.later_fragment();
    if !later {
        assert!(
            parsed.l4 + 8 <= parsed.l3_end,
            "ports and checksum inside the packet"
        );
        let ports = &frame[parsed.l4..parsed.l4 + 4];
        assert_eq!(parsed.flow.src_port.to_be_bytes(), ports[..2]);
        assert_eq!(parsed.flow.dst_port.to_be_bytes(), ports[2..]);
    }

    let ip_valid = parsed.v4 && ipv4_header_valid(frame, parsed.l3);
    let transport_valid = transport_checksum_valid(frame, &parsed);
    // What the NAT does: the destination becomes a backend, the source the SNAT address.
    let (backend, snat) = if parsed.v4 {
        ("192.0.2.7", "198.51.100.2")
    } else {
        ("2001:db8::7", "2001:db8:1::2")
    };
    let (backend, snat) = (
        address(backend.parse().unwrap()),
        address(snat.parse().unwrap()),
    );
    let mut rewritten = frame.to_vec();
    rewrite_endpoint(&mut rewritten, &parsed, false, &backend, 8080);
    rewrite_endpoint(&mut rewritten, &parsed, true, &snat, 20000);

    let again = parse(&rewritten).expect("a rewritten frame still parses");
    assert_eq!((again.flow.dst, again.flow.src), (backend, snat));
    if !later {
        assert_eq!((again.flow.dst_port, again.flow.src_port), (8080, 20000));
    }
    assert_eq!(
        (
            again.v4,
            again.l3,
            again.l4,
            again.flow.proto,
            again.fragment
        ),
        (
            parsed.v4,
            parsed.l3,
            parsed.l4,
            parsed.flow.proto,
            parsed.fragment
        )
    );
    assert_eq!(rewritten.len(), frame.len());
    if ip_valid {
        assert!(
            ipv4_header_valid(&rewritten, parsed.l3),
            "IPv4 header checksum broken"
        );
    }
    match transport_valid {
        Some(true) => assert_eq!(
            transport_checksum_valid(&rewritten, &again),
            Some(true),
            "transport checksum broken"
        ),
        None => assert_eq!(
            transport_checksum_valid(&rewritten, &again),
            None,
            "a UDP/IPv4 datagram without checksum got one"
        ),
        Some(false) => {}
    }
});
