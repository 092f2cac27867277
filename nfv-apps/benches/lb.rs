//! criterion: the load balancer's per-packet cost (connection hit, new flow), the NF chain
//! per packet around it, and Maglev rebuilds. `cargo bench -p nfv-apps --bench lb`.

use std::{hint::black_box, sync::Arc};

use afxdp::{Umem, UmemConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use nfv_apps::lb::{
    balancer::LoadBalancer,
    config::{Forwarding, Protocol, VipKey},
    maglev::{DEFAULT_SIZE, MaglevEntry, MaglevTable},
    nat::{NatTable, NatTimeouts},
    packet::address,
    tables::{Backend, BackendState, Tables, Vip},
};
use pipeline::{Chain, NetworkFunction, Packet, PacketList, Verdict};
use wire::{FrameBuilder, build::ChecksumFill, parse::tcp_flags};

fn tables(backends: usize) -> Arc<Tables> {
    let key = VipKey {
        address: "10.0.0.100".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    };
    let backends = (0..backends)
        .map(|i| {
            let ip = format!("10.0.1.{}", i + 1).parse().unwrap();
            let backend = Backend {
                id: i as u32 + 1,
                ip,
                address: address(ip),
                port: 80,
                weight: 1,
                state: BackendState::Active,
                next_hop: Arc::default(),
                counters: Arc::default(),
            };
            backend.next_hop.set([2, 0, 0, 0, 1, i as u8]);
            backend
        })
        .collect();
    let vip = Vip::new(
        key,
        Forwarding::DsrL2,
        None,
        "10.0.0.2".parse().unwrap(),
        backends,
        DEFAULT_SIZE,
    );
    Arc::new(Tables::new(
        1,
        vec![vip],
        [2, 0, 0, 0, 0, 2],
        1500,
        Arc::default(),
    ))
}

/// A TCP ACK from 10.0.0.1:`port` to the VIP carrying `payload` bytes (6: a 60-byte
/// frame), its checksum complete or left partial as by a sender with TX checksum offload.
fn tcp_ack_with(port: u16, payload: usize, checksum: ChecksumFill) -> Vec<u8> {
    FrameBuilder::tcp(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.100".parse().unwrap(),
        tcp_flags::ACK,
    )
    .ports(port, 80)
    .payload(vec![0x61; payload])
    .checksum(checksum)
    .build()
}

fn tcp_ack(port: u16) -> Vec<u8> {
    tcp_ack_with(port, 6, ChecksumFill::Complete)
}

fn per_packet(c: &mut Criterion) {
    let (umem, mut pool) = Umem::new(UmemConfig::default()).unwrap();
    let mut frame = pool.take().unwrap();
    let nat = Arc::new(NatTable::new(NatTimeouts::default()));
    let mut lb = LoadBalancer::new(tables(100), 1 << 20, nat.clone());
    let bytes = tcp_ack(40000);
    c.bench_function("lb/packet/connection-hit", |b| {
        b.iter(|| {
            umem.write(&mut frame, &bytes).unwrap();
            let mut packet = Packet::new(&umem, &mut frame, 0);
            black_box(lb.process(&mut packet))
        })
    });
    // Hits of 1,024 established flows taking turns: no two packets in a row of one flow,
    // the worst case for anything that remembers the last flow.
    let interleaved: Vec<Vec<u8>> = (0..1024).map(|n| tcp_ack(20000 + n)).collect();
    for bytes in &interleaved {
        umem.write(&mut frame, bytes).unwrap();
        lb.process(&mut Packet::new(&umem, &mut frame, 0));
    }
    let mut turn = 0;
    c.bench_function("lb/packet/connection-hit/1024-flows-interleaved", |b| {
        b.iter(|| {
            turn = (turn + 1) % interleaved.len();
            umem.write(&mut frame, &interleaved[turn]).unwrap();
            let mut packet = Packet::new(&umem, &mut frame, 0);
            black_box(lb.process(&mut packet))
        })
    });
    // What completing a partial checksum costs on the hit path: the same connection,
    // complete and partial, at the smallest and the largest frame.
    for (size, payload) in [(60, 6), (1514, 1460)] {
        for (name, fill) in [
            ("complete", ChecksumFill::Complete),
            ("partial", ChecksumFill::Partial),
        ] {
            let bytes = tcp_ack_with(40000, payload, fill);
            assert_eq!(bytes.len(), size);
            c.bench_function(&format!("lb/packet/connection-hit/{size}B-{name}"), |b| {
                b.iter(|| {
                    umem.write(&mut frame, &bytes).unwrap();
                    let mut packet = Packet::new(&umem, &mut frame, 0);
                    black_box(lb.process(&mut packet))
                })
            });
        }
    }
    let mut lb = LoadBalancer::new(tables(100), 1 << 16, nat);
    let mut flow = 0u32;
    let mut bytes = tcp_ack(0);
    c.bench_function("lb/packet/new-flow", |b| {
        b.iter(|| {
            // A new source address and port every packet: always a miss, a Maglev pick and an
            // insert (evicting the oldest once the table is full).
            flow = flow.wrapping_add(1);
            bytes[26..28].copy_from_slice(&((flow >> 16) as u16).to_be_bytes());
            bytes[34..36].copy_from_slice(&(flow as u16).to_be_bytes());
            umem.write(&mut frame, &bytes).unwrap();
            let mut packet = Packet::new(&umem, &mut frame, 0);
            black_box(lb.process(&mut packet))
        })
    });
}

/// A function that passes every packet on: what a chain costs per function, apart from the
/// function's own work.
struct PassThrough;

impl NetworkFunction for PassThrough {
    fn name(&self) -> &'static str {
        "pass"
    }

    fn process(&mut self, packet: &mut Packet<'_>) -> Verdict {
        black_box(packet.len());
        Verdict::Next
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The chain as a worker runs it: a batch of 64 packets (connection hits) through
/// `Chain::run`, with its per-function stats; criterion reports the time per packet.
fn chain(c: &mut Criterion) {
    const BATCH: usize = 64;
    let (umem, mut pool) = Umem::new(UmemConfig::default()).unwrap();
    let mut frames: Vec<_> = (0..BATCH).map(|_| pool.take().unwrap()).collect();
    let bytes: Vec<Vec<u8>> = (0..BATCH).map(|i| tcp_ack(40_000 + i as u16)).collect();
    let nat = Arc::new(NatTable::new(NatTimeouts::default()));
    let lb = || Box::new(LoadBalancer::new(tables(100), 1 << 20, nat.clone()));
    let chains: [(&str, Vec<Box<dyn NetworkFunction>>); 2] = [
        ("lb", vec![lb()]),
        ("pass,lb", vec![Box::new(PassThrough), lb()]),
    ];
    let mut group = c.benchmark_group("chain");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    for (name, functions) in chains {
        let mut chain = Chain::new(functions);
        let mut verdicts = vec![Verdict::Next; BATCH];
        // As a worker does: the packet list's memory is kept from batch to batch.
        let mut list = PacketList::default();
        group.bench_function(format!("{name}/batch-64"), |b| {
            b.iter(|| {
                for (frame, bytes) in frames.iter_mut().zip(&bytes) {
                    umem.write(frame, bytes).unwrap();
                }
                let mut packets = list.fill(&umem, &mut frames, 0);
                verdicts.fill(Verdict::Next);
                chain.run(&mut packets, &mut verdicts);
                list.keep(packets);
                assert!(
                    verdicts
                        .iter()
                        .all(|v| matches!(v, Verdict::Transmit { .. })),
                    "every packet is for the VIP, so the LB sends each one"
                );
            })
        });
    }
    group.finish();
}

fn maglev_rebuild(c: &mut Criterion) {
    for backends in [10usize, 100, 1000] {
        let names: Vec<Vec<u8>> = (0..backends)
            .map(|i| format!("10.0.{}.{}:80", i / 250, i % 250).into_bytes())
            .collect();
        let entries: Vec<MaglevEntry<'_>> = names
            .iter()
            .map(|identity| MaglevEntry {
                identity,
                weight: 1,
            })
            .collect();
        c.bench_function(&format!("maglev/rebuild-65537/{backends}-backends"), |b| {
            b.iter(|| black_box(MaglevTable::build(&entries, DEFAULT_SIZE)))
        });
    }
}

criterion_group!(benches, per_packet, chain, maglev_rebuild);
criterion_main!(benches);
