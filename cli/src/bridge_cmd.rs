//! `fastpath bridge fdb show|add|del`: the forwarding table of a running topology's
//! bridge instance, read and changed while it forwards.

use clap::Subcommand;
use topology::file::{DEFAULT_NAME, parse_mac};

use crate::output;

#[derive(Subcommand)]
pub enum BridgeCommand {
    /// The forwarding table (learned and static stations) of a bridge instance.
    Fdb {
        #[command(subcommand)]
        command: FdbCommand,
    },
}

#[derive(Subcommand)]
pub enum FdbCommand {
    /// Every station: VLAN, MAC, port, static or its age.
    Show {
        /// The bridge instance.
        instance: String,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Add a static entry (never ages, never moves): MAC is behind PORT.
    Add {
        /// The bridge instance.
        instance: String,
        /// The station's MAC address (aa:bb:cc:dd:ee:ff).
        mac: String,
        /// The bridge's port (its name in the topology file).
        port: String,
        /// The VLAN (0: untagged).
        #[arg(long, default_value_t = 0)]
        vlan: u16,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Remove an entry, static or learned.
    Del {
        /// The bridge instance.
        instance: String,
        /// The station's MAC address.
        mac: String,
        /// The VLAN (0: untagged).
        #[arg(long, default_value_t = 0)]
        vlan: u16,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

pub fn run(command: &BridgeCommand, as_json: bool) -> anyhow::Result<()> {
    let BridgeCommand::Fdb { command } = command;
    match command {
        FdbCommand::Show { instance, name } => {
            let rows = topology::fdb_show(name, instance)?;
            if as_json {
                output::json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    vec![
                        row.vlan.to_string(),
                        row.mac.clone(),
                        row.port.clone(),
                        match row.age_seconds {
                            None => "static".to_string(),
                            Some(age) if row.expired => format!("{age:.0} s (expired)"),
                            Some(age) => format!("{age:.0} s"),
                        },
                    ]
                })
                .collect();
            output::table(&["vlan", "mac", "port", "age"], &table);
            println!("{} entries", rows.len());
        }
        FdbCommand::Add {
            instance,
            mac,
            port,
            vlan,
            name,
        } => {
            topology::fdb_add(name, instance, mac_arg(mac)?, *vlan, port)?;
            output::done(
                as_json,
                &format!("{instance}: {mac} on VLAN {vlan} is behind {port} (static)"),
            );
        }
        FdbCommand::Del {
            instance,
            mac,
            vlan,
            name,
        } => {
            topology::fdb_del(name, instance, mac_arg(mac)?, *vlan)?;
            output::done(
                as_json,
                &format!("{instance}: {mac} on VLAN {vlan} removed"),
            );
        }
    }
    Ok(())
}

fn mac_arg(text: &str) -> anyhow::Result<[u8; 6]> {
    parse_mac(text)
        .ok_or_else(|| anyhow::anyhow!("{text} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}
