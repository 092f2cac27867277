//! `fastpath firewall log`: the events the module sends to its ring buffer (`FW_LOG`):
//! packets `log` rules matched (sampled by their `log_rate`), and new flows refused
//! because the conntrack table is full (at most one a second).

use std::{
    fs,
    net::IpAddr,
    os::fd::AsFd,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::RingBuf;
use offload_common::{
    FAMILY_V4,
    firewall::{COUNTERS_PER_BANK, LOG_SLOT_CONNTRACK_FULL, LogEvent, log_kind, maps, verdict},
    proto,
};
use serde::Serialize;

use crate::{FirewallError, Site, tables::open_map};

/// One event, as `fastpath firewall log` prints it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LogEntry {
    /// When, in seconds since the Unix epoch.
    pub time: f64,
    /// `rule` (a `log` rule matched) or `conntrack-full` (a new flow refused).
    pub kind: &'static str,
    /// The `log` rule's name; `-` for `conntrack-full`.
    pub rule: String,
    /// What became of the packet: `accept`, `drop` or `reject`.
    pub verdict: &'static str,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the protocol number.
    pub proto: String,
    /// Source address.
    pub src: IpAddr,
    /// Source port (0 for ICMP).
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port; for ICMP, type << 8 | code.
    pub dst_port: u16,
    /// The ingress interface's index.
    pub ifindex: u32,
}

/// Reads the log of the firewall at `site` (an interface's, or a topology's instance):
/// calls `each` for every event, until `count` events were read or `timeout` passed (each
/// None: no such end). Returns the number read.
pub fn follow_at(
    site: &Site,
    count: Option<usize>,
    timeout: Option<Duration>,
    mut each: impl FnMut(&LogEntry),
) -> Result<usize, FirewallError> {
    let path = site.map_pin(maps::LOG);
    if !path.exists() {
        return Err(FirewallError::NotLoaded {
            iface: site.name.clone(),
        });
    }
    let mut ring = RingBuf::try_from(open_map(&path, maps::LOG)?).map_err(FirewallError::map(
        "open",
        maps::LOG,
        &path,
    ))?;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut names = Names::new(site.run_dir());
    let mut read = 0;
    loop {
        while let Some(item) = ring.next() {
            if item.len() < size_of::<LogEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a whole `LogEvent` (checked length); any bit pattern
            // is valid for it; read unaligned.
            let event = unsafe { (item.as_ptr() as *const LogEvent).read_unaligned() };
            drop(item);
            each(&entry(&event, &mut names));
            read += 1;
            if count.is_some_and(|count| read >= count) {
                return Ok(read);
            }
        }
        let wait = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_secs(1)),
                None => return Ok(read),
            },
            None => Duration::from_secs(1),
        };
        let mut fds = [nix::poll::PollFd::new(
            ring.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => {
                return Err(FirewallError::Pin {
                    action: "poll",
                    path,
                    source: errno.into(),
                });
            }
        }
    }
}

/// Rule names by bank, read again when a slot is not known (a policy switched).
struct Names {
    dir: std::path::PathBuf,
    banks: [Vec<String>; 2],
}

impl Names {
    fn new(dir: &std::path::Path) -> Names {
        let mut names = Names {
            dir: dir.to_path_buf(),
            banks: [Vec::new(), Vec::new()],
        };
        names.reload();
        names
    }

    fn reload(&mut self) {
        for (bank, names) in self.banks.iter_mut().enumerate() {
            let file = self.dir.join(format!("bank-{bank}.names"));
            *names = fs::read_to_string(file)
                .map(|text| text.lines().map(str::to_string).collect())
                .unwrap_or_default();
        }
    }

    fn of(&mut self, slot: u32) -> String {
        if slot == LOG_SLOT_CONNTRACK_FULL {
            return "-".to_string();
        }
        let (bank, index) = (
            (slot / COUNTERS_PER_BANK) as usize & 1,
            (slot % COUNTERS_PER_BANK) as usize,
        );
        if index == 0 {
            return "default".to_string();
        }
        if self.banks[bank].len() < index {
            self.reload();
        }
        self.banks[bank]
            .get(index - 1)
            .cloned()
            .unwrap_or_else(|| format!("rule {index}"))
    }
}

fn entry(event: &LogEvent, names: &mut Names) -> LogEntry {
    let address = |bytes: [u8; 16]| {
        if event.family == FAMILY_V4 {
            IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            IpAddr::from(bytes)
        }
    };
    LogEntry {
        time: wall_clock(event.time_ns),
        kind: if event.kind == log_kind::CONNTRACK_FULL {
            "conntrack-full"
        } else {
            "rule"
        },
        rule: names.of(event.slot),
        verdict: match event.verdict {
            verdict::ACCEPT => "accept",
            verdict::REJECT => "reject",
            _ => "drop",
        },
        proto: match event.proto {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => "icmp".to_string(),
            proto::ICMPV6 => "icmpv6".to_string(),
            other => other.to_string(),
        },
        src: address(event.src),
        src_port: event.src_port,
        dst: address(event.dst),
        dst_port: event.dst_port,
        ifindex: event.ifindex,
    }
}

/// A `bpf_ktime_get_ns` (CLOCK_MONOTONIC) time as seconds since the Unix epoch.
fn wall_clock(monotonic_ns: u64) -> f64 {
    let now_monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|time| time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0);
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|time| time.as_secs_f64())
        .unwrap_or(0.0);
    now_wall - (now_monotonic - monotonic_ns as f64 / 1e9)
}
