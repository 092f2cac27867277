//! Hardware flow steering for the appliance: ethtool ntuple rules send each VIP's flows to a
//! queue that has an AF_XDP socket, so RSS cannot spread them onto queues without one.
//!
//! The rules are derived from the workers' own queues, the same queues whose sockets sit in
//! the XSKMAP, so queue -> XSKMAP -> worker core stays consistent: rules are rebuilt whenever
//! the VIPs change, and removed (on drop) before the sockets go.
//!
//! The NIC keeps its rules when the process dies, so the installed rules are also written
//! to a record file (`/run/fastpath/lb-<iface>.ntuple`): after a kill -9, the next start
//! removes the ones still in place ([`NtupleRules::remove_leftovers`]).

use std::{net::IpAddr, path::PathBuf};

use nic::{
    Kernel as Ioctl,
    ntuple::{self, FlowRule, InstalledRules, L4, NtupleError},
};

use crate::lb::config::{Protocol, Toggle, VipKey};

/// One rule per VIP, VIPs dealt over the socket queues in turn.
pub fn rules_for(vips: &[VipKey], socket_queues: &[u32]) -> Vec<FlowRule> {
    if socket_queues.is_empty() {
        return Vec::new();
    }
    vips.iter()
        .enumerate()
        .map(|(i, vip)| FlowRule {
            protocol: match vip.protocol {
                Protocol::Tcp => L4::Tcp,
                Protocol::Udp => L4::Udp,
            },
            destination: vip.address,
            port: Some(vip.port),
            queue: socket_queues[i % socket_queues.len()],
        })
        .collect()
}

/// The ntuple rules the appliance installed, if any, and the record of them.
#[derive(Default)]
pub struct NtupleRules {
    installed: Option<InstalledRules<Ioctl>>,
    /// The rules `installed` holds, so a reload that keeps the VIPs changes nothing.
    rules: Vec<FlowRule>,
    /// Where the installed rules are recorded, if anywhere.
    record: Option<PathBuf>,
}

/// The record file of the rules an appliance installs on `iface`.
pub fn record_path(iface: &str) -> PathBuf {
    offload::netns::run_dir().join(format!("lb-{iface}.ntuple"))
}

impl NtupleRules {
    /// Rules installed from here on are recorded in `record`.
    pub fn recorded_at(record: PathBuf) -> NtupleRules {
        NtupleRules {
            installed: None,
            rules: Vec::new(),
            record: Some(record),
        }
    }

    /// Removes the rules a dead run recorded at `record` that are still in place, and the
    /// record. Returns the line to log, if there was anything to do.
    pub fn remove_leftovers(record: &std::path::Path, iface: &str) -> Option<String> {
        let text = std::fs::read_to_string(record).ok()?;
        let recorded = parse_record(&text);
        let removed = ntuple::remove_recorded(Ioctl, iface, &recorded);
        let _ = std::fs::remove_file(record);
        Some(format!(
            "ntuple: removed {} of the {} rules a previous run left on {iface}",
            removed.len(),
            recorded.len()
        ))
    }

    fn write_record(&self) {
        let Some(record) = &self.record else {
            return;
        };
        match &self.installed {
            Some(installed) if !installed.locations.is_empty() => {
                let pairs: Vec<(u32, FlowRule)> = installed
                    .locations
                    .iter()
                    .copied()
                    .zip(self.rules.iter().copied())
                    .collect();
                let _ = std::fs::write(record, format_record(&pairs));
            }
            _ => {
                let _ = std::fs::remove_file(record);
            }
        }
    }

