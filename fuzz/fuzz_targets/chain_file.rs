//! `chain.toml` (`offload::modules::spec::ChainSpec::parse`) on any text, every `file` read
//! as the built-in steer module's object and `builtin = "steer"` known. Checked: an error
//! naming a line names one inside the text; module names are unique; nothing panics.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use offload::modules::{ModuleError, builtin::steer_module, spec::ChainSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1) + 1;
    let parsed = ChainSpec::parse(
        Path::new("chain.toml"),
        text,
        |_| steer_module(true),
        |name| (name == "steer").then(|| steer_module(true)),
    );
    match parsed {
        Ok(spec) => {
            let mut names: Vec<&str> = spec.wanted().iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "names are unique");
        }
        Err(ModuleError::ChainFile {
            line: Some(line), ..
        })
        | Err(ModuleError::InChainFile { line, .. }) => {
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
