//! `fastpath serve`: one read-only HTTP server for all of fastpath, `/metrics` in the
//! Prometheus text format and `/api/...` as JSON (`observe::http`). Localhost by default.

use std::net::{SocketAddr, TcpListener};

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Anything but a loopback address exposes the counters
    /// to the network: say so explicitly.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
}

pub fn run(args: &ServeArgs, json: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .map_err(|error| anyhow::anyhow!("listen on {}: {error}", args.listen))?;
    let local = listener.local_addr()?;
    if json {
        println!("{}", serde_json::json!({ "listening": local.to_string() }));
    } else {
        println!("serving http://{local}/metrics and http://{local}/api");
    }
    observe::http::serve(listener)?;
    Ok(())
}
