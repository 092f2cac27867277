#![allow(dead_code)]
pub mod lab_fixture;
pub mod packet;

pub use lab::require_root;
