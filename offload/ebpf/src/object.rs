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
