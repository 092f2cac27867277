//! Exclusive locks in files under `/run/fastpath`, one file per thing locked. flock is
//! released when its holder dies, so a process killed mid-change leaves no stale lock.

use std::{fs, fs::File, io, path::PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the lock files live: `/run/fastpath` of the calling thread's network namespace.
pub(crate) fn path(file_name: &str) -> PathBuf {
    crate::netns::run_dir().join(file_name)
}

/// Takes the lock in `/run/fastpath/<file_name>` (of this network namespace), waiting for its holder. The file is not
/// truncated: a holder may keep a journal line in it. An error names the failed step.
pub(crate) fn exclusive(file_name: &str) -> Result<Flock<File>, (&'static str, io::Error)> {
    let path = path(file_name);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|error| ("mkdir /run/fastpath", error))?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| ("open the lock file", error))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| ("flock", errno.into()))
}
