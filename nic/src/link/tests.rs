use std::io;

use netlink_packet_route::link::LinkFlags;

use super::*;
use crate::{
    fake::{self, FakeNetlink},
    rtnetlink::reply,
};

fn link_reply(attributes: Vec<LinkAttribute>) -> Vec<u8> {
    let mut message = LinkMessage::default();
    message.header.index = 4;
    message.header.flags = LinkFlags::Up;
    message.attributes = attributes;
    reply(&[RouteNetlinkMessage::NewLink(message)], false)
}

fn kernel(attributes: Vec<LinkAttribute>) -> FakeNetlink {
    FakeNetlink::answering([Ok(link_reply(attributes))])
}

#[test]
fn mac_and_mtus_come_from_the_links_attributes() {
    let mut fake = kernel(vec![
        LinkAttribute::IfName("eth0".into()),
        LinkAttribute::Mtu(1500),
        LinkAttribute::MaxMtu(9000),
        LinkAttribute::Address(vec![2, 0, 0, 0xab, 0xcd, 1]),
    ]);
    assert_eq!(mac_of(&mut fake, "eth0").unwrap(), [2, 0, 0, 0xab, 0xcd, 1]);
    let request = &fake.requests[0].1;
    let sent =
        netlink_packet_core::NetlinkMessage::<RouteNetlinkMessage>::deserialize(request).unwrap();
    let netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(asked)) =
        sent.payload
    else {
        panic!("not RTM_GETLINK: {sent:?}");
    };
    assert_eq!(asked.attributes, [LinkAttribute::IfName("eth0".into())]);

    let mut fake = kernel(vec![LinkAttribute::Mtu(1500), LinkAttribute::MaxMtu(9000)]);
    assert_eq!(
        mtus(&mut fake, Link::Index(4)).unwrap(),
        (Some(1500), Some(9000))
    );
}

#[test]
fn a_missing_or_odd_mac_names_the_attribute() {
    let error = mac_of(&mut kernel(vec![LinkAttribute::Mtu(1500)]), "eth0").unwrap_err();
    assert!(matches!(
        error,
        NicError::MissingAttribute {
            attribute: "IFLA_ADDRESS",
            ..
        }
    ));
    let error = mac_of(
        &mut kernel(vec![LinkAttribute::Address(vec![1; 20])]),
        "ib0",
    )
    .unwrap_err();
    assert!(matches!(
        error,
        NicError::Malformed {
            attribute: "IFLA_ADDRESS",
            ..
        }
    ));
}

#[test]
fn enodev_means_no_such_interface_and_other_errnos_keep_the_call() {
    let mut fake = FakeNetlink::answering([Ok(fake::error(libc::ENODEV))]);
    let error = mac_of(&mut fake, "nope0").unwrap_err();
    assert!(matches!(&error, NicError::NoInterface(name) if name == "nope0"));
    assert_eq!(
        error.to_string(),
        "interface \"nope0\" not found in this network namespace"
    );

    let mut fake = FakeNetlink::answering([Err(io::Error::from_raw_os_error(libc::EMFILE))]);
    let error = mtus(&mut fake, Link::Index(4)).unwrap_err();
    assert!(
        matches!(&error, NicError::Syscall { call: "RTM_GETLINK", source }
            if source.raw_os_error() == Some(libc::EMFILE)),
        "{error:?}"
    );
}

#[test]
fn the_attached_program_and_every_slot_are_read() {
    let single = vec![LinkAttribute::Xdp(vec![
        LinkXdp::Attached(XdpAttached::Driver),
        LinkXdp::ProgId(42),
    ])];
    let program = XdpProgram {
        slot: XdpSlot::Driver,
        program_id: 42,
    };
    assert_eq!(
        xdp_program(&mut kernel(single.clone()), Link::Index(4)).unwrap(),
        Some(program)
    );
    assert_eq!(
        xdp_programs(&mut kernel(single), Link::Index(4)).unwrap(),
        [program]
    );

    let multi = vec![LinkAttribute::Xdp(vec![
        LinkXdp::Attached(XdpAttached::Multiple),
        LinkXdp::HwProgId(7),
        LinkXdp::DrvProgId(8),
    ])];
    assert_eq!(
        xdp_programs(&mut kernel(multi), Link::Index(4)).unwrap(),
        [
            XdpProgram {
                slot: XdpSlot::Hardware,
                program_id: 7
            },
            XdpProgram {
                slot: XdpSlot::Driver,
                program_id: 8
            }
        ]
    );

    let none = vec![LinkAttribute::Xdp(vec![LinkXdp::Attached(
        XdpAttached::None,
    )])];
    assert_eq!(
        xdp_program(&mut kernel(none), Link::Index(4)).unwrap(),
        None
    );
}

#[test]
fn an_empty_answer_is_no_interface() {
    let mut fake = FakeNetlink::answering([Ok(Vec::new())]);
    assert!(matches!(
        mtus(&mut fake, Link::Index(9)),
        Err(NicError::NoInterface(name)) if name == "#9"
    ));
}

#[test]
fn macs_format_as_colon_hex() {
    assert_eq!(format_mac([2, 0, 0, 0xab, 0xcd, 1]), "02:00:00:ab:cd:01");
}

#[test]
fn unknown_names_have_no_index() {
    assert!(matches!(
        ifindex("fp-no-such0"),
        Err(NicError::NoInterface(_))
    ));
    assert!(matches!(
        ifindex("bad\0name"),
        Err(NicError::NoInterface(_))
    ));
}
