//! Link flags for bpf-linker, which does the BPF code generation.
//!
//! The steering builds get `+allows-misaligned-mem-access` (LLVM 22): a `read_unaligned`
//! of a header becomes a few word loads instead of one load per byte (2-3 ns of a 20-25 ns
//! classification, docs/performance.md). Packet data has no alignment guarantee; the
//! verifier accepts misaligned packet loads on architectures with efficient unaligned
//! access (x86-64, arm64). It never accepts a misaligned stack access, which LLVM then
//! emits for some packed structs on the stack: the other programs (the firewall's flow key,
//! for one) are built without the feature.
fn main() {
    for bin in ["steer", "steer_module", "steer_module_frags"] {
        println!("cargo:rustc-link-arg-bin={bin}=--cpu-features=+allows-misaligned-mem-access");
    }
}
