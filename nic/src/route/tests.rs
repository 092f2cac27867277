use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
};

use netlink_packet_route::{address::AddressHeader, neighbour::NeighbourHeader};

use super::*;
use crate::{fake::FakeNetlink, rtnetlink::reply};

fn route(prefix: Option<&str>, prefix_len: u8, gateway: Option<&str>) -> Route {
    Route {
        prefix: prefix.map(|p| p.parse().unwrap()),
        prefix_len,
        gateway: gateway.map(|g| g.parse().unwrap()),
        ..Route::default()
    }
}

#[test]
fn the_longest_matching_route_gives_the_gateway() {
    let routes = [
        route(None, 0, Some("10.0.0.1")),
        route(Some("10.77.0.0"), 24, None),
        route(Some("10.78.0.0"), 16, Some("10.77.0.2")),
        route(Some("10.78.5.0"), 24, Some("10.77.0.3")),
        route(Some("fd78::"), 64, Some("fd77::2")),
    ];
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(gateway_for(&routes, ip("10.77.0.9")), None, "on-link");
    assert_eq!(gateway_for(&routes, ip("10.78.1.1")), Some(ip("10.77.0.2")));
    assert_eq!(gateway_for(&routes, ip("10.78.5.1")), Some(ip("10.77.0.3")));
    assert_eq!(gateway_for(&routes, ip("8.8.8.8")), Some(ip("10.0.0.1")));
    assert_eq!(gateway_for(&routes, ip("fd78::1")), Some(ip("fd77::2")));
    assert_eq!(gateway_for(&routes[1..], ip("10.79.0.1")), None, "unrouted");
}

fn route_message(
    family: AddressFamily,
    destination: Option<RouteAddress>,
    len: u8,
    gateway: RouteAddress,
) -> RouteNetlinkMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = family;
    message.header.destination_prefix_length = len;
    message
        .attributes
        .extend(destination.map(RouteAttribute::Destination));
    message.attributes.push(RouteAttribute::Gateway(gateway));
    RouteNetlinkMessage::NewRoute(message)
}

#[test]
fn both_families_are_dumped_and_parsed() {
    let v4 = reply(
        &[route_message(
            AddressFamily::Inet,
            Some(RouteAddress::Inet(Ipv4Addr::new(10, 78, 0, 0))),
            24,
            RouteAddress::Inet(Ipv4Addr::new(10, 77, 0, 2)),
        )],
        true,
    );
    let v6 = reply(
        &[route_message(
            AddressFamily::Inet6,
            None,
            0,
            RouteAddress::Inet6(Ipv6Addr::LOCALHOST),
        )],
        true,
    );
    let mut kernel = FakeNetlink::answering([Ok(v4), Ok(v6)]);
    let routes = routes_of(&mut kernel).unwrap();
    assert_eq!(
        routes,
        [
            route(Some("10.78.0.0"), 24, Some("10.77.0.2")),
            route(None, 0, Some("::1")),
        ]
    );
    assert_eq!(kernel.requests.len(), 2);
}

#[test]
fn a_failed_dump_keeps_the_io_error() {
    let mut kernel = FakeNetlink::answering([Err(io::Error::from_raw_os_error(libc::ENOBUFS))]);
    let error = routes_of(&mut kernel).unwrap_err();
    assert!(
        matches!(&error, NicError::Syscall { call: "RTM_GETROUTE", source }
            if source.raw_os_error() == Some(libc::ENOBUFS)),
        "{error:?}"
    );
    let mut kernel = FakeNetlink::answering([Ok(vec![0; 7])]);
    assert!(matches!(
        neighbours_of(&mut kernel),
        Err(NicError::Malformed {
            reply: "RTM_GETNEIGH",
            ..
        })
    ));
}

fn address(index: u32, ip: &str) -> RouteNetlinkMessage {
    let mut message = AddressMessage::default();
    message.header = AddressHeader {
        index,
        ..AddressHeader::default()
    };
    message
        .attributes
        .push(AddressAttribute::Address(ip.parse().unwrap()));
    RouteNetlinkMessage::NewAddress(message)
}

#[test]
fn addresses_of_other_links_are_left_out() {
    let dump = reply(
        &[
            address(1, "127.0.0.1"),
            address(4, "10.77.0.1"),
            address(4, "fd77::1"),
        ],
        true,
    );
    let mut kernel = FakeNetlink::answering([Ok(dump)]);
    assert_eq!(
        addresses_of(&mut kernel, 4).unwrap(),
        [
            "10.77.0.1".parse::<IpAddr>().unwrap(),
            "fd77::1".parse().unwrap()
        ]
    );
}

fn neighbour(ip: Ipv4Addr, mac: [u8; 6], state: NeighbourState) -> RouteNetlinkMessage {
    let mut message = NeighbourMessage::default();
    message.header = NeighbourHeader {
        family: AddressFamily::Inet,
        state,
        ..NeighbourHeader::default()
    };
    message.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)),
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
    ];
    RouteNetlinkMessage::NewNeighbour(message)
}

#[test]
fn only_usable_neighbours_are_kept() {
    let dump = reply(
        &[
            neighbour(
                Ipv4Addr::new(10, 77, 0, 2),
                [2, 0, 0, 0, 0, 2],
                NeighbourState::Reachable,
            ),
            neighbour(Ipv4Addr::new(10, 77, 0, 3), [0; 6], NeighbourState::Failed),
            neighbour(
                Ipv4Addr::new(10, 77, 0, 4),
                [2, 0, 0, 0, 0, 4],
                NeighbourState::Permanent,
            ),
        ],
        true,
    );
    let table = neighbours_of(&mut FakeNetlink::answering([Ok(dump)])).unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(
        table[&IpAddr::V4(Ipv4Addr::new(10, 77, 0, 4))],
        [2, 0, 0, 0, 0, 4]
    );
}

#[test]
fn a_route_keeps_its_interface_table_and_type() {
    let RouteNetlinkMessage::NewRoute(mut message) = route_message(
        AddressFamily::Inet,
        Some(RouteAddress::Inet(Ipv4Addr::new(10, 91, 1, 0))),
        24,
        RouteAddress::Inet(Ipv4Addr::new(10, 91, 1, 1)),
    ) else {
        unreachable!()
    };
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Oif(7));
    let route = parse_route(&message);
    assert_eq!(route.ifindex, Some(7));
    assert_eq!(route.table, Route::MAIN_TABLE);
    assert!(route.unicast);
    message.attributes.push(RouteAttribute::Table(1000));
    message.header.kind = RouteType::Local;
    let route = parse_route(&message);
    assert_eq!(route.table, 1000, "RTA_TABLE wins over the header's 8 bits");
    assert!(!route.unicast);
}
