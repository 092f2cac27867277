//! IO modules on the lab: C modules scaffolded by `fastpath module new` and built with clang
//! inside the test are loaded, swapped and unloaded on the dut while the client sends UDP
//! traffic; every datagram is counted by exactly one terminal verdict, and a module's
//! counter map survives its swap. Also the ABI-mismatch and verifier-rejection errors.

mod support;
use support::{DROPPER, TempDir, clang, failure, json, pins_root};

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lab::{Lab, require_root};
use offload::modules::{ChainAt, Hook};

/// Reads the packet without a bounds check: the verifier must refuse it.
const UNCHECKED: &str = r#"
#include "module.h"
FASTPATH_MODULE("unchecked", "1.0.0", 1);
SEC("xdp.frags")
int unchecked(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	unsigned char first = *(unsigned char *)(long)ctx->data;
	return first ? fp_drop(fp) : fp_continue(ctx, fp);
}
"#;

/// Declares no frags: refused by a chain of frags-aware modules.
const NO_FRAGS: &str = r#"
#include "module.h"
FASTPATH_MODULE("no_frags", "1.0.0", 0);
SEC("xdp")
int no_frags(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	return fp ? fp_continue(ctx, fp) : XDP_PASS;
}
"#;

/// Its metadata claims frags, its section does not.
const FRAGS_DISAGREE: &str = r#"
#include "module.h"
FASTPATH_MODULE("disagree", "1.0.0", 1);
SEC("xdp")
int disagree(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	return fp ? fp_continue(ctx, fp) : XDP_PASS;
}
"#;

/// The objects of one run: the counter (scaffolded) in two versions, and the C helpers.
struct Built {
    dir: TempDir,
    counter: PathBuf,
    counter_v2: PathBuf,
    dropper: PathBuf,
    unchecked: PathBuf,
    no_frags: PathBuf,
    frags_disagree: PathBuf,
    abi2: PathBuf,
}

/// Scaffolds `counter` with `fastpath module new --lang <lang>` and builds it (make, or
/// cargo), then version 0.2.0 of it (same maps, so PROTOCOLS is handed over by a swap),
/// and the other modules of the test.
fn build_modules(lang: &str) -> Built {
    // One folder per call: the tests run in parallel in one process, and each removes its
    // own folder when done.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "fastpath-modules-{lang}-{}-{call}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let made = json(&[
        "module",
        "new",
        "counter",
        "--lang",
        lang,
        "--dir",
        dir.0.to_str().unwrap(),
    ]);
    let project = PathBuf::from(made["dir"].as_str().unwrap());
    let source = project.join(if lang == "c" {
        "counter.c"
    } else {
        "src/main.rs"
    });
    let first = build_project(lang, &project, &dir.0.join("counter.o"));
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace("\"0.1.0\"", "\"0.2.0\"")).unwrap();
    let second = build_project(lang, &project, &dir.0.join("counter_v2.o"));
    let mut others = Vec::new();
    for (name, text) in [
        ("dropper", DROPPER),
        ("unchecked", UNCHECKED),
        ("no_frags", NO_FRAGS),
        ("disagree", FRAGS_DISAGREE),
    ] {
        let source = dir.0.join(format!("{name}.c"));
        std::fs::write(&source, text).unwrap();
        let object = dir.0.join(format!("{name}.o"));
        clang(&source, &object);
        others.push(object);
    }
    // The counter, with ABI version 2 in its metadata.
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes
        .windows(8)
        .position(|window| window == b"FPMODULE")
        .expect("metadata magic");
    bytes[at + 8..at + 12].copy_from_slice(&2u32.to_le_bytes());
    let abi2 = dir.0.join("abi2.o");
    std::fs::write(&abi2, bytes).unwrap();
    Built {
        counter: first,
        counter_v2: second,
        frags_disagree: others.pop().unwrap(),
        no_frags: others.pop().unwrap(),
        unchecked: others.pop().unwrap(),
        dropper: others.pop().unwrap(),
        abi2,
        dir,
    }
}

