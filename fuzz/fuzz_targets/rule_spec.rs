//! Steering rules as `fastpath xdp rules add` takes them, one per line:
//! `--action A [--proto P] [--dst CIDR] [--dport N|N-M] [--src CIDR]`, each value through the
//! CLI's own parsers (`offload::rules` FromStr and `parse_cidr`; `--mode` through
//! `ModePolicy`). Accepted rules go through what `Steering::add_rules` does before touching
//! the maps: id allocation, the new-rule check and compilation into map contents. Checked:
//! a parsed value prints back to itself, and a rule's map record reads back to the rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use offload::{
    mode::ModePolicy,
    rules::{
        Action, PortRange, Protocol, Rule, RuleSpec, allocate_ids, check_new, compile, from_def,
        parse_cidr, to_def,
    },
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules: Vec<Rule> = Vec::new();
    for line in text.lines() {
        let Some(spec) = rule_spec(line) else {
            continue;
        };
        if check_new(&rules, &spec).is_err() {
            continue;
        }
        let Ok(ids) = allocate_ids(&rules, 1) else {
            break;
        };
        let rule = Rule { id: ids[0], spec };
        assert_eq!(from_def(&to_def(&rule)).as_ref(), Some(&rule));
        rules.push(rule);
        let _ = compile(&rules);
    }
});

/// One line of flags; None when a flag or value is refused (the CLI's error).
fn rule_spec(line: &str) -> Option<RuleSpec> {
    let mut words = line.split_whitespace();
    let mut spec = RuleSpec::new(Action::Pass);
    let mut action = None;
    while let Some(flag) = words.next() {
        let value = words.next()?;
        match flag {
            "--action" => action = Some(value.parse::<Action>().ok()?),
            "--proto" => spec.proto = Some(value.parse::<Protocol>().ok()?),
            "--dst" => spec.dst = Some(parse_cidr("dst", value).ok()?),
            "--dport" => {
                let ports = value.parse::<PortRange>().ok()?;
                assert_eq!(ports.to_string().parse::<PortRange>().ok(), Some(ports));
                assert!(ports.lo <= ports.hi && ports.width() >= 1);
                spec.dport = Some(ports);
            }
            "--src" => spec.src = Some(parse_cidr("src", value).ok()?),
            "--mode" => {
                let _ = value.parse::<ModePolicy>();
                return None;
            }
            _ => return None,
        }
    }
    for net in [spec.dst, spec.src].into_iter().flatten() {
        assert_eq!(parse_cidr("dst", &net.to_string()).ok(), Some(net));
    }
    spec.action = action?;
    Some(spec)
}
