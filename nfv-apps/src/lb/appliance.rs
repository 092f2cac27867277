//! The running appliance: XDP steering on the interface, one pinned worker per queue, and a
//! control loop serving the control socket, resolving next hops, health checks and NAT expiry.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use std::os::fd::AsRawFd;

use afxdp::{BindMode, Socket, SocketConfig, Umem, UmemConfig};
use hw_profiles::{Profiles, Sourced, pick};
use offload::{
    AttachOptions, OffloadError, Steering,
    mode::ModePolicy,
    rules::{Action, IpNet, PortRange, Protocol as RuleProtocol, RuleSpec},
};
use pipeline::{Chain, StageConfig, Worker, WorkerConfig, WorkerStats};
use serde::Serialize;

use crate::lb::{
    balancer::LoadBalancer,
    config::{Config, Forwarding, Protocol, Toggle, VipConfig, XdpModeSetting},
    control::{ControlServer, Limits, Request, Response, apply_backend_command},
    hw_steering::HwSteering,
    nat::{NatTable, NatTimeouts},
    packet::address,
    registry::{Changes, Registry, VipStatus},
    tables::LbCounters,
};

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(transparent)]
    Config(#[from] crate::lb::config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error(
        "interface {iface} (ifindex {ifindex}) is gone: deleted, or moved out of this network namespace; the appliance stops (start it again once the interface is back)"
    )]
    InterfaceGone { iface: String, ifindex: u32 },
    #[error(
        "the worker for {iface} queue {queue} stopped: {reason}; the appliance stops rather than serve part of the traffic"
    )]
    WorkerStopped {
        iface: String,
        queue: u32,
        reason: String,
    },
}

/// Runtime events kept for `lb status` (the newest ones).
const EVENTS_KEPT: usize = 100;

/// Everything `fastpath lb status` shows.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Status {
    pub interface: String,
    pub xdp_mode: String,
    pub socket_mode: String,
    pub vips: Vec<VipStatus>,
    pub workers: Vec<serde_json::Value>,
    pub steering: serde_json::Value,
    pub cross_queue_replies: u64,
    /// Checksums completed for senders with TX checksum offload on.
    pub partial_checksums: u64,
    /// IP fragments received, each given its datagram's ports from the first fragment.
    pub fragments: u64,
    /// ICMP errors telling senders the MTU that fits an encapsulated packet.
    pub too_big_replies: u64,
    pub nat_entries: usize,
    /// Source addresses the prefilter drops, with the drops from each.
    pub prefilter: Vec<(IpAddr, u64)>,
    /// What was chosen at start and on reloads, and where each value came from.
    pub log: Vec<String>,
    /// What happened since: health flips, refused or failed control clients (the newest).
    #[serde(default)]
    pub events: Vec<String>,
    /// Connections evicted from full connection tables (LRU), over all workers.
    #[serde(default)]
    pub conntrack_evictions: u64,
    /// Entries of each worker's connection table (`connections`).
    #[serde(default)]
    pub conntrack_capacity: usize,
}

pub struct Appliance {
    config_path: PathBuf,
    config: Config,
    iface: String,
    /// The interface's index at start: a different one (or none) means it was deleted.
    ifindex: u32,
    own_mac: [u8; 6],
    mtu: u32,
    own_addresses: Vec<IpAddr>,
    registry: Registry,
    nat: Arc<NatTable>,
    counters: Arc<LbCounters>,
    workers: Vec<Worker>,
    steering: Steering,
    rules: HashMap<RuleSpec, u32>,
    hw_steering: HwSteering,
    tuning: Tuning,
    /// Where the prefilter's addresses live: "" (merged into steer) or the hardware maps.
    prefilter_maps: &'static str,
    xdp_mode: String,
    socket_mode: String,
    control: PathBuf,
    started: Instant,
    /// Printed by the CLI: what was chosen and where each value came from.
    pub log: Vec<String>,
    events: VecDeque<String>,
    /// Removed last, after the attachment is gone.
    _pid_file: PidFile,
}

