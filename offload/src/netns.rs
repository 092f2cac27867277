//! Which network namespace the calling thread is in. Everything fastpath keeps for a node
//! (pins, lock files, histories, pid files) is kept per network namespace: two containers
//! both have an `eth0`, and conntrack belongs to a namespace as Linux's does.
//!
//! A namespace's things live in `netns/<cookie>/` below fastpath's bpffs folder and below
//! `/run/fastpath`, the host's namespace included: telling the host's namespace apart is not
//! reliable (pid 1's may be unreadable, in a sandbox or a container), and one layout for all
//! is simpler. The cookie (`SO_NETNS_COOKIE`) is the kernel's 64-bit id of the namespace,
//! never reused while the machine runs, unlike the namespace's inode number, which a new
//! namespace may take over from a deleted one (and, with it, the deleted one's pins).
//!
//! The answer is per thread, not per process: `fastpath --netns NS` and the lab's helpers
//! enter a namespace in one thread.

use std::{
    io,
    os::{fd::AsRawFd, linux::fs::MetadataExt},
    path::PathBuf,
};

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h), Linux 5.14.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The folder that holds the namespaces' folders, below fastpath's bpffs and run folders.
pub const NETNS_DIR: &str = "netns";

/// The relative folder of the calling thread's namespace: `netns/<cookie>`. Without a
/// cookie (a kernel before 5.14) it is empty: one folder for every namespace, as fastpath
/// did before it kept namespaces apart.
pub fn subdir() -> PathBuf {
    match current_cookie() {
        Some(cookie) => PathBuf::from(NETNS_DIR).join(cookie.to_string()),
        None => PathBuf::new(),
    }
}

/// The calling thread's namespace cookie, remembered per thread against the namespace's
/// inode: a command asks for its folders many times, and a stat is one syscall where
/// reading the cookie takes three (socket, getsockopt, close). The remembered namespace is
/// held open, so it lives, and no new namespace can take its inode, while it is
/// remembered.
fn current_cookie() -> Option<u64> {
    thread_local! {
        static KNOWN: std::cell::RefCell<Option<(std::fs::File, u64, u64)>> =
            const { std::cell::RefCell::new(None) };
    }
    const OURS: &str = "/proc/thread-self/ns/net";
    let inode = std::fs::metadata(OURS).ok().map(|m| m.st_ino());
    let known = KNOWN.with_borrow(|known| match (known, inode) {
        (Some((_, known_inode, cookie)), Some(inode)) if *known_inode == inode => Some(*cookie),
        _ => None,
    });
    if known.is_some() {
        return known;
    }
    let cookie = cookie().ok()?;
    if let (Some(inode), Ok(file)) = (inode, std::fs::File::open(OURS)) {
        KNOWN.set(Some((file, inode, cookie)));
    }
    Some(cookie)
}

/// `/run/fastpath` for the calling thread's namespace: lock files, histories, pid files.
pub fn run_dir() -> PathBuf {
    PathBuf::from("/run/fastpath").join(subdir())
}

/// The name an interface's folder gets in bpffs, which refuses dots in names (they are
/// reserved for its own files): a VLAN device such as `eth0.100` becomes `eth0:100`. Linux
/// interface names never hold a colon, so the mapping goes both ways.
pub fn pin_name(iface: &str) -> String {
    iface.replace('.', ":")
}

/// The interface a bpffs folder name stands for (the reverse of [`pin_name`]).
pub fn iface_of_pin_name(name: &str) -> String {
    name.replace(':', ".")
}

/// The cookies of every network namespace alive on the machine: those a process is in
/// (`/proc/*/ns/net`) and those kept by a bind mount (`/run/netns/*`, `ip netns add`).
/// Each distinct namespace is entered once, by a thread of its own, to read its cookie.
pub fn live_cookies() -> std::collections::HashSet<u64> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        files.extend(entries.flatten().filter_map(|entry| {
            let name = entry.file_name();
            name.to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| entry.path().join("ns/net"))
        }));
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        files.extend(entries.flatten().map(|entry| entry.path()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut cookies = std::collections::HashSet::new();
    for path in files {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !seen.insert((meta.st_dev(), meta.st_ino())) {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let read = std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            cookie().ok()
        })
        .join();
        if let Ok(Some(cookie)) = read {
            cookies.insert(cookie);
        }
    }
    cookies
}

/// Removes what fastpath kept for network namespaces that are gone: their pins (which would
/// keep maps and programs alive) and their run folders. Returns the cookies removed.
pub fn prune_dead(bpffs_shared: &std::path::Path) -> Vec<u64> {
    let dirs = [
        bpffs_shared.join(NETNS_DIR),
        PathBuf::from("/run/fastpath").join(NETNS_DIR),
    ];
    let kept: Vec<u64> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .collect();
    if kept.is_empty() {
        return kept;
    }
    let live = live_cookies();
    let mut pruned: Vec<u64> = kept.into_iter().filter(|c| !live.contains(c)).collect();
    pruned.sort_unstable();
    pruned.dedup();
    for cookie in &pruned {
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir.join(cookie.to_string()));
        }
    }
    pruned
}

/// The calling thread's namespace cookie, read from a socket made in it.
fn cookie() -> io::Result<u64> {
    let socket =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes into `cookie`, which lives across the
    // call; the socket is open.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_devices_get_a_name_bpffs_takes_and_back() {
        assert_eq!(pin_name("eth0.100"), "eth0:100");
        assert_eq!(pin_name("veth-a1"), "veth-a1");
        assert_eq!(iface_of_pin_name(&pin_name("bond0.10.20")), "bond0.10.20");
    }

    #[test]
    fn a_namespace_has_a_folder_of_its_own_that_stays_the_same() {
        let ours = subdir();
        assert!(ours.starts_with(NETNS_DIR), "{}", ours.display());
        assert_eq!(subdir(), ours);
        let cookie: Result<u64, _> = ours.file_name().unwrap().to_str().unwrap().parse();
        assert!(cookie.is_ok(), "{}", ours.display());
    }
}
