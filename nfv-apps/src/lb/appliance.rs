//! The running appliance: XDP steering on the interface, one pinned worker per queue, and a
//! control loop serving the control socket, resolving next hops, health checks and NAT expiry.
//!
//! Its parts, each depending on none of the others: `data_plane` (sockets, workers, hot
//! swap), `rule_sync` (the steering rules the VIPs need), `health` (concurrent TCP checks),
//! `pid_file` and `reload` (what a reload may change); next hops are in `lb::neighbours`,
//! ntuple rules in `lb::ntuple_rules`, the control protocol in `lb::control`.

mod data_plane;
mod health;
mod pid_file;
mod reload;
mod rule_sync;

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hw_profiles::SocketTuning;
use offload::{
    AttachOptions, OffloadError, Steering, mode::ModePolicy, placement::Layout, rules::Action,
};
use pipeline::{Chain, WorkerStats};

pub use self::rule_sync::{RuleChanges, check_fits, rule_changes, wanted_rules};
use self::{
    data_plane::{DataPlane, resolve_tuning},
    health::HealthChecks,
    pid_file::PidFile,
    reload::restart_needed,
    rule_sync::SteeringRules,
};
use crate::lb::{
    balancer::LoadBalancer,
    config::{Config, XdpModeSetting},
    control::{ControlServer, Limits, Request, Response, Status, apply_backend_command},
    error::LbError,
    nat::{NatTable, NatTimeouts},
    neighbours::{InterfaceFacts, resolve_next_hops},
    ntuple_rules::{self, NtupleRules},
    packet::address,
    registry::{Changes, Registry},
    tables::{LbCounters, Tables},
};

/// Runtime events kept for `lb status` (the newest ones).
const EVENTS_KEPT: usize = 100;
/// How often the control loop checks the interface and workers, refreshes next hops,
/// expires NAT entries and follows health-check targets.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);

/// A running load balancer on one interface; dropping it stops everything it started.
pub struct Appliance {
    config_path: PathBuf,
    config: Config,
    iface: String,
    /// The interface's index at start: a different one (or none) means it was deleted.
    ifindex: u32,
    interface: InterfaceFacts,
    registry: Registry,
    nat: Arc<NatTable>,
    counters: Arc<LbCounters>,
    data_plane: DataPlane,
    steering: Steering,
    rules: SteeringRules,
    ntuple: NtupleRules,
    tuning: SocketTuning,
    /// Where the prefilter's addresses live: "" (merged into steer) or the hardware maps.
    prefilter_maps: &'static str,
    xdp_mode: String,
    control: PathBuf,
    started: Instant,
    /// Printed by the CLI: what was chosen and where each value came from.
    pub log: Vec<String>,
    events: VecDeque<String>,
    /// Removed last, after the attachment is gone.
    _pid_file: PidFile,
}

