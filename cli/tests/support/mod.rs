//! Running the `fastpath` binary from the CLI tests, as users run it.
#![allow(dead_code)] // each test file uses its own part

pub mod netns;
pub mod serve;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

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

/// Builds the C module `source` into `object` with clang against the SDK's header.
pub fn clang(source: &Path, object: &Path) {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/c");
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

/// A C module that drops UDP to port 9, lets everything else continue.
pub const DROPPER: &str = r#"
#include "module.h"
FASTPATH_MODULE("dropper", "1.0.0", 1);
SEC("xdp.frags")
int dropper(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	if (fp->parse == FP_PARSE_IP && fp->protocol == 17 && fp->has_ports && fp->dst_port == 9)
		return fp_drop(fp);
	return fp_continue(ctx, fp);
}
"#;

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder of this test process, named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fastpath-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` as `<name>.c` and builds `<name>.o` with clang; the object's path.
    pub fn module(&self, name: &str, text: &str) -> String {
        let source = self.0.join(format!("{name}.c"));
        std::fs::write(&source, text).unwrap();
        let object = self.0.join(format!("{name}.o"));
        clang(&source, &object);
        object.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/sys/fs/bpf/fastpath` as fastpath run in network namespace `ns` uses it: every
/// namespace but the host's has a folder of its own there (`netns/<cookie>/`).
pub fn pins_root(ns: &str) -> PathBuf {
    lab::Lab::run_in(ns, || offload::bpffs::Bpffs::get().fastpath_dir())
        .expect("enter the namespace")
}

/// `/run/fastpath` as fastpath run in network namespace `ns` uses it.
pub fn run_root(ns: &str) -> PathBuf {
    lab::Lab::run_in(ns, offload::netns::run_dir).expect("enter the namespace")
}
