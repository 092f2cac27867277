//! Builds the kernel-side programs in `ebpf/` for the BPF target with aya-build, so that a
//! plain `cargo build` builds everything.
//!
//! Two objects come out, one per bin target of `offload-ebpf`: `steer` (the steering and
//! prefilter programs, loaded by this crate) and `trafficgen` (the generator's program,
//! loaded only by the `trafficgen` crate). The folder holding them is handed to dependents'
//! build scripts as `DEP_FASTPATH_EBPF_OBJECTS` (see `links` in Cargo.toml).
//!
//! The programs are compiled by the same toolchain as the rest of the workspace (stable), with
//! `RUSTC_BOOTSTRAP=1` for `-Z build-std=core`: one compiler for both halves, no nightly drift.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("ebpf");
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("common/src").display()
    );
    // The generator stamp's layout comes from wire, through offload-common.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wire/src").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    if let Err(problem) = check_tools() {
        panic!(
            "\n\nfastpath: cannot build the eBPF programs: {problem}.\nRun `cargo xtask setup` to install what is missing.\n\n"
        );
    }

    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_string());
    let nightly = toolchain.starts_with("nightly");
    if !nightly {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    // aya-build runs `cargo build` in the current directory; the eBPF crate is a workspace
    // of its own, so run it there.
    env::set_current_dir(&ebpf_dir).expect("offload/ebpf exists");
    let package = aya_build::Package {
        name: "offload-ebpf",
        root_dir: ebpf_dir.to_str().expect("UTF-8 path"),
        ..Default::default()
    };
    if let Err(error) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain)) {
        panic!("\n\nfastpath: building the eBPF programs failed: {error:#}\n\n");
    }
    let out_dir = env::var("OUT_DIR").expect("set by cargo");
    println!("cargo:objects={out_dir}");
}

/// bpf-linker on PATH and the rust-src component, the two things `cargo xtask setup` adds.
fn check_tools() -> Result<(), String> {
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !matches!(linker, Ok(ref output) if output.status.success()) {
        return Err("bpf-linker is not installed (or not on PATH)".to_string());
    }
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|error| format!("cannot run rustc: {error}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let core_src = PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core");
    if !core_src.exists() {
        return Err("the rust-src component is missing (needed to build `core` for BPF)".into());
    }
    Ok(())
}
