//! How long `rule del` takes against the running policy's size: a policy of N rules
//! applied to a lab veth's firewall, then rules deleted one at a time (one in the middle,
//! the first, the last), each reporting the whole change (from the lock: reading the
//! bank's names and record index and the candidates' record lines, compiling the
//! candidates, the map updates) and the map updates
//! alone; the wall time of the call and of the apply for scale. A report, not a test.
//!
//! Run as root: `cargo run --release -p firewall --example rule_del_time`.

use std::{fmt::Write as _, path::Path, time::Instant};

use anyhow::Result;
use firewall::Policy;
use lab::Lab;

/// `rules` rules over one mask (TCP to port 80 from one /32 each).
fn policy(rules: usize) -> String {
    let mut text = String::from("default = \"accept\"\n");
    for index in 0..rules {
        let address = std::net::Ipv4Addr::from(0x0a00_0000u32 | index as u32);
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{index}\"\nsrc = \"{address}/32\"\nproto = \"tcp\"\n\
             dst_port = 80\naction = \"drop\"\n"
        );
    }
    text
}

fn main() -> Result<()> {
    lab::require_root("the rule del timing");
    let lab = Lab::for_test("ft");
    let iface = lab.dut.iface.clone();
    let report = lab::netns::run_in(&lab.dut.namespace, move || -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for rules in [1usize, 1_000, 64_000] {
            let text = policy(rules);
            let policy = Policy::parse(Path::new("timing.toml"), &text)?;
            let started = Instant::now();
            firewall::apply(&iface, &policy, false)?;
            let apply_ms = started.elapsed().as_secs_f64() * 1e3;
            let mut victims = vec![rules / 2 + 1, 1, rules];
            victims.dedup();
            for number in victims {
                let started = Instant::now();
                let deleted = firewall::del_rule(&iface, &number.to_string())?;
                let call_us = started.elapsed().as_micros();
                lines.push(format!(
                    "{rules:>6} rules (apply {apply_ms:.1} ms): del rule {number:>6}: change \
                     {} µs, map updates {} µs, call {call_us} µs",
                    deleted.micros, deleted.update_micros
                ));
            }
        }
        firewall::remove(&iface)?;
        Ok(lines)
    })??;
    for line in report {
        println!("{line}");
    }
    Ok(())
}
