//! Where an attachment lives in bpffs: `/sys/fs/bpf/fastpath/<iface>/`, holding `link` (the
//! bpf_link, drv and skb modes), `prog` (the program, always) and `maps/<NAME>`.
//! A later process finds everything there; `detach` removes the directory.
//!
//! Nothing is pinned outside `/sys/fs/bpf/fastpath/`. The steering object declares its maps
//! pinned by name, and aya pins such maps at the bpffs root unless told a directory, so a
//! load that shares nothing (probe trials, test benches) gets a directory of
//! its own under [`TRANSIENT`] from [`Transient`], removed when done. Which bpffs is used is
//! decided in one place, [`crate::bpffs`].

use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{OffloadError, bpffs::Bpffs};

/// The folder under `/sys/fs/bpf/fastpath/` holding the per-load directories of loads that
/// share nothing; 17 characters, so no interface (15 at most) can have its name.
pub const TRANSIENT: &str = "transient-objects";

/// The pin directory of one attachment (or of one transient load) and the paths in it.
/// Building one makes no directory or pin; [`Pins::create`] and [`Pins::remove`] do.
#[derive(Clone, Debug)]
pub struct Pins {
    /// The directory, as this process reaches it (under [`Bpffs::fastpath_dir`], which may
    /// be a `/proc/self/fd/N` path; see [`Pins::shown`] for messages).
    pub dir: PathBuf,
}

impl Pins {
    /// The pins of the attachment on `iface`: `<bpffs>/fastpath/<iface>/`.
    pub fn for_iface(iface: &str) -> Pins {
        Pins {
            dir: Bpffs::get()
                .fastpath_dir()
                .join(crate::netns::pin_name(iface)),
        }
    }

    /// The directory as a user would name it (the host's bpffs may be reached through /proc).
    pub fn shown(&self) -> String {
        Bpffs::get().show(&self.dir)
    }

    /// The pinned bpf_link (drv and skb modes; hw mode has none).
    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }

    /// The pinned steering program, in every mode.
    pub fn program(&self) -> PathBuf {
        self.dir.join("prog")
    }

    /// The prefilter program in the hardware slot, in a split plan.
    pub fn hw_prefilter(&self) -> PathBuf {
        self.dir.join("hw_prefilter")
    }

    /// The directory the object's maps are pinned in, by map name.
    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }

    /// The pin of the map `name` (its name in the object, e.g. "RULE_DEFS").
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Whether the program pin is there. A link pin without it is an attach killed between
    /// the two pins: callers that must see that check [`Pins::link`] too.
    pub fn exists(&self) -> bool {
        self.program().exists()
    }

    /// Creates the directories, mounting bpffs first if it is not mounted.
    pub fn create(&self) -> Result<(), OffloadError> {
        Bpffs::get().ready_for_pins(true)?;
        self.create_dirs()
    }

    fn create_dirs(&self) -> Result<(), OffloadError> {
        fs::create_dir_all(self.maps_dir())
            .map_err(|error| OffloadError::syscall("mkdir under bpffs", error))
    }

    /// Removes every pin; the kernel frees what no one else holds.
    pub fn remove(&self) -> Result<(), OffloadError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(OffloadError::syscall("unlink bpffs pins", error)),
        }
    }
}

impl Pins {
    /// Removes the steering program's pins (`link`, `prog`, `hw_prefilter`, `maps/`) and
    /// leaves the interface's module chains (`chain/`, and the TC hooks' `chain-tc-*/`:
    /// their links pinned there keep the tcx chains attached) to the chains' own
    /// commands; the directory goes too when nothing else is left in it.
    pub fn remove_steering(&self) -> Result<(), OffloadError> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("chain") {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(OffloadError::syscall("unlink bpffs pins", error));
                }
                _ => {}
            }
        }
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}

/// A directory of its own under `fastpath/transient-objects/` for one load that shares
/// nothing, named after the process (pid namespace and pid) and a counter, so concurrent
/// loads never meet; removed on drop, or once its process is gone by the next transient
/// load or [`prune_stale`] (a benchmark or test killed mid-run keeps its programs and maps
/// alive through these pins until then).
#[derive(Debug)]
pub struct Transient {
    pins: Pins,
}

impl Transient {
    /// Makes the directory (mounting bpffs first if it is not mounted). Works in a private
    /// mount namespace too: these pins are not meant to outlive the process.
    pub fn create() -> Result<Transient, OffloadError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}-{}",
            pid_namespace(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let transient = Bpffs::get().shared_dir().join(TRANSIENT);
        prune_dead_transients(&transient);
        let pins = Pins {
            dir: transient.join(name),
        };
        Bpffs::get().ready_for_pins(false)?;
        pins.create_dirs()?;
        Ok(Transient { pins })
    }

    /// The directory's paths, laid out like an attachment's.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }
}

impl Drop for Transient {
    fn drop(&mut self) {
        let _ = self.pins.remove();
    }
}

fn pid_namespace() -> u64 {
    use std::os::linux::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.st_ino())
}

/// Removes the pins of attachments whose interface is gone: the kernel detaches an XDP link
/// when its device is unregistered (a lab namespace deleted, a NIC unplugged) and then reports
/// ifindex 0 for it, but the pins would keep the maps alive. Returns the interfaces pruned.
/// Also removes transient directories left by processes of this pid namespace that died,
/// and the pins of network namespaces that are gone.
pub fn prune_stale() -> Vec<String> {
    prune_dead_transients(&Bpffs::get().shared_dir().join(TRANSIENT));
    crate::netns::prune_dead(&Bpffs::get().shared_dir());
    let root = Bpffs::get().fastpath_dir();
    let Ok(entries) = fs::read_dir(root) else {
        return vec![];
    };
    let mut pruned = Vec::new();
    for entry in entries.flatten() {
        let pins = Pins { dir: entry.path() };
        // An IO module chain's link lives in `chain/` of the interface's directory, a TC
        // hook's chain's in `chain-tc-ingress/` or `chain-tc-egress/`.
        let chain_link = pins.dir.join("chain").join("link");
        let tc_links =
            ["chain-tc-ingress", "chain-tc-egress"].map(|chain| pins.dir.join(chain).join("link"));
        let lost = link_lost_its_device(&pins.link())
            || link_lost_its_device(&chain_link)
            || tc_links.iter().any(|link| tcx_link_lost_its_device(link));
        if lost && pins.remove().is_ok() {
            pruned.push(crate::netns::iface_of_pin_name(
                &entry.file_name().to_string_lossy(),
            ));
        }
    }
    pruned
}

fn prune_dead_transients(dir: &std::path::Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let namespace = pid_namespace().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('-');
        let (Some(ns), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if ns == namespace && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = (Pins { dir: entry.path() }).remove();
        }
    }
}

/// A tcx link whose interface is gone (the kernel detaches it: its ifindex reads 0).
fn tcx_link_lost_its_device(link: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    crate::sys::obj_get(link)
        .and_then(|fd| crate::sys::tcx_link_target(fd.as_fd()))
        .is_ok_and(|target| target.is_some_and(|(ifindex, _)| ifindex == 0))
}

fn link_lost_its_device(link: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    crate::sys::obj_get(link)
        .and_then(|fd| crate::sys::xdp_link_ifindex(fd.as_fd()))
        .is_ok_and(|ifindex| ifindex == Some(0))
}
