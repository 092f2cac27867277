//! Module objects as `fastpath module load` reads them, before anything reaches the kernel:
//! the ELF check, the `.fastpath.module` metadata, aya's parse of programs and maps, and
//! the frags and program-type checks. Malformed input is an error, never a panic; what is
//! accepted names one XDP program and the ABI version this build speaks. (aya-obj's own
//! panics on malformed BTF are caught by `ModuleObject::parse` and become errors.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use offload::modules::{ABI_VERSION, ModuleObject};

fuzz_target!(|data: &[u8]| {
    if let Ok(module) = ModuleObject::parse(std::path::Path::new("fuzz.o"), data.to_vec()) {
        assert!(!module.name.is_empty());
        assert!(!module.program.is_empty());
        assert_eq!(ABI_VERSION, 1);
    }
});
