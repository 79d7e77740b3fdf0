//! Wakes output followers when a supervisor writes into an execution
//! folder: one inotify instance for the whole agent, one watch per folder
//! however many follow it.
//!
//! One instance per follower would be simpler, but closing an inotify
//! instance waits for an SRCU grace period (tens of milliseconds, on the
//! thread that closes it), and the kernel allows only 128 instances per user
//! by default. Removing a watch from a shared instance costs neither.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
};

use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::watch;

/// The agent's shared inotify instance.
pub struct DirWatcher {
    watches: Mutex<Watches>,
    folders: Mutex<HashMap<WatchDescriptor, Folder>>,
}

struct Folder {
    followers: usize,
    /// Bumped at every event in the folder.
    events: watch::Sender<u64>,
}

impl DirWatcher {
    /// Starts the instance and the task that dispatches its events; None
    /// where inotify is unavailable (followers then poll).
    pub fn start() -> Option<Arc<Self>> {
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable: output followers poll");
                return None;
            }
        };
        let watches = inotify.watches();
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024]).ok()?;
        let this = Arc::new(Self { watches: Mutex::new(watches), folders: Mutex::new(HashMap::new()) });
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Some(this) = weak.upgrade() else { return };
                let Ok(event) = event else { continue };
                let folders = this.folders();
                if let Some(f) = folders.get(&event.wd) {
                    f.events.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        Some(this)
    }

    /// Watches `dir` until the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, dir: &Path) -> Option<DirWatch> {
        let mask = WatchMask::MODIFY | WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE;
        let mut folders = self.folders();
        // The same folder gives the same descriptor: followers share it.
        let wd = self.lock_watches().add(dir, mask).ok()?;
        let f =
            folders.entry(wd.clone()).or_insert_with(|| Folder { followers: 0, events: watch::channel(0).0 });
        f.followers += 1;
        let rx = f.events.subscribe();
        Some(DirWatch { watcher: self.clone(), wd, rx })
    }

    fn folders(&self) -> MutexGuard<'_, HashMap<WatchDescriptor, Folder>> {
        self.folders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_watches(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One follower's interest in one folder.
pub struct DirWatch {
    watcher: Arc<DirWatcher>,
    wd: WatchDescriptor,
    rx: watch::Receiver<u64>,
}

impl DirWatch {
    /// Resolves at the next event in the folder since the last call (at
    /// once if one came meanwhile).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let mut folders = self.watcher.folders();
        let last = folders.get_mut(&self.wd).is_some_and(|f| {
            f.followers -= 1;
            f.followers == 0
        });
        if last {
            folders.remove(&self.wd);
            // Fails harmlessly when the folder is already gone.
            let _ = self.watcher.lock_watches().remove(self.wd.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_of_one_folder_share_a_watch_and_each_wake() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = DirWatcher::start().expect("inotify");
        let mut a = w.watch(d.path()).expect("watch a");
        let mut b = w.watch(d.path()).expect("watch b");
        assert_eq!(w.folders().len(), 1);
        assert_eq!(w.folders().values().next().map(|f| f.followers), Some(2));
        std::fs::write(d.path().join("output.log"), b"x").expect("write");
        for x in [&mut a, &mut b] {
            tokio::time::timeout(Duration::from_secs(5), x.changed()).await.expect("woken");
        }
        drop(a);
        assert_eq!(w.folders().values().next().map(|f| f.followers), Some(1));
        drop(b);
        assert!(w.folders().is_empty(), "the last follower removes the watch");
        // A new follower after that gets a fresh watch and still wakes.
        let mut c = w.watch(d.path()).expect("watch c");
        std::fs::write(d.path().join("exit.json"), b"{}").expect("write");
        tokio::time::timeout(Duration::from_secs(5), c.changed()).await.expect("woken again");
    }
}
