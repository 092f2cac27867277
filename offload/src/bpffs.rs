//! Which bpffs fastpath pins in: the one place that decides it, once per process.
//!
//! Normally that is `/sys/fs/bpf`. `ip netns exec NS cmd` runs `cmd` in a new mount
//! namespace with a fresh sysfs on /sys (iproute2 `lib/namespace.c`, `netns_switch`), so
//! /sys/fs/bpf there is an empty sysfs directory: a bpffs mounted on it would be private to
//! the command and vanish with it, along with every pin. In that case fastpath uses the
//! host's bpffs instead, reached through `/proc/<pid>/root/sys/fs/bpf` of a process in the
//! host's mount namespace (pid 1, or the topmost ancestor we may look into); BPF_OBJ_PIN and
//! BPF_OBJ_GET take any path on a bpffs. When no such process can be reached, pinning
//! refuses with what to run instead.

use std::{
    os::{
        fd::{AsRawFd, OwnedFd},
        linux::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    sync::OnceLock,
};

use nix::{
    fcntl::{OFlag, open},
    mount::MsFlags,
    sched::CloneFlags,
    sys::{stat::Mode, statfs},
};

use crate::OffloadError;

/// Where bpffs is mounted in a mount namespace.
pub const BPFFS: &str = "/sys/fs/bpf";

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The bpffs this process pins in.
#[derive(Debug)]
pub struct Bpffs {
    /// The path pins are made under: `/sys/fs/bpf`, or `/proc/self/fd/N` for an fd opened on
    /// the host's bpffs (an fd, so that the view survives the process it was taken from).
    root: PathBuf,
    /// The same place as a user would name it.
    shown: PathBuf,
    view: View,
    /// Why the host's bpffs could not be used, for [`View::Unreachable`].
    reason: Option<String>,
    /// Kept open for `root`.
    _host: Option<OwnedFd>,
}

/// How the bpffs was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// This process's /sys/fs/bpf, which is the host's (or nothing tells otherwise).
    Own,
    /// The host's, through `/proc/<pid>/root`: this process runs in a private mount
    /// namespace whose /sys/fs/bpf is not the host's.
    Host {
        /// The process whose `/proc/<pid>/root` leads to the host's bpffs.
        pid: u32,
    },
    /// A private mount namespace (`ip netns exec`, seen from /sys mounted with the netns's
    /// name) and no process in the host's mount namespace to reach its bpffs through.
    Unreachable,
}

impl Bpffs {
    /// Decided on first use: see the module documentation.
    pub fn get() -> &'static Bpffs {
        static BPFFS_IN_USE: OnceLock<Bpffs> = OnceLock::new();
        BPFFS_IN_USE.get_or_init(Bpffs::decide)
    }

    /// `/sys/fs/bpf/fastpath` (or its host view): every fastpath pin lives below it.
    /// Loads of no namespace's (`transient-objects/`) go here; a node's pins go in
    /// [`Bpffs::fastpath_dir`].
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("fastpath")
    }

    /// The pins of the calling thread's network namespace: `netns/<cookie>/` below
    /// [`Bpffs::shared_dir`] ([`crate::netns`]).
    pub fn fastpath_dir(&self) -> PathBuf {
        self.shared_dir().join(crate::netns::subdir())
    }

    /// How the bpffs in use was chosen.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// A path under [`Bpffs::fastpath_dir`] as a user would name it.
    pub fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rest) => self.shown.join(rest).display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// One line for logs and `xdp status`: which bpffs, and why.
    pub fn describe(&self) -> String {
        match self.view {
            View::Own => BPFFS.to_string(),
            View::Host { pid } => format!(
                "{BPFFS} of the host, through /proc/{pid}/root{BPFFS}: this process runs in a \
                 private mount namespace (as under `ip netns exec`) whose {BPFFS} is not the host's"
            ),
            View::Unreachable => format!("{BPFFS} private to this process: {}", self.reason()),
        }
    }

    /// Makes sure a bpffs is there to pin in: mounts one on this namespace's /sys/fs/bpf if
    /// nothing is mounted there. Pins meant to outlive this process (`lasting`) are refused
    /// in a private namespace whose host cannot be reached.
    pub fn ready_for_pins(&self, lasting: bool) -> Result<(), OffloadError> {
        match self.view {
            View::Host { .. } => Ok(()),
            View::Unreachable if lasting => Err(OffloadError::BpffsUnreachable {
                reason: self.reason(),
            }),
            View::Own | View::Unreachable => mount_if_missing(),
        }
    }

    fn reason(&self) -> String {
        self.reason.clone().unwrap_or_else(unreachable)
    }

    fn decide() -> Bpffs {
        let own = Bpffs {
            root: PathBuf::from(BPFFS),
            shown: PathBuf::from(BPFFS),
            view: View::Own,
            reason: None,
            _host: None,
        };
        let facts = Facts::read();
        match choose(&facts) {
            View::Own => own,
            View::Unreachable => Bpffs {
                view: View::Unreachable,
                ..own
            },
            View::Host { pid } => match open_host(pid, facts.host_bpffs.is_some()) {
                Ok(fd) => Bpffs {
                    root: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                    shown: PathBuf::from(format!("/proc/{pid}/root{BPFFS}")),
                    view: View::Host { pid },
                    reason: None,
                    _host: Some(fd),
                },
                Err(error) => Bpffs {
                    view: View::Unreachable,
                    reason: Some(format!(
                        "this process runs in a private mount namespace (`ip netns exec` \
                         remounts /sys), and the host's {BPFFS} could not be used ({error}), so \
                         pins made here would vanish with this process; mount it on the host \
                         (`mount -t bpf bpf {BPFFS}`) or run `fastpath --netns NS ...` instead \
                         of `ip netns exec NS fastpath ...`"
                    )),
                    ..own
                },
            },
        }
    }
}

