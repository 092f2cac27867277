//! The data plane: one AF_XDP socket and one pinned worker per queue, each registered with
//! the steering program, and the hot swap of the workers' chains.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use afxdp::{BindMode, Socket, SocketConfig, Umem, UmemConfig};
use hw_profiles::{Profiles, SocketTuning};
use offload::Steering;
use pipeline::{Chain, StageConfig, Worker, WorkerConfig, WorkerStats};

use crate::lb::{
    config::{Config, Toggle},
    error::LbError,
};

/// How long a worker gets to take a new chain.
const SWAP_TIMEOUT: Duration = Duration::from_secs(2);

/// The AF_XDP sizes for `iface`: config values win; the rest come from the profile matching
/// the interface's driver. Says which in `log`.
pub fn resolve_tuning(config: &Config, iface: &str, log: &mut Vec<String>) -> SocketTuning {
    let profiles = Profiles::builtin();
    let driver = nic::ethtool::driver(iface).unwrap_or_else(|_| "unknown".into());
    let profile = profiles.for_driver(&driver);
    log.push(match profile {
        Some(p) => format!("profile: {} (driver {driver})", p.name),
        None => format!("profile: none matches driver {driver}; built-in defaults"),
    });
    let tuning = SocketTuning::pick(config.batch, config.ring_size, config.frame_size, profile);
    log.push(format!(
        "tuning: batch {}, ring_size {}, frame_size {}",
        tuning.batch, tuning.ring_size, tuning.frame_size
    ));
    tuning
}

/// The workers of one interface.
pub struct DataPlane {
    iface: String,
    workers: Vec<Worker>,
    /// "zero-copy" or "copy", as the sockets bound.
    socket_mode: String,
}

impl DataPlane {
    /// No workers yet: [`DataPlane::start_workers`] starts them.
    pub fn new(iface: &str) -> DataPlane {
        DataPlane {
            iface: iface.to_string(),
            workers: Vec::new(),
            socket_mode: String::new(),
        }
    }

    /// Binds a socket to each configured queue (every queue of the device by default),
    /// registers it with `steering`, and starts its worker with a chain from `make_chain`.
    /// Workers started before a failure stay, for [`DataPlane::stop`] to take down.
    pub fn start_workers(
        &mut self,
        config: &Config,
        tuning: &SocketTuning,
        steering: &mut Steering,
        make_chain: &dyn Fn() -> Chain,
        log: &mut Vec<String>,
    ) -> Result<(), LbError> {
        let iface = self.iface.clone();
        let queues: Vec<u32> = match config.queue_list() {
            Some(list) => list.to_vec(),
            None => {
                let count = nic::ethtool::queue_count(&iface).unwrap_or(1).max(1);
                (0..count).collect()
            }
        };
        let all_cores: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let (cores, source) = match &config.cores {
            Some(cores) => (cores.clone(), "config"),
            None => (all_cores, "default: one per queue, spread"),
        };
        let mode = match config.zero_copy {
            Toggle::Auto => BindMode::Auto,
            Toggle::On => BindMode::ZeroCopy,
            Toggle::Off => BindMode::Copy,
        };
        for (i, &queue) in queues.iter().enumerate() {
            let core = cores.get(i % cores.len().max(1)).copied();
            let (umem, pool) = Umem::new(UmemConfig {
                frame_size: tuning.frame_size.value,
                ..UmemConfig::default()
            })
            .map_err(|source| LbError::Umem {
                iface: iface.clone(),
                queue,
                source,
            })?;
            let ring = tuning.ring_size.value;
            let socket_config = SocketConfig {
                mode,
                rx_size: ring,
                tx_size: ring,
                fill_size: ring,
                completion_size: ring,
                ..SocketConfig::default()
            };
            let socket =
                bind_when_free(&umem, &iface, queue, &socket_config).map_err(|source| {
                    LbError::Bind {
                        iface: iface.clone(),
                        queue,
                        source,
                    }
                })?;
            if let Some(fallback) = socket.fallback() {
                log.push(format!("af_xdp: {fallback}"));
            }
            self.socket_mode = if socket.is_zero_copy() {
                "zero-copy"
            } else {
                "copy"
            }
            .to_string();
            steering
                .register_socket(queue, socket.as_raw_fd())
                .map_err(|source| LbError::RegisterSocket {
                    iface: iface.clone(),
                    queue,
                    source,
                })?;
            let stages = config.pipelined.as_ref().map(|p| StageConfig {
                cores: p.cores.get_ref().clone(),
                depth: *p.queue_depth.get_ref(),
            });
            let worker_config = WorkerConfig {
                core,
                batch: tuning.batch.value,
                poll: config.poll,
                stages: stages.clone(),
            };
            let worker =
                Worker::start(socket, pool, make_chain, worker_config).map_err(|source| {
                    LbError::StartWorker {
                        iface: iface.clone(),
                        queue,
                        source,
                    }
                })?;
            log.push(format!(
                "worker: {iface}:{queue} on core {} ({source}), {:?} polling, batch {}{}",
                core.map_or("any".into(), |c| c.to_string()),
                config.poll,
                tuning.batch,
                stages.map_or(String::new(), |s| format!(
                    ", pipelined to stage cores {:?} (queue depth {})",
                    s.cores, s.depth
                )),
            ));
            self.workers.push(worker);
        }
        Ok(())
    }

    /// Installs chains from `make_chain` in every worker (hot swap at a batch boundary).
    pub fn swap(&self, make_chain: &dyn Fn() -> Chain) -> Result<(), LbError> {
        for worker in &self.workers {
            worker
                .swap(make_chain, SWAP_TIMEOUT)
                .map_err(LbError::Swap)?;
            offload::kill_point::reached("lb:swap");
        }
        Ok(())
    }

    /// The queues that have a worker.
    pub fn queues(&self) -> Vec<u32> {
        self.workers.iter().map(Worker::queue).collect()
    }

    pub fn socket_mode(&self) -> &str {
        &self.socket_mode
    }

    pub fn stats(&self) -> Vec<WorkerStats> {
        self.workers.iter().map(Worker::stats).collect()
    }

    /// An error for the first worker that has stopped, if any (that worker is taken out).
    pub fn check_running(&mut self) -> Result<(), LbError> {
        let Some(at) = self.workers.iter().position(Worker::has_stopped) else {
            return Ok(());
        };
        let worker = self.workers.remove(at);
        let (iface, queue) = (self.iface.clone(), worker.queue());
        Err(match worker.stop() {
            Ok(_) => LbError::WorkerEnded { iface, queue },
            Err(source) => LbError::WorkerFailed {
                iface,
                queue,
                source,
            },
        })
    }

    /// Stops every worker (each drains and frees its UMEM) and takes its socket out of
    /// `steering`.
    pub fn stop(&mut self, steering: &Steering) {
        for worker in self.workers.drain(..) {
            let queue = worker.queue();
            let _ = worker.stop();
            let _ = steering.unregister_socket(queue);
        }
    }
}

/// Binds a socket, waiting up to 2 s while the queue reads as taken: the kernel releases
/// the socket of a process that just died (kill -9) in deferred work (the pool's release,
/// `xp_release_deferred` in net/xdp/xsk_buff_pool.c, clears the queue), so for a moment
/// after the process is gone its queue still has a socket.
fn bind_when_free(
    umem: &Umem,
    iface: &str,
    queue: u32,
    config: &SocketConfig,
) -> Result<Socket, afxdp::XskError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Socket::bind(umem, iface, queue, config) {
            Err(afxdp::XskError::Syscall { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}
