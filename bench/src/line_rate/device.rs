//! One trial: the generator sends at an offered rate after a warm-up, and the counters at
//! both ends say where every frame went.
//!
//! The counters are read before and after the measured part, with no traffic in flight at
//! either moment (a pause follows the warm-up and the measured send), so the deltas cover
//! exactly the frames of the measured send:
//!
//! - the sender: frames offered, and those its driver refused (veth: the peer's ring was
//!   full), from the generator;
//! - the device under test: the steering program's verdict counters;
//! - the app: packets received, and packets the kernel dropped at its sockets;
//! - for the forwarding apps (xdp-tx, l2fwd, lb): frames that came back, counted by a drop
//!   program on the sender's interface.

use std::time::Duration;

use offload::{ActionCounters, Steering};
use trafficgen::{FlowSpace, GenFrame, GenMode, GenOptions, GenReport, Generator};

use super::{
    app::BenchApp,
    ends::{Ends, in_namespace},
    progress::Progress,
    stage::Subject,
    system::{CpuTimes, cpu_hz},
};
use crate::{
    error::BenchError,
    report::Accounting,
    search::{Device, TrialOutcome},
};

/// Time for the last frames of a send to drain through the device before counting.
const SETTLE: Duration = Duration::from_millis(100);

fn steering_counters(
    namespace: &Option<String>,
    iface: &str,
) -> Result<ActionCounters, BenchError> {
    let iface = iface.to_string();
    in_namespace(namespace, move || {
        Steering::open(&iface)
            .and_then(|steering| steering.counters())
            .map_err(|source| BenchError::SteeringCounters { iface, source })
    })?
}

#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    dut: ActionCounters,
    /// Frames back at the sender (forwarding apps).
    returned: u64,
    app_received: u64,
    app_socket_drops: u64,
}

/// What one measured send gave.
pub(crate) struct Measured {
    pub accounting: Accounting,
    pub latency_ns: Vec<u64>,
    pub cpu_busy: Vec<f64>,
    pub cycles_per_packet: Option<f64>,
}

/// The traffic of one row, the same for the app and its references: where it goes, the
/// frame, the sending cores and the trial lengths.
#[derive(Clone)]
pub(crate) struct Load<'a> {
    pub ends: &'a Ends,
    pub ifindex: u32,
    pub frame: GenFrame,
    pub flows: u32,
    pub gen_cores: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The device for one row and one app: what the search tries.
pub(crate) struct LabDevice<'a> {
    app: BenchApp,
    load: &'a Load<'a>,
    generator: &'a mut Generator,
    subject: Option<&'a Subject>,
    /// Called after each trial: the progress bar.
    on_trial: &'a dyn Fn(&Accounting),
    /// Where the generator's notes go.
    progress: &'a dyn Progress,
    /// The first error; the search cannot take one, so later trials fail fast.
    pub error: Option<BenchError>,
}

