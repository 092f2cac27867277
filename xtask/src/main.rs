//! `cargo xtask <setup|test|demo|bench|fuzz>`. Every command runs `setup` first, which installs
//! only what is missing, so a fresh machine needs nothing but rustup and root.

mod fuzz;
mod setup;

use std::{process::Command, time::Instant};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

  setup   install what building fastpath needs: rust-src, Debian packages, bpf-linker
  test    fmt check, clippy -D warnings (workspace and fuzz crate), unit, BPF fixture and lab
          integration tests (root), then every fuzz target for FUZZ_SECONDS (default 10) each
  demo    the main job: the L4 load balancer on AF_XDP serving real HTTP clients in the lab
  bench   time the steering program with BPF_PROG_TEST_RUN against a bare XDP_PASS
  bench-xsk  AF_XDP rxdrop/txpush/l2fwd: afxdp vs xsk-rs vs the in-kernel bound (root)
  bench-lb   the load balancer's Mpps vs `fastpath xsk l2fwd` on the lab (root)
  bench-chain  ns per hop of the IO module chain (entry + 1/2/4/8 pass-through modules)
          against the same parse in one program, with BPF_PROG_TEST_RUN (root)
  soak    [--packets N] [--rate PPS]: N frames (default 10^8) through `fastpath lb` on the
          lab, every frame accounted for, the appliance's memory before and after (root)
  fuzz [--seconds N] [TARGET...]
          run each fuzz target in fuzz/ for N seconds (default 60); installs cargo-fuzz;
          with no target named, then the firewall's nftables differential with N × 10,000
          packets (root)";

fn main() {
    let command = std::env::args().nth(1).unwrap_or_default();
    let started = Instant::now();
    let result = match command.as_str() {
        "setup" => setup::run(),
        "test" => setup::run().and_then(|()| test()),
        "demo" => setup::run().and_then(|()| demo()),
        "bench" => setup::run().and_then(|()| bench()),
        "bench-xsk" => setup::run().and_then(|()| bench_xsk()),
        "bench-lb" => setup::run().and_then(|()| bench_lb()),
        "bench-chain" => setup::run().and_then(|()| bench_chain()),
        "soak" => setup::run().and_then(|()| soak(&std::env::args().skip(2).collect::<Vec<_>>())),
        "fuzz" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            fuzz::Options::parse(&args).and_then(|options| {
                setup::run()?;
                fuzz::run(&options)?;
                if options.targets.is_empty() {
                    fuzz::nft_differential(options.seconds)?;
                }
                Ok(())
            })
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match result {
        Ok(()) => eprintln!("xtask {command}: done in {:.0?}", started.elapsed()),
        Err(error) => {
            eprintln!("xtask {command} failed: {error:#}");
            std::process::exit(1);
        }
    }
}

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let step = Instant::now();
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("could not start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    eprintln!("  ({:.1?})", step.elapsed());
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} needs root (BPF, netlink, network namespaces): run it as root, e.g. `sudo -E cargo xtask {what}`"
        );
    }
    Ok(())
}

