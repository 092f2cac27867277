//! `fastpath firewall ...` and `fastpath conntrack ...`: the stateful firewall module of an
//! interface and the node's connection-tracking table.

use std::path::PathBuf;

use clap::Subcommand;
use firewall::Policy;

use crate::output;

#[derive(Subcommand)]
pub enum FirewallCommand {
    /// Make a rules file the firewall policy of an interface: loads the built-in module
    /// `firewall` first in its chain (and the egress tracker) the first time, else switches
    /// the running policy in one step; established flows keep passing.
    Apply {
        /// The interface.
        #[arg(long)]
        iface: String,
        /// The rules file (TOML: `default`, `[conntrack]`, `[[rule]]`).
        file: PathBuf,
        /// Read and compile the rules, change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Per-rule and default counters, and the conntrack table's fill and state.
    Status {
        #[command(flatten)]
        firewall: Which,
    },
    /// Change one rule of the running policy in place.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Print what `log` rules matched (sampled by their `log_rate`) and new flows refused
    /// because the conntrack table is full, as they come (`--json`: one object a line).
    Log {
        #[command(flatten)]
        firewall: Which,
        /// Stop after this many entries.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Remove the firewall from an interface (the module, the egress tracker, the pins;
    /// the node's conntrack table goes with the last firewall).
    Remove {
        /// The interface.
        #[arg(long)]
        iface: String,
    },
}

/// Which firewall a reading command reads: an interface's module, or a topology's
/// `firewall` instance (whose rules change with `topology apply`, not `rule add|del`).
#[derive(clap::Args)]
pub struct Which {
    /// The interface whose firewall module to read.
    #[arg(
        long,
        required_unless_present = "instance",
        conflicts_with = "instance"
    )]
    iface: Option<String>,
    /// A topology's firewall instance instead.
    #[arg(long)]
    instance: Option<String>,
    /// The instance's topology.
    #[arg(long, default_value = topology::file::DEFAULT_NAME)]
    name: String,
}

impl Which {
    fn site(&self) -> anyhow::Result<firewall::Site> {
        Ok(match (&self.iface, &self.instance) {
            (Some(iface), _) => firewall::Site::iface(iface),
            (None, Some(instance)) => topology::firewall_site(&self.name, instance)?,
            (None, None) => anyhow::bail!("give --iface or --instance"),
        })
    }
}

#[derive(Subcommand)]
pub enum RuleCommand {
    /// Append the one `[[rule]]` of a rules file to the running policy (after its rules,
    /// before the default), in place: no new bank, no grace delay. Not kept by a later
    /// `apply`, which replaces the whole policy.
    Add {
        /// The interface.
        #[arg(long)]
        iface: String,
        /// A rules file holding exactly one `[[rule]]`.
        file: PathBuf,
    },
    /// Remove one rule from the running policy, in place: no new bank, no grace delay;
    /// established flows and the other rules' counters stay. A rule with the same match
    /// after it takes over.
    Del {
        /// The interface.
        #[arg(long)]
        iface: String,
        /// The rule: its name, or its number as `firewall status` lists it (from 1).
        #[arg(long)]
        rule: String,
    },
}

#[derive(Subcommand)]
pub enum ConntrackCommand {
    /// The tracked flows.
    List,
    /// Remove every entry.
    Flush,
}

