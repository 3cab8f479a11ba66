//! Reload triggers that run in the background: the config file changing on disk and signals.
//!
//! The watcher watches the file's directory, not the file: editors write a temporary file and
//! rename it over the original, and a Kubernetes ConfigMap mount swaps its `..data` symlink to a
//! new timestamped directory; neither changes the inode a file watch would follow. Any event in
//! the directory wakes the watcher. An event that ends an edit (a write-close of the file, a rename
//! onto it or onto `..data`) reloads at once; other events are debounced into one reload. A
//! reload whose text is unchanged is a no-op.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::Reloader;

/// Quiet time that ends a burst of file events.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a burst may delay a reload.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// The file watcher, run as a Pingora background service.
pub struct FileWatcher {
    reloader: Arc<Reloader>,
}

impl FileWatcher {
    /// Watches the reloader's config file.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        FileWatcher { reloader }
    }
}

/// Directories to watch: the file's own, and that of the file it links to, if elsewhere.
fn watch_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let parent = |p: &Path| {
        p.parent().map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
    };
    if let Some(d) = parent(path) {
        dirs.push(d);
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        if let Some(d) = parent(&real) {
            if !dirs
                .iter()
                .any(|x| std::fs::canonicalize(x).ok().as_deref() == Some(&d))
            {
                dirs.push(d);
            }
        }
    }
    dirs
}

/// File names whose events matter: the config file's and its symlink target's. Names starting
/// with `..` (a ConfigMap's `..data` and timestamped directories) always matter.
fn relevant_names(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for p in [Some(path.to_path_buf()), std::fs::canonicalize(path).ok()]
        .into_iter()
        .flatten()
    {
        if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            names.push(n.to_string());
        }
    }
    names
}

/// What an event says about the config file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Nothing: another file, or an open or a read.
    None,
    /// Part of an edit that may go on (a truncation, a write, a create): wait for quiet.
    Partial,
    /// The end of an edit: a write-close of the file, or a rename onto its name or onto a
    /// ConfigMap's `..data`. The new text is complete, so reload without waiting.
    Complete,
}

/// Classifies an event for the config file. Other files in the directory, such as logs, must
/// not delay or trigger reloads, and neither may reading the file: inotify reports opens, and
/// the reload itself opens the file, so counting them re-read the file every debounce period
/// forever and reverted a `POST /config` whenever anything read the file.
fn classify(event: &notify::Event, names: &[String]) -> Change {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::EventKind;
    let named = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| names.iter().any(|x| x == n) || n.starts_with(".."))
    };
    let finishing = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => return Change::None,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => true,
        // `Both` carries the old name then the new one; only the new one is what now exists.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            return match event.paths.last() {
                Some(to) if named(to) => Change::Complete,
                _ if event.paths.iter().any(named) => Change::Partial,
                _ => Change::None,
            };
        }
        _ => false,
    };
    match (event.paths.iter().any(named), finishing) {
        (false, _) => Change::None,
        (true, true) => Change::Complete,
        (true, false) => Change::Partial,
    }
}

#[async_trait]
impl BackgroundService for FileWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
        let names = relevant_names(self.reloader.path());
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else {
                return;
            };
            let change = classify(&event, &names);
            if change != Change::None {
                let _ = tx.send(change);
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config file; use SIGHUP or POST /config to reload");
                return;
            }
        };
        for dir in watch_dirs(self.reloader.path()) {
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "watching for configuration changes")
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot watch directory")
                }
            }
        }
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                ev = rx.recv() => match ev {
                    Some(change) => change,
                    None => return,
                },
            };
            // An edit that is known to be finished reloads at once (after taking the events
            // already queued with it); anything else waits until the directory has been quiet
            // for DEBOUNCE (at most MAX_DELAY) or an event says the edit is finished.
            let mut complete = first == Change::Complete;
            while let Ok(change) = rx.try_recv() {
                complete |= change == Change::Complete;
            }
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            while !complete {
                let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
                match tokio::time::timeout_at(quiet, rx.recv()).await {
                    Ok(Some(change)) => complete = change == Change::Complete,
                    Ok(None) | Err(_) => break,
                }
            }
            let reloader = self.reloader.clone();
            // Compiling a large config is CPU work: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || reloader.reload_file("file change")).await;
        }
    }
}

