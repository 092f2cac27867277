#![allow(dead_code)]
pub mod lab_fixture;
pub mod packet;
pub mod topology;

pub use lab::require_root;
