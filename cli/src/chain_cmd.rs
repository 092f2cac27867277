//! `fastpath chain ...`: a whole module chain at once, its revisions and its history.

use std::path::PathBuf;

use clap::Subcommand;
use offload::modules::{self, ModuleChange};

use crate::{
    module_cmd::{ChainArgs, print_listing, warn_unfinished},
    module_test_cmd::print_trial,
    output,
};

#[derive(Subcommand)]
pub enum ChainCommand {
    /// Make the chain the one a chain file describes, in one revision: modules added,
    /// removed, reordered and swapped (maps of matching shape kept).
    Apply {
        #[command(flatten)]
        chain: ChainArgs,
        /// The chain file (`[[module]]` entries with `file` and an optional `name`).
        file: PathBuf,
        /// Read and plan everything, change nothing.
        #[arg(long)]
        check: bool,
    },
    /// The running chain and the revisions its history keeps.
    Show {
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// What a chain file would change; without a file, what the running revision changed.
    Diff {
        #[command(flatten)]
        chain: ChainArgs,
        /// The chain file to compare the running chain with.
        file: Option<PathBuf>,
    },
    /// Apply again an earlier revision from the history (by default the one before the
    /// running revision), as a new revision.
    Rollback {
        #[command(flatten)]
        chain: ChainArgs,
        /// The revision to go back to.
        #[arg(long)]
        to: Option<u32>,
    },
}

pub fn run(command: &ChainCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        ChainCommand::Apply { chain, file, check } => {
            let applied = modules::apply(chain.at(), file, *check)?;
            print_applied(&applied, *check, as_json);
        }
        ChainCommand::Rollback { chain, to } => {
            let applied = modules::rollback(chain.at(), *to)?;
            print_applied(&applied, false, as_json);
        }
        ChainCommand::Show { chain } => {
            let shown = modules::show(chain.at())?;
            if as_json {
                output::json(&shown);
            } else {
                print_listing(&shown.chain);
                println!("history:");
                let rows: Vec<Vec<String>> = shown
                    .history
                    .iter()
                    .rev()
                    .map(|record| {
                        let names: Vec<&str> =
                            record.modules.iter().map(|m| m.name.as_str()).collect();
                        vec![
                            record.revision.to_string(),
                            record.applied_at.to_string(),
                            names.join(" > "),
                            record.command.clone(),
                        ]
                    })
                    .collect();
                output::table(&["revision", "applied_at", "modules", "command"], &rows);
            }
        }
        ChainCommand::Diff { chain, file } => {
            let diff = modules::diff(chain.at(), file.as_deref())?;
            if as_json {
                output::json(&diff);
            } else {
                println!("{}: {} -> {}", diff.iface, diff.from, diff.to);
                print_changes(&diff.changes);
            }
        }
    }
    Ok(())
}

fn print_applied(applied: &modules::Applied, check: bool, as_json: bool) {
    warn_unfinished(&applied.unfinished);
    if as_json {
        output::json(applied);
        return;
    }
    if let Some(mode) = applied.attached {
        println!("attached the module chain to {} ({mode})", applied.iface);
    }
    match (check, applied.revision) {
        (true, _) => println!("checked: nothing changed; the change would be:"),
        (false, None) => println!("the chain already is as asked: nothing changed"),
        (false, Some(revision)) => println!("{}: revision {revision}", applied.iface),
    }
    print_changes(&applied.changes);
    if let Some(trial) = &applied.check {
        println!("the candidate chain on the sample packets:");
        print_trial(trial);
    }
    if applied.chain_detached {
        println!("the chain is empty: detached it from {}", applied.iface);
    }
}

fn print_changes(changes: &[ModuleChange]) {
    let place = |order: Option<usize>| order.map_or("-".to_string(), |order| order.to_string());
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|change| {
            let maps = change.maps.as_ref().map_or(String::new(), |maps| {
                format!(
                    "kept [{}] reset [{}]",
                    maps.kept.join(" "),
                    maps.reset.join(" ")
                )
            });
            vec![
                change.name.clone(),
                change.change.as_str().to_string(),
                format!("{} -> {}", place(change.old_order), place(change.order)),
                format!(
                    "{} -> {}",
                    change.old_version.as_deref().unwrap_or("-"),
                    change.version.as_deref().unwrap_or("-")
                ),
                maps,
            ]
        })
        .collect();
    output::table(&["module", "change", "order", "version", "maps"], &rows);
}
