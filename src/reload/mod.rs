//! Applying a new configuration: all or nothing. The text is parsed, validated and compiled
//! into a complete snapshot, which then replaces the running one in one atomic store. On any
//! error the running snapshot keeps serving and the error is logged, counted and kept for the
//! status API. In-flight requests finish on the snapshot they started with.

pub mod compiler;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::LoadError;
use crate::metrics::Metrics;
use crate::snapshot::{self, hash_text, Snapshot};

/// Hands the memory this thread freed back to the operating system: a load frees its
/// transient copies (the parsed tree, the decoded entities) and often the previous snapshot,
/// and mimalloc otherwise keeps those pages until the thread allocates again. The compile
/// thread calls it once idle ([`compiler::KEEP_SCRATCH`]). Harmless when mimalloc is not the
/// global allocator.
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks the allocator's own state; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// The result of one reload attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it happened.
    pub at: SystemTime,
    /// What triggered it: `file change`, `SIGHUP`, `POST /config`, `startup`.
    pub trigger: String,
    /// Hash of the text that was tried (empty when unreadable).
    pub hash: String,
    /// Errors (empty on success).
    pub errors: Vec<String>,
    /// How long parse + validate + compile took.
    pub duration_ms: f64,
    /// Generation applied, on success.
    pub generation: Option<u64>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot is serving.
    Applied {
        /// Its generation.
        generation: u64,
    },
    /// The text is the one already serving; nothing changed.
    Unchanged,
}

/// Owns the snapshot pointer and every way of replacing it.
pub struct Reloader {
    path: PathBuf,
    state: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Serializes reloads (file watcher, signal and admin API may race).
    busy: Mutex<()>,
    last: Mutex<Option<Attempt>>,
    last_failure: Mutex<Option<Attempt>>,
}

impl Reloader {
    /// A reloader for the snapshot in `state`, which was loaded from `path`.
    pub fn new(path: PathBuf, state: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        metrics
            .config_generation
            .set(state.load().generation as i64);
        Reloader {
            path,
            state,
            metrics,
            busy: Mutex::new(()),
            last: Mutex::new(None),
            last_failure: Mutex::new(None),
        }
    }

    /// The config file being served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot pointer.
    pub fn state(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.state
    }

    /// The last attempt, successful or not.
    pub fn last_attempt(&self) -> Option<Attempt> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// The last failed attempt.
    pub fn last_failure(&self) -> Option<Attempt> {
        self.last_failure.lock().ok().and_then(|l| l.clone())
    }

    /// Re-reads the config file and applies it if its content changed and is not the text the
    /// last attempt rejected.
    pub fn reload_file(&self, trigger: &str) -> Result<Outcome, LoadError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(source) => {
                let err = LoadError::Io {
                    path: self.path.display().to_string(),
                    source,
                };
                self.record_failure(trigger, String::new(), &err, 0.0);
                return Err(err);
            }
        };
        // An edit ends in several events (a rename is reported as its two halves and as a
        // pair); a text rejected by the last attempt is not tried and reported again.
        let rejected = self
            .last_attempt()
            .is_some_and(|a| !a.errors.is_empty() && a.hash == hash_text(&text));
        if rejected {
            tracing::debug!(trigger, "configuration unchanged since it was rejected");
            return Ok(Outcome::Unchanged);
        }
        let source = self.path.display().to_string();
        self.apply_text(&text, &source, trigger, false)
    }

    /// Applies a configuration text. Unless `force`, a text identical to the running one is a
    /// no-op.
    pub fn apply_text(
        &self,
        text: &str,
        source: &str,
        trigger: &str,
        force: bool,
    ) -> Result<Outcome, LoadError> {
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let hash = hash_text(text);
        let current = self.state.load();
        if !force && current.hash == hash {
            tracing::debug!(trigger, "configuration unchanged");
            return Ok(Outcome::Unchanged);
        }
        let generation = current.generation + 1;
        drop(current);
        let (text, hash_of_text, source, state) = (
            Arc::<str>::from(text),
            hash.clone(),
            source.to_string(),
            self.state.clone(),
        );
        let (result, elapsed) = compiler::run(move || {
            let started = Instant::now();
            let result = snapshot::load_text(text, hash_of_text, &source, generation);
            let elapsed = started.elapsed();
            // The previous snapshot is freed here unless requests still hold it, on the
            // thread whose heap holds most of it; the thread keeps the freed pages for a while
            // for the next compile.
            let result = result.map(|snap| drop(state.swap(Arc::new(snap))));
            (result, elapsed)
        });
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.metrics.reload_duration.observe(elapsed.as_secs_f64());
        match result {
            Ok(()) => {
                self.metrics.config_generation.set(generation as i64);
                self.metrics.reloads.with_label_values(&["success"]).inc();
                let now = SystemTime::now();
                let unix = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.metrics.last_reload_success.set(unix as i64);
                tracing::info!(
                    trigger,
                    generation,
                    hash = %&hash[..12],
                    duration_ms = format!("{ms:.1}"),
                    "configuration applied"
                );
                if let Ok(mut last) = self.last.lock() {
                    *last = Some(Attempt {
                        at: now,
                        trigger: trigger.to_string(),
                        hash,
                        errors: Vec::new(),
                        duration_ms: ms,
                        generation: Some(generation),
                    });
                }
                Ok(Outcome::Applied { generation })
            }
            Err(err) => {
                self.record_failure(trigger, hash, &err, ms);
                Err(err)
            }
        }
    }

    fn record_failure(&self, trigger: &str, hash: String, err: &LoadError, ms: f64) {
        self.metrics.reloads.with_label_values(&["failure"]).inc();
        let errors: Vec<String> = match err {
            LoadError::Invalid(list) => list.0.iter().map(|e| e.to_string()).collect(),
            other => vec![other.to_string()],
        };
        tracing::error!(
            trigger,
            errors = errors.len(),
            "configuration rejected; the running configuration keeps serving"
        );
        for e in &errors {
            tracing::error!(trigger, "{e}");
        }
        let attempt = Attempt {
            at: SystemTime::now(),
            trigger: trigger.to_string(),
            hash,
            errors,
            duration_ms: ms,
            generation: None,
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(attempt.clone());
        }
        if let Ok(mut f) = self.last_failure.lock() {
            *f = Some(attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwap;

    use super::{Outcome, Reloader};
    use crate::metrics::Metrics;

    /// Regression: a rename is reported as several events, each reloading at once; an invalid
    /// text was tried, logged and counted once per event.
    #[test]
    fn a_rejected_file_is_not_tried_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kong.yaml");
        std::fs::write(&path, "_format_version: \"3.0\"\nservices: 7\n").unwrap();
        let state = Arc::new(ArcSwap::from_pointee(crate::snapshot::empty(1)));
        let metrics = Arc::new(Metrics::new());
        let reloader = Reloader::new(path.clone(), state, metrics.clone());
        assert!(reloader.reload_file("file change").is_err());
        assert_eq!(
            reloader.reload_file("file change").unwrap(),
            Outcome::Unchanged
        );
        let failures = metrics.reloads.with_label_values(&["failure"]).get();
        assert_eq!(failures, 1);
        std::fs::write(
            &path,
            "_format_version: \"3.0\"\nupstreams: [{name: kong}]\n",
        )
        .unwrap();
        assert_eq!(
            reloader.reload_file("file change").unwrap(),
            Outcome::Applied { generation: 2 }
        );
    }
}
