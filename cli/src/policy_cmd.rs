//! `fastpath policy ...`: security groups compiled to the firewall of each member interface
//! (micro-segmentation), their counters, and why a flow is allowed or dropped.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use firewall::policy::{self, GroupPolicy};

use crate::output;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Compile a policy file's groups to firewall rules on every member interface, each
    /// switched in one atomic step (established flows keep passing); interfaces that left
    /// the policy lose their firewall.
    Apply {
        /// The policy file (TOML: `[[group]]` with name, members, allow_in, allow_out).
        file: PathBuf,
        /// Read, resolve and compile everything; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// The applied policy: groups, members, and each member interface's counters.
    Show,
    /// Which rule decides a new flow and why, from the compiled tables.
    Explain {
        /// The source: an address or a member interface.
        #[arg(long)]
        from: String,
        /// The destination: an address or a member interface.
        #[arg(long)]
        to: String,
        /// tcp, udp, icmp, icmpv6 or a number.
        #[arg(long, default_value = "tcp")]
        proto: String,
        /// The destination port (TCP, UDP); for ICMP, the type (echo request when absent).
        #[arg(long)]
        port: Option<u16>,
        /// Explain this policy file instead of the applied one.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove the applied policy: every member interface's firewall.
    Remove,
}

fn protocol(text: &str) -> anyhow::Result<u8> {
    Ok(match text {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        number => number.parse().with_context(|| {
            format!("--proto {text}: known: tcp, udp, icmp, icmpv6 or a number 0-255")
        })?,
    })
}

pub fn run(command: &PolicyCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Apply { file, check } => {
            let source = std::fs::read_to_string(file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let group_policy = GroupPolicy::parse(file, &source)?;
            let applied = policy::apply(&group_policy, &source, *check)?;
            for warning in &applied.warnings {
                eprintln!("warning: {warning}");
            }
            if as_json {
                output::json(&applied);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = applied
                .interfaces
                .iter()
                .map(|interface| {
                    vec![
                        interface.iface.clone(),
                        if interface.edge {
                            "(edge)".to_string()
                        } else {
                            interface.groups.join(",")
                        },
                        interface.rules.to_string(),
                        interface.masks.to_string(),
                        match (interface.bank, interface.loaded_module) {
                            (None, _) => "-".into(),
                            (Some(bank), true) => format!("loaded, bank {bank}"),
                            (Some(bank), false) => format!("switched to bank {bank}"),
                        },
                    ]
                })
                .collect();
            output::table(
                &["interface", "groups", "rules", "masks", "firewall"],
                &rows,
            );
            if applied.checked {
                println!("checked: nothing changed");
                if !applied.removed.is_empty() {
                    println!(
                        "would remove the firewall of: {}",
                        applied.removed.join(", ")
                    );
                }
            } else {
                if let Some(window) = applied.switch_window_ns {
                    println!(
                        "switched {} interfaces within {:.1} µs",
                        applied.interfaces.len(),
                        window as f64 / 1000.0
                    );
                }
                if !applied.removed.is_empty() {
                    println!("removed the firewall of: {}", applied.removed.join(", "));
                }
            }
        }
        PolicyCommand::Show => {
            let shown = policy::show()?;
            if as_json {
                output::json(&shown);
                return Ok(());
            }
            println!("policy {}", shown.file.display());
            let groups: Vec<Vec<String>> = shown
                .groups
                .iter()
                .map(|group| {
                    let networks: Vec<String> =
                        group.networks.iter().map(ToString::to_string).collect();
                    vec![
                        group.name.clone(),
                        group.members.join(", "),
                        networks.join(", "),
                        format!("{} in, {} out", group.allow_in, group.allow_out),
                    ]
                })
                .collect();
            output::table(&["group", "members", "networks", "allow"], &groups);
            for interface in &shown.interfaces {
                println!(
                    "\n{} ({}): {} rules, {} packets accepted, {} dropped",
                    interface.iface,
                    if interface.edge {
                        "edge".to_string()
                    } else {
                        interface.groups.join(", ")
                    },
                    interface.rules,
                    interface.accepted,
                    interface.dropped
                );
                let rows: Vec<Vec<String>> = interface
                    .counters
                    .iter()
                    .map(crate::firewall_cmd::counter_row)
                    .collect();
                output::table(&["rule", "packets", "bytes"], &rows);
            }
        }
        PolicyCommand::Explain {
            from,
            to,
            proto,
            port,
            file,
        } => {
            let number = protocol(proto)?;
            let explanation = match file {
                Some(file) => {
                    let group_policy = GroupPolicy::read(file)?;
                    let (node, _) = policy::resolve(&group_policy)?;
                    policy::explain(&group_policy, &node, from, to, number, *port)?
                }
                None => policy::explain_applied(from, to, number, *port)?,
            };
            if as_json {
                output::json(&explanation);
                return Ok(());
            }
            println!(
                "{} -> {} {}: {} by `{}`{}",
                explanation.from,
                explanation.to,
                explanation.what,
                explanation.verdict,
                explanation.rule,
                explanation
                    .ingress
                    .as_ref()
                    .map_or(String::new(), |iface| format!(" on {iface}"))
            );
            println!("{}", explanation.why);
        }
        PolicyCommand::Remove => {
            let interfaces = policy::remove()?;
            if as_json {
                output::json(&serde_json::json!({ "removed": interfaces }));
            } else {
                println!("removed the firewall of: {}", interfaces.join(", "));
            }
        }
    }
    Ok(())
}
