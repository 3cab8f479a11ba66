//! Weighted round-robin over an upstream's targets (Kong's default algorithm).
//! Health checks and the other algorithms are not implemented yet: every target with a
//! weight above zero takes traffic.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::model::Config;

/// The targets of one upstream and a rotating cursor.
#[derive(Debug)]
pub struct Balancer {
    /// Upstream name.
    pub name: String,
    /// `(host, port)` of targets with weight > 0.
    targets: Vec<(String, u16)>,
    /// Target indexes in smooth weighted round-robin order (nginx's algorithm), one cycle.
    wheel: Vec<u16>,
    cursor: AtomicUsize,
}

impl Balancer {
    /// Builds the balancer of `config.upstreams[index]`.
    pub fn new(config: &Config, index: usize) -> Balancer {
        let targets: Vec<(String, u16, u32)> = config
            .targets
            .iter()
            .filter(|t| t.upstream == index && t.weight > 0)
            .map(|t| (t.host.clone(), t.port, t.weight))
            .collect();
        let wheel = wheel(&targets.iter().map(|t| t.2).collect::<Vec<_>>());
        Balancer {
            name: config.upstreams[index].name.clone(),
            targets: targets.into_iter().map(|(h, p, _)| (h, p)).collect(),
            wheel,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next target, or None when the upstream has no usable target.
    pub fn next(&self) -> Option<(&str, u16)> {
        if self.wheel.is_empty() {
            return None;
        }
        let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.wheel.len();
        let (host, port) = &self.targets[usize::from(self.wheel[slot])];
        Some((host, *port))
    }
}

/// One cycle of smooth weighted round-robin: weights are reduced by their gcd, and each step
/// picks the target with the highest running score, so picks interleave in proportion.
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
    }
}
