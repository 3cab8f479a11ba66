//! One upstream's load balancer within a snapshot: its targets and algorithm (Kong's
//! round-robin, consistent-hashing, least-connections, latency). Target health, in-flight
//! counts and latencies live in [`crate::balancer`] and survive reloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::balancer::health::Report;
use crate::balancer::ring::Ring;
use crate::balancer::{target_state, TargetState};
use crate::config::model::{Algorithm, Config, HashOn, Healthchecks};

/// One target of the upstream.
#[derive(Debug)]
pub struct BalancedTarget {
    /// Target id.
    pub id: String,
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight (0: no traffic).
    pub weight: u32,
    /// Shared runtime state (health, in-flight count, latency).
    pub state: Arc<TargetState>,
}

/// Where a health report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSource {
    /// A probe sent by the gateway.
    Active,
    /// Proxied traffic.
    Passive,
}

/// The targets of one upstream and how to choose between them.
#[derive(Debug)]
pub struct Balancer {
    /// Upstream name.
    pub name: String,
    /// Upstream id.
    pub id: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// What consistent-hashing hashes, and its fallback.
    pub hash_on: (HashOn, HashOn),
    /// Path of the cookie handed out for `hash_on: cookie`.
    pub cookie_path: String,
    /// Health check settings.
    pub checks: Healthchecks,
    /// `upstream.host_header`.
    pub host_header: Option<String>,
    /// All targets, weight 0 included (they never take traffic).
    pub targets: Vec<BalancedTarget>,
    /// Target indexes in smooth weighted round-robin order (nginx's algorithm), one cycle.
    wheel: Vec<u16>,
    cursor: AtomicUsize,
    ring: Option<Ring>,
}

impl Balancer {
    /// Builds the balancer of `config.upstreams[index]`.
    pub fn new(config: &Config, index: usize) -> Balancer {
        let u = &config.upstreams[index];
        let targets: Vec<BalancedTarget> = config
            .targets
            .iter()
            .filter(|t| t.upstream == index)
            .map(|t| BalancedTarget {
                id: t.id.clone(),
                host: t.host.clone(),
                port: t.port,
                weight: t.weight,
                state: target_state(&u.name, &t.host, t.port),
            })
            .collect();
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        let ring = (u.algorithm == Algorithm::ConsistentHashing).then(|| {
            let named: Vec<(String, u32)> = targets
                .iter()
                .map(|t| (format!("{}:{}", t.host, t.port), t.weight))
                .collect();
            Ring::new(u.slots, &named)
        });
        Balancer {
            name: u.name.clone(),
            id: u.id.clone(),
            algorithm: u.algorithm,
            hash_on: (u.hash_on.clone(), u.hash_fallback.clone()),
            cookie_path: u.hash_on_cookie_path.clone(),
            checks: u.healthchecks.clone(),
            host_header: u.host_header.clone(),
            wheel: wheel(&weights),
            cursor: AtomicUsize::new(0),
            ring,
            targets,
        }
    }

    /// Whether target `i` may take traffic: weight above 0 and healthy (or checks off).
    pub fn available(&self, i: usize) -> bool {
        let t = &self.targets[i];
        t.weight > 0 && (!self.checks.enabled() || t.state.health.is_healthy())
    }

    /// Total weight and the weight of available targets.
    pub fn weights(&self) -> (u64, u64) {
        let mut total = 0u64;
        let mut available = 0u64;
        for (i, t) in self.targets.iter().enumerate() {
            total += u64::from(t.weight);
            if self.available(i) {
                available += u64::from(t.weight);
            }
        }
        (total, available)
    }

    /// Kong's balancer health: the available share of the weight is above `threshold` %.
    pub fn is_healthy(&self) -> bool {
        let (total, available) = self.weights();
        total > 0 && available as f64 * 100.0 / total as f64 > self.checks.threshold
    }