fn test() -> Result<()> {
    require_root("test")?;
    // The tests run real tools: curl as a client, `ip netns exec` as users run fastpath.
    setup::install_debian_packages(&["curl", "iproute2"])?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    // The crates that are workspaces of their own: the kernel programs, the module SDK, fuzz.
    for manifest in [
        "offload/ebpf/Cargo.toml",
        "sdk/rust/Cargo.toml",
        "fuzz/Cargo.toml",
    ] {
        run(
            "cargo",
            &["fmt", "--manifest-path", manifest, "--", "--check"],
        )?;
    }
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The fuzz crate is a workspace of its own; checked into the main target dir, it reuses
    // the dependencies checked above.
    run(
        "cargo",
        &[
            "clippy",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--all-targets",
            "--target-dir",
            "target",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Tests that need root are `#[ignore]`d so a plain `cargo test` never counts them as
    // passed; this run is as root and includes them.
    run("cargo", &["test", "--workspace", "--", "--include-ignored"])?;
    // The soak, short: 10^6 frames through a debug build, paced for it (a few seconds).
    soak_with(
        Profile::Debug,
        &["--packets", "1000000", "--rate", "200000"],
    )?;
    // A short run of every fuzz target: enough to catch a parser that now panics on its
    // seeds or on what a few seconds of mutation find; `cargo xtask fuzz` runs longer.
    let seconds = match std::env::var("FUZZ_SECONDS") {
        Ok(value) => value
            .parse()
            .ok()
            .filter(|&seconds: &u64| seconds > 0)
            .with_context(|| format!("FUZZ_SECONDS={value:?}: expected whole seconds > 0"))?,
        Err(_) => fuzz::CI_SECONDS,
    };
    fuzz::run(&fuzz::Options {
        seconds,
        targets: Vec::new(),
    })
}

#[derive(Clone, Copy)]
enum Profile {
    Debug,
    Release,
}

/// `cargo xtask soak [--packets N] [--rate PPS]`: the release build, 10^8 frames by default.
fn soak(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    soak_with(Profile::Release, &args)
}

fn soak_with(profile: Profile, args: &[&str]) -> Result<()> {
    require_root("soak")?;
    let (flag, dir): (&[&str], &str) = match profile {
        Profile::Debug => (&[], "target/debug"),
        Profile::Release => (&["--release"], "target/release"),
    };
    let mut build = vec!["build"];
    build.extend_from_slice(flag);
    build.extend(["--package", "fastpath", "--bin", "fastpath"]);
    build.extend(["--package", "bench", "--bin", "lb-soak"]);
    run("cargo", &build)?;
    let fastpath = format!("{dir}/fastpath");
    let mut soak_args = vec![fastpath.as_str()];
    soak_args.extend_from_slice(args);
    run(&format!("{dir}/lb-soak"), &soak_args)
}

fn demo() -> Result<()> {
    require_root("demo")?;
    run(
        "cargo",
        &["run", "--quiet", "--package", "fastpath", "--", "demo"],
    )
}

fn bench() -> Result<()> {
    require_root("bench")?;
    run(
        "cargo",
        &[
            "run",
            "--quiet",
            "--release",
            "--package",
            "bench",
            "--bin",
            "steer-bench",
        ],
    )
}

/// Builds `fastpath` and the xsk-rs peer (which needs libxdp's build dependencies), then runs
/// the side-by-side AF_XDP benchmark on the lab.
fn bench_xsk() -> Result<()> {
    require_root("bench-xsk")?;
    setup::install_debian_packages(&["clang", "m4", "libelf-dev", "libpcap-dev"])?;
    build_fastpath_and_bench()?;
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--manifest-path",
            "bench/xsk-peer/Cargo.toml",
            "--target-dir",
            "target/xsk-peer",
        ],
    )?;
    let seconds = std::env::var("XSK_BENCH_SECONDS").unwrap_or_else(|_| "5".into());
    run(
        "target/release/xsk-bench",
        &[
            "target/release/fastpath",
            "target/xsk-peer/release/xsk-peer",
            &seconds,
        ],
    )
}

/// Builds `fastpath` and runs the load balancer next to `xsk l2fwd` on the segment lab.
fn bench_lb() -> Result<()> {
    require_root("bench-lb")?;
    build_fastpath_and_bench()?;
    let seconds = std::env::var("LB_BENCH_SECONDS").unwrap_or_else(|_| "5".into());
    run(
        "target/release/lb-bench",
        &["target/release/fastpath", &seconds],
    )
}

/// Builds and runs the module chain's hop benchmark (it makes and removes its own lab).
fn bench_chain() -> Result<()> {
    require_root("bench-chain")?;
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "bench",
            "--bin",
            "chain-bench",
        ],
    )?;
    run("target/release/chain-bench", &[])
}

fn build_fastpath_and_bench() -> Result<()> {
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "fastpath",
            "--package",
            "bench",
        ],
    )
}
