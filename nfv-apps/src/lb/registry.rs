//! The control plane's view of VIPs and backends: config, operator state (drain, disable),
//! health, counters and next hops. Every change rebuilds the workers' `Tables`.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use serde::Serialize;

use crate::lb::{
    config::{Config, Forwarding, HealthCheck, VipConfig, VipKey},
    neighbours::mac_text,
    tables::{Backend, BackendCounters, BackendState, LbCounters, NextHop, Tables, Vip},
};

/// A backend as the control plane keeps it.
#[derive(Debug)]
pub struct BackendEntry {
    /// Stable while the backend stays: the connection tables refer to it by this.
    pub id: u32,
    /// Its address.
    pub ip: IpAddr,
    /// The port its flows go to.
    pub port: u16,
    /// Its share of new flows.
    pub weight: u32,
    /// What the operator asked for (active, draining or disabled).
    pub operator: BackendState,
    /// False after `fall` failed health checks in a row, true again after `rise` successes.
    pub healthy: bool,
    /// Health checks in a row that agreed: successes (> 0) or failures (< 0).
    pub streak: i32,
    /// The MAC of its next hop, shared with the workers' tables.
    pub next_hop: Arc<NextHop>,
    /// Its counters, shared with the workers' tables.
    pub counters: Arc<BackendCounters>,
}

impl BackendEntry {
    /// Whether it takes flows: the operator's state, unless health checks took it down.
    pub fn state(&self) -> BackendState {
        match (self.operator, self.healthy) {
            (_, false) => BackendState::Disabled,
            (state, true) => state,
        }
    }
}

/// A VIP as the control plane keeps it.
pub struct VipEntry {
    /// Its config section.
    pub config: VipConfig,
    /// Its backends, in config order (those added by command last).
    pub backends: Vec<BackendEntry>,
}

/// A change a control command or reload makes, for the reply.
#[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Changes {
    /// VIPs new in the config.
    pub vips_added: Vec<String>,
    /// VIPs gone from it.
    pub vips_removed: Vec<String>,
    /// Backends new to a VIP that stayed.
    pub backends_added: Vec<String>,
    /// Backends gone from a VIP that stayed.
    pub backends_removed: Vec<String>,
    /// Backends whose weight changed, `old -> new`.
    pub weights_changed: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// Every VIP and backend with its operator state, health, counters and next hop.
pub struct Registry {
    /// The VIPs, in config order.
    pub vips: Vec<VipEntry>,
    next_id: u32,
    generation: u64,
}

/// Why a backend command was refused.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields: the message names each one
pub enum RegistryError {
    /// The VIP does not exist.
    #[error("no VIP {0}")]
    NoVip(VipKey),
    /// The VIP has no such backend.
    #[error("VIP {vip} has no backend {backend}")]
    NoBackend { vip: VipKey, backend: IpAddr },
    /// The VIP has that backend already.
    #[error("VIP {vip} already has backend {backend}")]
    BackendExists { vip: VipKey, backend: IpAddr },
    /// The backend's address family is not the VIP's.
    #[error("backend {backend} is {}, VIP {vip} is not", if backend.is_ipv4() { "IPv4" } else { "IPv6" })]
    Family { vip: VipKey, backend: IpAddr },
    /// Removing it would leave the VIP nothing to send new flows to.
    #[error("removing {backend} would leave VIP {vip} with no backend of positive weight")]
    LastBackend { vip: VipKey, backend: IpAddr },
}

impl Registry {
    /// The VIPs and backends of `config`, all active and healthy.
    pub fn new(config: &Config) -> Registry {
        let mut registry = Registry {
            vips: Vec::new(),
            next_id: 0,
            generation: 0,
        };
        registry.apply_config(config);
        registry
    }

