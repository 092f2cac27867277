//! What the report says about the machine, and the CPU time counters behind "CPU busy"
//! and "cycles per packet".

use crate::report::Machine;

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split(':').nth(1))
            .map(|value| value.trim().to_string())
    };
    let memory_kib: f64 = field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
        .unwrap_or(0.0);
    let uname = nix::sys::utsname::uname().ok();
    Machine {
        hostname: uname
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus: cpu_count(),
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        memory_gib: memory_kib / (1024.0 * 1024.0),
        kernel: uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU clock in Hz as /proc/cpuinfo states it (the first CPU's "cpu MHz").
pub fn cpu_hz() -> Option<f64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|line| line.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some(mhz * 1e6)
}

/// The commit of the source tree the binary was built from, asked of git.
pub fn git_revision() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Per-CPU (busy, total) jiffies from /proc/stat.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    pub fn now() -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        CpuTimes(
            stat.lines()
                .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
                .map(|line| {
                    let values: Vec<u64> = line
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|v| v.parse().ok())
                        .collect();
                    let total: u64 = values.iter().sum();
                    // idle and iowait are the 4th and 5th columns.
                    let idle =
                        values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
                    (total - idle, total)
                })
                .collect(),
        )
    }

    /// Busy fraction of each CPU since `earlier`.
    pub fn busy_since(&self, earlier: &CpuTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(busy1, total1), &(busy0, total0))| {
                let total = total1.saturating_sub(total0);
                if total == 0 {
                    0.0
                } else {
                    busy1.saturating_sub(busy0) as f64 / total as f64
                }
            })
            .collect()
    }
}