impl Appliance {
    /// Starts the appliance of the config at `config_path`: claims the interface, attaches
    /// the steering program, installs the VIPs' rules and starts the workers. It serves
    /// traffic from here; [`Appliance::serve`] runs its control loop.
    pub fn start(config_path: &Path) -> Result<Appliance, LbError> {
        let config = Config::load(config_path)?;
        let iface = config.interface.clone();
        let mut log = Vec::new();
        let pid_file = PidFile::claim(PidFile::path_for(&iface), &iface, &mut log)?;
        let ifindex = nic::ifindex(&iface).map_err(|source| LbError::UnknownInterface {
            iface: iface.clone(),
            source,
        })?;
        // The NIC keeps ntuple rules past a kill -9; a dead run's are removed first.
        let ntuple_record = ntuple_rules::record_path(&iface);
        log.extend(NtupleRules::remove_leftovers(&ntuple_record, &iface));
        let interface = InterfaceFacts::read(&iface).map_err(|source| LbError::ReadInterface {
            iface: iface.clone(),
            source,
        })?;

        let tuning = resolve_tuning(&config, &iface, &mut log);
        let (attachment, steering) = attach(&config, &iface, &mut log)?;

        let registry = Registry::new(&config);
        let control = config.control_path();
        let mut appliance = Appliance {
            config_path: config_path.to_path_buf(),
            iface: iface.clone(),
            ifindex,
            interface,
            registry,
            nat: Arc::new(NatTable::new(NatTimeouts::default())),
            counters: Arc::default(),
            data_plane: DataPlane::new(&iface),
            steering,
            rules: SteeringRules::default(),
            ntuple: NtupleRules::recorded_at(ntuple_record),
            tuning,
            prefilter_maps: match attachment.plan.layout {
                Layout::Split => offload::HW_PREFILTER,
                _ => "",
            },
            xdp_mode: attachment.mode.to_string(),
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
        appliance.sync_ntuple()?;
        appliance.resolve_next_hops(Duration::from_secs(2));
        Ok(appliance)
    }

    fn start_workers(&mut self) -> Result<(), LbError> {
        let make_chain = self.chain_factory();
        self.data_plane.start_workers(
            &self.config,
            &self.tuning,
            &mut self.steering,
            &make_chain,
            &mut self.log,
        )
    }

    /// Builds the workers' chain over fresh tables (one set for every worker and stage).
    fn chain_factory(&mut self) -> impl Fn() -> Chain + use<> {
        let tables: Arc<Tables> = Arc::new(self.registry.tables(
            self.interface.mac,
            self.interface.mtu,
            &self.interface.addresses,
            self.counters.clone(),
        ));
        let (connections, nat) = (self.config.connections, self.nat.clone());
        move || {
            Chain::new(vec![Box::new(LoadBalancer::new(
                tables.clone(),
                connections,
                nat.clone(),
            ))])
        }
    }

    /// Installs fresh tables in every worker (hot swap at a batch boundary).
    fn publish(&mut self) -> Result<(), LbError> {
        let make_chain = self.chain_factory();
        self.data_plane.swap(&make_chain)
    }

    fn sync_rules(&mut self) -> Result<(), LbError> {
        let wanted = wanted_rules(self.registry.vips.iter().map(|v| &v.config));
        self.rules.sync(&mut self.steering, &wanted)
    }

    /// Rebuilds the ntuple rules from the VIPs and the workers' queues.
    fn sync_ntuple(&mut self) -> Result<(), LbError> {
        let vips: Vec<_> = self.registry.vips.iter().map(|v| v.config.key()).collect();
        let device_queues = nic::ethtool::queue_count(&self.iface).unwrap_or(1);
        let line = self
            .ntuple
            .sync(
                self.config.ntuple,
                &self.iface,
                &vips,
                &self.data_plane.queues(),
                device_queues,
            )
            .map_err(LbError::Ntuple)?;
        self.log.extend(line);
        Ok(())
    }

    fn sync_nat_ranges(&self) {
        for (snat, protocol, range) in self.registry.nat_ranges() {
            self.nat.add_range(address(snat), protocol.number(), range);
        }
    }

    /// Looks the backends' next hops up; for those missing, has the kernel resolve them and
    /// waits up to `wait`.
    pub fn resolve_next_hops(&self, wait: Duration) {
        resolve_next_hops(&self.registry.next_hops(), wait);
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
        let mut server = ControlServer::bind(&self.control, Limits::default())?;
        let mut health =
            HealthChecks::start(self.registry.health_targets()).map_err(LbError::HealthChecks)?;
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
                result = Err(LbError::Control(error));
                break;
            }
            if self.apply_health_results(&health, report)
                && let Err(error) = self.publish()
            {
                result = Err(error);
                break;
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                last_housekeeping = Instant::now();
                if let Err(error) = self.check_alive() {
                    result = Err(error);
                    break;
                }
                self.resolve_next_hops(Duration::ZERO);
                self.nat.sweep(self.started.elapsed().as_secs() as u32);
                let targets = self.registry.health_targets();
                if targets != health.targets() {
                    match HealthChecks::start(targets) {
                        Ok(replacement) => health = replacement,
                        Err(error) => {
                            result = Err(LbError::HealthChecks(error));
                            break;
                        }
                    }
                }
            }
        }
        drop(health);
        if let Err(error) = &result {
            self.event(format!("stopping: {}", offload::error_chain(error)), report);
        }
        result
    }

    /// Feeds the health results that arrived to the registry; returns whether a backend's
    /// health flipped (the workers then need new tables).
    fn apply_health_results(
        &mut self,
        health: &HealthChecks,
        report: &mut dyn FnMut(&str),
    ) -> bool {
        let mut flipped = false;
        for result in health.results() {
            let (vip, ip, up, check) = (result.vip, result.backend, result.up, &result.check);
            if !self.registry.health_result(&vip, ip, up, check) {
                continue;
            }
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
        flipped
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
        self.data_plane.check_running()
    }

    /// Carries out one control request.
    pub fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Status => return Response::status(self.status()),
            Request::Reload => self.reload(),
            Request::Backend {
                action,
                vip,
                backend,
                weight,
            } => match apply_backend_command(&mut self.registry, action, &vip, backend, weight) {
                Ok(()) => self.publish().map(|()| Changes::default()),
                Err(error) => return Response::error(error.to_string()),
            },
        };
        match result {
            Ok(changes) => Response::changes(changes),
            Err(error) => Response::error(offload::error_chain(&error)),
        }
    }

    /// Re-reads the config and applies only what changed in VIPs and backends. Settings
    /// that shape the workers (interface, queues, cores, modes) need a restart.
    fn reload(&mut self) -> Result<Changes, LbError> {
        let new = Config::load(&self.config_path)?;
        if let Some(setting) = restart_needed(&self.config, &new) {
            return Err(LbError::RestartNeeded { setting });
        }
        self.rules.check(&self.steering, &wanted_rules(&new.vip))?;
        let changes = self.registry.apply_config(&new);
        self.config = new;
        self.sync_nat_ranges();
        self.sync_rules()?;
        offload::kill_point::reached("lb:reload-rules-synced");
        self.sync_ntuple()?;
        self.steering
            .set_prefilter(self.prefilter_maps, &self.config.prefilter)
            .map_err(LbError::Prefilter)?;
        self.publish()?;
        self.resolve_next_hops(Duration::from_millis(500));
        Ok(changes)
    }

    /// Each worker's stats, as last published.
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.data_plane.stats()
    }

    /// Everything `fastpath lb status` shows.
    pub fn status(&self) -> Status {
        Status {
            interface: self.iface.clone(),
            xdp_mode: self.xdp_mode.clone(),
            socket_mode: self.data_plane.socket_mode().to_string(),
            vips: self.registry.status(),
            workers: Status::worker_entries(self.worker_stats()),
            steering: self.steering.counters().ok(),
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

    /// Where the control socket is.
    pub fn control_path(&self) -> &Path {
        &self.control
    }
}

impl Drop for Appliance {
    /// Graceful stop: workers drain and free their UMEMs, the program and its pins go, and
    /// so do the control socket and pid file.
    fn drop(&mut self) {
        // ntuple rules first: they point at the queues whose sockets go next.
        self.ntuple = NtupleRules::default();
        self.data_plane.stop(&self.steering);
        if let Err(OffloadError::UnknownInterface(_)) = offload::detach(&self.iface) {
            // The interface is gone, and the kernel detached the program with it; what
            // fastpath kept for it goes too.
            offload::forget_vanished(&self.iface);
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

/// Attaches the steering program to `iface` as the config's XDP mode asks, replacing one a
/// dead run left, and opens its maps. The plan is logged before it is applied.
fn attach(
    config: &Config,
    iface: &str,
    log: &mut Vec<String>,
) -> Result<(offload::Attachment, Steering), LbError> {
    let policy = match config.xdp_mode {
        XdpModeSetting::Auto => ModePolicy::Auto,
        XdpModeSetting::Hw => "hw".parse().unwrap(),
        XdpModeSetting::Drv => "drv".parse().unwrap(),
        XdpModeSetting::Skb => "skb".parse().unwrap(),
    };
    let options = AttachOptions {
        iface: iface.to_string(),
        policy,
        default_action: Action::Pass,
        prefilter: config.prefilter.clone(),
    };
    let plan = offload::plan_for(&options).map_err(|source| LbError::PlanXdp {
        iface: iface.to_string(),
        source,
    })?;
    log.extend(plan.to_string().lines().map(|line| format!("xdp: {line}")));
    let attach = || offload::attach_planned(&options, plan.clone());
    let attachment = match attach() {
        Err(OffloadError::AlreadyAttached { .. }) => {
            // The pid file said no appliance is alive: these pins are a dead run's.
            log.push(format!(
                "removed the steering program a previous run left on {iface}"
            ));
            offload::detach(iface).map_err(|source| LbError::RemoveLeftoverProgram {
                iface: iface.to_string(),
                source,
            })?;
            attach()
        }
        other => other,
    }
    .map_err(|source| LbError::Attach {
        iface: iface.to_string(),
        source,
    })?;
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
    let steering = Steering::open(iface).map_err(|source| {
        let _ = offload::detach(iface);
        LbError::OpenSteering {
            iface: iface.to_string(),
            source,
        }
    })?;
    Ok((attachment, steering))
}
