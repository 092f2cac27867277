//! Network functions on the fastpath pipeline, and their appliances.

pub mod lb;
