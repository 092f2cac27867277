//! Hardware flow steering for the appliance: ethtool ntuple rules send each VIP's flows to a
//! queue that has an AF_XDP socket, so RSS cannot spread them onto queues without one.
//!
//! The rules are derived from the workers' own queues, the same queues whose sockets sit in
//! the XSKMAP, so queue -> XSKMAP -> worker core stays consistent: rules are rebuilt whenever
//! the VIPs change, and removed (on drop) before the sockets go.

use offload::probe::{
    ethtool::Ioctl,
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

/// The appliance's installed rules, if any.
#[derive(Default)]
pub struct HwSteering {
    installed: Option<InstalledRules<Ioctl>>,
    /// The rules `installed` holds, so a reload that keeps the VIPs changes nothing.
    rules: Vec<FlowRule>,
}

impl HwSteering {
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
    ) -> Result<Option<String>, String> {
        let rules = rules_for(vips, socket_queues);
        if self.installed.is_some() && rules == self.rules {
            return Ok(None);
        }
        // Remove first: the new set may need the same slots.
        self.installed = None;
        self.rules.clear();
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
                Ok(Some(line))
            }
            Err(error @ NtupleError::Unavailable { .. }) if setting == Toggle::Auto => {
                Ok(Some(format!("ntuple: {error}")))
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
