//! `cargo xtask fuzz [--seconds N] [TARGET...]`: builds the libFuzzer targets in `fuzz/` with
//! cargo-fuzz and runs each for N seconds, one after the other, printing its runs, time and
//! whether it crashed. Fails naming the artifact of every crash.
//!
//! cargo-fuzz is installed from crates.io when missing. It wants a nightly compiler (for
//! `-Zsanitizer=address` and the coverage flags): rustup's nightly when installed, else the
//! stable compiler with `RUSTC_BOOTSTRAP=1`, with AddressSanitizer if that builds and
//! without (`--sanitizer none`) otherwise; the fallback is said.
//!
//! New inputs go to `fuzz/target/corpus/<target>` (kept between runs, not committed); the
//! seeds in `fuzz/corpus/<target>` are only read, and `fuzz/dict/<target>.dict`, when there is
//! one, gives the mutator the target's keywords.
//!
//! With no target named, the firewall's differential against nftables then runs longer
//! than the test suite's 100,000 packets ([`nft_differential`]; root only).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::setup::output;

pub const DEFAULT_SECONDS: u64 = 60;
/// What `cargo xtask test` gives each target.
pub const CI_SECONDS: u64 = 10;
/// An input taking longer than this is a hang: libFuzzer reports it as a crash (timeout-*).
const INPUT_TIMEOUT_SECONDS: u64 = 10;

pub struct Options {
    pub seconds: u64,
    /// Empty: every target.
    pub targets: Vec<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            seconds: DEFAULT_SECONDS,
            targets: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--seconds" {
                let value = args.next().context("--seconds needs a number")?;
                options.seconds = value
                    .parse()
                    .ok()
                    .filter(|&seconds| seconds > 0)
                    .with_context(|| format!("--seconds {value:?}: expected whole seconds > 0"))?;
            } else if arg.starts_with('-') {
                bail!("unknown fuzz option {arg:?}: expected --seconds N and target names");
            } else {
                options.targets.push(arg.clone());
            }
        }
        Ok(options)
    }
}

/// How cargo-fuzz is invoked: which toolchain, environment and sanitizer.
#[derive(Clone, Copy)]
struct Fuzzer {
    /// `+nightly`, or nothing for the default (stable) toolchain.
    toolchain: Option<&'static str>,
    bootstrap: bool,
    sanitizer: &'static str,
}

impl Fuzzer {
    fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new("cargo");
        command.current_dir(crate::workspace_root());
        if let Some(toolchain) = self.toolchain {
            command.arg(toolchain);
        }
        command.arg("fuzz").args(args);
        if self.bootstrap {
            command.env("RUSTC_BOOTSTRAP", "1");
        }
        command
    }

    fn build(&self) -> Result<bool> {
        let started = Instant::now();
        let target_dir = target_dir();
        let mut args = vec!["build", "--sanitizer", self.sanitizer];
        if let Some(dir) = &target_dir {
            args.extend(["--target-dir", dir]);
        }
        eprintln!("+ {}", self.describe(&args));
        let status = self
            .cargo(&args)
            .status()
            .context("could not start cargo fuzz")?;
        eprintln!("  ({:.1?})", started.elapsed());
        Ok(status.success())
    }

    fn describe(&self, args: &[&str]) -> String {
        format!(
            "{}cargo {}fuzz {}",
            if self.bootstrap {
                "RUSTC_BOOTSTRAP=1 "
            } else {
                ""
            },
            self.toolchain.map(|t| format!("{t} ")).unwrap_or_default(),
            args.join(" ")
        )
    }
}

