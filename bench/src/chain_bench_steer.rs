//! `steer` as a module behind the chain's entry against `steer` alone, in the run of the hop
//! benchmark: the steering program attached for real with `offload::attach` (the chain's
//! entry on the lab's dut veth, steer its one module), one exact rule, then the same
//! frames through the chain's pinned entry and through the standalone `steer` program
//! loaded against the very same pinned maps (same rules, same settings).
//!
//! Two frames: one the rule claims (UDP to port 9, dropped: steer decides and the chain
//! ends there) and one no rule claims (UDP to port 10, the default pass: the module
//! continues and the chain's end passes it, where steer alone passes at once).

use std::time::Duration;

use anyhow::{Context, Result};
use aya::{EbpfLoader, programs::Xdp};
use aya_obj::programs::XdpAttachType;
use offload::{
    AttachOptions, Pins, STEER_OBJECT, Steering,
    mode::ModePolicy,
    rules::{Action, RuleSpec},
};

/// One frame's times: steer in the chain, steer alone.
pub struct SteerRow {
    /// What the frame exercises.
    pub case: &'static str,
    /// The XDP action both return.
    pub action: u32,
    /// The chain's entry with steer as its module.
    pub chain: Duration,
    /// The standalone steer program.
    pub alone: Duration,
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Attaches steer to `iface`, times both ways for each frame, and detaches.
pub fn measure(
    iface: &str,
    repeat: u32,
    runs: usize,
    frame: impl Fn(u16) -> Vec<u8>,
    median_time: impl Fn(&Xdp, &[u8], u32, u32, usize) -> Result<Duration>,
) -> Result<Vec<SteerRow>> {
    offload::attach(&AttachOptions {
        iface: iface.to_string(),
        policy: ModePolicy::Auto,
        default_action: Action::Pass,
        prefilter: Vec::new(),
    })
    .context("attach steer")?;
    let result = (|| -> Result<Vec<SteerRow>> {
        let mut rule = RuleSpec::new(Action::Drop);
        rule.proto = Some("udp".parse().map_err(anyhow::Error::msg)?);
        rule.dport = Some("9".parse().map_err(anyhow::Error::msg)?);
        Steering::open(iface)?.add_rule(&rule)?;
        let entry = offload::bpffs::Bpffs::get()
            .fastpath_dir()
            .join(iface)
            .join("chain/entry");
        let chain = Xdp::from_pin(&entry, XdpAttachType::Interface)
            .with_context(|| format!("open {}", entry.display()))?;
        let mut alone = EbpfLoader::new()
            .default_map_pin_directory(Pins::for_iface(iface).maps_dir())
            .load(STEER_OBJECT)?;
        let program: &mut Xdp = alone
            .program_mut("steer")
            .context("steer in the steering object")?
            .try_into()?;
        program.load()?;
        let mut rows = Vec::new();
        for (case, port, action) in [
            ("rule match (drop)", 9, XDP_DROP),
            ("no match (default pass)", 10, XDP_PASS),
        ] {
            let packet = frame(port);
            // Interleaved, so the machine's drift falls on both alike.
            let mut chain_times = Vec::new();
            let mut alone_times = Vec::new();
            for _ in 0..runs {
                chain_times.push(median_time(&chain, &packet, action, repeat, 1)?);
                alone_times.push(median_time(program, &packet, action, repeat, 1)?);
            }
            chain_times.sort();
            alone_times.sort();
            rows.push(SteerRow {
                case,
                action,
                chain: chain_times[runs / 2],
                alone: alone_times[runs / 2],
            });
        }
        Ok(rows)
    })();
    offload::detach(iface).context("detach steer")?;
    result
}

/// Prints the rows under the hop table.
pub fn report(rows: &[SteerRow]) {
    println!();
    println!(
        "{:<26} {:>7} {:>12} {:>12} {:>8}",
        "steer, same frame and rule", "action", "chain ns", "alone ns", "ratio"
    );
    let nanos = |time: Duration| time.as_nanos() as f64;
    for row in rows {
        println!(
            "{:<26} {:>7} {:>12.1} {:>12.1} {:>8.3}",
            row.case,
            if row.action == XDP_DROP {
                "drop"
            } else {
                "pass"
            },
            nanos(row.chain),
            nanos(row.alone),
            nanos(row.chain) / nanos(row.alone)
        );
    }
}
