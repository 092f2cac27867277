//! Active TCP health checks: a connect to each backend's port, every interval. Every
//! backend is checked on its own schedule with its own timeout, concurrently, on one
//! thread (a single-threaded tokio runtime), so a backend that never answers delays no
//! other; the control loop takes the results without waiting.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};

use crate::lb::{
    config::{HealthCheck, VipKey},
    registry::HealthTarget,
};

/// The shortest time between two checks of one backend, whatever `interval_ms` says.
const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// How often the checking thread looks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(20);

/// One check's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthResult {
    pub vip: VipKey,
    pub backend: IpAddr,
    pub port: u16,
    pub up: bool,
    pub check: HealthCheck,
}

/// The checks running for a set of targets; they stop on drop.
pub struct HealthChecks {
    targets: Vec<HealthTarget>,
    results: mpsc::Receiver<HealthResult>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthChecks {
    /// Starts checking every target, each at once and then every interval.
    pub fn start(targets: Vec<HealthTarget>) -> io::Result<HealthChecks> {
        let (sender, results) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = if targets.is_empty() {
            None
        } else {
            // Built here, so that a failure (out of file descriptors, say) is the caller's
            // error, not a thread that dies and leaves every backend unchecked.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (targets, stop) = (targets.clone(), stop.clone());
            Some(
                std::thread::Builder::new()
                    .name("fp-lb-health".into())
                    .spawn(move || run(runtime, targets, sender, &stop))?,
            )
        };
        Ok(HealthChecks {
            targets,
            results,
            stop,
            thread,
        })
    }

    /// What is being checked.
    pub fn targets(&self) -> &[HealthTarget] {
        &self.targets
    }

    /// The results that arrived since the last call, oldest first; never waits.
    pub fn results(&self) -> impl Iterator<Item = HealthResult> + '_ {
        self.results.try_iter()
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Checks in progress are abandoned, not waited for: at most `STOP_POLL`.
            let _ = thread.join();
        }
    }
}

fn run(
    runtime: tokio::runtime::Runtime,
    targets: Vec<HealthTarget>,
    results: mpsc::Sender<HealthResult>,
    stop: &AtomicBool,
) {
    runtime.block_on(async {
        for target in targets {
            tokio::spawn(check_forever(target, results.clone()));
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(STOP_POLL).await;
        }
    });
    // Dropping the runtime cancels the checks still waiting.
}

/// Checks one target until the results are no longer taken (or the runtime goes).
async fn check_forever(target: HealthTarget, results: mpsc::Sender<HealthResult>) {
    let address = SocketAddr::new(target.backend, target.port);
    let timeout = Duration::from_millis(target.check.timeout_ms);
    let interval = Duration::from_millis(target.check.interval_ms).max(MIN_INTERVAL);
    loop {
        let started = Instant::now();
        let up = matches!(
            tokio::time::timeout(timeout, TcpStream::connect(address)).await,
            Ok(Ok(_))
        );
        let result = HealthResult {
            vip: target.vip,
            backend: target.backend,
            port: target.port,
            up,
            check: target.check.clone(),
        };
        if results.send(result).is_err() {
            return;
        }
        match started.checked_add(interval) {
            Some(next) => tokio::time::sleep_until(next).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
        time::Instant as StdInstant,
    };

    use super::*;

    fn target(port: u16, timeout_ms: u64) -> HealthTarget {
        HealthTarget {
            vip: "10.0.0.100:80/tcp".parse().unwrap(),
            backend: "127.0.0.1".parse().unwrap(),
            port,
            check: HealthCheck {
                interval_ms: 50,
                timeout_ms,
                rise: 2,
                fall: 3,
            },
        }
    }

    /// A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    /// to it hangs until its timeout (all on loopback). Returns it, the connections that
    /// fill it, and its port.
    fn unanswering_listener() -> (TcpListener, Vec<TcpStream>, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) on a socket this test owns; a backlog of 0 queues one connection.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let address = listener.local_addr().unwrap();
        let mut held = Vec::new();
        while held.len() < 8 {
            match TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
        (listener, held, address.port())
    }

    /// A listening backend is up and a closed port down, and a backend that never answers
    /// holds up neither their results nor the stop.
    #[test]
    fn backends_are_checked_concurrently_each_with_its_own_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let spare = TcpListener::bind("127.0.0.1:0").unwrap();
            spare.local_addr().unwrap().port()
        };
        let (_full, _held, hanging) = unanswering_listener();
        let checks = HealthChecks::start(vec![
            target(hanging, 10_000),
            target(open, 1000),
            target(closed, 1000),
        ])
        .unwrap();
        let started = StdInstant::now();
        let mut seen = Vec::new();
        while seen.len() < 4 && started.elapsed() < Duration::from_secs(5) {
            seen.extend(checks.results().filter(|r| r.port != hanging));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            seen.len() >= 4,
            "the hanging check held up the others: {seen:?}"
        );
        assert!(seen.iter().any(|r| r.port == open && r.up), "{seen:?}");
        assert!(seen.iter().any(|r| r.port == closed && !r.up), "{seen:?}");
        let stopping = StdInstant::now();
        drop(checks);
        assert!(
            stopping.elapsed() < Duration::from_secs(1),
            "stopping waited for the hanging check"
        );
    }

    #[test]
    fn no_targets_start_no_thread() {
        let checks = HealthChecks::start(Vec::new()).unwrap();
        assert!(checks.thread.is_none());
        assert_eq!(checks.results().count(), 0);
    }
}
