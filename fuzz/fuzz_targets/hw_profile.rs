//! A NIC profile (`hw_profiles::Profile::parse`) on any text: no panic, and what it accepts
//! gives line rates and mode answers.

#![no_main]

use hw_profiles::Profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Profile::parse(text, "fuzz.toml") {
        Ok(profile) => {
            for (gbps, small, large) in profile.line_rates() {
                assert!(
                    gbps > 0.0 && small >= large,
                    "{gbps} Gbit/s: {small} < {large} Mpps"
                );
            }
            let _ = ["skb", "drv", "hw"].map(|mode| profile.supports(mode));
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
