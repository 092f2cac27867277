//! Trials of candidate chains (`offload::modules::trial`, what `chain apply --check` and
//! `module test` run): the built-in sample packets through an empty chain and through a C
//! module that sorts them by the entry's parse, in the entry's non-frags flavour; and what
//! a trial refuses before anything is loaded. Needs root and clang.

mod support;

use std::{path::PathBuf, process::Command};

use offload::modules::{
    ModuleError, ModuleObject,
    trial::{Packet, Verdict, sample_packets, trial},
};
use support::require_root;

/// Drops what the parse calls malformed, passes what is not IP, continues the rest. Built
/// without frags, so the chain runs the entry's non-frags flavour.
const SORTER: &str = r#"
#include "module.h"
FASTPATH_MODULE("sorter", "1.0.0", 0);
SEC("xdp")
int sorter(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	if (fp->parse == FP_PARSE_MALFORMED)
		return fp_drop(fp);
	if (fp->parse == FP_PARSE_NOT_IP)
		return fp_pass(fp);
	return fp_continue(ctx, fp);
}
"#;

/// Continues everything; declares frags.
const FRAGS: &str = r#"
#include "module.h"
FASTPATH_MODULE("frags", "1.0.0", 1);
SEC("xdp.frags")
int frags(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	return fp ? fp_continue(ctx, fp) : XDP_PASS;
}
"#;

/// Builds `source` with clang against the SDK, in a folder of the test's own.
fn module(test: &str, name: &str, source: &str) -> (ModuleObject, PathBuf) {
    let dir = std::env::temp_dir().join(format!("fastpath-trial-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, object) = (dir.join(format!("{name}.c")), dir.join(format!("{name}.o")));
    std::fs::write(&c, source).unwrap();
    let output = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-I"])
        .arg(offload::modules::scaffold::sdk_dir().join("c"))
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&object)
        .output()
        .expect("run clang (`cargo xtask setup` installs it)");
    assert!(
        output.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (ModuleObject::read(&object).unwrap(), dir)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn every_sample_runs_through_an_empty_chain_and_is_passed_unchanged() {
    require_root("trial of an empty chain");
    let samples = sample_packets();
    let result = trial(&[], &samples).unwrap();
    assert_eq!(result.packets.len(), samples.len());
    for (outcome, sample) in result.packets.iter().zip(&samples) {
        assert_eq!(outcome.name, sample.name);
        assert_eq!(
            (
                outcome.verdict,
                outcome.action.as_str(),
                outcome.module.as_deref()
            ),
            (Verdict::ChainEmpty, "pass", None),
            "{}",
            sample.name
        );
        assert!(outcome.changes.is_empty(), "{}", sample.name);
        assert_eq!(outcome.output_bytes, sample.data);
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_module_sees_the_samples_as_the_entry_parsed_them() {
    require_root("trial of a C module");
    let (sorter, dir) = module("sorter", "sorter", SORTER);
    let result = trial(&[sorter], &sample_packets()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(!result.frags);
    let verdicts: Vec<(&str, Verdict, Option<&str>)> = result
        .packets
        .iter()
        .map(|outcome| {
            (
                outcome.name.as_str(),
                outcome.verdict,
                outcome.module.as_deref(),
            )
        })
        .collect();
    for (name, verdict, module) in verdicts {
        let expected = match name {
            "arp-request" => (Verdict::Pass, Some("sorter")),
            "truncated-ipv4" => (Verdict::Drop, Some("sorter")),
            _ => (Verdict::ChainEnd, None),
        };
        assert_eq!((verdict, module), expected, "{name}");
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_trial_refuses_a_frags_mix_and_a_frame_too_short_to_run() {
    require_root("trial errors");
    let (sorter, dir) = module("refusals", "sorter", SORTER);
    let (frags, _) = module("refusals", "frags", FRAGS);
    let error = trial(&[sorter.clone(), frags], &sample_packets()).unwrap_err();
    assert!(
        matches!(&error, ModuleError::FragsMismatch { module, .. } if module == "frags"),
        "{error}"
    );
    let short = Packet {
        name: "runt".into(),
        data: vec![0xff; 10],
    };
    let error = trial(&[sorter], &[sample_packets()[0].clone(), short]).unwrap_err();
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(
        error.to_string(),
        "packet 2 (runt, 10 bytes): shorter than an Ethernet header (14 bytes), which BPF_PROG_TEST_RUN needs"
    );
}