impl<'a> LabDevice<'a> {
    pub(crate) fn new(
        app: BenchApp,
        load: &'a Load<'a>,
        generator: &'a mut Generator,
        subject: Option<&'a Subject>,
        on_trial: &'a dyn Fn(&Accounting),
        progress: &'a dyn Progress,
    ) -> LabDevice<'a> {
        LabDevice {
            app,
            load,
            generator,
            subject,
            on_trial,
            progress,
            error: None,
        }
    }

    fn send(&mut self, rate_pps: Option<f64>, duration: Duration) -> Result<GenReport, BenchError> {
        let load = self.load;
        let options = GenOptions {
            iface: load.ends.tx_iface.clone(),
            ifindex: load.ifindex,
            mode: GenMode::LiveFrames,
            frames: vec![(load.frame.clone(), 1)],
            flows: load.flows,
            space: FlowSpace {
                sport_count: load.flows as u16,
                ..load.frame.flow_space()
            },
            rate_pps: rate_pps.map(|r| r.max(1.0) as u64),
            duration,
            count: None,
            cores: load.gen_cores.clone(),
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let report = self.generator.run(&options, &stop)?;
        for note in &report.notes {
            self.progress.note(&format!("generator: {note}"));
        }
        Ok(report)
    }

    fn snapshot(&self) -> Result<Snapshot, BenchError> {
        let ends = self.load.ends;
        let dut = steering_counters(&ends.rx_namespace, &ends.rx_iface)?;
        let returned = if self.app.forwards() {
            steering_counters(&ends.tx_namespace, &ends.tx_iface)?.drop
        } else {
            0
        };
        let (app_received, app_socket_drops) = self.subject.map_or((0, 0), Subject::counters);
        Ok(Snapshot {
            dut,
            returned,
            app_received,
            app_socket_drops,
        })
    }

    /// A warm-up, then the measured send at `rate_pps` (as fast as possible when `None`).
    pub fn measure(
        &mut self,
        rate_pps: Option<f64>,
        latency: bool,
    ) -> Result<Measured, BenchError> {
        if !self.load.warmup.is_zero() {
            self.send(rate_pps, self.load.warmup)?;
            std::thread::sleep(SETTLE);
        }
        let before = self.snapshot()?;
        let cpu_before = CpuTimes::now();
        if latency && let Some(subject) = self.subject {
            subject.record_latency(usize::from(self.load.frame.fields.stamp));
        }
        let report = self.send(rate_pps, self.load.duration)?;
        std::thread::sleep(SETTLE);
        let latency_ns = self.subject.map(Subject::take_latency).unwrap_or_default();
        let cpu_busy = CpuTimes::now().busy_since(&cpu_before);
        let after = self.snapshot()?;
        let accounting = self.account(rate_pps, &report, &before, &after);
        // Busy seconds over the measured send and the settle time, all CPUs.
        let busy_seconds: f64 =
            cpu_busy.iter().sum::<f64>() * (report.seconds + SETTLE.as_secs_f64());
        let cycles_per_packet = cpu_hz()
            .filter(|_| accounting.received > 0)
            .map(|hz| busy_seconds * hz / accounting.received as f64);
        (self.on_trial)(&accounting);
        Ok(Measured {
            accounting,
            latency_ns,
            cpu_busy,
            cycles_per_packet,
        })
    }

    fn account(
        &self,
        rate_pps: Option<f64>,
        report: &GenReport,
        before: &Snapshot,
        after: &Snapshot,
    ) -> Accounting {
        let dut = |pick: fn(&ActionCounters) -> u64| pick(&after.dut) - pick(&before.dut);
        let reached_dut = dut(ActionCounters::total);
        // The verdict the app wants; every other verdict loses the frame for it.
        let wanted = match self.app {
            BenchApp::XdpDrop => dut(|c| c.drop),
            BenchApp::XdpTx => dut(|c| c.tx),
            BenchApp::Rxdrop | BenchApp::L2fwd | BenchApp::Lb => dut(|c| c.xsk),
        };
        let dropped_at_socket = after.app_socket_drops - before.app_socket_drops;
        let handled = match self.app {
            BenchApp::XdpDrop | BenchApp::XdpTx => wanted,
            BenchApp::Rxdrop | BenchApp::L2fwd | BenchApp::Lb => {
                after.app_received - before.app_received
            }
        };
        let (received, dropped_on_return) = if self.app.forwards() {
            let returned = after.returned - before.returned;
            (returned, handled.saturating_sub(returned))
        } else {
            (handled, 0)
        };
        let refused = report.transmit_errors.unwrap_or(0);
        let other_verdicts = reached_dut - wanted;
        let accounted = refused + other_verdicts + dropped_at_socket + dropped_on_return + received;
        Accounting {
            rate_pps: rate_pps.unwrap_or(report.sent as f64 / report.seconds),
            seconds: report.seconds,
            offered: report.sent,
            refused_by_driver: report.transmit_errors,
            reached_dut,
            other_verdicts,
            dropped_at_socket,
            dropped_on_return,
            received,
            unaccounted: report.sent as i64 - accounted as i64,
        }
    }
}

impl Device for LabDevice<'_> {
    fn trial(&mut self, rate_pps: f64) -> TrialOutcome {
        let failed = TrialOutcome {
            rate_pps,
            offered: 1,
            received: 0,
        };
        if self.error.is_some() {
            return failed;
        }
        match self.measure(Some(rate_pps), false) {
            Ok(measured) => measured.accounting.trial(),
            Err(error) => {
                self.error = Some(error);
                failed
            }
        }
    }
}