pub fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    install_cargo_fuzz()?;
    let fuzzer = build(&choose_toolchain()?)?;
    let targets = targets(&fuzzer, &options.targets)?;
    let mut problems = Vec::new();
    let mut results = Vec::new();
    for target in &targets {
        let result = run_target(&fuzzer, target, options.seconds)?;
        eprintln!("fuzz {target}: {}", result.summary());
        if let Some(artifact) = &result.crash {
            let artifact = artifact.to_string_lossy();
            let mut args = vec!["run", "--sanitizer", fuzzer.sanitizer];
            let target_dir = target_dir();
            if let Some(dir) = &target_dir {
                args.extend(["--target-dir", dir]);
            }
            args.extend([target.as_str(), &artifact]);
            problems.push(format!(
                "{target} crashed on {artifact} (reproduce: {})",
                fuzzer.describe(&args)
            ));
        } else if result.failed {
            problems.push(format!("{target} did not run (its output is above)"));
        }
        results.push((target, result));
    }
    eprintln!(
        "\nfuzz: {} target(s), {:.0?} in all",
        targets.len(),
        started.elapsed()
    );
    for (target, result) in &results {
        eprintln!("  {target:<16} {}", result.summary());
    }
    if !problems.is_empty() {
        bail!(
            "{} fuzz target(s) failed:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Packets of the nftables differential per second of `--seconds`.
const NFT_PACKETS_PER_SECOND: u64 = 10_000;

/// The firewall's differentials against nftables (`firewall/tests/kernel_agrees.rs`, root
/// lab tests, both named `nftables_...`): random policies with random packets (nft's
/// counters against the firewall's reference) and with random TCP conversations (nft's
/// against the module's), each with `seconds × 10,000` packets (at least the suite's
/// 100,000). Skipped, and said, without root.
pub fn nft_differential(seconds: u64) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("fuzz nft-differential: skipped (needs root: BPF, netlink, namespaces)");
        return Ok(());
    }
    let packets = (seconds * NFT_PACKETS_PER_SECOND).max(100_000);
    eprintln!("fuzz nft-differential: {packets} packets against nftables");
    let status = Command::new("cargo")
        .args([
            "test",
            "-p",
            "firewall",
            "--test",
            "kernel_agrees",
            "nftables_",
            "--",
            "--include-ignored",
        ])
        .env("FASTPATH_NFT_PACKETS", packets.to_string())
        .status()
        .context("could not start cargo test")?;
    if !status.success() {
        bail!("the nftables differential failed ({packets} packets): its output is above");
    }
    Ok(())
}

/// `FUZZ_TARGET_DIR`: where the instrumented build goes instead of `fuzz/target`. A
/// directory outside the clone keeps that build (minutes from cold) across fresh clones.
fn target_dir() -> Option<String> {
    std::env::var("FUZZ_TARGET_DIR")
        .ok()
        .filter(|dir| !dir.is_empty())
}

fn install_cargo_fuzz() -> Result<()> {
    if output("cargo", &["fuzz", "--version"]).is_ok() {
        eprintln!("fuzz: cargo-fuzz already present");
        return Ok(());
    }
    let started = Instant::now();
    eprintln!("fuzz: installing cargo-fuzz from crates.io (about a minute on two cores)...");
    crate::run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    eprintln!("fuzz: installed cargo-fuzz in {:.1?}", started.elapsed());
    Ok(())
}

/// Nightly when rustup has it (with rust-src: the eBPF programs of `offload`, a dependency,
/// are built by whichever toolchain builds the workspace); else stable with
/// `RUSTC_BOOTSTRAP=1`, first with AddressSanitizer.
fn choose_toolchain() -> Result<Fuzzer> {
    let toolchains = output("rustup", &["toolchain", "list"])?;
    if has_nightly(&toolchains) {
        let installed = output(
            "rustup",
            &["component", "list", "--installed", "--toolchain", "nightly"],
        )?;
        if !installed.lines().any(|line| line.starts_with("rust-src")) {
            eprintln!("fuzz: adding rust-src to nightly (the eBPF build of `offload` needs it)");
            crate::run(
                "rustup",
                &["component", "add", "rust-src", "--toolchain", "nightly"],
            )?;
        }
        eprintln!("fuzz: using rustup's nightly toolchain with AddressSanitizer");
        return Ok(Fuzzer {
            toolchain: Some("+nightly"),
            bootstrap: false,
            sanitizer: "address",
        });
    }
    eprintln!(
        "fuzz: no nightly toolchain (`rustup toolchain install nightly` adds one); falling back \
         to the default toolchain with RUSTC_BOOTSTRAP=1"
    );
    Ok(Fuzzer {
        toolchain: None,
        bootstrap: true,
        sanitizer: "address",
    })
}

