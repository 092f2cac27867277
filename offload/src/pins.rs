//! Where an attachment lives in bpffs: `/sys/fs/bpf/fastpath/<iface>/`, holding `link` (the
//! bpf_link, drv and skb modes), `prog` (the program, always) and `maps/<NAME>`.
//! A later process finds everything there; `detach` removes the directory.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::{mount::MsFlags, sys::statfs};

use crate::OffloadError;

pub const BPFFS: &str = "/sys/fs/bpf";

#[derive(Clone, Debug)]
pub struct Pins {
    pub dir: PathBuf,
}

impl Pins {
    pub fn for_iface(iface: &str) -> Pins {
        Pins {
            dir: Path::new(BPFFS).join("fastpath").join(iface),
        }
    }

    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }

    pub fn program(&self) -> PathBuf {
        self.dir.join("prog")
    }

    /// The prefilter program in the hardware slot, in a split plan.
    pub fn hw_prefilter(&self) -> PathBuf {
        self.dir.join("hw_prefilter")
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn exists(&self) -> bool {
        self.program().exists()
    }

    /// Creates the directories, mounting bpffs first if it is not mounted.
    pub fn create(&self) -> Result<(), OffloadError> {
        ensure_bpffs()?;
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

/// Removes the pins of attachments whose interface is gone: the kernel detaches an XDP link
/// when its device is unregistered (a lab namespace deleted, a NIC unplugged) and then reports
/// ifindex 0 for it, but the pins would keep the maps alive. Returns the interfaces pruned.
pub fn prune_stale() -> Vec<String> {
    let Ok(entries) = fs::read_dir(Path::new(BPFFS).join("fastpath")) else {
        return vec![];
    };
    let mut pruned = Vec::new();
    for entry in entries.flatten() {
        let pins = Pins { dir: entry.path() };
        if link_lost_its_device(&pins.link()) && pins.remove().is_ok() {
            pruned.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pruned
}

fn link_lost_its_device(link: &Path) -> bool {
    use std::os::fd::AsFd;
    crate::sys::obj_get(link)
        .and_then(|fd| crate::sys::xdp_link_ifindex(fd.as_fd()))
        .is_ok_and(|ifindex| ifindex == Some(0))
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn ensure_bpffs() -> Result<(), OffloadError> {
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
    .map_err(|errno| {
        OffloadError::syscall(
            "mount bpffs on /sys/fs/bpf",
            std::io::Error::from_raw_os_error(errno as i32),
        )
    })
}
