//! `fastpath module new`: a project holding one working example module (it counts packets
//! per IP protocol in a map and lets them continue), in C or Rust, built against the SDK
//! kept in this repository.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Hook, ModuleError};

/// The language of a scaffolded module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// clang `-target bpf` with `sdk/c/module.h`, built by `make`.
    C,
    /// aya-ebpf with the `fastpath-module` crate of `sdk/rust`, built by cargo.
    Rust,
}

/// Where the SDK is: `$FASTPATH_SDK` when set, else the `sdk/` folder of the source tree
/// this fastpath was built from.
pub fn sdk_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FASTPATH_SDK") {
        return PathBuf::from(dir);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    built.canonicalize().unwrap_or(built)
}

/// What [`scaffold`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Scaffolded {
    /// The project's directory.
    pub dir: PathBuf,
    /// The language.
    pub language: Language,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    /// The command that builds it, run in `dir`.
    pub build: String,
    /// The object the build produces, relative to `dir`.
    pub object: String,
}

/// Writes a new module project `name` in `parent/name`, for `hook` (an XDP module, or a TC
/// classifier for the tcx hooks: C only); refuses an existing directory.
pub fn scaffold(
    name: &str,
    language: Language,
    hook: Hook,
    parent: &Path,
) -> Result<Scaffolded, ModuleError> {
    super::ops::check_name(name)?;
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        return Err(ModuleError::BadName {
            module: name.to_string(),
            reason: "a scaffolded module's name is also a C or Rust identifier: letters, digits and '_'",
        });
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ModuleError::ProjectExists { dir });
    }
    let sdk = sdk_dir();
    let (files, build, object) = match language {
        Language::C => (
            vec![
                (format!("{name}.c"), c_source(name, hook.is_tc())),
                ("Makefile".to_string(), c_makefile(name, &sdk)),
            ],
            "make".to_string(),
            format!("{name}.o"),
        ),
        Language::Rust => (
            vec![
                ("Cargo.toml".to_string(), rust_manifest(name, &sdk)),
                (".cargo/config.toml".to_string(), RUST_CONFIG.to_string()),
                ("src/main.rs".to_string(), rust_source(name, hook.is_tc())),
            ],
            "RUSTC_BOOTSTRAP=1 cargo build --release".to_string(),
            format!("target/bpfel-unknown-none/release/{name}"),
        ),
    };
    for (file, text) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ModuleError::WriteFile {
                file: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ModuleError::WriteFile {
            file: path.clone(),
            source,
        })?;
    }
    Ok(Scaffolded {
        dir,
        language,
        files: files.into_iter().map(|(file, _)| file).collect(),
        build,
        object,
    })
}

fn c_source(name: &str, tc: bool) -> String {
    // The same counter for either hook; a TC module is a classifier on a socket buffer.
    let (define, frags, section, context) = if tc {
        (
            "#define FASTPATH_HOOK_TC\n",
            0,
            "classifier",
            "struct __sk_buff",
        )
    } else {
        ("", 1, "xdp.frags", "struct xdp_md")
    };
    format!(
        r#"/* {name}: counts packets per IP protocol, then hands them to the next module. */
{define}#include "module.h"

FASTPATH_MODULE("{name}", "0.1.0", {frags});

/* Packets seen per IP protocol number; 0 also counts frames that are not IP. */
struct {{
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
}} PROTOCOLS SEC(".maps");

SEC("{section}")
int {name}({context} *ctx)
{{
	struct fp_context *fp = fp_context();
	if (!fp)
		return FP_ACT_CHAIN_END;
	__u32 protocol = fp->parse == FP_PARSE_IP ? fp->protocol : 0;
	__u64 *packets = bpf_map_lookup_elem(&PROTOCOLS, &protocol);
	if (packets)
		*packets += 1;
	return fp_continue(ctx, fp);
}}
"#
    )
}

fn c_makefile(name: &str, sdk: &Path) -> String {
    format!(
        "# Builds {name}.o against the fastpath SDK (`fastpath module sdk` prints where it is).\n\
         FASTPATH_SDK ?= {sdk}\n\
         CLANG ?= clang\n\n\
         {name}.o: {name}.c $(FASTPATH_SDK)/c/module.h\n\
         \t$(CLANG) -O2 -g -target bpf -I $(FASTPATH_SDK)/c -c $< -o $@\n\n\
         clean:\n\
         \trm -f {name}.o\n\n\
         .PHONY: clean\n",
        sdk = sdk.display()
    )
}

fn rust_manifest(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[dependencies]
aya-ebpf = "=0.2.1"
fastpath-module = {{ path = "{sdk}/rust" }}

[[bin]]
name = "{name}"
path = "src/main.rs"

[profile.release]
debug = 2
codegen-units = 1
panic = "abort"
lto = true
opt-level = 3

[profile.dev]
panic = "abort"

[workspace]
"#,
        sdk = sdk.display()
    )
}

const RUST_CONFIG: &str = r#"# Modules are built for the BPF target; `core` is built from the rust-src component
# (nightly, or stable with RUSTC_BOOTSTRAP=1); bpf-linker links the object.
[build]
target = "bpfel-unknown-none"

[unstable]
build-std = ["core"]
"#;

fn rust_source(name: &str, tc: bool) -> String {
    // The same counter for either hook; a TC module is a classifier on a socket buffer.
    let (macro_name, context, frags, attribute, returns, broken) = if tc {
        (
            "classifier",
            "TcContext",
            "false",
            "#[classifier]",
            "i32",
            "fastpath_module::TCX_NEXT",
        )
    } else {
        (
            "xdp",
            "XdpContext",
            "true",
            "#[xdp(frags)]",
            "u32",
            "fastpath_module::XDP_PASS",
        )
    };
    format!(
        r#"//! {name}: counts packets per IP protocol, then hands them to the next module.
#![no_std]
#![no_main]

use aya_ebpf::{{
    macros::{{map, {macro_name}}},
    maps::PerCpuArray,
    programs::{context},
}};
use fastpath_module::{{Module, fastpath_module, parse}};

fastpath_module!(name = "{name}", version = "0.1.0", frags = {frags});

/// Packets seen per IP protocol number; 0 also counts frames that are not IP.
#[map]
static PROTOCOLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(256, 0);

{attribute}
pub fn {name}(ctx: {context}) -> {returns} {{
    let Some(module) = Module::new(ctx) else {{
        return {broken};
    }};
    let context = module.context();
    let protocol = if context.parse == parse::IP {{
        u32::from(context.protocol)
    }} else {{
        0
    }};
    if let Some(packets) = PROTOCOLS.get_ptr_mut(protocol) {{
        // SAFETY: a per-CPU slot; nothing else writes it on this CPU meanwhile.
        unsafe {{ *packets += 1 }};
    }}
    module.next()
}}
"#
    )
}
