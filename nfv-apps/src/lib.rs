//! Network functions on the fastpath pipeline, and their appliances.
#![warn(missing_docs)]

pub mod lb;
