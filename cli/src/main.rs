//! `fastpath`: one command line for the framework.

mod bench;
mod bridge_cmd;
mod chain_cmd;
mod demo;
mod firewall_cmd;
mod gen_cmd;
mod lab_cmd;
mod lb_cmd;
mod module_cmd;
mod module_test_cmd;
mod output;
mod policy_cmd;
mod probe_cmd;
mod router_cmd;
mod serve_cmd;
mod topology_cmd;
mod trace_cmd;
mod xdp_cmd;
mod xsk;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fastpath",
    version,
    about = "Programmable NIC data paths: XDP steering to AF_XDP pipelines"
)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Run inside this network namespace (only the network namespace is entered, so the
    /// bpffs pins stay visible across calls).
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, inspect and steer with the XDP program.
    Xdp {
        #[command(subcommand)]
        command: xdp_cmd::XdpCommand,
    },
    /// IO modules: write, load, chain, swap and unload XDP modules at run time.
    Module {
        #[command(subcommand)]
        command: module_cmd::ModuleCommand,
    },
    /// A whole IO module chain at once: apply a chain file, show, diff and roll back
    /// revisions.
    Chain {
        #[command(subcommand)]
        command: chain_cmd::ChainCommand,
    },
    /// The stateful firewall module of an interface: apply a rules file, status, remove.
    Firewall {
        #[command(subcommand)]
        command: firewall_cmd::FirewallCommand,
    },
    /// The node's connection-tracking table (shared by every interface's firewall).
    Conntrack {
        #[command(subcommand)]
        command: firewall_cmd::ConntrackCommand,
    },
    /// Security groups (micro-segmentation): compile groups to the firewall of every member
    /// interface, show their counters, explain a verdict.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Topologies: bridge, router and user module instances joined to interfaces and to
    /// each other inside the kernel: apply a topology file, show, draw, swap, down.
    Topology {
        #[command(subcommand)]
        command: topology_cmd::TopologyCommand,
    },
    /// A running topology's bridge instance: `bridge fdb show|add|del`.
    Bridge {
        #[command(subcommand)]
        command: bridge_cmd::BridgeCommand,
    },
    /// A running topology's router instance: `router route add|del|show`.
    Router {
        #[command(subcommand)]
        command: router_cmd::RouterCommand,
    },
    /// The built-in network lab of namespaces.
    Lab {
        #[command(subcommand)]
        command: lab_cmd::LabCommand,
    },
    /// The L4 load balancer appliance on AF_XDP: run it, or control a running one.
    Lb(lb_cmd::LbArgs),
    /// What each interface can do: identity, queues, XDP features, attach and AF_XDP
    /// trials, the matching NIC profile and recommendations.
    Probe(probe_cmd::ProbeArgs),
    /// Send traffic with BPF_PROG_RUN live frames (the xdp-trafficgen technique).
    Gen(gen_cmd::GenArgs),
    /// Line-rate benchmark of one app on a NIC profile: RFC 2544 search, latency, CPU,
    /// references; writes results.json, report.md and SVG plots. `bench compare A B`.
    Bench(bench::BenchArgs),
    /// Measure AF_XDP on an interface: rxdrop, txpush or l2fwd (like xdpsock).
    Xsk(xsk::XskArgs),
    /// Trace tunnels crossing an interface: `trace vxlan`.
    Trace {
        #[command(subcommand)]
        command: trace_cmd::TraceCommand,
    },
    /// One read-only HTTP server for all of fastpath: /metrics (Prometheus), /api (JSON).
    Serve(serve_cmd::ServeArgs),
    /// Build a lab, run the L4 load balancer on AF_XDP, send real HTTP requests, drain a
    /// backend mid-run, print the distribution and stats, tear everything down.
    Demo {
        /// HTTP requests in the first round.
        #[arg(long, default_value_t = 3000)]
        requests: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    if !serves_sockets(&cli.command) {
        // A command that prints and exits ends quietly when its reader goes (`| head`), as
        // Unix tools do, instead of panicking on the write. Not for the long-running
        // servers: a peer closing a socket must not kill them.
        // SAFETY: setting a signal's disposition has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = run(&cli);
    if let Err(error) = result {
        let message = format!("{error:#}");
        if cli.json {
            println!("{}", serde_json::json!({ "error": message }));
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// The commands that run servers (the load balancer and its control socket, the HTTP
/// server, the demo's appliance).
fn serves_sockets(command: &Command) -> bool {
    matches!(
        command,
        Command::Lb(_) | Command::Serve(_) | Command::Demo { .. } | Command::Bench(_)
    )
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(namespace) = &cli.netns {
        lab::netns::enter(namespace)?;
    }
    match &cli.command {
        Command::Xdp { command } => xdp_cmd::run(command, cli.json),
        Command::Lab { command } => lab_cmd::run(command, cli.json),
        Command::Module { command } => module_cmd::run(command, cli.json),
        Command::Chain { command } => chain_cmd::run(command, cli.json),
        Command::Firewall { command } => firewall_cmd::run(command, cli.json),
        Command::Conntrack { command } => firewall_cmd::run_conntrack(command, cli.json),
        Command::Policy { command } => policy_cmd::run(command, cli.json),
        Command::Topology { command } => topology_cmd::run(command, cli.json),
        Command::Bridge { command } => bridge_cmd::run(command, cli.json),
        Command::Router { command } => router_cmd::run(command, cli.json),
        Command::Xsk(args) => xsk::run(args, cli.json),
        Command::Gen(args) => gen_cmd::run(args, cli.json),
        Command::Bench(args) => bench::run(args, cli.json),
        Command::Lb(args) => lb_cmd::run(args, cli.json),
        Command::Probe(args) => probe_cmd::run(args, cli.json),
        Command::Trace { command } => trace_cmd::run(command, cli.json),
        Command::Serve(args) => serve_cmd::run(args, cli.json),
        Command::Demo { requests } => demo::run(*requests, cli.json),
    }
}