    fn new_backend(&mut self, ip: IpAddr, port: u16, weight: u32) -> BackendEntry {
        self.next_id += 1;
        BackendEntry {
            id: self.next_id,
            ip,
            port,
            weight,
            operator: BackendState::Active,
            healthy: true,
            streak: 0,
            next_hop: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Makes the VIPs and backends those of `config`; backends that stay keep their id,
    /// counters, next hop and operator state. Returns what changed.
    pub fn apply_config(&mut self, config: &Config) -> Changes {
        let mut changes = Changes::default();
        let mut old: Vec<VipEntry> = std::mem::take(&mut self.vips);
        for vip in &config.vip {
            let key = vip.key();
            let mut previous = old
                .iter()
                .position(|entry| entry.config.key() == key)
                .map(|i| old.remove(i));
            if previous.is_none() {
                changes.vips_added.push(key.to_string());
            }
            let mut backends = Vec::new();
            for backend in &vip.backend {
                let ip = *backend.address.get_ref();
                let port = backend.port.unwrap_or(vip.port);
                let kept = previous.as_mut().and_then(|p| {
                    let at = p
                        .backends
                        .iter()
                        .position(|b| b.ip == ip && b.port == port)?;
                    Some(p.backends.remove(at))
                });
                let entry = match kept {
                    Some(mut entry) => {
                        if entry.weight != backend.weight {
                            changes.weights_changed.push(format!(
                                "{key} {ip}: {} -> {}",
                                entry.weight, backend.weight
                            ));
                            entry.weight = backend.weight;
                        }
                        entry
                    }
                    None => {
                        if previous.is_some() {
                            changes.backends_added.push(format!("{key} {ip}"));
                        }
                        self.new_backend(ip, port, backend.weight)
                    }
                };
                backends.push(entry);
            }
            if let Some(previous) = previous {
                for gone in previous.backends {
                    changes.backends_removed.push(format!("{key} {}", gone.ip));
                }
            }
            self.vips.push(VipEntry {
                config: vip.clone(),
                backends,
            });
        }
        for gone in old {
            changes.vips_removed.push(gone.config.key().to_string());
        }
        changes
    }

    /// The VIP `key`.
    pub fn vip_mut(&mut self, key: &VipKey) -> Result<&mut VipEntry, RegistryError> {
        self.vips
            .iter_mut()
            .find(|entry| entry.config.key() == *key)
            .ok_or(RegistryError::NoVip(*key))
    }

    /// Adds backend `ip` with `weight` to VIP `key`, on the VIP's port.
    pub fn add_backend(
        &mut self,
        key: &VipKey,
        ip: IpAddr,
        weight: u32,
    ) -> Result<(), RegistryError> {
        let vip = self.vip_mut(key)?;
        if vip.backends.iter().any(|b| b.ip == ip) {
            return Err(RegistryError::BackendExists {
                vip: *key,
                backend: ip,
            });
        }
        if ip.is_ipv4() != key.address.is_ipv4() {
            return Err(RegistryError::Family {
                vip: *key,
                backend: ip,
            });
        }
        let port = key.port;
        let entry = self.new_backend(ip, port, weight);
        self.vip_mut(key)?.backends.push(entry);
        Ok(())
    }

    /// Removes backend `ip` from VIP `key`; its flows move.
    pub fn remove_backend(&mut self, key: &VipKey, ip: IpAddr) -> Result<(), RegistryError> {
        let vip = self.vip_mut(key)?;
        let at = vip
            .backends
            .iter()
            .position(|b| b.ip == ip)
            .ok_or(RegistryError::NoBackend {
                vip: *key,
                backend: ip,
            })?;
        if !vip
            .backends
            .iter()
            .enumerate()
            .any(|(i, b)| i != at && b.weight > 0)
        {
            return Err(RegistryError::LastBackend {
                vip: *key,
                backend: ip,
            });
        }
        vip.backends.remove(at);
        Ok(())
    }

    /// Sets backend `ip` of VIP `key` active, draining or disabled, and its weight if given.
    pub fn set_operator_state(
        &mut self,
        key: &VipKey,
        ip: IpAddr,
        state: BackendState,
        weight: Option<u32>,
    ) -> Result<(), RegistryError> {
        let vip = self.vip_mut(key)?;
        let backend =
            vip.backends
                .iter_mut()
                .find(|b| b.ip == ip)
                .ok_or(RegistryError::NoBackend {
                    vip: *key,
                    backend: ip,
                })?;
        backend.operator = state;
        if let Some(weight) = weight {
            backend.weight = weight;
        }
        Ok(())
    }

    /// Feeds one health-check result; returns true when the backend's health flipped.
    pub fn health_result(
        &mut self,
        key: &VipKey,
        ip: IpAddr,
        up: bool,
        check: &HealthCheck,
    ) -> bool {
        let Ok(vip) = self.vip_mut(key) else {
            return false;
        };
        let Some(backend) = vip.backends.iter_mut().find(|b| b.ip == ip) else {
            return false;
        };
        // Saturating: a backend up for 2^31 checks in a row must not wrap to "failing".
        backend.streak = match (up, backend.streak) {
            (true, s) if s > 0 => s.saturating_add(1),
            (true, _) => 1,
            (false, s) if s < 0 => s.saturating_sub(1),
            (false, _) => -1,
        };
        let flip = if backend.healthy {
            i64::from(backend.streak) <= -i64::from(check.fall)
        } else {
            i64::from(backend.streak) >= i64::from(check.rise)
        };
        if flip {
            backend.healthy = !backend.healthy;
        }
        flip
    }

    /// The tables workers read, as of now.
    pub fn tables(
        &mut self,
        own_mac: [u8; 6],
        mtu: u32,
        own_addresses: &[IpAddr],
        counters: Arc<LbCounters>,
    ) -> Tables {
        self.generation += 1;
        let vips = self
            .vips
            .iter()
            .map(|entry| {
                let config = &entry.config;
                let key = config.key();
                let encap_source = config
                    .encap_source
                    .as_ref()
                    .map(|s| *s.get_ref())
                    .or_else(|| {
                        own_addresses
                            .iter()
                            .find(|a| a.is_ipv4() == key.address.is_ipv4() && !is_link_local(a))
                            .copied()
                    })
                    .unwrap_or(key.address);
                let backends = entry
                    .backends
                    .iter()
                    .map(|b| Backend {
                        id: b.id,
                        ip: b.ip,
                        address: crate::lb::packet::address(b.ip),
                        port: b.port,
                        weight: b.weight,
                        state: b.state(),
                        next_hop: b.next_hop.clone(),
                        counters: b.counters.clone(),
                    })
                    .collect();
                Vip::new(
                    key,
                    config.forwarding,
                    config.snat_address.as_ref().map(|s| *s.get_ref()),
                    encap_source,
                    backends,
                    *config.maglev_size.get_ref(),
                )
            })
            .collect();
        Tables::new(self.generation, vips, own_mac, mtu, counters)
    }

    /// Each VIP with its backends' state and counters, for `lb status`.
    pub fn status(&self) -> Vec<VipStatus> {
        self.vips
            .iter()
            .map(|entry| {
                let backends: Vec<BackendStatus> = entry
                    .backends
                    .iter()
                    .map(|b| (b, b.counters.totals()))
                    .map(|(b, totals)| BackendStatus {
                        address: b.ip,
                        port: b.port,
                        weight: b.weight,
                        state: b.state(),
                        healthy: b.healthy,
                        next_hop: b.next_hop.get().map(mac_text),
                        packets: totals.packets,
                        bytes: totals.bytes,
                        connections: totals.connections,
                    })
                    .collect();
                VipStatus {
                    vip: entry.config.key().to_string(),
                    forwarding: entry.config.forwarding,
                    packets: backends.iter().map(|b| b.packets).sum(),
                    bytes: backends.iter().map(|b| b.bytes).sum(),
                    connections: backends.iter().map(|b| b.connections).sum(),
                    backends,
                }
            })
            .collect()
    }

    /// Every backend that has active health checks, with its VIP and check.
    pub fn health_targets(&self) -> Vec<HealthTarget> {
        let mut targets = Vec::new();
        for entry in &self.vips {
            if let Some(check) = &entry.config.health_check {
                for b in &entry.backends {
                    targets.push(HealthTarget {
                        vip: entry.config.key(),
                        backend: b.ip,
                        port: b.port,
                        check: check.clone(),
                    });
                }
            }
        }
        targets
    }

    /// Next hops of all backends (for the resolver), by backend address.
    pub fn next_hops(&self) -> BTreeMap<IpAddr, Vec<Arc<NextHop>>> {
        let mut all: BTreeMap<IpAddr, Vec<Arc<NextHop>>> = BTreeMap::new();
        for entry in &self.vips {
            for b in &entry.backends {
                all.entry(b.ip).or_default().push(b.next_hop.clone());
            }
        }
        all
    }

    /// Each NAT VIP's SNAT address, protocol and port range.
    pub fn nat_ranges(&self) -> Vec<(IpAddr, crate::lb::config::Protocol, (u16, u16))> {
        self.vips
            .iter()
            .filter(|e| e.config.forwarding == Forwarding::Nat)
            .filter_map(|e| {
                let snat = e.config.snat_address.as_ref()?;
                Some((
                    *snat.get_ref(),
                    e.config.protocol,
                    e.config.snat_port_range(),
                ))
            })
            .collect()
    }
}

fn is_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// A backend to health-check: its VIP, address, port and check settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthTarget {
    /// The VIP the backend serves.
    pub vip: VipKey,
    /// The backend's address.
    pub backend: IpAddr,
    /// The port to connect to.
    pub port: u16,
    /// How often, how patiently, and how many results in a row flip it.
    pub check: HealthCheck,
}

/// A backend in `lb status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct BackendStatus {
    /// Its address.
    pub address: IpAddr,
    /// The port its flows go to.
    pub port: u16,
    /// Its share of new flows.
    pub weight: u32,
    /// Whether it takes flows.
    pub state: BackendState,
    /// What its health checks say (true without checks).
    pub healthy: bool,
    /// The MAC of its next hop, once resolved.
    pub next_hop: Option<String>,
    /// Packets sent to it.
    pub packets: u64,
    /// Bytes sent to it.
    pub bytes: u64,
    /// New flows scheduled to it.
    pub connections: u64,
}

