//! What load balancing keeps beyond one configuration snapshot: per target health, in-flight
//! request counts (least-connections) and response-time averages (latency), in a process-wide
//! registry keyed by (upstream name, target host, port). Snapshots hold `Arc`s to these
//! states, so a reload that keeps a target keeps its state, and a target dropped by every live
//! snapshot is freed. The per-snapshot part (algorithms over a fixed target list) is
//! [`crate::snapshot::Balancer`].

pub mod hash;
pub mod health;
pub mod probe;
pub mod ring;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use health::Health;

/// Kong's latency decay time: a sample's weight halves in about 7 s.
const DECAY: f64 = 10.0;

/// Runtime state of one target.
#[derive(Debug, Default)]
pub struct TargetState {
    /// Health from active and passive checks.
    pub health: Health,
    inflight: AtomicU32,
    /// Exponentially weighted response time (ms) and when it was last updated.
    ewma: Mutex<Option<(f64, Instant)>>,
    /// When the last active probe started.
    last_probe: Mutex<Option<Instant>>,
    /// An active probe is running.
    probing: AtomicBool,
}

impl TargetState {
    /// Requests being proxied to this target now (all workers).
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Records a response time (connect + time to the response header).
    pub fn record_latency(&self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let now = Instant::now();
        let mut e = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        *e = Some(match *e {
            None => (ms, now),
            Some((avg, at)) => (decayed(avg, at, now, ms), now),
        });
    }

    /// The response-time average as of now, decayed towards 0 while the target is idle; None
    /// before the first sample.
    pub fn latency_ms(&self, now: Instant) -> Option<f64> {
        let e = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        e.map(|(avg, at)| decayed(avg, at, now, 0.0))
    }

    /// Whether an active probe is due given `interval` (seconds); marks it started if so.
    /// The first probe of a target comes one interval after it is first seen, as in Kong.
    pub(crate) fn probe_due(&self, interval: f64, now: Instant) -> bool {
        if interval <= 0.0 || self.probing.load(Ordering::Relaxed) {
            return false;
        }
        let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at).as_secs_f64() < interval => false,
            None => {
                *last = Some(now);
                false
            }
            Some(_) => {
                *last = Some(now);
                self.probing.store(true, Ordering::Relaxed);
                true
            }
        }
    }

    /// Marks the running probe finished.
    pub(crate) fn probe_done(&self) {
        self.probing.store(false, Ordering::Relaxed);
    }
}

fn decayed(avg: f64, at: Instant, now: Instant, sample: f64) -> f64 {
    let w = (-now.saturating_duration_since(at).as_secs_f64() / DECAY).exp();
    avg * w + sample * (1.0 - w)
}

/// Counts one request in flight on a target until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<TargetState>);

impl InFlight {
    /// Starts counting a request on `state`.
    pub fn new(state: Arc<TargetState>) -> Self {
        state.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

type Key = (String, String, u16);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Weak<TargetState>>>> = LazyLock::new(Mutex::default);

/// The state of target `host:port` of upstream `upstream`: the live one if a snapshot still
/// holds it, else a fresh (healthy) one.
pub fn target_state(upstream: &str, host: &str, port: u16) -> Arc<TargetState> {
    let mut map = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let key = (upstream.to_string(), host.to_string(), port);
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return live;
    }
    // Forget states no snapshot holds any more (a few targets per reload: cheap).
    map.retain(|_, w| w.strong_count() > 0);
    let fresh = Arc::new(TargetState::default());
    map.insert(key, Arc::downgrade(&fresh));
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_shared_while_held() {
        let a = target_state("registry-test", "h", 1);
        a.health.set(false);
        let b = target_state("registry-test", "h", 1);
        assert!(!b.health.is_healthy());
        drop((a, b));
        assert!(target_state("registry-test", "h", 1).health.is_healthy());
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let s = Arc::new(TargetState::default());
        let g = InFlight::new(s.clone());
        assert_eq!(s.inflight(), 1);
        drop(g);
        assert_eq!(s.inflight(), 0);
    }

    #[test]
    fn latency_average_moves_towards_samples() {
        let s = TargetState::default();
        assert!(s.latency_ms(Instant::now()).is_none());
        s.record_latency(Duration::from_millis(100));
        let v = s.latency_ms(Instant::now()).unwrap();
        assert!(v > 90.0 && v <= 100.0, "{v}");
    }
}