impl Appliance {
    pub fn start(config_path: &Path) -> Result<Appliance, LbError> {
        let config = Config::load(config_path)?;
        let iface = config.interface.clone();
        let mut log = Vec::new();
        let pid_file = PidFile::claim(
            PathBuf::from(format!("/run/fastpath/lb-{iface}.pid")),
            &iface,
            &mut log,
        )?;
        let ifindex =
            nic::ifindex(&iface).map_err(|e| LbError::Setup(format!("interface {iface}: {e}")))?;
        // The NIC keeps ntuple rules past a kill -9; a dead run's are removed first.
        let ntuple_record = crate::lb::hw_steering::record_path(&iface);
        log.extend(HwSteering::remove_leftovers(&ntuple_record, &iface));
        let own_mac = lab::netlink::mac(&iface)
            .map_err(|e| LbError::Setup(format!("interface {iface}: {e}")))?;
        let mtu = lab::netlink::mtu(&iface).map_err(|e| LbError::Setup(e.to_string()))?;
        let own_addresses =
            lab::netlink::addresses(&iface).map_err(|e| LbError::Setup(e.to_string()))?;

        let tuning = Tuning::resolve(&config, &iface, &mut log);
        let policy = match config.xdp_mode {
            XdpModeSetting::Auto => ModePolicy::Auto,
            XdpModeSetting::Hw => "hw".parse().unwrap(),
            XdpModeSetting::Drv => "drv".parse().unwrap(),
            XdpModeSetting::Skb => "skb".parse().unwrap(),
        };
        let options = AttachOptions {
            iface: iface.clone(),
            policy,
            default_action: Action::Pass,
            prefilter: config.prefilter.clone(),
        };
        // The plan is logged before it is applied.
        let plan = offload::plan_for(&options).map_err(|e| LbError::Setup(e.to_string()))?;
        log.extend(plan.to_string().lines().map(|line| format!("xdp: {line}")));
        let attach = || offload::attach_planned(&options, plan.clone());
        let attachment = match attach() {
            Err(OffloadError::AlreadyAttached { .. }) => {
                // The pid file said no appliance is alive: these pins are a dead run's.
                log.push(format!(
                    "removed the steering program a previous run left on {iface}"
                ));
                offload::detach(&iface).map_err(|e| LbError::Setup(e.to_string()))?;
                attach()
            }
            other => other,
        }
        .map_err(|e| LbError::Setup(e.to_string()))?;
        for fallback in &attachment.fallbacks {
            log.push(format!(
                "xdp: {} unavailable: {}",
                fallback.mode, fallback.reason
            ));
        }
        log.push(format!(
            "xdp: steering attached to {iface} in {} mode ({:?} placement)",
            attachment.mode, attachment.plan.layout
        ));
        offload::kill_point::reached("lb:attached");
        let steering = Steering::open(&iface).map_err(|e| {
            let _ = offload::detach(&iface);
            LbError::Setup(e.to_string())
        })?;

        let registry = Registry::new(&config);
        let control = config.control_path();
        let mut appliance = Appliance {
            config_path: config_path.to_path_buf(),
            iface: iface.clone(),
            ifindex,
            own_mac,
            mtu,
            own_addresses,
            registry,
            nat: Arc::new(NatTable::new(NatTimeouts::default())),
            counters: Arc::default(),
            workers: Vec::new(),
            steering,
            rules: HashMap::new(),
            hw_steering: HwSteering::recorded_at(ntuple_record),
            tuning,
            prefilter_maps: match attachment.plan.layout {
                offload::placement::Layout::Split => offload::HW_PREFILTER,
                _ => "",
            },
            xdp_mode: attachment.mode.to_string(),
            socket_mode: String::new(),
            control,
            started: Instant::now(),
            log,
            events: VecDeque::new(),
            _pid_file: pid_file,
            config,
        };
        // From here, a failure must undo the attachment: `Drop` does.
        appliance.sync_rules()?;
        appliance.sync_nat_ranges();
        appliance.start_workers()?;
        offload::kill_point::reached("lb:workers-started");
        appliance.sync_hw_steering()?;
        appliance.resolve_next_hops(Duration::from_secs(2));
        Ok(appliance)
    }