fn has_nightly(toolchain_list: &str) -> bool {
    toolchain_list
        .lines()
        .any(|line| line.starts_with("nightly-") || line.starts_with("nightly "))
}

/// Builds every target. A nightly that fails to build falls back to stable with
/// `RUSTC_BOOTSTRAP=1`; on stable, a failed AddressSanitizer build retries without it.
/// Each fallback is said.
fn build(fuzzer: &Fuzzer) -> Result<Fuzzer> {
    if fuzzer.build()? {
        return Ok(*fuzzer);
    }
    if !fuzzer.bootstrap {
        eprintln!(
            "fuzz: the build with rustup's nightly failed (see above); falling back to the \
             default toolchain with RUSTC_BOOTSTRAP=1"
        );
        return build(&Fuzzer {
            toolchain: None,
            bootstrap: true,
            sanitizer: "address",
        });
    }
    eprintln!(
        "fuzz: the AddressSanitizer build failed on the stable toolchain; retrying with \
         --sanitizer none (panics and aborts are still caught, memory errors in unsafe code \
         are not)"
    );
    let plain = Fuzzer {
        sanitizer: "none",
        ..*fuzzer
    };
    if !plain.build()? {
        bail!("building the fuzz targets failed (see above)");
    }
    Ok(plain)
}

fn targets(fuzzer: &Fuzzer, wanted: &[String]) -> Result<Vec<String>> {
    let listed = fuzzer
        .cargo(&["list"])
        .output()
        .context("could not run cargo fuzz list")?;
    if !listed.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Some(unknown) = wanted.iter().find(|target| !all.contains(target)) {
        bail!("no fuzz target {unknown:?}; there are: {}", all.join(", "));
    }
    Ok(if wanted.is_empty() {
        all
    } else {
        wanted.to_vec()
    })
}

struct TargetResult {
    runs: Option<u64>,
    elapsed: Duration,
    /// The input that crashed it, as libFuzzer wrote it.
    crash: Option<PathBuf>,
    /// libFuzzer stopped without writing an input (a bad flag or dictionary, say).
    failed: bool,
}

impl TargetResult {
    fn summary(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let runs = match self.runs {
            Some(runs) => format!(
                "{} runs in {seconds:.1} s ({}/s)",
                thousands(runs),
                thousands((runs as f64 / seconds.max(0.001)) as u64)
            ),
            None => format!("? runs in {seconds:.1} s"),
        };
        match (&self.crash, self.failed) {
            (Some(artifact), _) => format!("{runs}, CRASH: {}", artifact.display()),
            (None, true) => format!("{runs}, FAILED to run"),
            (None, false) => format!("{runs}, no crash"),
        }
    }
}

