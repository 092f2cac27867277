//! `fastpath xdp ...`

use anyhow::Context;
use clap::Subcommand;
use offload::{
    AttachOptions, Status, Steering,
    mode::ModePolicy,
    rules::{Action, IpNet, PortRange, Protocol, RuleSpec, parse_cidr},
};
use serde_json::json;

use crate::output;

#[derive(Subcommand)]
pub enum XdpCommand {
    /// Load the steering program as the module `steer` of the interface's IO module chain,
    /// attaching the chain's entry when there is none (auto: drv, then skb; the chain never
    /// runs offloaded, hw placement is the prefilter's).
    Attach {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value = "auto", value_parser = parse_policy)]
        mode: ModePolicy,
        /// Action for IP packets that match no rule.
        #[arg(long = "default", default_value = "pass", value_parser = parse_default)]
        default_action: Action,
        /// A source address the prefilter drops (repeat for more). The planner puts the
        /// prefilter in the NIC where it offloads, else inside the steering program.
        #[arg(long = "prefilter-drop")]
        prefilter: Vec<std::net::IpAddr>,
        /// Print the placement plan and change nothing.
        #[arg(long)]
        plan_only: bool,
    },
    /// Replace the prefilter's source addresses (no reload); none empties it.
    Prefilter {
        #[arg(long)]
        iface: String,
        /// Source addresses to drop.
        sources: Vec<std::net::IpAddr>,
    },
    /// Mode, steer's program id, the module chain, counters and rules.
    Status {
        #[arg(long)]
        iface: String,
    },
    /// Add, delete or list flow rules (no reload).
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Swap in this build's steer atomically (a module swap: one revision switch); rules and
    /// counters stay.
    Replace {
        #[arg(long)]
        iface: String,
        /// Another build of the `steer` module (offload/ebpf's steer_module*) to swap in
        /// instead; its maps must keep their shapes.
        #[arg(long)]
        object: Option<std::path::PathBuf>,
    },
    /// Unload steer from the chain (the chain's entry goes with the last module) and remove
    /// its pins, rules and counters.
    Detach {
        #[arg(long)]
        iface: String,
    },
}

#[derive(Subcommand)]
pub enum RuleCommand {
    /// Prints the new rule's id.
    Add {
        #[arg(long)]
        iface: String,
        #[arg(long, value_parser = parse_action)]
        action: Action,
        #[arg(long, value_parser = parse_proto)]
        proto: Option<Protocol>,
        /// Destination address or CIDR.
        #[arg(long, value_parser = |text: &str| parse_cidr("dst", text).map_err(|e| e.to_string()))]
        dst: Option<IpNet>,
        /// Destination port N or range N-M.
        #[arg(long, value_parser = |text: &str| text.parse::<PortRange>().map_err(|e| e.to_string()))]
        dport: Option<PortRange>,
        /// Source address or CIDR.
        #[arg(long, value_parser = |text: &str| parse_cidr("src", text).map_err(|e| e.to_string()))]
        src: Option<IpNet>,
    },
    Del {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        id: u32,
    },
    List {
        #[arg(long)]
        iface: String,
    },
}

fn parse_policy(text: &str) -> Result<ModePolicy, String> {
    text.parse()
}
fn parse_action(text: &str) -> Result<Action, String> {
    text.parse()
        .map_err(|error: offload::rules::RuleError| error.to_string())
}
fn parse_default(text: &str) -> Result<Action, String> {
    match text {
        "pass" => Ok(Action::Pass),
        "drop" => Ok(Action::Drop),
        _ => Err(format!("invalid --default {text:?}: expected pass or drop")),
    }
}
fn parse_proto(text: &str) -> Result<Protocol, String> {
    text.parse()
        .map_err(|error: offload::rules::RuleError| error.to_string())
}

pub fn run(command: &XdpCommand, as_json: bool) -> anyhow::Result<()> {
    let bpffs = offload::bpffs::Bpffs::get();
    if *bpffs.view() != offload::bpffs::View::Own {
        eprintln!("bpffs: {}", bpffs.describe());
    }
    match command {
        XdpCommand::Attach {
            iface,
            mode,
            default_action,
            prefilter,
            plan_only,
        } => {
            let options = AttachOptions {
                iface: iface.clone(),
                policy: *mode,
                default_action: *default_action,
                prefilter: prefilter.clone(),
            };
            let plan = offload::plan_for(&options)?;
            if *plan_only {
                if as_json {
                    output::json(&plan);
                } else {
                    print!("{plan}");
                }
                return Ok(());
            }
            // Printed before it is applied; with --json it is part of the one JSON object.
            if !as_json {
                print!("{plan}");
            }
            let attachment = offload::attach_planned(&options, plan)?;
            if as_json {
                output::json(&attachment);
            } else {
                for fallback in &attachment.fallbacks {
                    println!("{} mode unavailable: {}", fallback.mode, fallback.reason);
                }
                println!(
                    "attached to {} (driver {}) in {} mode as the chain's module steer, program id {}, default {}",
                    attachment.iface,
                    attachment.driver,
                    attachment.mode,
                    attachment.program_id,
                    attachment.default_action
                );
            }
        }
        XdpCommand::Status { iface } => print_status(&offload::status(iface)?, as_json),
        XdpCommand::Prefilter { iface, sources } => {
            let maps = if offload::Pins::for_iface(iface).hw_prefilter().exists() {
                offload::HW_PREFILTER
            } else {
                ""
            };
            Steering::open(iface)?.set_prefilter(maps, sources)?;
            if as_json {
                output::json(&json!({ "iface": iface, "prefilter": sources }));
            } else {
                println!("prefilter on {iface}: {} source(s)", sources.len());
            }
        }
        XdpCommand::Rule { command } => run_rule(command, as_json)?,
        XdpCommand::Replace { iface, object } => {
            let bytes = match object {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("read --object {}", path.display()))?,
                ),
                None => None,
            };
            let replacement = offload::replace(iface, bytes.as_deref())?;
            if as_json {
                output::json(&replacement);
            } else {
                println!(
                    "replaced steer program {} with {} on {} (module swap; rules and counters kept)",
                    replacement.old_program_id, replacement.new_program_id, replacement.iface
                );
            }
        }
        XdpCommand::Detach { iface } => {
            offload::detach(iface)?;
            if as_json {
                output::json(&json!({ "iface": iface, "detached": true }));
            } else {
                println!("detached from {iface}; pins removed");
            }
        }
    }
    Ok(())
}