    fn start_workers(&mut self) -> Result<(), LbError> {
        let tables = Arc::new(self.tables());
        let config = self.config.clone();
        let queues: Vec<u32> = match config.queue_list() {
            Some(list) => list.to_vec(),
            None => {
                let count = nic::ethtool::queue_count(&self.iface).unwrap_or(1).max(1);
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
            None => (all_cores.clone(), "default: one per queue, spread"),
        };
        let mode = match config.zero_copy {
            Toggle::Auto => BindMode::Auto,
            Toggle::On => BindMode::ZeroCopy,
            Toggle::Off => BindMode::Copy,
        };
        for (i, &queue) in queues.iter().enumerate() {
            let core = cores.get(i % cores.len().max(1)).copied();
            let (umem, pool) = Umem::new(UmemConfig {
                frame_size: self.tuning.frame_size.value,
                ..UmemConfig::default()
            })
            .map_err(|e| LbError::Setup(e.to_string()))?;
            let ring = self.tuning.ring_size.value;
            let socket_config = SocketConfig {
                mode,
                rx_size: ring,
                tx_size: ring,
                fill_size: ring,
                completion_size: ring,
                ..SocketConfig::default()
            };
            let socket = bind_when_free(&umem, &self.iface, queue, &socket_config)
                .map_err(|e| LbError::Setup(e.to_string()))?;
            if let Some(fallback) = socket.fallback() {
                self.log.push(format!("af_xdp: {fallback}"));
            }
            self.socket_mode = if socket.is_zero_copy() {
                "zero-copy"
            } else {
                "copy"
            }
            .to_string();
            self.steering
                .register_socket(queue, socket.as_raw_fd())
                .map_err(|e| LbError::Setup(e.to_string()))?;
            let stages = config.pipelined.as_ref().map(|p| StageConfig {
                cores: p.cores.get_ref().clone(),
                depth: *p.queue_depth.get_ref(),
            });
            let worker_config = WorkerConfig {
                core,
                batch: self.tuning.batch.value,
                poll: config.poll,
                stages: stages.clone(),
            };
            let worker = Worker::start(socket, pool, || self.chain(&tables), worker_config)
                .map_err(|e| LbError::Setup(e.to_string()))?;
            self.log.push(format!(
                "worker: {}:{queue} on core {} ({source}), {:?} polling, batch {}{}",
                self.iface,
                core.map_or("any".into(), |c| c.to_string()),
                config.poll,
                self.tuning.batch,
                stages.map_or(String::new(), |s| format!(
                    ", pipelined to stage cores {:?} (queue depth {})",
                    s.cores, s.depth
                )),
            ));
            self.workers.push(worker);
        }
        Ok(())
    }

    fn tables(&mut self) -> crate::lb::tables::Tables {
        self.registry.tables(
            self.own_mac,
            self.mtu,
            &self.own_addresses,
            self.counters.clone(),
        )
    }

    fn chain(&self, tables: &Arc<crate::lb::tables::Tables>) -> Chain {
        Chain::new(vec![Box::new(LoadBalancer::new(
            tables.clone(),
            self.config.connections,
            self.nat.clone(),
        ))])
    }

    /// Installs fresh tables in every worker (hot swap at a batch boundary).
    fn publish(&mut self) -> Result<(), LbError> {
        let tables = Arc::new(self.tables());
        for worker in &self.workers {
            worker
                .swap(|| self.chain(&tables), Duration::from_secs(2))
                .map_err(|e| LbError::Setup(e.to_string()))?;
            offload::kill_point::reached("lb:swap");
        }
        Ok(())
    }

    /// Checks that the steering program can take the rules `vips` need beside the rules
    /// already there (others' included), changing nothing: a full rule table, or a prefix
    /// covered by too many rules, is found before a reload applies anything.
    fn check_rules(&self, vips: &[VipConfig]) -> Result<(), LbError> {
        use offload::rules::{self, Rule};
        let wanted = wanted_rules(vips);
        let ours: HashMap<u32, &RuleSpec> = self.rules.iter().map(|(r, id)| (*id, r)).collect();
        let error = |e: &dyn std::fmt::Display| {
            LbError::Setup(format!(
                "the steering program cannot take the rules of the new config: {e}; nothing was applied"
            ))
        };
        let current = self.steering.rules().map_err(|e| error(&e))?;
        let mut kept: Vec<Rule> = current
            .into_iter()
            .filter(|rule| ours.get(&rule.id).is_none_or(|spec| wanted.contains(spec)))
            .collect();
        let new: Vec<&RuleSpec> = wanted
            .iter()
            .filter(|r| !self.rules.contains_key(r))
            .collect();
        let ids = rules::allocate_ids(&kept, new.len()).map_err(|e| error(&e))?;
        for (spec, id) in new.into_iter().zip(ids) {
            rules::check_new(&kept, spec).map_err(|e| error(&e))?;
            kept.push(Rule {
                id,
                spec: spec.clone(),
            });
        }
        rules::compile(&kept).map_err(|e| error(&e))?;
        Ok(())
    }

    fn sync_rules(&mut self) -> Result<(), LbError> {
        let vips: Vec<VipConfig> = self
            .registry
            .vips
            .iter()
            .map(|v| v.config.clone())
            .collect();
        let wanted = wanted_rules(&vips);
        let stale: Vec<RuleSpec> = self
            .rules
            .keys()
            .filter(|r| !wanted.contains(r))
            .cloned()
            .collect();
        let pruned = !stale.is_empty();
        for rule in stale {
            let id = self.rules.remove(&rule).expect("listed above");
            self.steering
                .delete_rule(id)
                .map_err(|e| LbError::Setup(e.to_string()))?;
        }
        if pruned {
            offload::kill_point::reached("lb:rules-pruned");
        }
        let new: Vec<RuleSpec> = wanted
            .into_iter()
            .filter(|r| !self.rules.contains_key(r))
            .collect();
        let ids = self
            .steering
            .add_rules(&new)
            .map_err(|e| LbError::Setup(format!("steering rules: {e}")))?;
        self.rules.extend(new.into_iter().zip(ids));
        Ok(())
    }

    /// Rebuilds the ntuple rules from the VIPs and the workers' queues.
    fn sync_hw_steering(&mut self) -> Result<(), LbError> {
        let vips: Vec<_> = self.registry.vips.iter().map(|v| v.config.key()).collect();
        let queues: Vec<u32> = self.workers.iter().map(|w| w.queue()).collect();
        let device_queues = nic::ethtool::queue_count(&self.iface).unwrap_or(1);
        let line = self
            .hw_steering
            .sync(
                self.config.ntuple,
                &self.iface,
                &vips,
                &queues,
                device_queues,
            )
            .map_err(LbError::Setup)?;
        self.log.extend(line);
        Ok(())
    }

    fn sync_nat_ranges(&self) {
        for (snat, protocol, range) in self.registry.nat_ranges() {
            self.nat.add_range(address(snat), protocol.number(), range);
        }
    }

    /// Looks next hops up in the kernel's routes and neighbour table; for those missing,
    /// makes the kernel resolve them (a datagram to the discard port sends ARP/ND) and
    /// waits up to `wait`.
    pub fn resolve_next_hops(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            // One dump of each table per round, whatever the number of backends.
            let routes = lab::netlink::routes().unwrap_or_default();
            let neighbours = lab::netlink::neighbours().unwrap_or_default();
            let mut missing = 0;
            for (ip, hops) in self.registry.next_hops() {
                let next_hop = lab::netlink::gateway_for(&routes, ip).unwrap_or(ip);
                match neighbours.get(&next_hop) {
                    Some(mac) => hops.iter().for_each(|h| {
                        h.set(*mac);
                        h.wanted.store(false, Ordering::Relaxed);
                    }),
                    None => {
                        missing += 1;
                        let wanted = hops
                            .iter()
                            .any(|h| h.get().is_none() || h.wanted.load(Ordering::Relaxed));
                        if wanted {
                            trigger_resolution(next_hop);
                        }
                    }
                }
            }
            if missing == 0 || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs until `stop` is set: serves the control socket, refreshes next hops, expires
    /// NAT entries and applies health checks. `report` gets each event as it happens
    /// (health flips, refused control clients). Returns an error, after which the caller
    /// should drop the appliance, when the interface is gone or a worker stopped.
    pub fn serve(
        &mut self,
        stop: &AtomicBool,
        report: &mut dyn FnMut(&str),
    ) -> Result<(), LbError> {
        let mut server = ControlServer::bind(&self.control, Limits::default())
            .map_err(|e| LbError::Setup(e.to_string()))?;
        let (health_tx, health_rx) = mpsc::channel();
        let health_stop = Arc::new(AtomicBool::new(false));
        let mut health_targets = self.registry.health_targets();
        let mut health = spawn_health_checks(
            health_targets.clone(),
            health_tx.clone(),
            health_stop.clone(),
        );
        let mut last_housekeeping = Instant::now();
        let mut result = Ok(());
        while !stop.load(Ordering::Relaxed) {
            let mut events = Vec::new();
            let polled = server.poll(
                Duration::from_millis(10),
                &mut |request| self.handle(request),
                &mut |line| events.push(line),
            );
            for event in events {
                self.event(event, report);
            }
            if let Err(error) = polled {
                result = Err(LbError::Setup(error.to_string()));
                break;
            }
            let mut flipped = false;
            while let Ok((vip, ip, up, check)) = health_rx.try_recv() {
                if self.registry.health_result(&vip, ip, up, &check) {
                    flipped = true;
                    let event = if up {
                        format!(
                            "health: backend {ip} of {vip} is up again ({} good checks in a row)",
                            check.rise
                        )
                    } else {
                        format!(
                            "health: backend {ip} of {vip} is down ({} failed checks in a row); its flows move",
                            check.fall
                        )
                    };
                    self.event(event, report);
                }
            }
            if flipped && let Err(error) = self.publish() {
                result = Err(error);
                break;
            }
            if last_housekeeping.elapsed() >= Duration::from_millis(200) {
                last_housekeeping = Instant::now();
                if let Err(error) = self.check_alive() {
                    result = Err(error);
                    break;
                }
                self.resolve_next_hops(Duration::ZERO);
                self.nat.sweep(self.started.elapsed().as_secs() as u32);
                let targets = self.registry.health_targets();
                if targets != health_targets {
                    health_stop.store(true, Ordering::Relaxed);
                    let _ = health.join();
                    health_stop.store(false, Ordering::Relaxed);
                    health = spawn_health_checks(
                        targets.clone(),
                        health_tx.clone(),
                        health_stop.clone(),
                    );
                    health_targets = targets;
                }
            }
        }
        health_stop.store(true, Ordering::Relaxed);
        let _ = health.join();
        if let Err(error) = &result {
            self.event(format!("stopping: {error}"), report);
        }
        result
    }

    /// Records a runtime event for `lb status` and hands it to `report`.
    fn event(&mut self, line: String, report: &mut dyn FnMut(&str)) {
        report(&line);
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(line);
    }

    /// The interface must still be the one the appliance started on (a deleted interface's
    /// sockets and program are gone with it, and a re-created one has a new index), and
    /// every worker must still run.
    fn check_alive(&mut self) -> Result<(), LbError> {
        if nic::ifindex(&self.iface).ok() != Some(self.ifindex) {
            return Err(LbError::InterfaceGone {
                iface: self.iface.clone(),
                ifindex: self.ifindex,
            });
        }
        if let Some(at) = self.workers.iter().position(Worker::has_stopped) {
            let worker = self.workers.remove(at);
            let queue = worker.queue();
            let reason = match worker.stop() {
                Ok(_) => "it ended without an error".to_string(),
                Err(error) => error.to_string(),
            };
            return Err(LbError::WorkerStopped {
                iface: self.iface.clone(),
                queue,
                reason,
            });
        }
        Ok(())
    }

    pub fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Status => return Response::status(self.status()),
            Request::Reload => self.reload(),
            Request::Backend {
                action,
                vip,
                backend,
                weight,
            } => match apply_backend_command(&mut self.registry, &action, &vip, backend, weight) {
                Ok(()) => self.publish().map(|()| Changes::default()),
                Err(error) => return Response::error(error),
            },
        };
        match result {
            Ok(changes) => Response::changes(changes),
            Err(error) => Response::error(error.to_string()),
        }
    }

