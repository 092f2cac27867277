//! Points `include_bytes!` at the generator's eBPF object, which offload's build script
//! builds beside the steering object and announces through its `links` metadata.

fn main() {
    let objects = std::env::var("DEP_FASTPATH_EBPF_OBJECTS")
        .expect("offload's build script names the folder of the eBPF objects");
    println!("cargo:rustc-env=TRAFFICGEN_OBJECT={objects}/trafficgen");
    println!("cargo:rerun-if-env-changed=DEP_FASTPATH_EBPF_OBJECTS");
}