fn unreachable() -> String {
    format!(
        "this process runs in a private mount namespace (`ip netns exec` remounts /sys), and no \
         process of the host's mount namespace can be reached to use its {BPFFS}, so pins made \
         here would vanish with this process; run `fastpath --netns NS ...` instead of \
         `ip netns exec NS fastpath ...` (it enters only the network namespace)"
    )
}

/// What the choice rests on, read from /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Facts {
    /// Our mount namespace (the inode of /proc/self/ns/mnt).
    own_namespace: u64,
    /// pid 1, or the topmost ancestor whose mount namespace we may read, with it.
    reference: Option<(u32, u64)>,
    /// The device of our /sys/fs/bpf when a bpffs is mounted there.
    own_bpffs: Option<u64>,
    /// The device of the reference's /sys/fs/bpf when a bpffs is mounted there.
    host_bpffs: Option<u64>,
    /// The source /sys is mounted from: "sysfs" normally, the netns's name under
    /// `ip netns exec`.
    sys_source: Option<String>,
}

impl Facts {
    fn read() -> Facts {
        let namespace = |pid: &str| {
            std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .map(|m| m.st_ino())
        };
        let reference = reference_process(namespace);
        let bpffs_device = |path: &Path| {
            let is_bpffs =
                statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC);
            is_bpffs
                .then(|| std::fs::metadata(path).ok().map(|m| m.st_dev()))
                .flatten()
        };
        let host_bpffs = reference
            .and_then(|(pid, _)| bpffs_device(&PathBuf::from(format!("/proc/{pid}/root{BPFFS}"))));
        Facts {
            own_namespace: namespace("self").unwrap_or(0),
            reference,
            own_bpffs: bpffs_device(Path::new(BPFFS)),
            host_bpffs,
            sys_source: std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|mountinfo| sys_mount_source(&mountinfo)),
        }
    }
}

/// pid 1 when its mount namespace is readable (not in every sandbox), else the topmost
/// ancestor whose is.
fn reference_process(namespace: impl Fn(&str) -> Option<u64>) -> Option<(u32, u64)> {
    if let Some(ns) = namespace("1") {
        return Some((1, ns));
    }
    let mut found = None;
    let mut pid = std::os::unix::process::parent_id();
    while pid > 1 {
        let Some(ns) = namespace(&pid.to_string()) else {
            break;
        };
        found = Some((pid, ns));
        pid = parent_of(pid).unwrap_or(0);
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|value| value.trim().parse().ok())
}

/// The source field of the /sys mount in a /proc/PID/mountinfo.
fn sys_mount_source(mountinfo: &str) -> Option<String> {
    // "36 35 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw": after " - ", type, source.
    // The last /sys mount is the one on top.
    mountinfo
        .lines()
        .rev()
        .filter(|line| line.split(' ').nth(4) == Some("/sys"))
        .find_map(|line| {
            let (_, after) = line.split_once(" - ")?;
            let mut fields = after.split(' ');
            (fields.next()? == "sysfs").then(|| fields.next().map(str::to_string))?
        })
}

fn choose(facts: &Facts) -> View {
    match facts.reference {
        Some((pid, ns)) if ns != facts.own_namespace => {
            // The same bpffs seen from both (a namespace that did not touch /sys), or one
            // mounted here on purpose while the host has none: ours.
            let shared = facts.own_bpffs.is_some() && facts.own_bpffs == facts.host_bpffs;
            let only_ours = facts.own_bpffs.is_some() && facts.host_bpffs.is_none();
            if shared || only_ours {
                View::Own
            } else {
                View::Host { pid }
            }
        }
        _ => match facts.sys_source.as_deref() {
            // `ip netns exec` mounts sysfs with the netns's name as its source.
            Some(source) if source != "sysfs" && source != "none" && facts.own_bpffs.is_none() => {
                View::Unreachable
            }
            _ => View::Own,
        },
    }
}