    /// Re-reads the config and applies only what changed in VIPs and backends. Settings
    /// that shape the workers (interface, queues, cores, modes) need a restart.
    fn reload(&mut self) -> Result<Changes, LbError> {
        let new = Config::load(&self.config_path)?;
        let fixed = [
            ("interface", new.interface != self.config.interface),
            ("queues", new.queues != self.config.queues),
            ("cores", new.cores != self.config.cores),
            ("xdp_mode", new.xdp_mode != self.config.xdp_mode),
            ("zero_copy", new.zero_copy != self.config.zero_copy),
            ("poll", new.poll != self.config.poll),
            ("batch", new.batch != self.config.batch),
            ("ring_size", new.ring_size != self.config.ring_size),
            ("frame_size", new.frame_size != self.config.frame_size),
            ("pipelined", new.pipelined != self.config.pipelined),
            ("connections", new.connections != self.config.connections),
            ("control", new.control != self.config.control),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(LbError::Setup(format!(
                "reload: {field} changed; that needs a restart (nothing was applied)"
            )));
        }
        self.check_rules(&new.vip)?;
        let changes = self.registry.apply_config(&new);
        self.config = new;
        self.sync_nat_ranges();
        self.sync_rules()?;
        offload::kill_point::reached("lb:reload-rules-synced");
        self.sync_hw_steering()?;
        self.steering
            .set_prefilter(self.prefilter_maps, &self.config.prefilter)
            .map_err(|e| LbError::Setup(e.to_string()))?;
        self.publish()?;
        self.resolve_next_hops(Duration::from_millis(500));
        Ok(changes)
    }

    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.workers.iter().map(Worker::stats).collect()
    }

    pub fn status(&self) -> Status {
        let workers = self.worker_stats();
        let mut worker_values: Vec<serde_json::Value> = workers
            .iter()
            .map(|w| serde_json::to_value(w).unwrap_or_default())
            .collect();
        worker_values.push(serde_json::json!({"total": WorkerStats::total(&workers)}));
        Status {
            interface: self.iface.clone(),
            xdp_mode: self.xdp_mode.clone(),
            socket_mode: self.socket_mode.clone(),
            vips: self.registry.status(),
            workers: worker_values,
            steering: self
                .steering
                .counters()
                .ok()
                .and_then(|c| serde_json::to_value(c).ok())
                .unwrap_or_default(),
            cross_queue_replies: self.counters.cross_queue_replies.load(Ordering::Relaxed),
            partial_checksums: self.counters.partial_checksums.load(Ordering::Relaxed),
            fragments: self.counters.fragments.load(Ordering::Relaxed),
            too_big_replies: self.counters.too_big_replies.load(Ordering::Relaxed),
            nat_entries: self.nat.len(),
            prefilter: self
                .steering
                .prefilter(self.prefilter_maps)
                .unwrap_or_default(),
            log: self.log.clone(),
            events: self.events.iter().cloned().collect(),
            conntrack_evictions: self.counters.conntrack_evictions.load(Ordering::Relaxed),
            conntrack_capacity: self.config.connections,
        }
    }

    pub fn control_path(&self) -> &Path {
        &self.control
    }
}

