//! What a reload may change: VIPs, backends, the prefilter and ntuple rules apply live;
//! settings that shape the workers (interface, queues, cores, modes) need a restart.

use crate::lb::config::Config;

/// The first setting that differs between `running` and `new` and needs a restart.
pub fn restart_needed(running: &Config, new: &Config) -> Option<&'static str> {
    let fixed = [
        ("interface", new.interface != running.interface),
        ("queues", new.queues != running.queues),
        ("cores", new.cores != running.cores),
        ("xdp_mode", new.xdp_mode != running.xdp_mode),
        ("zero_copy", new.zero_copy != running.zero_copy),
        ("poll", new.poll != running.poll),
        ("batch", new.batch != running.batch),
        ("ring_size", new.ring_size != running.ring_size),
        ("frame_size", new.frame_size != running.frame_size),
        ("pipelined", new.pipelined != running.pipelined),
        ("connections", new.connections != running.connections),
        ("control", new.control != running.control),
    ];
    fixed
        .into_iter()
        .find_map(|(setting, changed)| changed.then_some(setting))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\n{extra}\n[[vip]]\naddress = \"10.0.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"dsr-l2\"\n\
             [[vip.backend]]\naddress = \"10.0.1.11\"\n"
        );
        Config::parse(&text, "lb.toml").unwrap()
    }

    #[test]
    fn vips_change_live_and_worker_settings_need_a_restart() {
        let running = config("");
        assert_eq!(
            restart_needed(&running, &config("prefilter = [\"192.0.2.9\"]")),
            None
        );
        assert_eq!(
            restart_needed(&running, &config("batch = 32")),
            Some("batch")
        );
        assert_eq!(
            restart_needed(&running, &config("connections = 1024")),
            Some("connections")
        );
    }
}