fn run_rule(command: &RuleCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        RuleCommand::Add {
            iface,
            action,
            proto,
            dst,
            dport,
            src,
        } => {
            let spec = RuleSpec {
                action: *action,
                proto: *proto,
                dst: *dst,
                dport: *dport,
                src: *src,
            };
            let mut steering = Steering::open(iface)?;
            let id = steering.add_rule(&spec)?;
            // Every time a family's prefixes are on the trie for want of room in the
            // per-length hashes, the one who added the rule hears it.
            let lookup = steering.prefix_lookup()?;
            for (family, lookup) in [("IPv4", &lookup.v4), ("IPv6", &lookup.v6)] {
                if lookup.fell_back() {
                    eprintln!("note: {}", lookup.describe(family));
                }
            }
            if as_json {
                output::json(&json!({ "id": id }));
            } else {
                println!("{id}");
            }
        }
        RuleCommand::Del { iface, id } => {
            Steering::open(iface)?.delete_rule(*id)?;
            if as_json {
                output::json(&json!({ "id": id, "deleted": true }));
            } else {
                println!("deleted rule {id}");
            }
        }
        RuleCommand::List { iface } => {
            let rules = Steering::open(iface)?.rule_stats()?;
            if as_json {
                output::json(&rules);
            } else {
                print_rules(&rules);
            }
        }
    }
    Ok(())
}

fn print_rules(rules: &[offload::RuleStats]) {
    let text = |value: Option<String>| value.unwrap_or_else(|| "any".into());
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|stats| {
            let spec = &stats.rule.spec;
            vec![
                stats.rule.id.to_string(),
                text(spec.proto.map(|p| p.to_string())),
                text(spec.dst.map(|d| d.to_string())),
                text(spec.dport.map(|p| p.to_string())),
                text(spec.src.map(|s| s.to_string())),
                spec.action.to_string(),
                stats.packets.to_string(),
                stats.bytes.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "id", "proto", "dst", "dport", "src", "action", "packets", "bytes",
        ],
        &rows,
    );
}

pub fn print_status(status: &Status, as_json: bool) {
    if as_json {
        output::json(status);
        return;
    }
    let mode = status
        .mode
        .map_or("detached".to_string(), |mode| mode.to_string());
    let id = status
        .program_id
        .map_or("-".to_string(), |id| id.to_string());
    println!(
        "{}: {} mode, steer program id {}, default {}",
        status.iface, mode, id, status.default_action
    );
    if !status.modules.is_empty() {
        // steer is a module of the interface's chain; `fastpath module list` has counters.
        println!("module chain: {}", status.modules.join(" -> "));
    }
    println!("pins in {}", status.bpffs);
    // What runs where: one row per XDP slot in use.
    let placements: Vec<Vec<String>> = status
        .placements
        .iter()
        .map(|p| {
            vec![
                p.mode.to_string(),
                p.program.clone(),
                p.program_id.to_string(),
            ]
        })
        .collect();
    output::table(&["slot", "program", "id"], &placements);
    let merged = status.placements.iter().all(|p| p.program != "prefilter");
    if !status.prefilter.is_empty() {
        println!(
            "prefilter ({}):",
            if merged { "inside steer" } else { "in the NIC" }
        );
        let rows: Vec<Vec<String>> = status
            .prefilter
            .iter()
            .map(|e| vec![e.source.to_string(), e.drops.to_string()])
            .collect();
        output::table(&["source", "drops"], &rows);
    }
    for (family, lookup) in [
        ("IPv4", &status.prefix_lookup.v4),
        ("IPv6", &status.prefix_lookup.v6),
    ] {
        println!("{}", lookup.describe(family));
    }
    for (family, lookup) in [
        ("IPv4", &status.exact_lookup.v4),
        ("IPv6", &status.exact_lookup.v6),
    ] {
        println!("{}", lookup.describe(family));
    }
    let c = &status.counters;
    output::table(
        &[
            "pass",
            "drop",
            "xsk",
            "tx",
            "malformed",
            "xsk_fallback",
            "non_ip",
            "prefilter",
        ],
        &[[
            c.pass,
            c.drop,
            c.xsk,
            c.tx,
            c.malformed,
            c.xsk_fallback,
            c.non_ip,
            c.prefilter,
        ]
        .iter()
        .map(u64::to_string)
        .collect()],
    );
    if !status.rules.is_empty() {
        println!();
        print_rules(&status.rules);
    }
}
