//! criterion: the steering program's rule match per packet, in the kernel, with 1, 100 and
//! 10,000 rules on each lookup path, next to a bare XDP_PASS program on the same packet.
//! `BPF_PROG_TEST_RUN` runs the program `iters` times and reports the mean time per run,
//! which is what criterion is given (`iter_custom`), so the syscall is not in the figure.
//! Needs root: `sudo cargo bench -p bench --bench steer_match`.

use std::time::Duration;

use bench::steer_fixture::{PATHS, prepare};
use criterion::{Criterion, criterion_group, criterion_main};
use offload::test_run::TestBench;

/// The kernel's `repeat` is a u32; criterion asks for at most this many runs per call.
fn timed(bench: &TestBench, program: &str, packet: &[u8], iters: u64) -> Duration {
    let repeat = iters.clamp(1, u64::from(u32::MAX)) as u32;
    let per_run = bench
        .time(program, packet, repeat)
        .expect("BPF_PROG_TEST_RUN");
    per_run * repeat
}

fn steering(c: &mut Criterion) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("steer_match: BPF_PROG_TEST_RUN needs root; nothing measured");
        return;
    }
    let mut group = c.benchmark_group("steer");
    for count in [1usize, 100, 10_000] {
        for path in PATHS {
            let (bench, packet) = prepare(count, path).expect("load the steering program");
            group.bench_function(format!("{path} ({count} rules)"), |b| {
                b.iter_custom(|iters| timed(&bench, "steer", &packet, iters))
            });
            if count == 1 && path == "exact" {
                group.bench_function("bare XDP_PASS", |b| {
                    b.iter_custom(|iters| timed(&bench, "bare_pass", &packet, iters))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, steering);
criterion_main!(benches);
