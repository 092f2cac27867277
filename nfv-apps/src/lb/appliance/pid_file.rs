//! The pid file that claims an interface for one appliance.

use std::path::PathBuf;

use crate::lb::error::LbError;

/// The pid file of this process for an interface, removed on drop (so also when a start
/// fails half way).
pub struct PidFile(PathBuf);

impl PidFile {
    /// Where the appliance on `iface` keeps its pid.
    pub fn path_for(iface: &str) -> PathBuf {
        offload::netns::run_dir().join(format!("lb-{iface}.pid"))
    }

    /// Takes the interface for this process. A pid file whose process is gone is a dead
    /// run's (kill -9): its leftovers are cleaned by the caller.
    pub fn claim(path: PathBuf, iface: &str, log: &mut Vec<String>) -> Result<PidFile, LbError> {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            // SAFETY: kill with signal 0 only checks that the process exists.
            let alive = pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } == 0;
            if alive {
                return Err(LbError::AlreadyRunning {
                    pid,
                    iface: iface.to_string(),
                });
            }
            log.push(format!(
                "previous run (pid {pid}) on {iface} did not stop cleanly; cleaning up after it"
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LbError::PidFile {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, std::process::id().to_string()).map_err(|source| {
            LbError::PidFile {
                action: "write",
                path: path.clone(),
                source,
            }
        })?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_runs_pid_file_is_taken_over_and_removed_on_drop() {
        let path = std::env::temp_dir().join(format!("fp-pid-{}.pid", std::process::id()));
        // No process has pid i32::MAX: the file is a dead run's.
        std::fs::write(&path, i32::MAX.to_string()).unwrap();
        let mut log = Vec::new();
        let claimed = PidFile::claim(path.clone(), "eth0", &mut log).unwrap();
        assert!(log[0].contains("did not stop cleanly"), "{log:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(claimed);
        assert!(!path.exists());
    }
}
