//! `fastpath router route add|del|show`: the routes of a running topology's router
//! instance and their counters, read and changed while it forwards.

use std::net::IpAddr;

use clap::Subcommand;
use ipnet::IpNet;
use topology::file::DEFAULT_NAME;

use crate::output;

#[derive(Subcommand)]
pub enum RouterCommand {
    /// The routes of a router instance.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// Every route (connected and static, IPv4 and IPv6) with its packet and byte counts.
    Show {
        /// The router instance.
        instance: String,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Add a route: PREFIX out of PORT, via a next hop (or connected without --via).
    Add {
        /// The router instance.
        instance: String,
        /// The destination (10.9.0.0/16, fd09::/48).
        prefix: IpNet,
        /// The router's port packets leave on (its name in the topology file).
        #[arg(long)]
        port: String,
        /// The next hop; without it the destination is on the port's link.
        #[arg(long)]
        via: Option<IpAddr>,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Delete the route to exactly PREFIX.
    Del {
        /// The router instance.
        instance: String,
        /// The destination.
        prefix: IpNet,
        /// The topology.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

pub fn run(command: &RouterCommand, as_json: bool) -> anyhow::Result<()> {
    let RouterCommand::Route { command } = command;
    match command {
        RouteCommand::Show { instance, name } => {
            let rows = topology::route_show(name, instance)?;
            if as_json {
                output::json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    vec![
                        row.prefix.clone(),
                        row.via.clone().unwrap_or_else(|| "connected".to_string()),
                        row.port.clone(),
                        row.id.to_string(),
                        row.packets.to_string(),
                        row.bytes.to_string(),
                    ]
                })
                .collect();
            output::table(&["prefix", "via", "port", "id", "packets", "bytes"], &table);
            println!("{} routes", rows.len());
        }
        RouteCommand::Add {
            instance,
            prefix,
            port,
            via,
            name,
        } => {
            let id = topology::route_add(name, instance, *prefix, port, *via)?;
            let via = via.map_or("connected".to_string(), |via| format!("via {via}"));
            let message = format!("{instance}: {prefix} {via} out of {port} (route {id})");
            if as_json {
                output::json(&serde_json::json!({ "done": message, "id": id }));
            } else {
                println!("{message}");
            }
        }
        RouteCommand::Del {
            instance,
            prefix,
            name,
        } => {
            topology::route_del(name, instance, *prefix)?;
            output::done(as_json, &format!("{instance}: route to {prefix} deleted"));
        }
    }
    Ok(())
}
