//! The L4 load balancer: VIPs → backends by Maglev, with a per-worker connection table,
//! forwarding by MAC rewrite (dsr-l2), IP-in-IP (dsr-ipip) or NAT.

pub mod config;
pub mod conntrack;
pub mod maglev;
pub mod nat;
pub mod packet;
