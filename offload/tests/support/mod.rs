#![allow(dead_code)]
pub mod lab_fixture;
pub mod packet;

/// True when the test can run. Without root it fails under CI=true, and otherwise says
/// loudly that it skipped.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root (BPF, netlink); CI=true forbids skipping it");
    }
    eprintln!("SKIPPED {test}: needs root (run `cargo xtask test`, which runs as root)");
    false
}
