//! One `relevo instance` per data volume. A pod deleted with `--force --grace-period=0` is
//! replaced at once by a pod of the same name, on the same node and volume, while the old
//! one may still be stopping PostgreSQL within its grace period. PostgreSQL's own interlock
//! (postmaster.pid and a System V segment) cannot see a postmaster in another pod's PID and
//! IPC namespaces, so the new pod would start a second PostgreSQL on the same data
//! directory. An exclusive `flock` on a file at the volume's root, held for the whole life
//! of the entrypoint, is one kernel object for both pods: the new one waits for the old one.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// The held lock; it is released when this is dropped or the process ends, however it ends.
#[derive(Debug)]
pub struct VolumeLock {
    _file: File,
}

/// How taking the lock went.
#[derive(Debug)]
pub enum Taken {
    /// Free: nobody else uses the volume.
    AtOnce(VolumeLock),
    /// Another process holds it: [`wait`] blocks until it is released.
    Held(File),
}

/// Opens (creating) the lock file and tries to take it without waiting.
pub fn try_take(path: &Path) -> std::io::Result<Taken> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Taken::AtOnce(VolumeLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(Taken::Held(file)),
        Err(TryLockError::Error(error)) => Err(error),
    }
}

/// Blocks until the other holder releases the lock. For a blocking thread (it may wait for
/// a whole grace period).
pub fn wait(file: File) -> std::io::Result<VolumeLock> {
    file.lock()?;
    Ok(VolumeLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_second_holder_waits_until_the_first_is_gone() {
        let dir = std::env::temp_dir().join(format!("relevo-volume-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        let Taken::AtOnce(first) = try_take(&path).unwrap() else { panic!("a free lock is taken at once") };
        let Taken::Held(file) = try_take(&path).unwrap() else { panic!("a held lock is not taken twice") };
        let released_at = Instant::now() + Duration::from_millis(300);
        let waiter = std::thread::spawn(move || {
            let lock = wait(file).unwrap();
            (Instant::now(), lock)
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        let (taken_at, second) = waiter.join().unwrap();
        assert!(taken_at >= released_at, "the second holder waited for the first");
        assert!(matches!(try_take(&path).unwrap(), Taken::Held(_)), "and now holds it");
        drop(second);
        assert!(matches!(try_take(&path).unwrap(), Taken::AtOnce(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
