//! `fastpath module ...`: IO modules on an interface's chain.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use offload::modules::{
    self, ChainAt, Hook, Position,
    map::{self, MapOperation, MapValue},
    scaffold::{self, Language},
};
use serde_json::json;

use crate::output;

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Scaffold a module project with a working example (counts packets per IP protocol).
    New {
        /// The module's name (also its directory, and a C or Rust identifier).
        name: String,
        #[arg(long, default_value = "c", value_parser = parse_language)]
        lang: Language,
        /// The directory to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The hook it is for: xdp, or tc-ingress/tc-egress (a TC classifier, C only).
        #[arg(long, default_value = "xdp")]
        hook: Hook,
    },
    /// Print where the SDK is (the C header and the Rust crate).
    Sdk,
    /// Load a module into the interface's chain (attaching the chain with the first one).
    Load {
        #[command(flatten)]
        chain: ChainArgs,
        /// The module's object file.
        file: PathBuf,
        /// Its name in the chain (default: the name in its metadata).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        position: PositionArgs,
    },
    /// The chain's modules in order, with packets per verdict.
    List {
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Count each module's run time (a clock read per verdict while on); `list` shows it
    /// as ns/packet.
    Profile {
        #[command(flatten)]
        chain: ChainArgs,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Replace a module with another version in one step; maps of matching shape are kept.
    Swap {
        #[command(flatten)]
        chain: ChainArgs,
        /// The module to replace.
        name: String,
        /// The new version's object file.
        file: PathBuf,
    },
    /// Remove a module from the chain (the chain goes with the last one).
    Unload {
        #[command(flatten)]
        chain: ChainArgs,
        name: String,
    },
    /// Read or write a map of a running module. Keys and values are space-separated hex
    /// bytes in memory order, one argument each: `NAME PROTOCOLS set "11 00 00 00" "05 00 00
    /// 00 00 00 00 00"`. A per-CPU map shows each CPU's value; a set writes every CPU.
    Map {
        #[command(flatten)]
        chain: ChainArgs,
        /// The module.
        name: String,
        /// The map (as declared in the module).
        map: String,
        #[command(subcommand)]
        operation: MapCommand,
    },
    /// Run the packets of a pcap file through a chain of these modules with
    /// BPF_PROG_TEST_RUN (nothing is attached): each packet's verdict, the module that gave
    /// it and the bytes it changed; fails when the result differs from --expect.
    Test(crate::module_test_cmd::TestArgs),
}

/// Which chain: an interface, and the hook (XDP unless told).
#[derive(Args)]
pub struct ChainArgs {
    /// The interface.
    #[arg(long)]
    iface: String,
    /// The hook: xdp, tc-ingress or tc-egress (each has a chain of its own).
    #[arg(long, default_value = "xdp")]
    hook: Hook,
}

impl ChainArgs {
    pub fn at(&self) -> ChainAt<'_> {
        ChainAt::new(&self.iface, self.hook)
    }
}

#[derive(Subcommand)]
pub enum MapCommand {
    /// Every entry.
    Dump,
    /// The entry of KEY.
    Get { key: String },
    /// Write VALUE at KEY.
    Set { key: String, value: String },
    /// Remove KEY (arrays cannot remove entries).
    Delete { key: String },
}

impl MapCommand {
    fn operation(&self) -> Result<MapOperation, map::ModuleMapError> {
        Ok(match self {
            MapCommand::Dump => MapOperation::Dump,
            MapCommand::Get { key } => MapOperation::Get(map::parse_bytes("key", key)?),
            MapCommand::Set { key, value } => MapOperation::Set(
                map::parse_bytes("key", key)?,
                map::parse_bytes("value", value)?,
            ),
            MapCommand::Delete { key } => MapOperation::Delete(map::parse_bytes("key", key)?),
        })
    }
}

#[derive(Args)]
#[group(multiple = false)]
pub struct PositionArgs {
    /// Before every module.
    #[arg(long)]
    first: bool,
    /// After every module (the default).
    #[arg(long)]
    last: bool,
    /// Right before the named module.
    #[arg(long, value_name = "MODULE")]
    before: Option<String>,
    /// Right after the named module.
    #[arg(long, value_name = "MODULE")]
    after: Option<String>,
}

impl PositionArgs {
    fn position(&self) -> Position {
        match (&self.before, &self.after) {
            (Some(module), _) => Position::Before(module.clone()),
            (_, Some(module)) => Position::After(module.clone()),
            _ if self.first => Position::First,
            _ => Position::Last,
        }
    }
}

fn parse_language(text: &str) -> Result<Language, String> {
    match text {
        "c" => Ok(Language::C),
        "rust" => Ok(Language::Rust),
        _ => Err(format!("invalid --lang {text:?}: expected c or rust")),
    }
}

