//! The static offload check: before loading, read the compiled program and the maps it
//! uses, and compare them with a profile's offload limits (map kinds, key plus value size,
//! instruction count, helpers, redirect and AF_XDP). Every reason it cannot go to the NIC
//! is listed; an empty list means it fits.

use std::collections::BTreeSet;

use hw_profiles::OffloadLimits;

use crate::program_image::{ImageError, ProgramImage, image, map_kind};

const BPF_CALL: u8 = 0x85;
const REDIRECT_HELPERS: [i32; 2] = [23, 51];

fn helper_name(id: i32) -> String {
    let name = match id {
        1 => "map_lookup_elem",
        2 => "map_update_elem",
        3 => "map_delete_elem",
        5 => "ktime_get_ns",
        6 => "trace_printk",
        7 => "get_prandom_u32",
        8 => "get_smp_processor_id",
        23 => "redirect",
        25 => "perf_event_output",
        44 => "xdp_adjust_head",
        51 => "redirect_map",
        54 => "xdp_adjust_meta",
        65 => "xdp_adjust_tail",
        69 => "fib_lookup",
        _ => return format!("helper #{id}"),
    };
    name.to_string()
}

/// Why `program` in `object` cannot be offloaded under `limits`; empty when it can.
pub fn check(
    object: &[u8],
    program: &str,
    limits: &OffloadLimits,
) -> Result<Vec<String>, ImageError> {
    let ProgramImage { instructions, maps } = image(object, program)?;
    let mut reasons = Vec::new();
    if instructions.len() > limits.max_instructions as usize {
        reasons.push(format!(
            "{} instructions, the NIC holds about {}",
            instructions.len(),
            limits.max_instructions
        ));
    }
    let helpers: BTreeSet<i32> = instructions
        .iter()
        .filter(|insn| insn.code == BPF_CALL && insn.src_reg() == 0)
        .map(|insn| insn.imm)
        .collect();
    for (name, map) in &maps {
        let kind = map_kind(map.map_type());
        if !limits.map_kinds.iter().any(|k| k == kind) {
            reasons.push(format!(
                "map {name} is a {kind}; the NIC offloads only {}",
                limits.map_kinds.join(" and ")
            ));
        }
        if kind == "xskmap" && !limits.af_xdp {
            reasons.push(format!(
                "map {name}: the NIC cannot hand packets to AF_XDP sockets"
            ));
        }
        let size = map.key_size() + map.value_size();
        if size > limits.max_key_value_bytes {
            reasons.push(format!(
                "map {name}: key plus value is {size} bytes, the NIC allows {}",
                limits.max_key_value_bytes
            ));
        }
    }
    for &id in &helpers {
        if REDIRECT_HELPERS.contains(&id) {
            if !limits.redirect {
                reasons.push(format!(
                    "calls bpf_{}: the NIC cannot redirect",
                    helper_name(id)
                ));
            }
        } else if !limits.helpers.iter().any(|h| *h == helper_name(id)) {
            reasons.push(format!(
                "calls bpf_{}, which the NIC does not implement",
                helper_name(id)
            ));
        }
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nfp() -> OffloadLimits {
        let profiles = hw_profiles::Profiles::builtin();
        profiles.by_name("nfp").unwrap().offload.clone().unwrap()
    }

    #[test]
    fn the_steering_program_is_refused_with_its_reasons() {
        let reasons = check(crate::STEER_OBJECT, "steer", &nfp()).unwrap();
        let text = reasons.join("\n");
        assert!(
            text.contains("is a lpm_trie; the NIC offloads only array and hash"),
            "{text}"
        );
        assert!(
            text.contains("calls bpf_redirect_map: the NIC cannot redirect"),
            "{text}"
        );
        assert!(text.contains("cannot hand packets to AF_XDP"), "{text}");
    }

    #[test]
    fn a_program_within_the_limits_is_accepted() {
        assert_eq!(
            check(crate::STEER_OBJECT, "bare_pass", &nfp()).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_small_instruction_budget_is_reported() {
        let mut limits = nfp();
        limits.max_instructions = 10;
        let reasons = check(crate::STEER_OBJECT, "steer", &limits).unwrap();
        assert!(
            reasons[0].ends_with("the NIC holds about 10"),
            "{reasons:?}"
        );
    }
}
