//! Trials: attach a minimal program (XDP_PASS) in skb, drv and hw mode, and bind an AF_XDP
//! socket in copy and zero-copy mode on queue 0. Each leaves nothing behind: links and
//! sockets are dropped, an offloaded program is detached.

use aya::{
    EbpfLoader,
    programs::{Xdp, xdp::XdpMode as AyaMode},
};
use serde::Serialize;

use nic::explain_errno;
use offload::{STEER_OBJECT, error_chain as describe, hw, mode::XdpMode};

/// One trial's outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Trial {
    /// It worked.
    pub ok: bool,
    /// Why it failed (or why it was not tried): the errno's meaning and the kernel's words.
    pub error: Option<String>,
}

impl Trial {
    /// A trial that worked.
    pub fn passed() -> Trial {
        Trial {
            ok: true,
            error: None,
        }
    }

    /// A trial that failed, or was not tried, and why.
    pub fn failed(error: impl Into<String>) -> Trial {
        Trial {
            ok: false,
            error: Some(error.into()),
        }
    }
}

/// Attaches `bare_pass` in `mode` and takes it off again.
pub fn attach(ifindex: u32, driver: &str, mode: XdpMode) -> Trial {
    if mode == XdpMode::Hw {
        return match hw::attach_offloaded(STEER_OBJECT, "bare_pass", ifindex, driver) {
            Ok(_) => {
                let _ = hw::detach_offloaded(ifindex);
                Trial::passed()
            }
            Err(error) => Trial::failed(offload::error_chain(&error)),
        };
    }
    let aya_mode = match mode {
        XdpMode::Drv => AyaMode::Driver,
        _ => AyaMode::Skb,
    };
    let result = (|| -> Result<(), String> {
        // Maps in a directory of this trial's own, removed once loaded: nothing shared.
        let pins = offload::Transient::create().map_err(|e| e.to_string())?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.pins().maps_dir())
            .load(STEER_OBJECT)
            .map_err(|e| format!("load: {e}"))?;
        drop(pins);
        let program: &mut Xdp = ebpf
            .program_mut("bare_pass")
            .ok_or("no bare_pass program")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        program.load().map_err(|e| format!("verifier: {e}"))?;
        // The link is dropped with `ebpf` at the end of this closure: detached.
        program
            .attach_to_if_index(ifindex, aya_mode)
            .map_err(|e| describe_attach_error(&e))?;
        Ok(())
    })();
    match result {
        Ok(()) => Trial::passed(),
        Err(error) => Trial::failed(error),
    }
}

/// The errno's meaning first, then aya's whole chain of causes.
fn describe_attach_error(error: &aya::programs::ProgramError) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return format!("{} ({})", explain_errno(io), describe(error));
        }
        source = current.source();
    }
    describe(error)
}

/// Binds an AF_XDP socket on queue 0 in copy or zero-copy mode, then closes it.
pub fn bind(iface: &str, zero_copy: bool) -> Trial {
    let umem_config = afxdp::UmemConfig {
        frame_count: 64,
        ..afxdp::UmemConfig::default()
    };
    let socket_config = afxdp::SocketConfig {
        mode: if zero_copy {
            afxdp::BindMode::ZeroCopy
        } else {
            afxdp::BindMode::Copy
        },
        rx_size: 64,
        tx_size: 64,
        fill_size: 64,
        completion_size: 64,
        ..afxdp::SocketConfig::default()
    };
    let result = afxdp::Umem::new(umem_config)
        .and_then(|(umem, _pool)| afxdp::Socket::bind(&umem, iface, 0, &socket_config));
    match result {
        Ok(_socket) => Trial::passed(),
        Err(error) => Trial::failed(error.to_string()),
    }
}