pub fn run(command: &ModuleCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        ModuleCommand::Test(args) => return crate::module_test_cmd::run(args, as_json),
        ModuleCommand::New {
            name,
            lang,
            dir,
            hook,
        } => {
            let made = scaffold::scaffold(name, *lang, *hook, dir)?;
            if as_json {
                output::json(&made);
            } else {
                println!("created {} ({})", made.dir.display(), made.files.join(", "));
                println!("build:  cd {} && {}", made.dir.display(), made.build);
                println!("object: {}", made.object);
            }
        }
        ModuleCommand::Sdk => {
            let sdk = scaffold::sdk_dir();
            let (header, crate_dir) = (sdk.join("c/module.h"), sdk.join("rust"));
            if as_json {
                output::json(&json!({
                    "sdk": sdk,
                    "c_header": header,
                    "rust_crate": crate_dir,
                    "abi_version": offload_common_abi(),
                }));
            } else {
                println!("SDK (ABI {}): {}", offload_common_abi(), sdk.display());
                println!("C header:   {}", header.display());
                println!("Rust crate: {}", crate_dir.display());
            }
        }
        ModuleCommand::Load {
            chain,
            file,
            name,
            position,
        } => {
            let loaded = modules::load(chain.at(), file, name.as_deref(), &position.position())?;
            if as_json {
                output::json(&loaded);
            } else {
                if let Some(mode) = loaded.attached {
                    println!("attached the module chain to {} ({mode})", loaded.iface);
                }
                println!(
                    "loaded {} {} at position {} (program {}), revision {}",
                    loaded.module, loaded.version, loaded.order, loaded.program_id, loaded.revision
                );
            }
            warn_unfinished(&loaded.unfinished);
        }
        ModuleCommand::List { chain } => {
            let listing = modules::list(chain.at())?;
            if as_json {
                output::json(&listing);
            } else {
                print_listing(&listing);
            }
        }
        ModuleCommand::Profile { chain, state } => {
            let listing = modules::profile(chain.at(), state == "on")?;
            if as_json {
                output::json(&listing);
            } else {
                print_listing(&listing);
            }
        }
        ModuleCommand::Swap { chain, name, file } => {
            let swapped = modules::swap(chain.at(), name, file)?;
            if as_json {
                output::json(&swapped);
            } else {
                println!(
                    "swapped {} {} -> {} (program {} -> {}), revision {}",
                    swapped.module,
                    swapped.old_version,
                    swapped.new_version,
                    swapped.old_program_id,
                    swapped.new_program_id,
                    swapped.revision
                );
                println!("maps kept:    {}", swapped.maps.kept.join(", "));
                println!("maps reset:   {}", swapped.maps.reset.join(", "));
                if !swapped.maps.dropped.is_empty() {
                    println!("maps dropped: {}", swapped.maps.dropped.join(", "));
                }
            }
            warn_unfinished(&swapped.unfinished);
        }
        ModuleCommand::Unload { chain, name } => {
            let unloaded = modules::unload(chain.at(), name)?;
            if as_json {
                output::json(&unloaded);
            } else {
                println!(
                    "unloaded {}, revision {}",
                    unloaded.module, unloaded.revision
                );
                if unloaded.chain_detached {
                    println!("the chain was empty: detached it from {}", unloaded.iface);
                }
            }
            warn_unfinished(&unloaded.unfinished);
        }
        ModuleCommand::Map {
            chain,
            name,
            map: map_name,
            operation,
        } => {
            let operation = operation.operation()?;
            let report = map::module_map(chain.at(), name, map_name, &operation)?;
            if as_json {
                output::json(&report);
            } else {
                if let MapOperation::Delete(key) = &operation {
                    println!("deleted key {} from {}", map::format_bytes(key), report.map);
                }
                print_entries(&report.entries);
            }
        }
    }
    Ok(())
}

/// The running chain: its revision, then one row per module.
pub fn print_listing(listing: &modules::ChainListing) {
    println!(
        "{}: revision {}, frags {}, profiling {}, empty-chain passes {}, chain-end passes {}",
        listing.iface,
        listing.revision,
        listing.frags,
        if listing.profiling { "on" } else { "off" },
        listing.empty_chain_passes,
        listing.chain_end_passes
    );
    let rows: Vec<Vec<String>> = listing
        .modules
        .iter()
        .map(|module| {
            let packets = module
                .packets
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(verdict, count)| format!("{verdict}={count}"))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                module.order.to_string(),
                module.name.clone(),
                module.version.clone(),
                module.program_id.to_string(),
                module
                    .ns_per_packet
                    .map_or("-".to_string(), |ns| format!("{ns:.1}")),
                packets,
            ]
        })
        .collect();
    output::table(
        &["order", "name", "version", "prog", "ns/pkt", "packets"],
        &rows,
    );
}

/// A change that took effect with its bookkeeping left to the next command.
pub fn warn_unfinished(unfinished: &Option<String>) {
    if let Some(error) = unfinished {
        eprintln!(
            "warning: the change took effect, but finishing it failed ({error}); the next command on the chain completes it"
        );
    }
}

fn print_entries(entries: &[map::MapEntry]) {
    for entry in entries {
        match &entry.value {
            MapValue::One(value) => println!("key: {}  value: {value}", entry.key),
            MapValue::PerCpu(values) => {
                println!("key: {}", entry.key);
                for (cpu, value) in values.iter().enumerate() {
                    println!("  cpu{cpu}: {value}");
                }
            }
        }
    }
}

fn offload_common_abi() -> u32 {
    modules::ABI_VERSION
}