pub fn run(command: &FirewallCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        FirewallCommand::Apply { iface, file, check } => {
            let policy = Policy::read(file)?;
            let applied = firewall::apply(iface, &policy, *check)?;
            if as_json {
                output::json(&applied);
            } else if applied.checked {
                println!(
                    "checked: {} rules compile to {} entries under {} masks; nothing changed",
                    applied.rules, applied.entries, applied.masks
                );
            } else {
                let how = if applied.loaded_module {
                    "loaded the firewall module"
                } else {
                    "switched the policy"
                };
                println!(
                    "{iface}: {how}: {} rules, {} entries, {} masks (bank {})",
                    applied.rules,
                    applied.entries,
                    applied.masks,
                    applied.bank.unwrap_or(0)
                );
            }
        }
        FirewallCommand::Status { firewall: which } => {
            let status = firewall::status_at(&which.site()?)?;
            if status.conntrack.full {
                eprintln!(
                    "warning: the conntrack table is full ({} of {} entries): new flows are \
                     dropped; raise [conntrack] limit or flush it",
                    status.conntrack.entries, status.conntrack.limit
                );
            }
            if as_json {
                output::json(&status);
                return Ok(());
            }
            println!(
                "{}: bank {}, {} masks, default {}",
                status.iface, status.bank, status.masks, status.default_verdict
            );
            let mut rows: Vec<Vec<String>> = status.rules.iter().map(counter_row).collect();
            rows.push(vec![
                format!("default ({})", status.default_verdict),
                status.default.packets.to_string(),
                status.default.bytes.to_string(),
            ]);
            output::table(&["rule", "packets", "bytes"], &rows);
            let table = &status.conntrack;
            println!(
                "conntrack: {} of {} entries (capacity {}), {} created, {} refused while full, {} invalid{}",
                table.entries,
                table.limit,
                table.capacity,
                table.created,
                table.refused_full,
                table.invalid,
                if table.full {
                    "; FULL: new flows are dropped"
                } else {
                    ""
                }
            );
        }
        FirewallCommand::Rule {
            command: RuleCommand::Add { iface, file },
        } => {
            let policy = Policy::read(file)?;
            let added = firewall::add_rule(iface, &policy)?;
            if as_json {
                output::json(&added);
            } else {
                println!(
                    "{iface}: rule `{}` added as rule {}: {} entries, {} new masks, in {} µs",
                    added.name, added.position, added.entries, added.new_masks, added.micros
                );
            }
        }
        FirewallCommand::Rule {
            command: RuleCommand::Del { iface, rule },
        } => {
            let deleted = firewall::del_rule(iface, rule)?;
            if as_json {
                output::json(&deleted);
            } else {
                println!(
                    "{iface}: rule `{}` (rule {}) deleted: {} entries handed to a later rule, {} \
                     removed, in {} µs (map updates {} µs)",
                    deleted.name,
                    deleted.position,
                    deleted.entries_replaced,
                    deleted.entries_removed,
                    deleted.micros,
                    deleted.update_micros
                );
            }
        }
        FirewallCommand::Log {
            firewall: which,
            count,
            timeout,
        } => {
            let timeout = timeout
                .map(|seconds| {
                    std::time::Duration::try_from_secs_f64(seconds)
                        .map_err(|_| anyhow::anyhow!("--timeout: {seconds} is not a duration"))
                })
                .transpose()?;
            firewall::log::follow_at(&which.site()?, *count, timeout, |entry| {
                if as_json {
                    println!("{}", serde_json::to_string(entry).unwrap_or_default());
                } else {
                    println!(
                        "{:.3} {} {} {} {} {}:{} -> {}:{} (ifindex {})",
                        entry.time,
                        entry.kind,
                        entry.rule,
                        entry.verdict,
                        entry.proto,
                        entry.src,
                        entry.src_port,
                        entry.dst,
                        entry.dst_port,
                        entry.ifindex
                    );
                }
            })?;
        }
        FirewallCommand::Remove { iface } => {
            firewall::remove(iface)?;
            if as_json {
                output::json(&serde_json::json!({ "iface": iface, "removed": true }));
            } else {
                println!("removed the firewall from {iface}");
            }
        }
    }
    Ok(())
}

pub fn run_conntrack(command: &ConntrackCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        ConntrackCommand::List => {
            let connections = firewall::conntrack::list()?;
            if as_json {
                output::json(&connections);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = connections
                .iter()
                .map(|c| {
                    vec![
                        c.proto.clone(),
                        format!("{}:{}", c.src, c.src_port),
                        format!("{}:{}", c.dst, c.dst_port),
                        c.state.clone(),
                        if c.replied { "yes" } else { "no" }.to_string(),
                        c.packets.to_string(),
                        c.expires_in_s.to_string(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "proto",
                    "original",
                    "reply",
                    "state",
                    "replied",
                    "packets",
                    "expires_s",
                ],
                &rows,
            );
        }
        ConntrackCommand::Flush => {
            let removed = firewall::conntrack::flush()?;
            if as_json {
                output::json(&serde_json::json!({ "removed": removed }));
            } else {
                println!("removed {removed} entries");
            }
        }
    }
    Ok(())
}

/// A rule's counters as a table row: name, packets, bytes.
pub(crate) fn counter_row(rule: &firewall::RuleCounters) -> Vec<String> {
    vec![
        rule.name.clone(),
        rule.packets.to_string(),
        rule.bytes.to_string(),
    ]
}