/// Builds the scaffolded project in `project` the way its README says, and copies the
/// object to `object`.
fn build_project(lang: &str, project: &Path, object: &Path) -> PathBuf {
    let name = project.file_name().unwrap().to_str().unwrap();
    let (output, built) = if lang == "c" {
        let output = Command::new("make")
            .arg("-C")
            .arg(project)
            .output()
            .expect("run make");
        (output, project.join(format!("{name}.o")))
    } else {
        // A target folder shared by the runs, so `core` is built for BPF once.
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/module-tests");
        let output = Command::new("cargo")
            .args(["build", "--release", "--offline"])
            .current_dir(project)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .output()
            .expect("run cargo");
        (output, target.join("bpfel-unknown-none/release").join(name))
    };
    assert!(
        output.status.success(),
        "building {}: {}",
        project.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::copy(&built, object).expect("copy the module object");
    object.to_path_buf()
}

/// Sends UDP datagrams to `dst`:9 from namespace `ns`, 20 a millisecond, until `stop`
/// (at least 20); returns how many were sent.
fn udp_traffic(
    ns: String,
    dst: std::net::IpAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        lab::netns::run_in(&ns, move || {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).expect("bind UDP");
            let mut sent = 0u64;
            loop {
                for _ in 0..20 {
                    if socket.send_to(b"fastpath module test", (dst, 9)).is_ok() {
                        sent += 1;
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break sent;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .expect("client namespace")
    })
}

fn verdict(listing: &serde_json::Value, module: &str, verdict: &str) -> u64 {
    listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == module)
        .unwrap_or_else(|| panic!("{module} in {listing}"))["packets"][verdict]
        .as_u64()
        .unwrap()
}

fn names(listing: &serde_json::Value) -> Vec<String> {
    listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn c_modules_load_swap_and_unload_under_traffic() {
    require_root("C module chain under traffic");
    under_traffic(&build_modules("c"), "md");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_rust_module_loads_swaps_and_unloads_under_traffic() {
    require_root("Rust module chain under traffic");
    under_traffic(&build_modules("rust"), "mr");
}

/// The scenario, with the counter in front of the dropper: loads, traffic, a swap of the
/// counter and a load and unload of a third module during it, then the counts, the errors
/// and the unloads.
fn under_traffic(built: &Built, tag: &str) {
    assert!(built.dir.0.exists());
    let lab = Lab::for_test(tag);
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| -> serde_json::Value {
        json(&[&["--netns", ns.as_str(), "module"], args].concat())
    };
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();

    let loaded = on_dut(&["load", "--iface", &iface, &path(&built.dropper)]);
    assert!(loaded["attached"].is_string(), "{loaded}");
    on_dut(&["load", "--iface", &iface, &path(&built.counter), "--first"]);
    assert_eq!(
        names(&on_dut(&["list", "--iface", &iface])),
        ["counter", "dropper"]
    );
    // One datagram first, so ARP (which crosses the chain to the kernel and back) is
    // resolved before the paced traffic and none waits in a neighbour queue.
    let warm_up = Arc::new(AtomicBool::new(true));
    let first = udp_traffic(lab.client.namespace.clone(), lab.dut.ipv4, warm_up)
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = udp_traffic(lab.client.namespace.clone(), lab.dut.ipv4, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let swapped = on_dut(&[
        "swap",
        "--iface",
        &iface,
        "counter",
        &path(&built.counter_v2),
    ]);
    assert_eq!(
        swapped["maps"]["kept"],
        serde_json::json!(["PROTOCOLS"]),
        "{swapped}"
    );
    assert_eq!(swapped["new_version"], "0.2.0", "{swapped}");
    std::thread::sleep(Duration::from_millis(200));
    // A second instance after the dropper: it sees no test datagram.
    on_dut(&[
        "load",
        "--iface",
        &iface,
        &path(&built.counter),
        "--name",
        "late",
        "--after",
        "dropper",
    ]);
    std::thread::sleep(Duration::from_millis(200));
    on_dut(&["unload", "--iface", &iface, "late"]);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let sent = first + traffic.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let listing = on_dut(&["list", "--iface", &iface]);
    assert_eq!(names(&listing), ["counter", "dropper"], "{listing}");
    assert!(sent > 1000, "sent {sent}");
    // Every datagram met exactly one terminal verdict: the dropper's drop.
    assert_eq!(verdict(&listing, "dropper", "drop"), sent, "{listing}");
    assert_eq!(verdict(&listing, "counter", "drop"), 0, "{listing}");
    // The counter's PROTOCOLS[UDP] saw every datagram, across the swap.
    let dut_iface = iface.clone();
    let udp = lab::netns::run_in(&ns, move || {
        offload::modules::read_counter(&dut_iface, "counter", "PROTOCOLS", 17)
    })
    .expect("dut namespace")
    .expect("read PROTOCOLS");
    assert_eq!(udp, sent, "PROTOCOLS[17] after the swap");
    assert_eq!(listing["modules"][0]["version"], "0.2.0", "{listing}");

    // Bad input: each a clear error, the chain untouched.
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "load",
        "--iface",
        &iface,
        &path(&built.abi2),
        "--name",
        "x",
    ]);
    assert!(
        error.contains("built for ABI 2; this fastpath speaks 1"),
        "{error}"
    );
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "load",
        "--iface",
        &iface,
        &path(&built.unchecked),
    ]);
    assert!(error.contains("verifier rejected"), "{error}");
    assert!(error.contains("invalid access to packet"), "{error}");
    // The log carries the source lines (the object has BTF line info).
    assert!(error.contains("@ unchecked.c:"), "{error}");
    for (object, expected) in [
        (&built.no_frags, "frags=false, but the chain on"),
        (
            &built.frags_disagree,
            "the metadata says frags=true but program `disagree` is in section xdp",
        ),
    ] {
        let error = failure(&[
            "--netns",
            &ns,
            "module",
            "load",
            "--iface",
            &iface,
            &path(object),
        ]);
        assert!(error.contains(expected), "{error}");
    }
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "load",
        "--iface",
        &iface,
        &path(&built.counter),
    ]);
    assert!(
        error.contains("already has a module named counter"),
        "{error}"
    );
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "load",
        "--iface",
        &iface,
        &path(&built.counter),
        "--name",
        "y",
        "--before",
        "nobody",
    ]);
    assert!(error.contains("no module named nobody"), "{error}");
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "load",
        "--iface",
        &iface,
        env!("CARGO_BIN_EXE_fastpath"),
    ]);
    assert!(error.contains("no fastpath module metadata"), "{error}");
    assert_eq!(
        names(&on_dut(&["list", "--iface", &iface])),
        ["counter", "dropper"]
    );

    on_dut(&["unload", "--iface", &iface, "counter"]);
    let last = on_dut(&["unload", "--iface", &iface, "dropper"]);
    assert_eq!(last["chain_detached"], true, "{last}");
    let error = failure(&["--netns", &ns, "module", "list", "--iface", &iface]);
    assert!(error.contains("no module chain"), "{error}");
}

