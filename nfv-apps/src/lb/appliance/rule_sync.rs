//! The appliance's rules in the steering program: which rules the VIPs need (a pure
//! function of the config, tested without root), what to change to get there, and whether
//! the program can take them beside the rules already there (others' included).

use std::collections::HashMap;

use offload::{
    OffloadError, Steering,
    rules::{self, Action, IpNet, PortRange, Protocol as RuleProtocol, Rule, RuleError, RuleSpec},
};

use crate::lb::{
    config::{Forwarding, Protocol, VipConfig},
    error::LbError,
};

/// The steering rules for `vips`: each VIP, and each NAT address's port range, go to the
/// sockets; everything else (ARP, ND, the host's own traffic) passes to the kernel. Sorted,
/// without duplicates.
pub fn wanted_rules<'a>(vips: impl IntoIterator<Item = &'a VipConfig>) -> Vec<RuleSpec> {
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

/// What turns the installed rules into the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuleChanges {
    /// Installed rules no longer wanted, with their ids.
    pub stale: Vec<(RuleSpec, u32)>,
    /// Wanted rules not yet installed.
    pub new: Vec<RuleSpec>,
}

/// The changes from `installed` (rule → id) to `wanted`; rules in both stay as they are.
pub fn rule_changes(installed: &HashMap<RuleSpec, u32>, wanted: &[RuleSpec]) -> RuleChanges {
    let mut stale: Vec<(RuleSpec, u32)> = installed
        .iter()
        .filter(|(rule, _)| !wanted.contains(rule))
        .map(|(rule, &id)| (rule.clone(), id))
        .collect();
    stale.sort_by_key(|&(_, id)| id);
    let new = wanted
        .iter()
        .filter(|rule| !installed.contains_key(rule))
        .cloned()
        .collect();
    RuleChanges { stale, new }
}

/// Checks that `current` (every rule in the program) with the changes from `installed` to
/// `wanted` applied still compiles: a full rule table, or a prefix covered by too many
/// rules, is found before anything changes.
pub fn check_fits(
    current: Vec<Rule>,
    installed: &HashMap<RuleSpec, u32>,
    wanted: &[RuleSpec],
) -> Result<(), RuleError> {
    let ours: HashMap<u32, &RuleSpec> = installed.iter().map(|(r, id)| (*id, r)).collect();
    let mut kept: Vec<Rule> = current
        .into_iter()
        .filter(|rule| ours.get(&rule.id).is_none_or(|spec| wanted.contains(spec)))
        .collect();
    let new = rule_changes(installed, wanted).new;
    let ids = rules::allocate_ids(&kept, new.len())?;
    for (spec, id) in new.into_iter().zip(ids) {
        rules::check_new(&kept, &spec)?;
        kept.push(Rule { id, spec });
    }
    rules::compile(&kept)?;
    Ok(())
}

/// The rules the appliance installed in the steering program, by id.
#[derive(Default)]
pub struct SteeringRules {
    installed: HashMap<RuleSpec, u32>,
}

impl SteeringRules {
    /// Makes the installed rules `wanted`: stale ones go first, then new ones are added.
    pub fn sync(&mut self, steering: &mut Steering, wanted: &[RuleSpec]) -> Result<(), LbError> {
        let RuleChanges { stale, new } = rule_changes(&self.installed, wanted);
        let pruned = !stale.is_empty();
        for (rule, id) in stale {
            self.installed.remove(&rule);
            steering
                .delete_rule(id)
                .map_err(|source| LbError::DeleteRule { id, source })?;
        }
        if pruned {
            offload::kill_point::reached("lb:rules-pruned");
        }
        let ids = steering.add_rules(&new).map_err(LbError::AddRules)?;
        self.installed.extend(new.into_iter().zip(ids));
        Ok(())
    }

    /// Checks, changing nothing, that the steering program can take `wanted` in place of
    /// the installed rules (see [`check_fits`]).
    pub fn check(&self, steering: &Steering, wanted: &[RuleSpec]) -> Result<(), LbError> {
        let current = steering.rules().map_err(LbError::RulesDoNotFit)?;
        check_fits(current, &self.installed, wanted)
            .map_err(|error| LbError::RulesDoNotFit(OffloadError::from(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::config::Config;

    fn vips(text: &str) -> Vec<VipConfig> {
        Config::parse(&format!("interface = \"eth0\"\n{text}"), "lb.toml")
            .unwrap()
            .vip
    }

    const DSR: &str = "[[vip]]\naddress = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
                       forwarding = \"dsr-l2\"\n[[vip.backend]]\naddress = \"10.0.1.11\"\n";
    const NAT: &str = "[[vip]]\naddress = \"10.0.0.100\"\nport = 53\nprotocol = \"udp\"\n\
                       forwarding = \"nat\"\nsnat_address = \"10.0.0.2\"\n\
                       [[vip.backend]]\naddress = \"10.0.1.11\"\n";

    #[test]
    fn each_vip_and_each_snat_range_goes_to_the_sockets() {
        let rules = wanted_rules(&vips(&format!("{DSR}{NAT}")));
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert!(rules.iter().all(|r| r.action == Action::Xsk));
        let vip = rules
            .iter()
            .find(|r| r.dport == Some(PortRange { lo: 80, hi: 80 }))
            .unwrap();
        assert_eq!(vip.proto, Some(RuleProtocol::Tcp));
        assert_eq!(
            vip.dst,
            Some(IpNet::from(
                "10.0.0.100".parse::<std::net::IpAddr>().unwrap()
            ))
        );
        let snat = rules
            .iter()
            .find(|r| r.dst == Some(IpNet::from("10.0.0.2".parse::<std::net::IpAddr>().unwrap())))
            .expect("the SNAT address's ports");
        assert_eq!(snat.proto, Some(RuleProtocol::Udp));
        assert!(snat.dport.unwrap().width() > 1);
    }

    #[test]
    fn changes_remove_what_is_no_longer_wanted_and_add_what_is_missing() {
        let both = wanted_rules(&vips(&format!("{DSR}{NAT}")));
        let dsr = wanted_rules(&vips(DSR));
        let installed: HashMap<RuleSpec, u32> = both.iter().cloned().zip([7, 8, 9]).collect();
        let changes = rule_changes(&installed, &dsr);
        assert!(changes.new.is_empty());
        assert_eq!(changes.stale.len(), 2);
        assert!(changes.stale.iter().all(|(rule, _)| !dsr.contains(rule)));
        let changes = rule_changes(&HashMap::new(), &dsr);
        assert_eq!((changes.stale, changes.new), (vec![], dsr));
    }

    #[test]
    fn rules_that_fit_pass_the_check() {
        let wanted = wanted_rules(&vips(&format!("{DSR}{NAT}")));
        check_fits(Vec::new(), &HashMap::new(), &wanted).unwrap();
        // The program's own copy of our rules counts once, not twice.
        let installed: HashMap<RuleSpec, u32> = wanted.iter().cloned().zip([1, 2, 3]).collect();
        let current = installed
            .iter()
            .map(|(spec, &id)| Rule {
                id,
                spec: spec.clone(),
            })
            .collect();
        check_fits(current, &installed, &wanted).unwrap();
    }
}