    /// Chooses a target for a request: `hash` is the consistent-hashing value, `tried` the
    /// targets this request already failed on (avoided while another is available). None
    /// when no target is available (Kong's "failure to get a peer from the ring-balancer").
    pub fn pick(&self, hash: &str, tried: &[usize]) -> Option<usize> {
        if !self.is_healthy() {
            return None;
        }
        let fresh = |i: usize| self.available(i) && !tried.contains(&i);
        let choose = |ok: &dyn Fn(usize) -> bool| match self.algorithm {
            Algorithm::RoundRobin => self.round_robin(ok),
            Algorithm::ConsistentHashing => self.ring.as_ref().and_then(|r| r.find(hash, ok)),
            Algorithm::LeastConnections => self.least(ok, |t| f64::from(t.state.inflight() + 1)),
            Algorithm::Latency => self.least_latency(ok),
        };
        choose(&fresh).or_else(|| choose(&|i| self.available(i)))
    }

    fn round_robin(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.wheel.len();
        (0..n)
            .map(|_| usize::from(self.wheel[self.cursor.fetch_add(1, Ordering::Relaxed) % n]))
            .find(|&i| ok(i))
    }

    /// The usable target with the lowest `cost / weight`; ties go round in turn.
    fn least(
        &self,
        ok: &dyn Fn(usize) -> bool,
        cost: impl Fn(&BalancedTarget) -> f64,
    ) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(f64, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !ok(i) {
                continue;
            }
            let t = &self.targets[i];
            let score = cost(t) / f64::from(t.weight);
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Lowest response-time average per weight; a target without samples counts as the
    /// average of the others (Kong's slow start).
    fn least_latency(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let now = Instant::now();
        let known: Vec<f64> = self
            .targets
            .iter()
            .filter_map(|t| t.state.latency_ms(now))
            .collect();
        let start = if known.is_empty() {
            0.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        self.least(ok, |t| t.state.latency_ms(now).unwrap_or(start))
    }

    /// Counts a health observation on target `i` (ignored while health checks are off).
    pub fn report(&self, i: usize, source: CheckSource, report: Report) {
        if !self.checks.enabled() {
            return;
        }
        let t = &self.targets[i];
        let (healthy, unhealthy) = match source {
            CheckSource::Active => (&self.checks.active.healthy, &self.checks.active.unhealthy),
            CheckSource::Passive => (&self.checks.passive.healthy, &self.checks.passive.unhealthy),
        };
        if let Some(now) = t.state.health.report(report, healthy, unhealthy) {
            let health = if now { "healthy" } else { "unhealthy" };
            let source = if source == CheckSource::Active {
                "active"
            } else {
                "passive"
            };
            tracing::warn!(upstream = %self.name, target = %format!("{}:{}", t.host, t.port), source, ?report, "target is now {health}");
        }
    }

    /// Reports a proxied response's status (passive checks).
    pub fn report_status(&self, i: usize, source: CheckSource, status: u16) {
        let (healthy, unhealthy) = match source {
            CheckSource::Active => (&self.checks.active.healthy, &self.checks.active.unhealthy),
            CheckSource::Passive => (&self.checks.passive.healthy, &self.checks.passive.unhealthy),
        };
        if let Some(r) = Report::from_status(status, healthy, unhealthy) {
            self.report(i, source, r);
        }
    }
}

/// One cycle of smooth weighted round-robin: weights are reduced by their gcd, and each step
/// picks the target with the highest running score, so picks interleave in proportion.
/// Targets of weight 0 never appear.
fn wheel(weights: &[u32]) -> Vec<u16> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<i64> = weights.iter().map(|w| i64::from(w / g)).collect();
    let total: i64 = reduced.iter().sum();
    let mut score = vec![0i64; reduced.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (s, w) in score.iter_mut().zip(&reduced) {
            *s += w;
        }
        let Some(best) = (0..score.len()).max_by_key(|&i| (score[i], std::cmp::Reverse(i))) else {
            break;
        };
        score[best] -= total;
        out.push(best as u16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wheel;

    #[test]
    fn interleaves_by_weight() {
        assert_eq!(wheel(&[100, 100]), vec![0, 1]);
        let w = wheel(&[3, 1]);
        assert_eq!(w.len(), 4);
        assert_eq!(w.iter().filter(|&&i| i == 0).count(), 3);
        assert!(wheel(&[]).is_empty());
        assert_eq!(wheel(&[0, 5]), vec![1]);
    }
}