/// Pingora's shutdown signal watch, extended: SIGTERM and SIGINT drain gracefully, SIGQUIT
/// hands the sockets to a new binary (`--upgrade`), SIGHUP reloads the config file.
pub struct Signals {
    reloader: Arc<Reloader>,
    delay: Duration,
}

impl Signals {
    /// Signal handling that reloads through `reloader`; after SIGTERM the listeners keep
    /// accepting for `delay` (so a load balancer can stop sending traffic first).
    pub fn new(reloader: Arc<Reloader>, delay: Duration) -> Self {
        Signals { reloader, delay }
    }
}

/// Ends the process once in-flight requests are done after a graceful shutdown started, rather
/// than waiting out Pingora's whole grace period (which is the drain timeout).
pub struct Drain {
    inflight: Arc<AtomicUsize>,
    timeout: Duration,
}

impl Drain {
    /// Drains the requests counted by `inflight`, for at most `timeout`.
    pub fn new(inflight: Arc<AtomicUsize>, timeout: Duration) -> Self {
        Drain { inflight, timeout }
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = self.inflight.load(Ordering::Relaxed);
            if n == 0 {
                tracing::info!("all in-flight requests are done; exiting");
                std::process::exit(0);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(inflight = n, "drain timeout reached; exiting");
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!(delay = ?self.delay, "SIGTERM: draining in-flight requests, then exiting");
                    tokio::time::sleep(self.delay).await;
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: draining in-flight requests, then exiting");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: handing the listeners to the new process");
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = hup.recv() => {
                    let reloader = self.reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || reloader.reload_file("SIGHUP")).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
    use notify::{Event, EventKind};

    use super::{classify, Change};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(path.into())
    }

    #[test]
    fn opening_or_reading_the_file_is_not_a_change() {
        let names = vec!["kong.yaml".to_string()];
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            let ev = event(kind, "/etc/kong/kong.yaml");
            assert_eq!(classify(&ev, &names), Change::None, "{kind:?}");
        }
        let other = event(EventKind::Create(CreateKind::Any), "/etc/kong/access.log");
        assert_eq!(classify(&other, &names), Change::None);
    }

    #[test]
    fn the_end_of_an_edit_reloads_at_once_and_its_middle_waits() {
        let names = vec!["kong.yaml".to_string()];
        // A write-close ends an edit made in place; a rename onto the name ends an editor's
        // save; a rename onto `..data` ends a ConfigMap update.
        for (kind, path) in [
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/etc/kong/kong.yaml",
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/etc/kong/kong.yaml",
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/etc/kong/..data",
            ),
        ] {
            assert_eq!(classify(&event(kind, path), &names), Change::Complete);
        }
        // The file may still be half written after these.
        for (kind, path) in [
            (EventKind::Modify(ModifyKind::Any), "/etc/kong/kong.yaml"),
            (EventKind::Create(CreateKind::File), "/etc/kong/kong.yaml"),
            (EventKind::Create(CreateKind::Any), "/etc/kong/..data_tmp"),
            (EventKind::Remove(RemoveKind::Any), "/etc/kong/kong.yaml"),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                "/etc/kong/kong.yaml",
            ),
        ] {
            assert_eq!(classify(&event(kind, path), &names), Change::Partial);
        }
        // A rename pair counts by where it lands: saving over the file completes an edit,
        // moving the file away does not.
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let saved = event(both, "/etc/kong/.kong.yaml.swp").add_path("/etc/kong/kong.yaml".into());
        assert_eq!(classify(&saved, &names), Change::Complete);
        let moved = event(both, "/etc/kong/kong.yaml").add_path("/etc/kong/kong.yaml~".into());
        assert_eq!(classify(&moved, &names), Change::Partial);
    }
}
