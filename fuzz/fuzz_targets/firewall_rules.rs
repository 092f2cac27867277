//! The firewall's rules file (`firewall::Policy::parse`) on any text, then its compilation
//! to the kernel's tables. Checked: an error in the file names a line inside the text;
//! nothing panics.

#![no_main]

use std::path::Path;

use firewall::{FirewallError, Policy, compile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(Path::new("fuzz.toml"), text) {
        Err(FirewallError::Rules { line, message, .. }) => {
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "line {line}: {message}"
            );
        }
        Err(error) => {
            let _ = error.to_string();
        }
        // Every interface a rule names exists, as index 2.
        Ok(policy) => {
            let _ = compile(&policy, |_| Ok(2)).map_err(|error| error.to_string());
        }
    }
});
