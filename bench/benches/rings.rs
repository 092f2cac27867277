//! criterion: afxdp's ring operations, `cargo bench -p bench --bench rings` (no root).
//!
//! Both ends of one heap ring run in this process (`afxdp::ring_loop`): the producer half is
//! the code of the fill and TX rings, the consumer half that of the RX and completion
//! rings. One iteration moves a batch through the ring and back out; criterion reports the
//! time per descriptor. The frame pool's take and put, the bookkeeping around every frame
//! a socket sends or receives, is timed on its own.

use std::hint::black_box;

use afxdp::{Umem, UmemConfig, ring_loop::RingLoop};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RING_SIZE: u32 = 2048;

fn desc(i: u64) -> libc::xdp_desc {
    libc::xdp_desc {
        addr: i * 2048,
        len: 64,
        options: 0,
    }
}

fn rings(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    for batch in [1u32, 16, 64] {
        group.throughput(Throughput::Elements(batch.into()));
        // Fill and completion rings: frame addresses.
        let mut addresses = RingLoop::<u64>::new(RING_SIZE);
        group.bench_function(BenchmarkId::new("addr produce+consume", batch), |b| {
            b.iter(|| {
                let produced = addresses.produce(batch, (0..u64::from(batch)).map(black_box));
                let consumed = addresses.consume(batch, |address| {
                    black_box(address);
                });
                assert_eq!(produced, consumed);
            })
        });
        // RX and TX rings: descriptors.
        let mut descs = RingLoop::<libc::xdp_desc>::new(RING_SIZE);
        group.bench_function(BenchmarkId::new("desc produce+consume", batch), |b| {
            b.iter(|| {
                let produced = descs.produce(batch, (0..u64::from(batch)).map(desc));
                let consumed = descs.consume(batch, |desc| {
                    black_box(desc.addr);
                });
                assert_eq!(produced, consumed);
            })
        });
    }
    group.finish();
}

fn frame_pool(c: &mut Criterion) {
    let config = UmemConfig {
        frame_count: 4096,
        ..UmemConfig::default()
    };
    let (umem, mut pool) = Umem::new(config).expect("an anonymous 16 MiB mapping");
    let batch = 64;
    let mut group = c.benchmark_group("frame pool");
    group.throughput(Throughput::Elements(batch as u64));
    let mut frames = Vec::with_capacity(batch);
    group.bench_function(BenchmarkId::new("take+put", batch), |b| {
        b.iter(|| {
            frames.extend((0..batch).map_while(|_| pool.take()));
            for frame in frames.drain(..) {
                pool.put(black_box(frame), &umem);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, rings, frame_pool);
criterion_main!(benches);
