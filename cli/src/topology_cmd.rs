//! `fastpath topology ...`: instances of modules (bridge, router, user modules) joined
//! to interfaces and to each other inside the kernel.

use std::path::PathBuf;

use clap::Subcommand;
use topology::{file::DEFAULT_NAME, plan::Change};

use crate::output;

#[derive(Subcommand)]
pub enum TopologyCommand {
    /// Make a topology file the running topology in one switch: instances added,
    /// swapped (a new build keeps its maps) and removed, interfaces joined and left;
    /// unchanged instances keep their learned state and counters.
    Apply {
        /// The topology file (TOML: `name`, `[[instance]]` with `name`, `kind` or
        /// `module`, `ports` and the kind's settings).
        file: PathBuf,
        /// Read and check the file and print the plan; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// The running graph, with each port's counters and the topology's.
    Show {
        /// The topology (its file's `name`).
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Draw the running topology: DOT and SVG files (DOT on stdout when neither is given).
    Draw {
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Write an SVG image here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Write a Graphviz DOT graph here.
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
    },
    /// Swap one instance's program for another build, in one update: its maps (learned
    /// MACs, neighbours, routes, counters) are kept.
    Swap {
        /// The instance.
        instance: String,
        /// The new build (an instance program object).
        file: PathBuf,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Take the topology down: every interface left, every pin removed.
    Down {
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

pub fn run(command: &TopologyCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        TopologyCommand::Apply { file, check } => {
            let topology = topology::read(file)?;
            let applied = topology::apply(&topology, *check)?;
            if as_json {
                output::json(&applied);
                return Ok(());
            }
            let plan = &applied.plan;
            let rows: Vec<Vec<String>> = plan
                .instances
                .iter()
                .map(|instance| {
                    vec![
                        instance.name.clone(),
                        instance.id.to_string(),
                        instance.kind.name().to_string(),
                        match instance.change {
                            Change::Added => "add",
                            Change::Kept => "keep",
                            Change::Swapped => "swap",
                        }
                        .to_string(),
                        instance
                            .ports
                            .iter()
                            .map(|(port, number)| format!("{port}#{number}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .chain(plan.removed.iter().map(|instance| {
                    vec![
                        instance.name.clone(),
                        instance.id.to_string(),
                        instance.kind.name().to_string(),
                        "remove".to_string(),
                        String::new(),
                    ]
                }))
                .collect();
            output::table(&["instance", "id", "kind", "change", "ports"], &rows);
            let joined: Vec<&str> = plan
                .ifaces
                .iter()
                .filter(|iface| iface.added)
                .map(|iface| iface.iface.as_str())
                .collect();
            let left: Vec<&str> = plan
                .dropped_ifaces
                .iter()
                .map(|iface| iface.iface.as_str())
                .collect();
            println!(
                "interfaces: {} joined{}{}",
                plan.ifaces.len(),
                if joined.is_empty() {
                    String::new()
                } else {
                    format!(", new: {}", joined.join(" "))
                },
                if left.is_empty() {
                    String::new()
                } else {
                    format!(", left: {}", left.join(" "))
                }
            );
            match applied.revision {
                None => println!("checked: {}: nothing changed", file.display()),
                Some(revision) => println!("topology {}: revision {revision} runs", applied.name),
            }
            for step in &applied.unfinished {
                eprintln!("warning: unfinished after the switch: {step}");
            }
        }
        TopologyCommand::Show { name } => {
            let shown = topology::show(name)?;
            if as_json {
                output::json(&shown);
                return Ok(());
            }
            println!(
                "topology {}: revision {} (bank {}), {} instances, {} interfaces",
                shown.name,
                shown.revision,
                shown.bank,
                shown.instances.len(),
                shown.ifaces.len()
            );
            for instance in &shown.instances {
                println!();
                println!(
                    "{} (id {}): {} {}{}{}",
                    instance.name,
                    instance.id,
                    instance.kind.name(),
                    instance.version,
                    instance
                        .module
                        .as_ref()
                        .map(|module| format!(" from {module}"))
                        .unwrap_or_default(),
                    instance
                        .program_id
                        .map(|id| format!(", program {id}"))
                        .unwrap_or_default()
                );
                let rows: Vec<Vec<String>> = instance
                    .ports
                    .iter()
                    .map(|port| {
                        vec![
                            port.name.clone(),
                            port.peer.clone(),
                            port.rx_packets.to_string(),
                            port.rx_bytes.to_string(),
                            port.tx_packets.to_string(),
                            port.tx_bytes.to_string(),
                            port.drops.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "port",
                        "to",
                        "rx_packets",
                        "rx_bytes",
                        "tx_packets",
                        "tx_bytes",
                        "drops",
                    ],
                    &rows,
                );
                let counters: Vec<String> = instance
                    .counters
                    .iter()
                    .filter(|(_, value)| *value > 0)
                    .map(|(counter, value)| format!("{counter} {value}"))
                    .collect();
                if !counters.is_empty() {
                    println!("  {}", counters.join(", "));
                }
            }
            println!();
            let counters: Vec<String> = shown
                .counters
                .iter()
                .map(|(counter, value)| format!("{counter} {value}"))
                .collect();
            println!("topology counters: {}", counters.join(", "));
        }
        TopologyCommand::Draw { name, svg, dot } => {
            let shown = topology::show(name)?;
            if svg.is_none() && dot.is_none() {
                print!("{}", topology::draw::dot(&shown));
                return Ok(());
            }
            let mut written = Vec::new();
            if let Some(path) = dot {
                std::fs::write(path, topology::draw::dot(&shown)).map_err(|error| {
                    anyhow::anyhow!("{}: cannot write: {error}", path.display())
                })?;
                written.push(path.display().to_string());
            }
            if let Some(path) = svg {
                std::fs::write(path, topology::draw::svg(&shown)).map_err(|error| {
                    anyhow::anyhow!("{}: cannot write: {error}", path.display())
                })?;
                written.push(path.display().to_string());
            }
            if as_json {
                output::json(&serde_json::json!({ "written": written }));
            } else {
                println!("wrote {}", written.join(", "));
            }
        }
        TopologyCommand::Swap {
            instance,
            file,
            name,
        } => {
            let swapped = topology::swap(name, instance, file)?;
            if as_json {
                output::json(&swapped);
            } else {
                println!(
                    "{}: {} {} -> {} (program {}), maps kept",
                    swapped.name,
                    swapped.instance,
                    swapped.old_version,
                    swapped.new_version,
                    swapped.program_id
                );
            }
        }
        TopologyCommand::Down { name } => {
            let down = topology::down(name)?;
            if as_json {
                output::json(&down);
            } else {
                println!(
                    "topology {} down: {} instances removed, {} interfaces left",
                    down.name,
                    down.instances.len(),
                    down.ifaces.len()
                );
            }
        }
    }
    Ok(())
}
