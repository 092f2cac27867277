use std::net::IpAddr;

use super::*;
use crate::{
    build::{ChecksumFill, FrameBuilder},
    parse::{parse, tcp_flags},
};

fn families() -> [(IpAddr, IpAddr); 2] {
    [
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
    ]
}

#[test]
fn rfc1071_example_and_header_checksum() {
    // RFC 1071 4.1: 0001 f203 f4f5 f6f7 sums to ddf2.
    let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(Sum::default().add_bytes(&bytes).fold(), 0xddf2);
    assert_eq!(checksum(&bytes), !0xddf2);
    // Odd lengths pad with zero.
    assert_eq!(checksum(&[0x12]), !0x1200);
}

#[test]
fn partial_checksums_are_completed_and_complete_ones_kept() {
    for (src, dst) in families() {
        for builder in [
            FrameBuilder::tcp(src, dst, tcp_flags::SYN).payload(vec![0xab; 1001]),
            FrameBuilder::udp(src, dst).payload(vec![0x5a; 333]),
        ] {
            let complete = builder.clone().build();
            let mut partial = builder.checksum(ChecksumFill::Partial).build();
            assert_ne!(partial, complete);
            let headers = parse(&partial).unwrap().unwrap();
            assert!(!l4_checksum_ok(&partial, &headers));
            assert_eq!(
                complete_partial(&mut partial, &headers),
                Completion::Completed
            );
            assert_eq!(partial, complete);
            assert!(l4_checksum_ok(&partial, &headers));
            let mut again = complete.clone();
            assert_eq!(complete_partial(&mut again, &headers), Completion::Complete);
            assert_eq!(again, complete);
        }
    }
}

#[test]
fn udp_without_checksum_and_fragments_are_left_alone() {
    let [(src, dst), (src6, dst6)] = families();
    let mut zero = FrameBuilder::udp(src, dst)
        .checksum(ChecksumFill::Zero)
        .build();
    let headers = parse(&zero).unwrap().unwrap();
    assert_eq!(
        complete_partial(&mut zero, &headers),
        Completion::NotApplicable
    );
    for (src, dst) in [(src, dst), (src6, dst6)] {
        let datagram = FrameBuilder::udp(src, dst).payload(vec![1; 3000]);
        let mut first = datagram.fragments(1500, 9).remove(0);
        let headers = parse(&first).unwrap().unwrap();
        assert_eq!(
            complete_partial(&mut first, &headers),
            Completion::NotApplicable
        );
    }
}

#[test]
fn incremental_update_matches_a_full_recompute() {
    for (src, dst) in families() {
        let mut frame = FrameBuilder::udp(src, dst).payload(vec![3; 77]).build();
        let headers = parse(&frame).unwrap().unwrap();
        let (src_at, len) = if headers.ipv4() { (26, 4) } else { (22, 16) };
        let new_source = vec![0x42; len];
        let field_at = headers.l4 + 6;
        let field = u16::from_be_bytes([frame[field_at], frame[field_at + 1]]);
        let updated = update(field, &frame[src_at..src_at + len], &new_source);
        frame[src_at..src_at + len].copy_from_slice(&new_source);
        frame[field_at..field_at + 2].copy_from_slice(&updated.to_be_bytes());
        assert!(l4_checksum_ok(&frame, &headers));
    }
}

/// A complete checksum can equal its pseudo-header sum by chance (1 in 65,536): it is summed
/// again, kept, and not reported as completed.
#[test]
fn a_complete_checksum_equal_to_its_pseudo_header_sum_is_kept() {
    let [(src, dst), _] = families();
    let coincidence = (0..=u16::MAX)
        .map(|word| {
            FrameBuilder::udp(src, dst)
                .payload(word.to_be_bytes())
                .build()
        })
        .find(|frame| {
            let headers = parse(frame).unwrap().unwrap();
            let (s, d) = headers.addresses(frame);
            let field = u16::from_be_bytes([frame[headers.l4 + 6], frame[headers.l4 + 7]]);
            field == pseudo_header(s, d, proto::UDP, 10).fold()
        })
        .expect("some two-byte payload makes the checksum equal the pseudo-header sum");
    let headers = parse(&coincidence).unwrap().unwrap();
    assert!(l4_checksum_ok(&coincidence, &headers));
    let mut frame = coincidence.clone();
    assert_eq!(complete_partial(&mut frame, &headers), Completion::Complete);
    assert_eq!(frame, coincidence);
}