fn killed(output: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    output.status.signal() == Some(libc::SIGKILL)
}

/// Sends `count` datagrams to the dut's port 9 from the client, paced; returns how many
/// were sent.
fn udp_burst(lab: &Lab) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = udp_traffic(lab.client.namespace.clone(), lab.dut.ipv4, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sent
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_kill_during_a_change_leaves_the_chain_working_and_the_next_command_cleans_up() {
    require_root("module chain kill -9");
    let built = build_modules("c");
    let lab = Lab::for_test("mk");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let module = |args: &[&str], kill_at: Option<&str>| -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastpath"));
        command.args([&["--json", "--netns", ns.as_str(), "module"], args].concat());
        if let Some(point) = kill_at {
            command.env("FASTPATH_KILL_AT", point);
        }
        command.output().expect("run fastpath")
    };
    let listing = || json(&["--netns", &ns, "module", "list", "--iface", &iface]);
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let modules_dir = pins_root(&ns).join(&iface).join("chain/modules");
    let pinned_modules = || {
        let mut names: Vec<String> = std::fs::read_dir(&modules_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // The steering program and user modules share the interface's chain: `xdp attach`
    // joins it as the module `steer`, `xdp detach` takes steer out and leaves the rest.
    assert!(
        module(&["load", "--iface", &iface, &path(&built.dropper)], None)
            .status
            .success()
    );
    json(&["--netns", &ns, "xdp", "attach", "--iface", &iface]);
    assert_eq!(names(&listing()), ["dropper", "steer"]);
    json(&["--netns", &ns, "xdp", "detach", "--iface", &iface]);
    let before = listing();
    assert_eq!(names(&before), ["dropper"], "{before}");
    // Killed with the new revision built but not switched to: the old one keeps running.
    let load = module(
        &["load", "--iface", &iface, &path(&built.counter), "--first"],
        Some("module:revision-built"),
    );
    assert!(killed(&load), "{load:?}");
    let after = listing();
    assert_eq!(names(&after), ["dropper"], "{after}");
    assert_eq!(after["revision"], before["revision"], "{after}");
    udp_burst(&lab); // resolves ARP
    let drops = verdict(&listing(), "dropper", "drop");
    let sent = udp_burst(&lab);
    assert_eq!(verdict(&listing(), "dropper", "drop"), drops + sent);

    // The next command removes what the killed one left, and succeeds.
    assert!(
        module(
            &["load", "--iface", &iface, &path(&built.counter), "--first"],
            None
        )
        .status
        .success()
    );
    assert_eq!(names(&listing()), ["counter", "dropper"]);
    assert_eq!(pinned_modules(), ["counter", "dropper"]);

    // Killed right after the switch: the new version runs; the next command records it.
    let swap = module(
        &[
            "swap",
            "--iface",
            &iface,
            "counter",
            &path(&built.counter_v2),
        ],
        Some("module:switched"),
    );
    assert!(killed(&swap), "{swap:?}");
    let second = udp_burst(&lab);
    let now = listing();
    assert_eq!(now["modules"][0]["version"], "0.2.0", "{now}");
    // Every datagram since the first count met the dropper's drop, across both kills.
    assert_eq!(
        verdict(&now, "dropper", "drop"),
        drops + sent + second,
        "{now}"
    );
    assert!(
        module(&["unload", "--iface", &iface, "counter"], None)
            .status
            .success()
    );
    assert_eq!(pinned_modules(), ["dropper"]);
    let last = module(&["unload", "--iface", &iface, "dropper"], None);
    assert!(last.status.success(), "{last:?}");
    assert!(!modules_dir.exists());

    // A first load killed before its switch leaves an entry that runs no module. The next
    // load attaches anew, so the frags of the dead load do not bind it.
    let first = module(
        &["load", "--iface", &iface, &path(&built.dropper)],
        Some("module:revision-built"),
    );
    assert!(killed(&first), "{first:?}");
    let no_frags = module(&["load", "--iface", &iface, &path(&built.no_frags)], None);
    assert!(no_frags.status.success(), "{no_frags:?}");
    assert_eq!(names(&listing()), ["no_frags"]);
    assert!(
        module(&["unload", "--iface", &iface, "no_frags"], None)
            .status
            .success()
    );
    assert!(!modules_dir.exists());
}

/// The sum over the CPUs of a per-CPU `u64` value printed by `module map --json`.
fn per_cpu_sum(entry: &serde_json::Value) -> u64 {
    entry["value"]
        .as_array()
        .unwrap_or_else(|| panic!("per-CPU values in {entry}"))
        .iter()
        .map(|value| {
            let bytes: Vec<u8> = value
                .as_str()
                .unwrap()
                .split(' ')
                .map(|byte| u8::from_str_radix(byte, 16).unwrap())
                .collect();
            u64::from_le_bytes(bytes.try_into().unwrap())
        })
        .sum()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn module_map_reads_and_writes_a_running_modules_map() {
    require_root("module map");
    let built = build_modules("c");
    let lab = Lab::for_test("mm");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| -> serde_json::Value {
        json(&[&["--netns", ns.as_str(), "module"], args].concat())
    };
    let counter = built.counter.to_str().unwrap();
    on_dut(&["load", "--iface", &iface, counter]);
    udp_burst(&lab); // resolves ARP
    let before = on_dut(&[
        "map",
        "--iface",
        &iface,
        "counter",
        "PROTOCOLS",
        "get",
        "11 00 00 00",
    ]);
    let sent = udp_burst(&lab);
    assert!(sent > 0);
    let read = on_dut(&[
        "map",
        "--iface",
        &iface,
        "counter",
        "PROTOCOLS",
        "get",
        "11 00 00 00",
    ]);
    assert_eq!(read["per_cpu"], true, "{read}");
    assert_eq!(read["key_size"], 4, "{read}");
    assert_eq!(read["value_size"], 8, "{read}");
    assert_eq!(read["entries"][0]["key"], "11 00 00 00", "{read}");
    assert_eq!(
        per_cpu_sum(&read["entries"][0]),
        per_cpu_sum(&before["entries"][0]) + sent,
        "{read}"
    );

    // A set writes every CPU's value; a get reads it back.
    let five = "05 00 00 00 00 00 00 00";
    on_dut(&[
        "map",
        "--iface",
        &iface,
        "counter",
        "PROTOCOLS",
        "set",
        "0x11 0 0 0",
        five,
    ]);
    let read = on_dut(&[
        "map",
        "--iface",
        &iface,
        "counter",
        "PROTOCOLS",
        "get",
        "11 00 00 00",
    ]);
    let values = read["entries"][0]["value"].as_array().unwrap();
    assert!(!values.is_empty());
    assert!(values.iter().all(|value| value == five), "{read}");
    let dump = on_dut(&["map", "--iface", &iface, "counter", "PROTOCOLS", "dump"]);
    assert_eq!(dump["entries"].as_array().unwrap().len(), 256, "map of 256");

    // Wrong sizes, unknown names, and bad bytes: errors naming them.
    let map_failure = |args: &[&str]| {
        failure(
            &[
                &["--netns", ns.as_str(), "module", "map", "--iface", &iface],
                args,
            ]
            .concat(),
        )
    };
    let error = map_failure(&["counter", "PROTOCOLS", "set", "11 00 00 00", "05 00 00 00"]);
    assert!(
        error.contains("value of PROTOCOLS is 8 bytes, got 4"),
        "{error}"
    );
    let error = map_failure(&["counter", "PROTOCOLS", "get", "11 00"]);
    assert!(
        error.contains("key of PROTOCOLS is 4 bytes, got 2"),
        "{error}"
    );
    let error = map_failure(&["counter", "NOPE", "dump"]);
    assert!(
        error.contains("module counter has no map named NOPE (maps: PROTOCOLS)"),
        "{error}"
    );
    let error = map_failure(&["nobody", "PROTOCOLS", "dump"]);
    assert!(error.contains("no module named nobody"), "{error}");
    let error = map_failure(&["counter", "PROTOCOLS", "delete", "11 00 00 00"]);
    assert!(error.contains("map PROTOCOLS is an array"), "{error}");
    let error = map_failure(&["counter", "PROTOCOLS", "get", "zz"]);
    assert!(error.contains("\"zz\" is not hex"), "{error}");

    // The map's contents follow the module across a swap.
    on_dut(&[
        "swap",
        "--iface",
        &iface,
        "counter",
        built.counter_v2.to_str().unwrap(),
    ]);
    let read = on_dut(&[
        "map",
        "--iface",
        &iface,
        "counter",
        "PROTOCOLS",
        "get",
        "11 00 00 00",
    ]);
    assert!(
        read["entries"][0]["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|value| value == five),
        "{read}"
    );
    on_dut(&["unload", "--iface", &iface, "counter"]);
}

/// Writes chain file `file` in `dir`: one `[[module]]` per (name, object file name in
/// `dir`), in order, the objects named relative to the chain file.
fn chain_file(dir: &Path, file: &str, modules: &[(&str, &str)]) -> String {
    let text: String = modules
        .iter()
        .map(|(name, object)| format!("[[module]]\nname = \"{name}\"\nfile = \"{object}\"\n\n"))
        .collect();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn changes(applied: &serde_json::Value) -> Vec<(String, String)> {
    applied["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("changes in {applied}"))
        .iter()
        .map(|change| {
            (
                change["name"].as_str().unwrap().to_string(),
                change["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// PROTOCOLS[UDP] of the counter instance `module` on the dut.
fn udp_seen(lab: &Lab, module: &str) -> u64 {
    let (iface, module) = (lab.dut.iface.clone(), module.to_string());
    lab::netns::run_in(&lab.dut.namespace, move || {
        offload::modules::read_counter(&iface, &module, "PROTOCOLS", 17)
    })
    .expect("dut namespace")
    .expect("read PROTOCOLS")
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn chain_apply_reorders_swaps_and_rolls_back_under_traffic() {
    require_root("chain apply");
    let built = build_modules("c");
    let dir = built.dir.0.clone();
    let lab = Lab::for_test("ca");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let chain = |args: &[&str]| -> serde_json::Value {
        json(&[&["--netns", ns.as_str(), "chain"], args].concat())
    };
    let listing = || json(&["--netns", &ns, "module", "list", "--iface", &iface]);
    // Three instances of the counter (each counts and continues), the dropper last.
    let order = |file: &str, names: [&str; 3], a_object: &str| {
        let object = |name: &str| if name == "a" { a_object } else { "counter.o" };
        chain_file(
            &dir,
            file,
            &[
                (names[0], object(names[0])),
                (names[1], object(names[1])),
                (names[2], object(names[2])),
                ("dropper", "dropper.o"),
            ],
        )
    };
    let abc = order("abc.toml", ["a", "b", "c"], "counter.o");
    let cab = order("cab.toml", ["c", "a", "b"], "counter.o");
    let bca = order("bca.toml", ["b", "c", "a"], "counter.o");
    let abc_v2 = order("abc-v2.toml", ["a", "b", "c"], "counter_v2.o");

    let first = chain(&["apply", "--iface", &iface, &abc]);
    assert!(first["attached"].is_string(), "{first}");
    assert_eq!(first["revision"], 1, "{first}");
    assert_eq!(names(&listing()), ["a", "b", "c", "dropper"]);
    let again = chain(&["apply", "--iface", &iface, &abc]);
    assert!(again["revision"].is_null(), "nothing to change: {again}");

    let warm_up = udp_burst(&lab); // also resolves ARP
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = udp_traffic(lab.client.namespace.clone(), lab.dut.ipv4, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let reordered = chain(&["apply", "--iface", &iface, &cab]);
    assert_eq!(
        changes(&reordered),
        owned(&[
            ("c", "moved"),
            ("a", "moved"),
            ("b", "moved"),
            ("dropper", "unchanged")
        ])
    );
    std::thread::sleep(Duration::from_millis(100));
    chain(&["apply", "--iface", &iface, &bca]);
    std::thread::sleep(Duration::from_millis(100));
    // Back in order with a new build of `a`: a swap keeping its counter.
    let swapped = chain(&["apply", "--iface", &iface, &abc_v2]);
    let a = &swapped["changes"][0];
    assert_eq!(
        (a["name"].as_str(), a["change"].as_str()),
        (Some("a"), Some("swapped"))
    );
    assert_eq!(
        a["maps"]["kept"],
        serde_json::json!(["PROTOCOLS"]),
        "{swapped}"
    );
    std::thread::sleep(Duration::from_millis(100));
    // A check changes nothing.
    let revision = listing()["revision"].clone();
    let checked = chain(&["apply", "--iface", &iface, &cab, "--check"]);
    assert_eq!(checked["revision"], revision, "{checked}");
    // ...and runs the candidate on the sample packets: none is UDP to port 9, so each one
    // meets c, a, b and the dropper in the new order, and the chain's end passes it.
    let packets = checked["check"]["packets"].as_array().unwrap();
    assert!(packets.len() >= 8, "{checked}");
    for packet in packets {
        assert_eq!(packet["verdict"], "chain-end", "{packet}");
        assert_eq!(
            packet["continued_by"],
            serde_json::json!(["c", "a", "b", "dropper"]),
            "{packet}"
        );
    }
    assert_eq!(names(&listing()), ["a", "b", "c", "dropper"]);
    assert_eq!(listing()["revision"], revision);
    // The diff against a file, and the last revision's own diff.
    let diff = chain(&["diff", "--iface", &iface, &cab]);
    assert_eq!(diff["changes"][0]["change"], "moved", "{diff}");
    assert_eq!(changes(&diff)[1], ("a".to_string(), "swapped".to_string()));
    let last = chain(&["diff", "--iface", &iface]);
    assert_eq!(changes(&last)[0], ("a".to_string(), "swapped".to_string()));
    // Rollback: the revision before (b c a, a of the first build) comes back.
    let rolled = chain(&["rollback", "--iface", &iface]);
    assert_eq!(names(&listing()), ["b", "c", "a", "dropper"], "{rolled}");
    assert_eq!(listing()["modules"][2]["version"], "0.1.0");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = warm_up + traffic.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // Every datagram met the dropper, and every counter, across five revisions.
    let now = listing();
    assert!(sent > 1000, "sent {sent}");
    assert_eq!(verdict(&now, "dropper", "drop"), sent, "{now}");
    for module in ["a", "b", "c"] {
        assert_eq!(udp_seen(&lab, module), sent, "PROTOCOLS[17] of {module}");
        assert_eq!(verdict(&now, module, "drop"), 0, "{now}");
    }

    // The history: each revision with its command.
    let shown = chain(&["show", "--iface", &iface]);
    let history = shown["history"].as_array().unwrap();
    let revisions: Vec<u64> = history
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [1, 2, 3, 4, 5], "{shown}");
    assert!(
        history[4]["command"]
            .as_str()
            .unwrap()
            .contains("chain rollback"),
        "{shown}"
    );
    assert!(
        history[1]["command"].as_str().unwrap().contains("cab.toml"),
        "{shown}"
    );

    // Bad chain files and revisions: errors naming the line or what exists.
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let apply_failure =
        |file: &str| failure(&["--netns", &ns, "chain", "apply", "--iface", &iface, file]);
    let error = apply_failure(&write("syntax.toml", "[[module]]\nfile = \"counter.o\n"));
    assert!(error.contains("syntax.toml line 2"), "{error}");
    let error = apply_failure(&write(
        "unknown.toml",
        "[[module]]\nfile = \"counter.o\"\n\n[[module]]\nfile = \"dropper.o\"\nweight = 3\n",
    ));
    assert!(error.contains("unknown.toml line"), "{error}");
    assert!(error.contains("weight"), "{error}");
    let error = apply_failure(&write(
        "missing.toml",
        "[[module]]\nfile = \"counter.o\"\n\n[[module]]\nfile = \"nowhere.o\"\n",
    ));
    assert!(error.contains("missing.toml line 5"), "{error}");
    assert!(error.contains("nowhere.o"), "{error}");
    let error = apply_failure(&write(
        "twice.toml",
        "[[module]]\nfile = \"counter.o\"\n\n[[module]]\nfile = \"counter_v2.o\"\n",
    ));
    assert!(error.contains("twice.toml line 5"), "{error}");
    assert!(
        error.contains("already used by the module on line 1"),
        "{error}"
    );
    let error = apply_failure(&write(
        "abi.toml",
        "[[module]]\nname = \"x\"\nfile = \"abi2.o\"\n",
    ));
    assert!(error.contains("abi.toml line 3"), "{error}");
    assert!(error.contains("built for ABI 2"), "{error}");
    let error = failure(&[
        "--netns", &ns, "chain", "rollback", "--iface", &iface, "--to", "99",
    ]);
    assert!(error.contains("no revision 99"), "{error}");
    assert!(error.contains("kept: 1, 2, 3, 4, 5"), "{error}");
    assert_eq!(names(&listing()), ["b", "c", "a", "dropper"]);

    // An empty chain file removes every module and the chain.
    let empty = chain(&["apply", "--iface", &iface, &write("empty.toml", "")]);
    assert_eq!(empty["chain_detached"], true, "{empty}");
    let error = failure(&["--netns", &ns, "module", "list", "--iface", &iface]);
    assert!(error.contains("no module chain"), "{error}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_kill_during_chain_apply_leaves_the_old_chain_working() {
    require_root("chain apply kill -9");
    let built = build_modules("c");
    let dir = built.dir.0.clone();
    let lab = Lab::for_test("ck");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let apply = |file: &str, kill_at: Option<&str>| -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastpath"));
        command.args([
            "--json", "--netns", &ns, "chain", "apply", "--iface", &iface, file,
        ]);
        if let Some(point) = kill_at {
            command.env("FASTPATH_KILL_AT", point);
        }
        command.output().expect("run fastpath")
    };
    let listing = || json(&["--netns", &ns, "module", "list", "--iface", &iface]);
    let modules_dir = pins_root(&ns).join(&iface).join("chain/modules");
    let pinned_modules = || {
        let mut names: Vec<String> = std::fs::read_dir(&modules_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let old = chain_file(
        &dir,
        "old.toml",
        &[("a", "counter.o"), ("dropper", "dropper.o")],
    );
    let new = chain_file(
        &dir,
        "new.toml",
        &[
            ("b", "counter.o"),
            ("a", "counter_v2.o"),
            ("dropper", "dropper.o"),
        ],
    );
    assert!(apply(&old, None).status.success());
    udp_burst(&lab); // resolves ARP

    // Killed with the new revision built, not switched to: the old chain runs on.
    let drops = verdict(&listing(), "dropper", "drop");
    let killed_apply = apply(&new, Some("module:revision-built"));
    assert!(killed(&killed_apply), "{killed_apply:?}");
    assert_eq!(names(&listing()), ["a", "dropper"]);
    assert_eq!(listing()["modules"][0]["version"], "0.1.0");
    let sent = udp_burst(&lab);
    assert_eq!(verdict(&listing(), "dropper", "drop"), drops + sent);
    // The next command removes what the dead one staged, and applies.
    assert!(apply(&old, None).status.success());
    assert_eq!(pinned_modules(), ["a", "dropper"]);
    assert_eq!(
        json(&["--netns", &ns, "chain", "show", "--iface", &iface])["history"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the dead revision's record is gone"
    );

    // Killed right after the switch: the new chain runs; the next command completes it.
    let killed_apply = apply(&new, Some("module:switched"));
    assert!(killed(&killed_apply), "{killed_apply:?}");
    let second = udp_burst(&lab);
    assert_eq!(names(&listing()), ["b", "a", "dropper"]);
    assert_eq!(
        verdict(&listing(), "dropper", "drop"),
        drops + sent + second
    );
    assert!(apply(&new, None).status.success());
    assert_eq!(listing()["modules"][1]["version"], "0.2.0");
    assert_eq!(pinned_modules(), ["a", "b", "dropper"]);
    let empty = chain_file(&dir, "empty.toml", &[]);
    assert!(apply(&empty, None).status.success());
    assert!(!modules_dir.exists());
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn module_profile_times_each_module_only_while_on() {
    require_root("module profile");
    let built = build_modules("c");
    let lab = Lab::for_test("mp");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| -> serde_json::Value {
        json(&[&["--netns", ns.as_str(), "module"], args].concat())
    };
    on_dut(&["load", "--iface", &iface, built.counter.to_str().unwrap()]);
    on_dut(&["load", "--iface", &iface, built.dropper.to_str().unwrap()]);
    let run_ns = |listing: &serde_json::Value, order: usize| {
        listing["modules"][order]["run_ns"].as_u64().unwrap()
    };
    udp_burst(&lab);
    let off = on_dut(&["list", "--iface", &iface]);
    assert_eq!(off["profiling"], false, "{off}");
    assert_eq!((run_ns(&off, 0), run_ns(&off, 1)), (0, 0), "{off}");
    assert!(off["modules"][0]["ns_per_packet"].is_null(), "{off}");

    let on = on_dut(&["profile", "--iface", &iface, "on"]);
    assert_eq!(on["profiling"], true, "{on}");
    udp_burst(&lab);
    let timed = on_dut(&["list", "--iface", &iface]);
    for order in 0..2 {
        assert!(run_ns(&timed, order) > 0, "{timed}");
        assert!(
            timed["modules"][order]["ns_per_packet"].as_f64().unwrap() > 0.0,
            "{timed}"
        );
    }
    // A change of revision keeps profiling on.
    on_dut(&["unload", "--iface", &iface, "counter"]);
    assert_eq!(on_dut(&["list", "--iface", &iface])["profiling"], true);

    let off = on_dut(&["profile", "--iface", &iface, "off"]);
    let before = run_ns(&off, 0);
    udp_burst(&lab);
    let after = on_dut(&["list", "--iface", &iface]);
    assert_eq!(
        run_ns(&after, 0),
        before,
        "no time counted while off: {after}"
    );
    on_dut(&["unload", "--iface", &iface, "dropper"]);
}

/// A module of an older SDK: its FP_PORTS holds bare ifindexes (4 bytes), the chain's holds
/// the kernel's `bpf_devmap_val` (8 bytes).
const OLD_SDK: &str = r#"
typedef unsigned int __u32;
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
struct meta { char magic[8]; __u32 abi; __u32 flags; char name[32]; char version[32]; };
const struct meta fastpath_module_meta SEC(".fastpath.module") = {
	"FPMODULE", 1, 0, "old_sdk", "0.1.0" };
struct {
	__uint(type, 14);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} FP_PORTS SEC(".maps");
static long (*bpf_redirect_map)(void *map, unsigned long long key, unsigned long long flags) = (void *)51;
SEC("xdp")
int old_sdk(void *ctx)
{
	return bpf_redirect_map(&FP_PORTS, 0, 2);
}
char _license[] SEC("license") = "GPL";
"#;

#[test]
fn a_module_declaring_a_shared_map_of_another_shape_is_refused_before_loading() {
    let dir = TempDir::new("old-sdk");
    let (source, object) = (dir.0.join("old_sdk.c"), dir.0.join("old_sdk.o"));
    std::fs::write(&source, OLD_SDK).unwrap();
    clang(&source, &object);
    // Refused while reading the object: before the interface, the chain or the kernel.
    let error = failure(&["module", "load", "--iface", "lo", object.to_str().unwrap()]);
    assert!(
        error.contains("chain map FP_PORTS is declared as type 14, key 4 bytes, value 4 bytes"),
        "{error}"
    );
    assert!(error.contains("value 8 bytes"), "{error}");
    assert!(error.contains("rebuild the module against"), "{error}");
}

/// A TC module: drops ICMP, hands everything else on.
const TC_ICMP_DROP: &str = r#"
#define FASTPATH_HOOK_TC
#include "module.h"
FASTPATH_MODULE("icmp_drop", "1.0.0", 0);
SEC("classifier")
int icmp_drop(struct __sk_buff *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return FP_ACT_CHAIN_END;
	if (fp->parse == FP_PARSE_IP && fp->protocol == 1)
		return fp_drop(fp);
	return fp_continue(ctx, fp);
}
"#;

/// `count` pings from the client to the dut; how many were answered.
fn pings_answered(lab: &Lab, count: u32) -> u32 {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.client.namespace, "ping", "-n", "-q"])
        .args(["-c", &count.to_string(), "-i", "0.01", "-W", "1"])
        .arg(lab.dut.ipv4.to_string())
        .output()
        .expect("run ping (`cargo xtask setup` installs iputils-ping)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.is_empty(),
        "ping: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "20 packets transmitted, 20 received, 0% packet loss, time 190ms"
    text.split(", ")
        .find_map(|part| part.strip_suffix(" received"))
        .and_then(|received| received.trim().parse().ok())
        .unwrap_or_else(|| panic!("ping's summary in {text:?}"))
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn tc_hooks_carry_modules_beside_the_xdp_chain() {
    require_root("module chains on the tc hooks");
    let built = build_modules("c");
    let dir = built.dir.0.clone();
    let lab = Lab::for_test("tc");
    let (ns, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let on_dut = |args: &[&str]| -> serde_json::Value {
        json(&[&["--netns", ns.as_str(), "module"], args].concat())
    };
    // A TC counter scaffolded for the egress hook, built as its README says.
    let made = json(&[
        "module",
        "new",
        "tcount",
        "--hook",
        "tc-egress",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let project = PathBuf::from(made["dir"].as_str().unwrap());
    let make = Command::new("make")
        .arg("-C")
        .arg(&project)
        .output()
        .unwrap();
    assert!(
        make.status.success(),
        "{}",
        String::from_utf8_lossy(&make.stderr)
    );
    let tcount = project.join("tcount.o");
    let source = dir.join("icmp_drop.c");
    std::fs::write(&source, TC_ICMP_DROP).unwrap();
    let icmp_drop = dir.join("icmp_drop.o");
    clang(&source, &icmp_drop);
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // XDP sees the echo requests come in, tc-egress the replies go out.
    let egress = on_dut(&[
        "load",
        "--iface",
        &iface,
        "--hook",
        "tc-egress",
        &path(&tcount),
    ]);
    assert_eq!(egress["attached"], "tcx", "{egress}");
    on_dut(&["load", "--iface", &iface, &path(&built.counter)]);
    assert_eq!(pings_answered(&lab, 20), 20);
    let read = |hook: Hook, module: &str| {
        let (iface, module) = (iface.clone(), module.to_string());
        lab::netns::run_in(&ns, move || {
            offload::modules::read_counter(ChainAt::new(&iface, hook), &module, "PROTOCOLS", 1)
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(read(Hook::TcEgress, "tcount"), 20, "echo replies out");
    assert_eq!(read(Hook::Xdp, "counter"), 20, "echo requests in");

    // A Rust TC module, scaffolded and built as its README says, on the ingress hook.
    let made = json(&[
        "module",
        "new",
        "rtcount",
        "--lang",
        "rust",
        "--hook",
        "tc-ingress",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let rtcount = build_project(
        "rust",
        Path::new(made["dir"].as_str().unwrap()),
        &dir.join("rtcount.o"),
    );
    on_dut(&[
        "load",
        "--iface",
        &iface,
        "--hook",
        "tc-ingress",
        &path(&rtcount),
    ]);
    assert_eq!(pings_answered(&lab, 20), 20);
    assert_eq!(
        read(Hook::TcIngress, "rtcount"),
        20,
        "echo requests after XDP"
    );

    // A TC ingress module drops ICMP after XDP saw it.
    on_dut(&[
        "load",
        "--iface",
        &iface,
        "--hook",
        "tc-ingress",
        &path(&icmp_drop),
    ]);
    assert_eq!(pings_answered(&lab, 10), 0);
    let ingress = on_dut(&["list", "--iface", &iface, "--hook", "tc-ingress"]);
    assert_eq!(ingress["hook"], "tc-ingress", "{ingress}");
    assert_eq!(verdict(&ingress, "icmp_drop", "drop"), 10, "{ingress}");
    // The verdict counters see every packet, and ARP or IPv6 neighbour traffic may pass
    // too; the module's own protocol counter holds the ICMP echo requests alone.
    assert_eq!(
        read(Hook::TcIngress, "rtcount"),
        30,
        "echo requests after XDP"
    );
    let judged =
        verdict(&ingress, "icmp_drop", "drop") + verdict(&ingress, "icmp_drop", "continue");
    assert!(
        verdict(&ingress, "rtcount", "continue") >= 20 + judged,
        "every packet icmp_drop judged went through rtcount first: {ingress}"
    );
    assert_eq!(read(Hook::Xdp, "counter"), 50);
    assert_eq!(read(Hook::TcEgress, "tcount"), 40, "no reply went out");

    // A module of the wrong kind for the hook: an error naming both.
    for (hook, object, expected) in [
        (
            "tc-egress",
            &built.counter,
            "is an XDP program; the chain on",
        ),
        ("xdp", &icmp_drop, "is a TC classifier; the chain on"),
    ] {
        let error = failure(&[
            "--netns",
            &ns,
            "module",
            "load",
            "--iface",
            &iface,
            "--hook",
            hook,
            &path(object),
            "--name",
            "wrong",
        ]);
        assert!(error.contains(expected), "{error}");
    }

    for module in ["icmp_drop", "rtcount"] {
        on_dut(&["unload", "--iface", &iface, "--hook", "tc-ingress", module]);
    }
    assert_eq!(pings_answered(&lab, 5), 5);
    let last = on_dut(&["unload", "--iface", &iface, "--hook", "tc-egress", "tcount"]);
    assert_eq!(last["chain_detached"], true, "{last}");
    let error = failure(&[
        "--netns",
        &ns,
        "module",
        "list",
        "--iface",
        &iface,
        "--hook",
        "tc-egress",
    ]);
    assert!(error.contains("no module chain"), "{error}");
    // The XDP chain runs on, untouched.
    assert_eq!(pings_answered(&lab, 5), 5);
    assert_eq!(read(Hook::Xdp, "counter"), 60);
    let last = on_dut(&["unload", "--iface", &iface, "counter"]);
    assert_eq!(last["chain_detached"], true, "{last}");
    // Every chain gone, every pin with it.
    let pins = pins_root(&ns).join(&iface);
    assert!(!pins.exists(), "{} left", pins.display());
}
