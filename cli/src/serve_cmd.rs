//! `fastpath serve`: one read-only HTTP server for all of fastpath, the tunnel graph page
//! at `/`, `/metrics` in the Prometheus text format and `/api/...` as JSON
//! (`observe::http`). Localhost by default.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::Arc,
};

use clap::Args;
use observe::{http::Server, metrics::Sources};

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Anything but a loopback address exposes the counters
    /// to the network: say so explicitly.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// A load balancer's control socket to read its VIP, backend and worker stats from
    /// (repeat for several) [default: /run/fastpath/lb.sock when an appliance is there].
    #[arg(long = "lb-control", value_name = "PATH")]
    lb_controls: Vec<PathBuf>,
}

pub fn run(args: &ServeArgs, json: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .map_err(|error| anyhow::anyhow!("listen on {}: {error}", args.listen))?;
    let local = listener.local_addr()?;
    if json {
        println!("{}", serde_json::json!({ "listening": local.to_string() }));
    } else {
        println!(
            "serving http://{local}/ (tunnel graph), http://{local}/metrics and http://{local}/api"
        );
    }
    let sources = Sources {
        lb_controls: args.lb_controls.clone(),
    };
    Arc::new(Server::new(sources)).serve(listener)?;
    Ok(())
}
