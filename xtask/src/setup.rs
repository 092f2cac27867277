//! `cargo xtask setup`: idempotent. Each step checks first and only installs what is missing,
//! saying what it does and how long it took.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// libbpf-sys builds libbpf from source (the hw-offload path) and needs the first three;
/// clang builds C IO modules (`fastpath module new --lang c`) and the module tests' ones;
/// nftables is the firewall's oracle (`firewall/tests/kernel_agrees.rs`); chromium loads
/// `fastpath serve`'s tunnel graph headless, python3-prometheus-client parses its
/// `/metrics`, and iperf3 sends real TCP across the VXLAN lab (`cli/tests/trace_web.rs`).
const DEBIAN_PACKAGES: &[&str] = &[
    "libelf-dev",
    "zlib1g-dev",
    "pkg-config",
    "clang",
    "iputils-ping",
    "nftables",
    "chromium",
    "python3-prometheus-client",
    "iperf3",
];
/// The bpf-linker release whose llvm-21/22/23 features match the toolchains we support.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<()> {
    let started = Instant::now();
    step("rust-src component", rust_src)?;
    step("Debian packages", debian_packages)?;
    step("bpf-linker", bpf_linker)?;
    eprintln!("setup: everything in place ({:.1?})", started.elapsed());
    Ok(())
}

fn step(name: &str, work: fn() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    let installed = work().with_context(|| format!("setup step `{name}`"))?;
    if installed {
        eprintln!("setup: installed {name} in {:.1?}", started.elapsed());
    } else {
        eprintln!("setup: {name} already present");
    }
    Ok(())
}

/// Runs a command and returns its standard output; a failure carries its standard error.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("could not run {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn rust_src() -> Result<bool> {
    let installed = output("rustup", &["component", "list", "--installed"])?;
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(false);
    }
    eprintln!("setup: adding the rust-src component (core is rebuilt for the BPF target)...");
    crate::run("rustup", &["component", "add", "rust-src"])?;
    Ok(true)
}

fn debian_packages() -> Result<bool> {
    install_debian_packages(DEBIAN_PACKAGES)
}

/// Installs whichever of `packages` are missing; returns whether it installed any.
pub fn install_debian_packages(packages: &[&str]) -> Result<bool> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !output("dpkg-query", &["-W", "-f=${Status}", package])
                .is_ok_and(|status| status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    eprintln!(
        "setup: installing Debian packages {} (about a minute)...",
        missing.join(" ")
    );
    crate::run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    crate::run("apt-get", &args)?;
    Ok(true)
}

fn bpf_linker() -> Result<bool> {
    let major = llvm_major()?;
    if let Ok(version) = output("bpf-linker", &["--version"])
        && version.contains(BPF_LINKER_VERSION)
    {
        return Ok(false);
    }
    let prefix = llvm_prefix(major)?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM {major} (about a minute)..."
    );
    let feature = format!("llvm-{major}");
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ])
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("could not start cargo install")?;
    if !status.success() {
        bail!(
            "cargo install bpf-linker failed ({status}); LLVM_PREFIX was {}",
            prefix.display()
        );
    }
    output("bpf-linker", &["--version"])
        .context("bpf-linker installed but does not run (is ~/.cargo/bin on PATH?)")?;
    Ok(true)
}

/// The LLVM major of the Rust toolchain, from `rustc -vV` ("LLVM version: 22.1.2").
fn llvm_major() -> Result<u32> {
    let version = output("rustc", &["-vV"])?;
    parse_llvm_major(&version).context("`rustc -vV` printed no LLVM version")
}

fn parse_llvm_major(rustc_version: &str) -> Option<u32> {
    rustc_version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.trim().parse().ok())
}

/// A folder whose `lib/` holds `libLLVM.so` and the toolchain's `libLLVM.so.<ver>-rust-...`,
/// both linked to the file rustup ships, for bpf-linker's build to link against.
fn llvm_prefix(major: u32) -> Result<PathBuf> {
    let sysroot = PathBuf::from(output("rustc", &["--print", "sysroot"])?.trim());
    let library = fs::read_dir(sysroot.join("lib"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so.") && name.contains("-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}/lib", sysroot.display()))?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let prefix = Path::new(&home)
        .join(".local/share/fastpath")
        .join(format!("llvm-{major}"));
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    for name in [
        "libLLVM.so".to_string(),
        library.file_name().unwrap().to_string_lossy().into_owned(),
    ] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link)?;
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_comes_from_rustc_version_output() {
        let text = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nLLVM version: 22.1.2\n";
        assert_eq!(parse_llvm_major(text), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.95.0\n"), None);
    }
}
