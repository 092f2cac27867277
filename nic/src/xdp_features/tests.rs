use std::io;

use super::*;
use crate::fake::{self, FakeNetlink};

/// A generic-netlink answer: genlmsghdr, then `attrs`.
fn genl_answer(family: u16, attrs: &[u8]) -> Vec<u8> {
    let mut payload = vec![1, 1, 0, 0];
    payload.extend_from_slice(attrs);
    fake::message(family, 0, &payload)
}

fn family_answer(id: u16) -> Vec<u8> {
    let mut attrs = attribute(CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    attrs.extend(attribute(CTRL_ATTR_FAMILY_ID, &id.to_ne_bytes()));
    genl_answer(GENL_ID_CTRL, &attrs)
}

#[test]
fn the_family_is_looked_up_then_the_device_asked() {
    let mut dev = attribute(NETDEV_A_DEV_IFINDEX, &4u32.to_ne_bytes());
    dev.extend(attribute(
        NETDEV_A_DEV_XDP_FEATURES,
        &0b1011u64.to_ne_bytes(),
    ));
    dev.extend(attribute(NETDEV_A_DEV_XDP_ZC_MAX_SEGS, &1u32.to_ne_bytes()));
    let mut kernel = FakeNetlink::answering([Ok(family_answer(27)), Ok(genl_answer(27, &dev))]);
    let features = read(&mut kernel, 4).unwrap();
    assert_eq!(features.xdp_features, ["basic", "redirect", "xsk-zerocopy"]);
    assert_eq!(features.zc_max_segs, Some(1));
    let (protocol, request) = &kernel.requests[1];
    assert_eq!(*protocol, NETLINK_GENERIC);
    assert_eq!(
        u16::from_ne_bytes([request[4], request[5]]),
        27,
        "family id"
    );
    assert_eq!(request[16], NETDEV_CMD_DEV_GET);
    assert_eq!(
        attributes(&request[20..]),
        vec![(NETDEV_A_DEV_IFINDEX, &4u32.to_ne_bytes()[..])]
    );
}

#[test]
fn a_kernel_without_the_family_says_so_with_its_errno() {
    let mut kernel = FakeNetlink::answering([Ok(fake::error(libc::ENOENT))]);
    let error = read(&mut kernel, 4).unwrap_err();
    assert!(
        matches!(&error, NicError::Syscall { call: "CTRL_CMD_GETFAMILY", source }
            if source.raw_os_error() == Some(libc::ENOENT)),
        "{error:?}"
    );
}

#[test]
fn a_failed_exchange_keeps_the_io_error() {
    let mut kernel = FakeNetlink::answering([
        Ok(family_answer(27)),
        Err(io::Error::from_raw_os_error(libc::EPERM)),
    ]);
    let error = read(&mut kernel, 4).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    assert!(
        error.to_string().starts_with("NETDEV_CMD_DEV_GET failed"),
        "{error}"
    );
}

#[test]
fn replies_missing_or_mangling_the_family_id_name_the_attribute() {
    let no_id = genl_answer(GENL_ID_CTRL, &attribute(CTRL_ATTR_FAMILY_NAME, b"netdev\0"));
    let error = read(&mut FakeNetlink::answering([Ok(no_id)]), 4).unwrap_err();
    assert!(matches!(
        error,
        NicError::MissingAttribute {
            attribute: "CTRL_ATTR_FAMILY_ID",
            ..
        }
    ));
    let short_id = genl_answer(GENL_ID_CTRL, &attribute(CTRL_ATTR_FAMILY_ID, &[7]));
    let error = read(&mut FakeNetlink::answering([Ok(short_id)]), 4).unwrap_err();
    assert!(matches!(
        error,
        NicError::Malformed {
            attribute: "CTRL_ATTR_FAMILY_ID",
            ..
        }
    ));
    let no_genl_header = fake::message(GENL_ID_CTRL, 0, &[1, 1]);
    let error = read(&mut FakeNetlink::answering([Ok(no_genl_header)]), 4).unwrap_err();
    assert!(matches!(
        error,
        NicError::Malformed {
            attribute: "genlmsghdr",
            ..
        }
    ));
}

#[test]
fn netdev_replies_parse_into_flag_names() {
    // mlx5: basic, redirect, ndo-xmit, xsk-zerocopy, rx-sg, ndo-xmit-sg; all metadata.
    let features = parse_dev(&fake::dev_reply(0b110_1111, 1, 0b111, 0b11));
    assert_eq!(
        features.xdp_features,
        [
            "basic",
            "redirect",
            "ndo-xmit",
            "xsk-zerocopy",
            "rx-sg",
            "ndo-xmit-sg"
        ]
    );
    assert_eq!(features.zc_max_segs, Some(1));
    assert_eq!(features.rx_metadata, ["timestamp", "hash", "vlan-tag"]);
    assert_eq!(features.xsk_features, ["tx-timestamp", "tx-checksum"]);
    // A truncated reply stops at the broken attribute instead of failing.
    let reply = fake::dev_reply(0b1, 1, 0, 0);
    assert_eq!(parse_dev(&reply[..reply.len() - 3]).xdp_features, ["basic"]);
}
