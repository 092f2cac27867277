//! `fastpath lab up | down | status`

use clap::Subcommand;
use lab::{DEFAULT_PREFIX, LAB_PREFIX, Lab, netns};
use serde_json::json;

use crate::output;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build the default lab and leave it running.
    Up,
    /// Remove the default lab (or, with --all, every lab namespace, e.g. left by killed tests).
    Down {
        #[arg(long)]
        all: bool,
    },
    /// List the lab namespaces present.
    Status,
}

pub fn run(command: &LabCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        LabCommand::Up => {
            Lab::teardown_on_signals();
            let lab = Lab::up(DEFAULT_PREFIX)?;
            if as_json {
                output::json(&lab);
            } else {
                let rows: Vec<Vec<String>> = [
                    ("client", &lab.client),
                    ("dut", &lab.dut),
                    ("dut-lan", &lab.dut_lan),
                ]
                .into_iter()
                .chain(lab.backends.iter().map(|b| ("backend", b)))
                .map(|(role, end)| {
                    vec![
                        role.into(),
                        end.namespace.clone(),
                        end.iface.clone(),
                        end.ipv4.to_string(),
                        end.ipv6.to_string(),
                    ]
                })
                .collect();
                output::table(&["role", "namespace", "iface", "ipv4", "ipv6"], &rows);
                println!(
                    "\ntry: fastpath --netns {} xdp attach --iface {}",
                    lab.dut.namespace, lab.dut.iface
                );
            }
            lab.keep();
        }
        LabCommand::Down { all } => {
            let removed = if *all {
                let names = netns::list(LAB_PREFIX);
                for name in &names {
                    netns::delete(name)?;
                }
                names
            } else {
                Lab::down(DEFAULT_PREFIX)?
            };
            // XDP attachments on the lab's interfaces went with the namespaces; drop their pins.
            offload::prune_stale_pins();
            if as_json {
                output::json(&json!({ "removed": removed }));
            } else if removed.is_empty() {
                println!("no lab namespaces to remove");
            } else {
                println!("removed {}", removed.join(", "));
            }
        }
        LabCommand::Status => {
            let namespaces = netns::list(LAB_PREFIX);
            if as_json {
                output::json(&json!({ "namespaces": namespaces }));
            } else if namespaces.is_empty() {
                println!("no lab namespaces (fastpath lab up builds one)");
            } else {
                println!("{}", namespaces.join("\n"));
            }
        }
    }
    Ok(())
}
