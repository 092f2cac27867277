//! `pipeline::flow::flow_hash` on any frame: never panics, and gives one answer per frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::flow_hash;

fuzz_target!(|frame: &[u8]| {
    assert_eq!(flow_hash(frame), flow_hash(frame));
});
