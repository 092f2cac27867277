//! The load balancer end to end on the segment lab, with real HTTP and UDP clients and
//! servers, the appliance running as its own process.

mod lb_common;

use lb_common::*;

#[test]
fn dsr_l2_ipv4_serves_every_connection() {
    if !lab::require_root("dsr_l2_ipv4_serves_every_connection") {
        return;
    }
    let setup = setup("la", 1);
    let appliance = Appliance::start(
        &setup,
        &config(&setup, true, "tcp", "dsr-l2", "", [1, 1, 1]),
    );
    let counts = tally(&http_gets(&setup, true, 1000));
    assert!(
        counts.iter().all(|&c| c > 0),
        "every backend should serve: {counts:?}"
    );
    let status = appliance.status();
    assert!(
        status["vips"][0]["connections"].as_u64().unwrap() >= 1000,
        "{status}"
    );
    assert!(appliance.stop(), "the appliance should stop cleanly");
}
