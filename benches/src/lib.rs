//! The benchmark runner's pieces that need no hardware: the RFC 2544 throughput search and
//! the loss and latency maths, and the report. The binaries (`steer-bench`, `xsk-bench`,
//! `lb-bench`) and the criterion suite `steer_match` drive real runs; `steer_fixture` is
//! what the steering ones share.

pub mod report;
pub mod search;
pub mod stats;
pub mod steer_fixture;
