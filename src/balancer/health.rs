//! The health of one target, as Kong's healthchecker keeps it: four small counters (successes,
//! HTTP failures, TCP failures, timeouts) and a state that moves between healthy and unhealthy
//! when a counter reaches its configured limit. A success clears the failure counters and a
//! failure clears the success counter; a limit of 0 disables that counter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::model::{HealthyRule, UnhealthyRule};

/// One observation about a target (from a probe or from proxied traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A healthy HTTP status, or a TCP probe that connected.
    Success,
    /// An unhealthy HTTP status (or an unreadable status line).
    HttpFailure,
    /// Connection refused, reset or closed.
    TcpFailure,
    /// Connect, read or write timed out.
    Timeout,
}

impl Report {
    /// Classifies an HTTP status with the `healthy`/`unhealthy` status lists; None when the
    /// status is in neither (it is ignored, as in Kong).
    pub fn from_status(
        status: u16,
        healthy: &HealthyRule,
        unhealthy: &UnhealthyRule,
    ) -> Option<Report> {
        if healthy.http_statuses.contains(&status) {
            Some(Report::Success)
        } else if status == 0 || unhealthy.http_statuses.contains(&status) {
            Some(Report::HttpFailure)
        } else {
            None
        }
    }
}

/// Kong's internal states: "mostly" states are on their way to flipping, and still count as
/// their side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Healthy,
    MostlyHealthy,
    MostlyUnhealthy,
    Unhealthy,
}

#[derive(Debug)]
struct Counters {
    state: State,
    success: u8,
    http: u8,
    tcp: u8,
    timeout: u8,
}

/// Health of one target: shared by every worker and kept across reloads.
#[derive(Debug)]
pub struct Health {
    /// Fast path for the balancer: whether the target takes traffic.
    healthy: AtomicBool,
    counters: Mutex<Counters>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            counters: Mutex::new(Counters {
                state: State::Healthy,
                success: 0,
                http: 0,
                tcp: 0,
                timeout: 0,
            }),
        }
    }
}

impl Health {
    /// Whether the target is healthy (or mostly healthy).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Counts `report` against the limits of `healthy`/`unhealthy`; returns `Some(new health)`
    /// when the target flipped.
    pub fn report(
        &self,
        report: Report,
        healthy: &HealthyRule,
        unhealthy: &UnhealthyRule,
    ) -> Option<bool> {
        let limit = match report {
            Report::Success => healthy.successes,
            Report::HttpFailure => unhealthy.http_failures,
            Report::TcpFailure => unhealthy.tcp_failures,
            Report::Timeout => unhealthy.timeouts,
        };
        if limit == 0 {
            return None;
        }
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let success = report == Report::Success;
        // Successes are not counted on a fully healthy target, nor failures on a fully
        // unhealthy one.
        if (success && c.state == State::Healthy) || (!success && c.state == State::Unhealthy) {
            return None;
        }
        let count = if success {
            (c.http, c.tcp, c.timeout) = (0, 0, 0);
            c.success = c.success.saturating_add(1);
            c.success
        } else {
            c.success = 0;
            let n = match report {
                Report::HttpFailure => &mut c.http,
                Report::TcpFailure => &mut c.tcp,
                _ => &mut c.timeout,
            };
            *n = n.saturating_add(1);
            *n
        };
        let before = c.state;
        c.state = if count >= limit {
            if success {
                State::Healthy
            } else {
                State::Unhealthy
            }
        } else {
            match before {
                State::Healthy if !success => State::MostlyHealthy,
                State::Unhealthy if success => State::MostlyUnhealthy,
                s => s,
            }
        };
        let now = matches!(c.state, State::Healthy | State::MostlyHealthy);
        let was = self.healthy.swap(now, Ordering::Relaxed);
        (was != now).then_some(now)
    }

    /// Sets the state outright and clears the counters.
    pub fn set(&self, healthy: bool) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c = Counters {
            state: if healthy {
                State::Healthy
            } else {
                State::Unhealthy
            },
            success: 0,
            http: 0,
            tcp: 0,
            timeout: 0,
        };
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(successes: u8, failures: u8) -> (HealthyRule, UnhealthyRule) {
        (
            HealthyRule {
                interval: 0.0,
                http_statuses: vec![200],
                successes,
            },
            UnhealthyRule {
                interval: 0.0,
                http_statuses: vec![500],
                tcp_failures: failures,
                timeouts: failures,
                http_failures: failures,
            },
        )
    }

    #[test]
    fn flips_at_the_limits_and_successes_reset_failures() {
        let (h, u) = rules(2, 3);
        let health = Health::default();
        assert_eq!(health.report(Report::TcpFailure, &h, &u), None);
        assert_eq!(health.report(Report::TcpFailure, &h, &u), None);
        // A success in between clears the failures.
        assert_eq!(health.report(Report::Success, &h, &u), None);
        assert_eq!(health.report(Report::TcpFailure, &h, &u), None);
        assert_eq!(health.report(Report::TcpFailure, &h, &u), None);
        assert_eq!(health.report(Report::TcpFailure, &h, &u), Some(false));
        assert!(!health.is_healthy());
        assert_eq!(health.report(Report::Success, &h, &u), None);
        assert_eq!(health.report(Report::Success, &h, &u), Some(true));
        assert!(health.is_healthy());
    }

    #[test]
    fn a_zero_limit_disables_the_counter() {
        let (h, u) = rules(0, 0);
        let health = Health::default();
        for _ in 0..300 {
            assert_eq!(health.report(Report::Timeout, &h, &u), None);
        }
        assert!(health.is_healthy());
        assert_eq!(Report::from_status(500, &h, &u), Some(Report::HttpFailure));
        assert_eq!(Report::from_status(404, &h, &u), None);
    }
}
