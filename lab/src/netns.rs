//! Named network namespaces, as `ip netns` keeps them: a bind mount of the namespace at
//! `/run/netns/<name>`. Work inside one happens on a thread that has entered it (setns is
//! per thread), so the caller's namespace never changes.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    thread,
};

use nix::{
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
};

use crate::LabError;

/// Where named namespaces are mounted, as `ip netns` expects them.
pub const NETNS_DIR: &str = "/run/netns";

/// The mount point of namespace `name`: `/run/netns/<name>`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether namespace `name` exists (its mount point is there).
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Creates the namespace `name`, with its loopback up.
pub fn create(name: &str) -> Result<(), LabError> {
    if exists(name) {
        return Err(LabError::Exists(name.to_string()));
    }
    fs::create_dir_all(NETNS_DIR).map_err(|e| LabError::io("mkdir /run/netns", e))?;
    ensure_shared_mount()?;
    let target = path(name);
    File::create(&target).map_err(|e| LabError::io("create netns mount point", e))?;
    let target_in_thread = target.clone();
    let result = thread::spawn(move || -> Result<(), LabError> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::errno("unshare(CLONE_NEWNET)", e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target_in_thread,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| LabError::errno("bind-mount the new namespace", e))
    })
    .join()
    .expect("netns thread panicked");
    if let Err(error) = result {
        let _ = fs::remove_file(&target);
        return Err(error);
    }
    run_in(name, || crate::netlink::set_up("lo"))?
}

/// Deletes the namespace; its interfaces go with it. Missing namespaces are fine.
pub fn delete(name: &str) -> Result<(), LabError> {
    let target = path(name);
    if !target.exists() {
        return Ok(());
    }
    let _ = nix::mount::umount2(&target, MntFlags::MNT_DETACH);
    fs::remove_file(&target).map_err(|e| LabError::io("remove netns mount point", e))
}

/// Namespaces whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Runs `work` on a thread inside namespace `name` and returns its result.
pub fn run_in<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let file = File::open(path(name)).map_err(|_| LabError::NoNamespace(name.to_string()))?;
    thread::spawn(move || -> Result<T, LabError> {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::errno("setns", e))?;
        Ok(work())
    })
    .join()
    .expect("netns thread panicked")
}

/// Enters namespace `name` for the rest of this process (used by `--netns`): only the
/// network namespace changes, so bpffs pins stay visible.
pub fn enter(name: &str) -> Result<(), LabError> {
    let file = File::open(path(name)).map_err(|_| LabError::NoNamespace(name.to_string()))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::errno("setns", e))
}

/// `ip netns` makes /run/netns a shared mount so that the bind mounts propagate; do the same
/// so that namespaces made here and by iproute2 are interchangeable.
fn ensure_shared_mount() -> Result<(), LabError> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = mounts
        .lines()
        .any(|line| line.split_whitespace().nth(4) == Some(NETNS_DIR));
    if !mounted {
        nix::mount::mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| LabError::errno("bind-mount /run/netns", e))?;
    }
    match nix::mount::mount(
        None::<&str>,
        NETNS_DIR,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(errno) => Err(LabError::Io {
            what: "make /run/netns shared",
            source: io::Error::from_raw_os_error(errno as i32),
        }),
    }
}