fn run_target(fuzzer: &Fuzzer, target: &str, seconds: u64) -> Result<TargetResult> {
    let root = crate::workspace_root();
    let scratch = root.join("fuzz/target/corpus").join(target);
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let seeds = root.join("fuzz/corpus").join(target);
    let dictionary = root.join("fuzz/dict").join(format!("{target}.dict"));
    let scratch = scratch.to_string_lossy().into_owned();
    let max_time = format!("-max_total_time={seconds}");
    let timeout = format!("-timeout={INPUT_TIMEOUT_SECONDS}");
    let dict = format!("-dict={}", dictionary.display());
    let seeds_text = seeds.to_string_lossy().into_owned();
    let target_dir = target_dir();
    let mut args = vec!["run", "--sanitizer", fuzzer.sanitizer];
    if let Some(dir) = &target_dir {
        args.extend(["--target-dir", dir]);
    }
    args.extend([target, &scratch]);
    if seeds.is_dir() {
        args.push(&seeds_text);
    }
    args.extend(["--", &max_time, &timeout, "-print_final_stats=1"]);
    if dictionary.is_file() {
        args.push(&dict);
    }
    eprintln!("+ {}", fuzzer.describe(&args));
    let started = Instant::now();
    let output = fuzzer
        .cargo(&args)
        .output()
        .context("could not start cargo fuzz run")?;
    let elapsed = started.elapsed();
    // libFuzzer reports on stderr; cargo-fuzz adds its own lines there too.
    let log = String::from_utf8_lossy(&output.stderr);
    let crash = artifact(&log).map(|path| root.join("fuzz").join(path));
    let failed = !output.status.success() && crash.is_none();
    if crash.is_some() || failed {
        eprintln!("{}", report(&log));
    }
    Ok(TargetResult {
        runs: executed_units(&log),
        elapsed,
        crash,
        failed,
    })
}

/// "Test unit written to ./artifacts/x/crash-…" (relative to `fuzz/`, where cargo-fuzz runs
/// libFuzzer) or an absolute path.
fn artifact(log: &str) -> Option<PathBuf> {
    log.lines()
        .find_map(|line| line.split("Test unit written to ").nth(1))
        .map(|path| PathBuf::from(path.trim()))
}

/// "stat::number_of_executed_units: 123" (-print_final_stats=1), else "Done 123 runs".
fn executed_units(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .or_else(|| {
            log.lines()
                .find_map(|line| line.strip_prefix("Done ")?.split(" runs").next())
        })
        .and_then(|number| number.trim().parse().ok())
}

/// What to show of a failed run: from the panic or sanitizer report on (the stack trace,
/// then cargo-fuzz's failing input and how to reproduce it), else the last lines.
fn report(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.contains(" panicked at ") || line.contains("==ERROR:"))
        .unwrap_or(lines.len().saturating_sub(40));
    lines[start..lines.len().min(start + 120)].join("\n")
}

fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_seconds_and_targets() {
        let args = |text: &str| {
            text.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let options = Options::parse(&args("--seconds 5 lb_packet flow_hash")).unwrap();
        assert_eq!(options.seconds, 5);
        assert_eq!(options.targets, ["lb_packet", "flow_hash"]);
        assert_eq!(Options::parse(&[]).unwrap().seconds, DEFAULT_SECONDS);
        assert!(Options::parse(&args("--seconds 0")).is_err());
        assert!(Options::parse(&args("--seconds")).is_err());
        assert!(Options::parse(&args("--jobs 2")).is_err());
    }

    #[test]
    fn libfuzzer_output_gives_runs_and_the_crashing_input() {
        let done = "#1560068\tDONE   cov: 51 ft: 51\nDone 1560068 runs in 11 second(s)\n\
                    stat::number_of_executed_units: 1560068\nstat::average_exec_per_sec: 141824\n";
        assert_eq!(executed_units(done), Some(1_560_068));
        assert_eq!(executed_units("Done 42 runs in 1 second(s)\n"), Some(42));
        assert_eq!(artifact(done), None);
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/w/fuzz/artifacts/lb_packet/'; Test unit written to \
                     /w/fuzz/artifacts/lb_packet/crash-da39a3ee\nBase64: AA==\n";
        assert_eq!(
            artifact(crash),
            Some(PathBuf::from("/w/fuzz/artifacts/lb_packet/crash-da39a3ee"))
        );
        let panic = "INFO: Seed: 1\nthread '<unnamed>' panicked at src/x.rs:1:1:\nboom\n";
        assert!(report(panic).starts_with("thread '<unnamed>' panicked at"));
    }

    #[test]
    fn nightly_is_found_in_rustup_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(!has_nightly("stable-x86_64-unknown-linux-gnu (default)\n"));
        assert_eq!(thousands(1_560_068), "1,560,068");
        assert_eq!(thousands(999), "999");
    }
}
