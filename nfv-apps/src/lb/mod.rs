//! The L4 load balancer: VIPs → backends by Maglev, with a per-worker connection table,
//! forwarding by MAC rewrite (dsr-l2), IP-in-IP (dsr-ipip) or NAT.
//!
//! Modules depend one way: `packet` and `config` at the bottom; the data path (`maglev`,
//! `conntrack`, `fragments`, `nat`, `icmp`, `tables`, `tallies`, `balancer`); the control plane's
//! `neighbours`, `registry`, `ntuple_rules`, `control` and `error`; `appliance` on top.

pub mod appliance;
pub mod balancer;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod error;
pub mod fragments;
pub mod icmp;
pub mod maglev;
pub mod nat;
pub mod neighbours;
pub mod ntuple_rules;
pub mod packet;
pub mod registry;
pub mod tables;
mod tallies;
