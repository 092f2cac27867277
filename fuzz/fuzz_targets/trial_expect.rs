//! Expectation files of `fastpath module test --expect` (`Expectations::parse`). Malformed
//! JSON, wrong fields and bad hex are errors naming the line and field, never a panic.
//! Checked: accepted files name each packet once, from 1.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use offload::modules::trial::expect::Expectations;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expectations) = Expectations::parse(Path::new("expect.json"), text) else {
        return;
    };
    for (index, expected) in expectations.packets.iter().enumerate() {
        assert!(expected.packet >= 1);
        assert!(
            expectations.packets[..index]
                .iter()
                .all(|other| other.packet != expected.packet)
        );
    }
});
