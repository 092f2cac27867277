//! What one app needs on the lab while it is measured: the programs on both ends and the
//! app itself, set up for a row and removed after it.

use hw_profiles::SocketTuning;
use offload::{AttachOptions, mode::ModePolicy, rules::Action};

use super::{
    app::BenchApp,
    ends::{Ends, in_namespace},
    lb_subject::LbSubject,
    sink::Sink,
    system,
};
use crate::error::BenchError;

fn attach(namespace: &Option<String>, iface: &str, action: Action) -> Result<(), BenchError> {
    let iface = iface.to_string();
    in_namespace(namespace, move || {
        offload::attach(&AttachOptions {
            iface,
            policy: ModePolicy::Auto,
            default_action: action,
            prefilter: Vec::new(),
        })
        .map(|_| ())
    })??;
    Ok(())
}

pub(super) fn detach(namespace: &Option<String>, iface: &str) -> Result<(), BenchError> {
    let iface = iface.to_string();
    in_namespace(namespace, move || offload::detach(&iface))??;
    Ok(())
}

/// What runs on the device under test, as the runner reads it between trials.
pub(super) enum Subject {
    Sink(Sink),
    Lb(Box<LbSubject>),
}

impl Subject {
    /// (packets the app received, packets the kernel dropped at its sockets) so far.
    pub fn counters(&self) -> (u64, u64) {
        match self {
            Subject::Sink(sink) => sink.counters(),
            Subject::Lb(lb) => lb.counters(),
        }
    }

    /// The sink reads the generator's stamps; the appliance is not instrumented for it.
    pub fn record_latency(&self, stamp_offset: usize) {
        if let Subject::Sink(sink) = self {
            sink.record_latency(stamp_offset);
        }
    }

    pub fn take_latency(&self) -> Vec<u64> {
        match self {
            Subject::Sink(sink) => sink.take_latency(),
            Subject::Lb(_) => Vec::new(),
        }
    }

    fn stop(self) -> Result<(), BenchError> {
        match self {
            Subject::Sink(sink) => sink.stop(),
            Subject::Lb(lb) => {
                drop(lb);
                Ok(())
            }
        }
    }
}

/// The programs (and socket) one app needs, attached for a row and removed after it: the
/// steering program on the device under test with the app's default action, a drop
/// program on the sender to count what comes back, and the app itself.
pub(super) struct Stage<'a> {
    ends: &'a Ends,
    /// The app, read between trials; None for the in-kernel apps and the references.
    pub(super) subject: Option<Subject>,
}

impl<'a> Stage<'a> {
    pub(super) fn start(
        app: BenchApp,
        ends: &'a Ends,
        tuning: &SocketTuning,
        with_subject: bool,
    ) -> Result<Stage<'a>, BenchError> {
        let mut stage = Stage {
            ends,
            subject: None,
        };
        if let Some(action) = app.dut_action() {
            attach(&ends.rx_namespace, &ends.rx_iface, action)?;
        }
        if app.forwards() {
            // Counts the frames that come back; on veth they reach the sender at all only
            // if it runs an XDP program.
            attach(&ends.tx_namespace, &ends.tx_iface, Action::Drop)?;
        }
        if !with_subject {
            return Ok(stage);
        }
        let cpu = system::cpu_count() - 1;
        let (namespace, iface) = (ends.rx_namespace.clone(), ends.rx_iface.clone());
        stage.subject = if let Some(kind) = app.sink() {
            Some(Subject::Sink(Sink::start(
                kind,
                namespace,
                iface,
                cpu,
                tuning.clone(),
            )?))
        } else if app == BenchApp::Lb {
            let backend = ends
                .tx_address
                .ok_or_else(|| BenchError::NoBackendAddress {
                    iface: ends.tx_iface.clone(),
                })?;
            Some(Subject::Lb(Box::new(LbSubject::start(
                namespace, &iface, backend, cpu, tuning,
            )?)))
        } else {
            None
        };
        Ok(stage)
    }

    pub(super) fn stop(mut self) -> Result<(), BenchError> {
        match self.subject.take() {
            Some(subject) => subject.stop(),
            None => Ok(()),
        }
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        self.subject.take();
        let _ = detach(&self.ends.rx_namespace, &self.ends.rx_iface);
        let _ = detach(&self.ends.tx_namespace, &self.ends.tx_iface);
    }
}