impl Drop for Appliance {
    /// Graceful stop: workers drain and free their UMEMs, the program and its pins go, and
    /// so do the control socket and pid file.
    fn drop(&mut self) {
        // ntuple rules first: they point at the queues whose sockets go next.
        self.hw_steering = HwSteering::default();
        for worker in self.workers.drain(..) {
            let queue = worker.queue();
            let _ = worker.stop();
            let _ = self.steering.unregister_socket(queue);
        }
        if let Err(OffloadError::UnknownInterface(_)) = offload::detach(&self.iface) {
            // The interface is gone, and the kernel detached the program with it; what
            // fastpath kept for it goes too.
            offload::forget_vanished(&self.iface);
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

/// The AF_XDP tuning in use, each value with where it came from.
struct Tuning {
    batch: Sourced<u32>,
    ring_size: Sourced<u32>,
    frame_size: Sourced<u32>,
}

impl Tuning {
    /// Config values win; the rest come from the profile matching the interface's driver.
    fn resolve(config: &Config, iface: &str, log: &mut Vec<String>) -> Tuning {
        let profiles = Profiles::builtin();
        let driver = nic::ethtool::driver(iface).unwrap_or_else(|_| "unknown".into());
        let profile = profiles.for_driver(&driver);
        log.push(match profile {
            Some(p) => format!("profile: {} (driver {driver})", p.name),
            None => format!("profile: none matches driver {driver}; built-in defaults"),
        });
        let tuning = Tuning {
            batch: pick(config.batch, profile, |t| t.batch, 64),
            ring_size: pick(config.ring_size, profile, |t| t.ring_size, 2048),
            frame_size: pick(config.frame_size, profile, |t| t.frame_size, 4096),
        };
        log.push(format!(
            "tuning: batch {}, ring_size {}, frame_size {}",
            tuning.batch, tuning.ring_size, tuning.frame_size
        ));
        tuning
    }
}

/// The pid file that claims an interface for this process, removed on drop (so also when a
/// start fails half way).
struct PidFile(PathBuf);

impl PidFile {
    /// Takes the interface for this process. A pid file whose process is gone is a dead
    /// run's (kill -9): its leftovers are cleaned by the caller.
    fn claim(path: PathBuf, iface: &str, log: &mut Vec<String>) -> Result<PidFile, LbError> {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            // SAFETY: kill with signal 0 only checks that the process exists.
            let alive = pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } == 0;
            if alive {
                return Err(LbError::Setup(format!(
                    "an appliance (pid {pid}) already runs on {iface}; stop it first"
                )));
            }
            log.push(format!(
                "previous run (pid {pid}) on {iface} did not stop cleanly; cleaning up after it"
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LbError::Setup(format!("create {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, std::process::id().to_string())
            .map_err(|e| LbError::Setup(format!("write {}: {e}", path.display())))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The steering rules for `vips`: each VIP, and each NAT address's port range, go to the
/// sockets; everything else (ARP, ND, the host's own traffic) passes to the kernel.
fn wanted_rules(vips: &[VipConfig]) -> Vec<RuleSpec> {
    let proto = |p: Protocol| match p {
        Protocol::Tcp => RuleProtocol::Tcp,
        Protocol::Udp => RuleProtocol::Udp,
    };
    let mut rules = Vec::new();
    for vip in vips {
        let key = vip.key();
        rules.push(RuleSpec {
            proto: Some(proto(key.protocol)),
            dst: Some(IpNet::from(key.address)),
            dport: Some(PortRange {
                lo: key.port,
                hi: key.port,
            }),
            ..RuleSpec::new(Action::Xsk)
        });
        if vip.forwarding == Forwarding::Nat
            && let Some(snat) = &vip.snat_address
        {
            let (lo, hi) = vip.snat_port_range();
            rules.push(RuleSpec {
                proto: Some(proto(key.protocol)),
                dst: Some(IpNet::from(*snat.get_ref())),
                dport: Some(PortRange { lo, hi }),
                ..RuleSpec::new(Action::Xsk)
            });
        }
    }
    rules.sort_by_key(|r| format!("{r:?}"));
    rules.dedup();
    rules
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

fn trigger_resolution(next_hop: IpAddr) {
    let bind: SocketAddr = if next_hop.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[], SocketAddr::new(next_hop, 9));
    }
}

type HealthTarget = (
    crate::lb::config::VipKey,
    IpAddr,
    u16,
    crate::lb::config::HealthCheck,
);
type HealthResult = (
    crate::lb::config::VipKey,
    IpAddr,
    bool,
    crate::lb::config::HealthCheck,
);

/// Active TCP health checks: a connect to each backend's port, every interval.
fn spawn_health_checks(
    targets: Vec<HealthTarget>,
    results: mpsc::Sender<HealthResult>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = vec![Instant::now(); targets.len()];
        while !stop.load(Ordering::Relaxed) && !targets.is_empty() {
            for ((vip, ip, port, check), due) in targets.iter().zip(next.iter_mut()) {
                if Instant::now() < *due {
                    continue;
                }
                *due = Instant::now() + Duration::from_millis(check.interval_ms);
                let up = TcpStream::connect_timeout(
                    &SocketAddr::new(*ip, *port),
                    Duration::from_millis(check.timeout_ms),
                )
                .is_ok();
                if results.send((*vip, *ip, up, check.clone())).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}
