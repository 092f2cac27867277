//! The load balancer's TOML config (`nfv_apps::lb::config::Config::parse`) on any text, then
//! what the appliance builds from a config it accepts, short of sockets: the registry, the
//! workers' tables (Maglev included), the NAT ranges, health-check bookkeeping, the
//! steering rules and one worker's load balancer. Checked: errors name a line inside the text; sizes stay within
//! the bounds the appliance can allocate; a VIP's printed key parses back to itself; SNAT
//! ranges are in order.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use nfv_apps::lb::{
    appliance::wanted_rules,
    balancer::LoadBalancer,
    config::{Config, MAX_CONNECTIONS, MAX_MAGLEV_SIZE, VipKey},
    nat::{NatTable, NatTimeouts},
    packet::address,
    registry::Registry,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text, "fuzz.toml") {
        Ok(config) => config,
        Err(error) => {
            if let Some(line) = error.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{error}"
                );
            }
            let _ = error.to_string();
            return;
        }
    };
    let _ = (config.control_path(), config.queue_list());
    assert!((1..=MAX_CONNECTIONS).contains(&config.connections));
    for vip in &config.vip {
        assert!(*vip.maglev_size.get_ref() <= MAX_MAGLEV_SIZE);
        let key = vip.key();
        assert_eq!(key.to_string().parse::<VipKey>(), Ok(key));
        let (lo, hi) = vip.snat_port_range();
        assert!(1 <= lo && lo <= hi, "snat ports {lo}-{hi}");
    }
    let mut registry = Registry::new(&config);
    let nat = Arc::new(NatTable::new(NatTimeouts::default()));
    for (snat, protocol, ports) in registry.nat_ranges() {
        nat.add_range(address(snat), protocol.number(), ports);
    }
    // Health: each backend fails until it flips down, then succeeds until it flips back.
    for target in registry.health_targets() {
        for up in [false, true] {
            for _ in 0..4 {
                registry.health_result(&target.vip, target.backend, up, &target.check);
            }
        }
    }
    // The steering rules the VIPs need, as the appliance installs them.
    let _ = wanted_rules(&config.vip);
    let own = ["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
    let tables = Arc::new(registry.tables([2, 0, 0, 0, 0, 1], 1500, &own, Arc::default()));
    let _ = registry.status();
    // A worker's load balancer; its connection table allocated whole, so capped here to
    // keep each input fast (the bound itself is asserted above).
    let _ = LoadBalancer::new(tables, config.connections.min(1 << 16), nat);
});
