//! The xsk-rs peer (bench/xsk-peer, built by `cargo xtask bench-xsk`): the same rxdrop
//! and l2fwd loops on xsk-rs (libxdp), bound with the same ring, batch and frame sizes,
//! registered in the same steering program. Measured at the same offered load as the
//! app's saturation trial.

use hw_profiles::SocketTuning;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use trafficgen::Generator;

use super::{
    app::BenchApp,
    device::{LabDevice, Load},
    progress::Progress,
    stage::Stage,
    system,
};
use crate::error::BenchError;

/// Where `cargo xtask bench-xsk` puts the peer, next to this binary's target directory.
pub(crate) fn binary(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(given) = given {
        return Some(given.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    // target/release/fastpath -> target/xsk-peer/release/xsk-peer
    let candidate = exe.parent()?.parent()?.join("xsk-peer/release/xsk-peer");
    candidate.exists().then_some(candidate)
}

/// The peer's received Mpps while the generator sends as fast as it can.
pub(crate) fn measure(
    binary: &Path,
    app: BenchApp,
    load: &Load,
    generator: &mut Generator,
    tuning: &SocketTuning,
    progress: &dyn Progress,
) -> Result<f64, BenchError> {
    let ends = load.ends;
    let Some(namespace) = &ends.rx_namespace else {
        return Err(BenchError::PeerNeedsLab);
    };
    let stage = Stage::start(app, ends, tuning, false)?;
    let lifetime = load.duration + Duration::from_millis(2500);
    let child = Command::new("taskset")
        .arg("-c")
        .arg((system::cpu_count() - 1).to_string())
        .arg(binary)
        .arg(app.name())
        .arg(&ends.rx_iface)
        .arg(namespace)
        .arg(lifetime.as_secs_f64().to_string())
        .arg(tuning.frame_size.value.to_string())
        .arg(tuning.batch.value.to_string())
        .arg(tuning.ring_size.value.to_string())
        .arg(load.frame.wire_size.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::PeerSpawn {
            binary: binary.to_path_buf(),
            source,
        })?;
    // Let it bind and register its socket before any frame is sent.
    std::thread::sleep(Duration::from_millis(700));
    // No warm-up: the peer reports one total, so every frame sent must count.
    let load = Load {
        warmup: Duration::ZERO,
        ..load.clone()
    };
    let mut device = LabDevice::new(app, &load, generator, None, &|_| {}, progress);
    let sent = device.measure(None, false)?.accounting;
    let output = child
        .wait_with_output()
        .map_err(|source| BenchError::PeerSpawn {
            binary: binary.to_path_buf(),
            source,
        })?;
    stage.stop()?;
    if !output.status.success() {
        return Err(BenchError::PeerFailed {
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let bad_output = |source| BenchError::PeerOutput {
        output: String::from_utf8_lossy(&output.stdout).into_owned(),
        source,
    };
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| bad_output(Some(error)))?;
    let packets = summary["packets"]
        .as_u64()
        .ok_or_else(|| bad_output(None))?;
    // Every packet it received was sent during the measured send.
    Ok(packets as f64 / sent.seconds / 1e6)
}
