//! Running the `fastpath` binary from the CLI tests, as users run it.
#![allow(dead_code)] // each test file uses its own part

use std::process::{Command, Output};

/// Runs `fastpath ARGS` and returns what it did.
pub fn fastpath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(args)
        .output()
        .expect("run fastpath")
}

/// Runs `fastpath --json ARGS`, requires success and returns the JSON it printed.
pub fn json(args: &[&str]) -> serde_json::Value {
    let output = fastpath(&[&["--json"], args].concat());
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// The error a failing command prints.
pub fn failure(args: &[&str]) -> String {
    let output = fastpath(args);
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Builds the C module `source` into `object` as a user would: `clang -O2 -g -target bpf`
/// against the SDK's `module.h` (`cargo xtask setup` installs clang).
pub fn clang(source: &std::path::Path, object: &std::path::Path) {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/c");
    let output = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-I"])
        .arg(&sdk)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .output()
        .expect("run clang (`cargo xtask setup` installs it)");
    assert!(
        output.status.success(),
        "clang {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
