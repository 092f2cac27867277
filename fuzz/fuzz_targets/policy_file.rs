//! The security-group policy file (`firewall::policy::GroupPolicy::parse`) on any text,
//! then its compilation for a made-up node and an `explain`. Checked: an error in the file
//! names a line inside the text; every warning names one too; nothing panics.

#![no_main]

use std::path::Path;

use firewall::policy::{GroupPolicy, Node, PolicyError, compile, explain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let last_line = text.lines().count().max(1) + 1;
    let policy = match GroupPolicy::parse(Path::new("fuzz.toml"), text) {
        Err(PolicyError::Line { line, message, .. }) => {
            assert!(line >= 1 && line <= last_line, "line {line}: {message}");
            return;
        }
        Err(error) => {
            let _ = error.to_string();
            return;
        }
        Ok(policy) => policy,
    };
    for warning in &policy.warnings {
        assert!(warning.starts_with("fuzz.toml: line "), "{warning}");
    }
    // Every interface the file names routes a /24 of its own.
    let mut node = Node::default();
    let interfaces = policy
        .member_interfaces()
        .into_iter()
        .chain(policy.edges.iter().map(|(name, _)| name.clone()));
    for (index, iface) in interfaces.enumerate() {
        let network = format!("10.{}.{}.0/24", index / 256 % 256, index % 256);
        node.interfaces
            .insert(iface, vec![network.parse().expect("a /24")]);
    }
    node.local = vec!["10.0.0.1".parse().unwrap()];
    let _ = compile(&policy, &node).map_err(|error| error.to_string());
    for (from, to) in [("10.0.0.2", "10.0.1.2"), ("192.0.2.1", "10.0.0.2")] {
        let _ = explain(&policy, &node, from, to, 6, Some(80)).map_err(|error| error.to_string());
    }
});
