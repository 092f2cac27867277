//! The L4 load balancer: VIPs → backends by Maglev, with a per-worker connection table,
//! forwarding by MAC rewrite (dsr-l2), IP-in-IP (dsr-ipip) or NAT.

pub mod appliance;
pub mod balancer;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod fragments;
pub mod hw_steering;
pub mod icmp;
pub mod maglev;
pub mod nat;
pub mod packet;
pub mod registry;
pub mod tables;
