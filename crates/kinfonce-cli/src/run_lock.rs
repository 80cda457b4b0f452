//! One writer per run folder: an advisory `flock` on `DIR/owner.lock`, held until the process
//! ends (the kernel drops it when the process dies, however it dies).

use anyhow::{bail, Context};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = "owner.lock";

/// Holds a run folder; the lock goes with the value (or the process).
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Takes the folder `dir` (created if missing) for this process, or refuses in one line
    /// naming the folder and the process that holds it. A refused process writes nothing there.
    pub fn take(dir: &Path) -> anyhow::Result<RunLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            bail!(
                "{} is in use by {holder} (it holds {}); one process writes a run folder at a \
                 time: wait for it to end or stop it",
                dir.display(),
                path.display()
            );
        }
        // The holder's PID, for the message a second writer prints.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    /// A run that ended leaves the file empty, so the folder's contents do not name a PID that
    /// no longer holds it.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_naming_the_folder_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::take(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE))
                .unwrap()
                .trim(),
            pid
        );
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let err = format!("{:#}", RunLock::take(dir.path()).err().unwrap());
        assert!(
            err.contains(&*dir.path().to_string_lossy()) && err.contains(&pid),
            "{err}"
        );
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            ""
        );
        RunLock::take(dir.path()).unwrap();
    }
}
