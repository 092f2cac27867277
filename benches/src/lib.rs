//! The benchmark runner's pieces that need no hardware: the RFC 2544 throughput search and
//! the loss and latency maths. The binaries (`steer-bench`, `xsk-bench`, `lb-bench`) drive
//! real runs on the lab.

pub mod report;
pub mod search;
pub mod stats;
