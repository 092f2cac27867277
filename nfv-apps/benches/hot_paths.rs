//! criterion: the per-packet building blocks on their own. `cargo bench -p nfv-apps --bench
//! hot_paths`. Packet parsing (the hand-written parser vs etherparse), the connection
//! table (hit, and insert with LRU eviction) and the Maglev lookup. The whole LB per packet
//! (parse, table, Maglev, rewrite) is the `lb` bench.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nfv_apps::lb::{
    conntrack::{ConnTable, Connection},
    maglev::{DEFAULT_SIZE, MaglevEntry, MaglevTable},
    packet::{FlowKey, address, parse},
};
use wire::FrameBuilder;

/// A 64-byte UDP frame from 10.0.0.1:`port` to 10.0.0.100:80.
fn udp_frame(port: u16) -> Vec<u8> {
    const HEADERS: usize = 14 + 20 + 8;
    FrameBuilder::udp("10.0.0.1".parse().unwrap(), "10.0.0.100".parse().unwrap())
        .ports(port, 80)
        .payload(vec![0; 64 - HEADERS])
        .build()
}

fn parsing(c: &mut Criterion) {
    let frame = udp_frame(1024);
    c.bench_function("parse/hand-written (ipv4 udp)", |b| {
        b.iter(|| black_box(parse(black_box(&frame)).unwrap().flow.src_port))
    });
    c.bench_function("parse/etherparse (ipv4 udp)", |b| {
        b.iter(|| {
            let packet = etherparse::SlicedPacket::from_ethernet(black_box(&frame)).unwrap();
            match packet.transport {
                Some(etherparse::TransportSlice::Udp(udp)) => black_box(udp.source_port()),
                _ => unreachable!("the frame is UDP"),
            }
        })
    });
}

fn flow(i: u32) -> FlowKey {
    FlowKey {
        src: address(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()),
        dst: address("10.0.0.100".parse().unwrap()),
        src_port: (i % 60_000) as u16,
        dst_port: 80,
        proto: 6,
    }
}

fn connection_table(c: &mut Criterion) {
    let connection = Connection {
        vip_index: 0,
        backend_id: 1,
        backend_index: 0,
        generation: 0,
    };
    let mut table = ConnTable::new(65_536);
    let keys: Vec<FlowKey> = (0..65_536).map(flow).collect();
    for key in &keys {
        table.insert(*key, connection);
    }
    let mut i = 0usize;
    c.bench_function("conntrack/hit (64k flows)", |b| {
        b.iter(|| {
            i = (i + 7919) & 65_535;
            black_box(table.get(&keys[i]).is_some())
        })
    });
    let mut next = 65_536u32;
    c.bench_function("conntrack/insert with eviction (full table)", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            table.insert(flow(next), connection)
        })
    });
}

fn maglev(c: &mut Criterion) {
    let names: Vec<String> = (0..100).map(|i| format!("10.0.1.{i}:80")).collect();
    let entries: Vec<MaglevEntry<'_>> = names
        .iter()
        .map(|name| MaglevEntry {
            identity: name.as_bytes(),
            weight: 1,
        })
        .collect();
    let table = MaglevTable::build(&entries, DEFAULT_SIZE);
    let mut hash = 0u64;
    c.bench_function("maglev/pick (100 backends)", |b| {
        b.iter(|| {
            hash = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
            black_box(table.pick(hash))
        })
    });
}

criterion_group!(benches, parsing, connection_table, maglev);
criterion_main!(benches);
