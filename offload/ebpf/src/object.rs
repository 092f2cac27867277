//! What every object built from this crate carries: the license the kernel reads before it
//! allows GPL-only helpers, and the panic handler `no_std` requires (the verifier accepts no
//! path that could reach it).

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// The `.fastpath.module` metadata of a built-in IO module, versioned as this crate: what
/// `offload::modules` reads to know the object's name, version, ABI and frags flag.
#[allow(unused_macros)]
macro_rules! builtin_module {
    (name = $name:literal, frags = $frags:literal) => {
        #[unsafe(link_section = ".fastpath.module")]
        #[unsafe(no_mangle)]
        #[used]
        static FASTPATH_MODULE_META: fastpath_module::ModuleMeta =
            fastpath_module::meta($name, env!("CARGO_PKG_VERSION"), $frags);
    };
}
#[allow(unused_imports)]
pub(crate) use builtin_module;