/// An fd on the host's /sys/fs/bpf, mounting a bpffs there first (in the host's mount
/// namespace, from a thread of our own) when none is.
fn open_host(pid: u32, mounted: bool) -> Result<OwnedFd, OffloadError> {
    if !mounted {
        mount_in_namespace_of(pid)?;
    }
    let path = format!("/proc/{pid}/root{BPFFS}");
    let fd = open(
        path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| OffloadError::syscall("open the host's bpffs", errno.into()))?;
    let is_bpffs = statfs::fstatfs(&fd).is_ok_and(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC);
    if !is_bpffs {
        return Err(OffloadError::NotBpffs { path });
    }
    Ok(fd)
}

/// setns(CLONE_NEWNS) is refused to a process whose threads share their fs_struct, so a
/// thread of its own (unshare(CLONE_FS)) enters the namespace to mount.
fn mount_in_namespace_of(pid: u32) -> Result<(), OffloadError> {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|error| OffloadError::syscall("open the host's mount namespace", error))?;
    std::thread::spawn(move || -> Result<(), OffloadError> {
        nix::sched::unshare(CloneFlags::CLONE_FS)
            .map_err(|errno| OffloadError::syscall("unshare(CLONE_FS)", errno.into()))?;
        nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNS).map_err(|errno| {
            OffloadError::syscall("setns into the host's mount namespace", errno.into())
        })?;
        mount_if_missing()
    })
    .join()
    .unwrap_or(Err(OffloadError::MountThreadPanicked))
}

fn mount_if_missing() -> Result<(), OffloadError> {
    let mounted = statfs::statfs(BPFFS)
        .map(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if mounted {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| OffloadError::syscall("mount bpffs on /sys/fs/bpf", errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            own_namespace: 10,
            reference: Some((1, 10)),
            own_bpffs: Some(40),
            host_bpffs: Some(40),
            sys_source: Some("sysfs".into()),
        }
    }

    #[test]
    fn the_host_namespace_uses_its_own_bpffs() {
        assert_eq!(choose(&facts()), View::Own);
        let unmounted = Facts {
            own_bpffs: None,
            host_bpffs: None,
            ..facts()
        };
        assert_eq!(choose(&unmounted), View::Own, "mounted on first pin");
    }

    #[test]
    fn ip_netns_exec_uses_the_hosts_bpffs() {
        // /sys remounted with the netns's name, bpffs not (yet) mounted on it.
        let netns_exec = Facts {
            own_namespace: 11,
            own_bpffs: None,
            sys_source: Some("lab-dut".into()),
            ..facts()
        };
        assert_eq!(choose(&netns_exec), View::Host { pid: 1 });
        // An earlier private mount there changes nothing.
        let private_mount = Facts {
            own_bpffs: Some(41),
            ..netns_exec.clone()
        };
        assert_eq!(choose(&private_mount), View::Host { pid: 1 });
        // The host has none yet: still the host's (it is mounted there).
        let host_unmounted = Facts {
            host_bpffs: None,
            reference: Some((77, 10)),
            ..netns_exec
        };
        assert_eq!(choose(&host_unmounted), View::Host { pid: 77 });
        // But a bpffs mounted here on purpose while the host has none is used.
        let only_ours = Facts {
            own_bpffs: Some(41),
            ..host_unmounted
        };
        assert_eq!(choose(&only_ours), View::Own);
    }

    #[test]
    fn another_namespace_that_shares_the_bpffs_uses_its_own_path() {
        let shared = Facts {
            own_namespace: 11,
            ..facts()
        };
        assert_eq!(choose(&shared), View::Own);
    }

    #[test]
    fn ip_netns_exec_with_no_host_process_in_reach_is_refused_with_advice() {
        let alone = Facts {
            reference: None,
            own_bpffs: None,
            sys_source: Some("lab-dut".into()),
            ..facts()
        };
        assert_eq!(choose(&alone), View::Unreachable);
        assert!(unreachable().contains("fastpath --netns NS"));
        let plain = Facts {
            reference: None,
            ..facts()
        };
        assert_eq!(choose(&plain), View::Own);
    }

    #[test]
    fn the_sys_mount_source_is_read_from_mountinfo() {
        let host = "22 1 0:21 / /proc rw,relatime shared:5 - proc proc rw\n\
                    23 1 0:22 / /sys rw,nosuid shared:6 - sysfs sysfs rw\n\
                    31 23 0:27 / /sys/fs/bpf rw shared:9 - bpf bpf rw,mode=700\n";
        assert_eq!(sys_mount_source(host).as_deref(), Some("sysfs"));
        // `ip netns exec lab-dut`: the last /sys mount is the netns's own sysfs.
        let netns_exec = format!("{host}48 45 0:39 / /sys rw,relatime - sysfs lab-dut rw\n");
        assert_eq!(sys_mount_source(&netns_exec).as_deref(), Some("lab-dut"));
        assert_eq!(sys_mount_source("garbage"), None);
    }
}
