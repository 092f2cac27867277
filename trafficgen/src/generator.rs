//! The generator: checks a run's options, then sends from one thread per core in the mode
//! asked for, and reports what was offered.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use offload_common::{GEN_OFFSET_MASK, GenConfig};

use crate::{
    dispatcher_hold::DispatcherHold,
    error::GenError,
    frame::{FCS_LEN, GenFrame},
    live::{self, LiveProgram},
    options::{GenMode, GenOptions, GenReport},
    pacer::{Pacer, on_cores},
    xsk_tx,
};

/// The generator, with its program loaded once for all live-frames runs.
#[derive(Default)]
pub struct Generator {
    live: Option<LiveProgram>,
}

impl Generator {
    /// A generator for `mode`: live frames load the program now, so a kernel that refuses
    /// it is reported before any run; AF_XDP TX needs none.
    pub fn for_mode(mode: GenMode) -> Result<Generator, GenError> {
        let mut generator = Generator::default();
        if mode == GenMode::LiveFrames {
            generator.live()?;
        }
        Ok(generator)
    }

    /// Sends live frames of one flow (`frame` as it is) out of `iface`, in the calling
    /// thread's network namespace, as fast as core 0 sends them, for `duration`: the
    /// offered load of the lab's Mpps reports. The report's `seconds` is the shorter of its
    /// own and the call's wall time, so a rate computed from it is never inflated.
    pub fn one_flow_at_full_rate(
        iface: &str,
        frame: GenFrame,
        duration: Duration,
    ) -> Result<GenReport, GenError> {
        let ifindex =
            nic::ifindex(iface).map_err(|_| GenError::UnknownInterface(iface.to_string()))?;
        let options = GenOptions {
            iface: iface.to_string(),
            ifindex,
            mode: GenMode::LiveFrames,
            space: frame.flow_space(),
            frames: vec![(frame, 1)],
            flows: 1,
            rate_pps: None,
            duration,
            count: None,
            cores: vec![0],
        };
        let started = Instant::now();
        let mut report =
            Generator::for_mode(GenMode::LiveFrames)?.run(&options, &AtomicBool::new(false))?;
        report.seconds = report
            .seconds
            .min(started.elapsed().as_secs_f64())
            .max(1e-9);
        Ok(report)
    }

    /// The loaded `gen_tx`, loading it the first time.
    fn live(&mut self) -> Result<&mut LiveProgram, GenError> {
        if self.live.is_none() {
            self.live = Some(LiveProgram::load()?);
        }
        Ok(self.live.as_mut().expect("loaded above"))
    }

    /// Sends until the duration or count is reached, or `stop` is set.
    pub fn run(&mut self, options: &GenOptions, stop: &AtomicBool) -> Result<GenReport, GenError> {
        let config = check(options)?;
        let cores: Vec<Option<usize>> = if options.cores.is_empty() {
            vec![None]
        } else {
            options.cores.iter().map(|&c| Some(c)).collect()
        };
        let threads = cores.len() as u64;
        // Started when the threads are about to send, after any set-up.
        let pacer = || Pacer {
            started: Instant::now(),
            rate: options.rate_pps.map(|r| (r / threads).max(1)),
            count: options.count.map(|c| c.div_ceil(threads)),
            duration: options.duration,
            stop,
        };
        let sent = AtomicU64::new(0);
        let mut notes = Vec::new();
        let (seconds, transmitted) = match options.mode {
            GenMode::LiveFrames => {
                let live = self.live()?;
                live.configure(config)?;
                let _hold = DispatcherHold::new(live.program()?)
                    .inspect_err(|error| {
                        notes.push(format!(
                            "{error}: every BPF_PROG_RUN call waits for two RCU grace periods, \
                             so the generator sends more slowly"
                        ))
                    })
                    .ok();
                let fd = live.fd()?;
                let before = live::xmit_counters(&options.iface);
                let pacer = pacer();
                let work = |_: usize| live::send_loop(&fd, options, &pacer, &sent);
                let seconds = on_cores(&cores, work)?;
                let delta = before.zip(live::xmit_counters(&options.iface)).map(
                    |((taken0, refused0), (taken1, refused1))| {
                        (taken1 - taken0, refused1 - refused0)
                    },
                );
                (seconds, delta)
            }
            GenMode::XskTx => {
                let queues = nic::ethtool::queue_count(&options.iface)
                    .unwrap_or(1)
                    .max(1);
                if cores.len() as u32 > queues {
                    return Err(GenError::MoreCoresThanQueues {
                        cores: cores.len(),
                        iface: options.iface.clone(),
                        queues,
                    });
                }
                let fallbacks = Mutex::new(Vec::new());
                let pacer = pacer();
                let work = |thread: usize| {
                    xsk_tx::send_loop(options, &config, thread as u32, &pacer, &sent, &fallbacks)
                };
                let seconds = on_cores(&cores, work)?;
                notes.extend(fallbacks.into_inner().unwrap_or_default());
                (seconds, None)
            }
        };
        let sent = sent.load(Ordering::Relaxed);
        Ok(GenReport {
            mode: options.mode,
            sent,
            seconds,
            mpps: sent as f64 / seconds / 1e6,
            mean_frame_size: mean_wire_size(&options.frames),
            flows: options.flows.max(1),
            transmitted: transmitted.map(|d| d.0),
            transmit_errors: transmitted.map(|d| d.1),
            notes,
        })
    }
}

