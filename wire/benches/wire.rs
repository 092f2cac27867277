//! criterion: the one parser and the checksum work the load balancer does per packet.
//! `cargo bench -p wire`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wire::{
    FrameBuilder,
    build::ChecksumFill,
    checksum::{Sum, complete_partial},
    parse::tcp_flags,
};

fn frame(payload: usize, fill: ChecksumFill) -> Vec<u8> {
    FrameBuilder::tcp(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.100".parse().unwrap(),
        tcp_flags::ACK,
    )
    .payload(vec![0x61; payload])
    .checksum(fill)
    .build()
}

fn benches(c: &mut Criterion) {
    let small = frame(6, ChecksumFill::Complete);
    c.bench_function("wire/parse/tcp4-60B", |b| {
        b.iter(|| black_box(wire::parse(black_box(&small))))
    });
    for payload in [6, 1460] {
        let bytes = frame(payload, ChecksumFill::Partial);
        let headers = wire::parse(&bytes).unwrap().unwrap();
        let size = bytes.len();
        c.bench_function(&format!("wire/sum/{size}B"), |b| {
            b.iter(|| black_box(Sum::default().add_bytes(black_box(&bytes)).fold()))
        });
        let mut scratch = bytes.clone();
        c.bench_function(&format!("wire/complete-partial/{size}B"), |b| {
            b.iter(|| {
                scratch.copy_from_slice(&bytes);
                black_box(complete_partial(&mut scratch, &headers))
            })
        });
        let complete = frame(payload, ChecksumFill::Complete);
        let mut scratch = complete.clone();
        c.bench_function(&format!("wire/check-complete/{size}B"), |b| {
            b.iter(|| {
                scratch.copy_from_slice(&complete);
                black_box(complete_partial(&mut scratch, &headers))
            })
        });
    }
}

criterion_group!(wire_benches, benches);
criterion_main!(wire_benches);
