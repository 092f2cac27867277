//! The load balancer under test: the appliance of `fastpath lb`, started in this process on
//! the device under test with one VIP whose one backend is the sender. Every frame it
//! forwards (dsr-l2: the backend's MAC, out of the port it came in on) comes back to the
//! sender, whose drop program counts it. The VIP is in 198.18.0.0/15, the range RFC 2544
//! sets aside for benchmarks, so it clashes with no address on either side.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use nfv_apps::lb::appliance::Appliance;
use pipeline::WorkerStats;

use hw_profiles::SocketTuning;

use super::ends::in_namespace;
use crate::error::BenchError;

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const VIP_PORT: u16 = 9;

pub(crate) struct LbSubject {
    namespace: Option<String>,
    /// Always Some until dropped: the drop happens inside the namespace.
    appliance: Option<Appliance>,
    config: PathBuf,
}

impl LbSubject {
    /// Starts the appliance on `iface` with its one worker spinning on `cpu`.
    pub fn start(
        namespace: Option<String>,
        iface: &str,
        backend: IpAddr,
        cpu: usize,
        tuning: &SocketTuning,
    ) -> Result<LbSubject, BenchError> {
        let config = std::env::temp_dir().join(format!("fastpath-bench-lb-{iface}.toml"));
        let text = format!(
            "interface = \"{iface}\"\n\
             queues = [0]\n\
             cores = [{cpu}]\n\
             poll = \"spin\"\n\
             zero_copy = \"off\"\n\
             batch = {}\n\
             ring_size = {}\n\
             frame_size = {}\n\
             control = \"/run/fastpath/bench-lb-{iface}.sock\"\n\
             [[vip]]\n\
             address = \"{VIP}\"\n\
             port = {VIP_PORT}\n\
             protocol = \"udp\"\n\
             forwarding = \"dsr-l2\"\n\
             [[vip.backend]]\n\
             address = \"{backend}\"\n",
            tuning.batch.value, tuning.ring_size.value, tuning.frame_size.value
        );
        std::fs::write(&config, text).map_err(|source| BenchError::File {
            what: "write",
            path: config.clone(),
            source,
        })?;
        let path = config.clone();
        // The workers inherit the namespace of the thread that starts them.
        let appliance = in_namespace(&namespace, move || Appliance::start(&path))?
            .map_err(BenchError::LoadBalancer)?;
        Ok(LbSubject {
            namespace,
            appliance: Some(appliance),
            config,
        })
    }

    /// (packets the workers received, packets the kernel dropped at their sockets).
    pub fn counters(&self) -> (u64, u64) {
        let workers = self
            .appliance
            .as_ref()
            .map(Appliance::worker_stats)
            .unwrap_or_default();
        let total = WorkerStats::total(&workers);
        (total.rx_packets, total.socket_drops)
    }
}

impl Drop for LbSubject {
    fn drop(&mut self) {
        // Its drop detaches the steering program, by interface name: in its namespace.
        if let Some(appliance) = self.appliance.take() {
            let _ = in_namespace(&self.namespace, move || drop(appliance));
        }
        let _ = std::fs::remove_file(&self.config);
    }
}