/// The settings for a run, once the options are known to be usable: a mix that is not
/// empty, with shares above zero and the same write offsets in every frame (the program has
/// one setting for all), and no more flows than the ranges hold.
fn check(options: &GenOptions) -> Result<GenConfig, GenError> {
    let (first, _) = options.frames.first().ok_or(GenError::NoFrames)?;
    for (frame, share) in &options.frames {
        // The program writes the Ethernet header back whole (see `GenFrame::config`).
        if frame.bytes.len() + FCS_LEN < 64 {
            return Err(GenError::FrameSize {
                size: frame.bytes.len() + FCS_LEN,
                min: 64,
            });
        }
        if *share == 0 {
            return Err(GenError::ZeroShare {
                wire_size: frame.wire_size,
            });
        }
        if frame.fields != first.fields || frame.restored_header() != first.restored_header() {
            return Err(GenError::MixedHeaders);
        }
    }
    let fields = first.fields;
    let checksum = fields.l4_checksum.map_or(0, |c| c.offset);
    let offsets = [fields.l4, fields.src, fields.dst, fields.stamp, checksum];
    if let Some(&offset) = offsets.iter().find(|&&o| o >= GEN_OFFSET_MASK) {
        return Err(GenError::OffsetTooFar(offset));
    }
    let distinct = options.space.size();
    if u64::from(options.flows) > distinct {
        return Err(GenError::TooManyFlows {
            flows: options.flows,
            distinct,
        });
    }
    Ok(first.config(options.flows, options.space))
}

fn mean_wire_size(frames: &[(GenFrame, u32)]) -> f64 {
    let shares: u32 = frames.iter().map(|(_, share)| share).sum();
    let weighted: f64 = frames
        .iter()
        .map(|(frame, share)| frame.wire_size as f64 * f64::from(*share))
        .sum();
    weighted / f64::from(shares.max(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use offload_common::FlowSpace;

    use super::*;
    use crate::frame::{IMIX, test_frame as frame};

    fn options(frames: Vec<(GenFrame, u32)>, flows: u32) -> GenOptions {
        GenOptions {
            iface: "test0".into(),
            ifindex: 1,
            mode: GenMode::LiveFrames,
            frames,
            flows,
            space: FlowSpace {
                sport_base: 1024,
                sport_count: 100,
                dport_count: 2,
                ..FlowSpace::default()
            },
            rate_pps: None,
            duration: Duration::from_secs(1),
            count: None,
            cores: Vec::new(),
        }
    }

    #[test]
    fn a_mix_must_share_headers_and_have_shares() {
        let error =
            |frames: Vec<(GenFrame, u32)>| check(&options(frames, 1)).unwrap_err().to_string();
        assert!(error(vec![]).contains("no frame to send"));
        assert!(error(vec![(frame(64, 34), 0)]).contains("64-byte frame has a share of 0"));
        let mixed = vec![(frame(64, 34), 1), (frame(128, 54), 1)];
        assert!(error(mixed).contains("must share their headers"));
        assert!(error(vec![(frame(64, 0x7ff), 1)]).contains("write offset 2047"));
        let imix: Vec<_> = IMIX
            .iter()
            .map(|&(size, share)| (frame(size, 34), share))
            .collect();
        assert!((mean_wire_size(&imix) - 4342.0 / 12.0).abs() < 1e-9);
        let config = check(&options(imix, 200)).unwrap();
        assert_eq!(
            (config.flows, config.l4_offset, config.ipv4_offset),
            (200, 34, 14)
        );
    }

    #[test]
    fn the_ethernet_header_and_ttl_are_written_back() {
        use crate::frame::{L4Kind, Template};
        let template = |dst_mac: [u8; 6]| {
            Template {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac,
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.1.1".parse().unwrap(),
                l4: L4Kind::Udp,
                dst_port: 9,
                src_port: 1024,
                frame_size: 64,
            }
            .build()
            .unwrap()
        };
        let first = template([2, 0, 0, 0, 0, 2]);
        let config = check(&options(vec![(first.clone(), 1)], 1)).unwrap();
        assert_eq!(config.ethernet[..], first.bytes[..14]);
        // IPv4: the TTL and the protocol after it.
        assert_eq!(config.hop_limit_offset, 22);
        assert_eq!(config.hop_limit, [first.bytes[22], 17]);
        // One header for all frames of a mix: other MACs are another header.
        let other = template([2, 0, 0, 0, 0, 3]);
        let error = check(&options(vec![(first, 1), (other, 1)], 1)).unwrap_err();
        assert!(
            error.to_string().contains("must share their headers"),
            "{error}"
        );
        // Too short to hold the header the program writes back.
        let error = check(&options(vec![(frame(12, 0), 1)], 1)).unwrap_err();
        assert!(error.to_string().contains("frame size 12"), "{error}");
    }

    #[test]
    fn more_flows_than_the_ranges_hold_is_refused() {
        let error = check(&options(vec![(frame(64, 34), 1)], 201)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("201 flows, but the address and port ranges hold only 200"),
            "{error}"
        );
    }
}