/// A VIP in `lb status`, with its backends' sums.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct VipStatus {
    /// `ADDR:PORT/PROTO`.
    pub vip: String,
    /// How its packets reach the backends.
    pub forwarding: Forwarding,
    /// Packets sent to its backends.
    pub packets: u64,
    /// Bytes sent to its backends.
    pub bytes: u64,
    /// New flows scheduled to its backends.
    pub connections: u64,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(health_check: &str) -> (Registry, VipKey, IpAddr, HealthCheck) {
        let text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"dsr-l2\"\nhealth_check = {health_check}\n\
             [[vip.backend]]\naddress = \"10.0.1.11\"\n"
        );
        let config = Config::parse(&text, "lb.toml").unwrap();
        let registry = Registry::new(&config);
        let target = registry.health_targets().remove(0);
        (registry, target.vip, target.backend, target.check)
    }

    #[test]
    fn health_flips_after_fall_failures_and_rise_successes() {
        let (mut registry, key, ip, check) = registry("{ rise = 2, fall = 3 }");
        let flips: Vec<bool> = [false, false, false, true, true]
            .into_iter()
            .map(|up| registry.health_result(&key, ip, up, &check))
            .collect();
        assert_eq!(flips, [false, false, true, false, true]);
    }

    /// Found by the `lb_config` fuzz target: `fall = 2147483648` became i32::MIN, whose
    /// negation overflowed (a panic with overflow checks) on the first failed check.
    #[test]
    fn a_fall_beyond_i32_does_not_overflow() {
        let (mut registry, key, ip, check) = registry("{ fall = 2147483648, rise = 4294967295 }");
        assert!(!registry.health_result(&key, ip, false, &check));
        assert!(registry.vips[0].backends[0].healthy);
    }

    #[test]
    fn a_long_healthy_run_saturates_instead_of_wrapping() {
        let (mut registry, key, ip, check) = registry("{ rise = 2, fall = 3 }");
        registry.vips[0].backends[0].streak = i32::MAX;
        assert!(!registry.health_result(&key, ip, true, &check));
        assert_eq!(registry.vips[0].backends[0].streak, i32::MAX);
        assert!(registry.vips[0].backends[0].healthy);
    }
}