    /// Replaces the installed rules with those for `vips`. Returns the line to log (None
    /// when the installed rules already match), or the error when `ntuple = "on"` and the
    /// NIC cannot do it.
    pub fn sync(
        &mut self,
        setting: Toggle,
        iface: &str,
        vips: &[VipKey],
        socket_queues: &[u32],
        device_queues: u32,
    ) -> Result<Option<String>, NtupleError> {
        let rules = rules_for(vips, socket_queues);
        if self.installed.is_some() && rules == self.rules {
            return Ok(None);
        }
        // Remove first: the new set may need the same slots.
        self.installed = None;
        self.rules.clear();
        self.write_record();
        if setting == Toggle::Off {
            return Ok(Some("ntuple: off (config); steering in XDP only".into()));
        }
        if setting == Toggle::Auto && socket_queues.len() as u32 >= device_queues {
            return Ok(Some(format!(
                "ntuple: not used: every one of {iface}'s {device_queues} queues has a socket, \
                 so RSS already lands every flow on one (ntuple = \"on\" forces it)"
            )));
        }
        match ntuple::install(Ioctl, iface, &rules) {
            Ok(installed) => {
                self.installed = Some(installed);
                let text: Vec<String> = rules.iter().map(ntuple::describe).collect();
                let line = format!(
                    "ntuple: {} rules on {iface}: {}",
                    rules.len(),
                    text.join(", ")
                );
                self.rules = rules;
                self.write_record();
                Ok(Some(line))
            }
            Err(error @ NtupleError::Unavailable { .. }) if setting == Toggle::Auto => {
                Ok(Some(format!("ntuple: {error}")))
            }
            Err(error) => Err(error),
        }
    }
}

impl Drop for NtupleRules {
    fn drop(&mut self) {
        // The rules go first (InstalledRules' drop), then their record.
        self.installed = None;
        self.write_record();
    }
}

/// One line per rule: location, protocol, destination, port (`-` for any), queue.
fn format_record(rules: &[(u32, FlowRule)]) -> String {
    rules
        .iter()
        .map(|(location, rule)| {
            let protocol = if rule.protocol == L4::Tcp {
                "tcp"
            } else {
                "udp"
            };
            let port = rule.port.map_or("-".to_string(), |p| p.to_string());
            format!(
                "{location} {protocol} {} {port} {}\n",
                rule.destination, rule.queue
            )
        })
        .collect()
}

/// The lines of a record; lines that do not parse are skipped.
fn parse_record(text: &str) -> Vec<(u32, FlowRule)> {
    let line = |line: &str| -> Option<(u32, FlowRule)> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [location, protocol, destination, port, queue] = fields[..] else {
            return None;
        };
        let rule = FlowRule {
            protocol: match protocol {
                "tcp" => L4::Tcp,
                "udp" => L4::Udp,
                _ => return None,
            },
            destination: destination.parse::<IpAddr>().ok()?,
            port: match port {
                "-" => None,
                port => Some(port.parse().ok()?),
            },
            queue: queue.parse().ok()?,
        };
        Some((location.parse().ok()?, rule))
    };
    text.lines().filter_map(line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back_what_was_written() {
        let rules = [
            (
                3,
                FlowRule {
                    protocol: L4::Tcp,
                    destination: "10.0.0.100".parse().unwrap(),
                    port: Some(80),
                    queue: 2,
                },
            ),
            (
                9,
                FlowRule {
                    protocol: L4::Udp,
                    destination: "fd00::100".parse().unwrap(),
                    port: None,
                    queue: 0,
                },
            ),
        ];
        let text = format_record(&rules);
        assert_eq!(text, "3 tcp 10.0.0.100 80 2\n9 udp fd00::100 - 0\n");
        assert_eq!(parse_record(&text), rules);
        assert_eq!(parse_record("garbage\n7 sctp 10.0.0.1 - 1\n"), []);
    }

    #[test]
    fn every_vip_goes_to_a_socket_queue_in_turn() {
        let vip = |port| VipKey {
            address: "192.0.2.1".parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
        };
        let rules = rules_for(&[vip(80), vip(443), vip(8080)], &[4, 6]);
        let queues: Vec<u32> = rules.iter().map(|r| r.queue).collect();
        assert_eq!(queues, [4, 6, 4]);
        assert_eq!(rules[1].port, Some(443));
        assert_eq!(rules[1].protocol, L4::Tcp);
        assert!(rules_for(&[vip(80)], &[]).is_empty());
    }
}
