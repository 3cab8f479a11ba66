//! Target health as Kong's admin API shows it (`GET /upstreams/{name or id}/health`).
//! Targets are not resolved per address here: each shows one address, itself.

use serde_json::{json, Value};

use crate::snapshot::Balancer;

fn health_word(b: &Balancer, i: usize) -> &'static str {
    if !b.checks.enabled() || b.targets[i].weight == 0 {
        "HEALTHCHECKS_OFF"
    } else if b.targets[i].state.health.is_healthy() {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    }
}

fn target_status(b: &Balancer, i: usize) -> Value {
    let t = &b.targets[i];
    let unavailable = if b.available(i) { 0 } else { t.weight };
    json!({
        "host": t.host,
        "port": t.port,
        "dns": if t.host.parse::<std::net::IpAddr>().is_ok() { "A" } else { "name" },
        "nodeWeight": t.weight,
        "weight": { "total": t.weight, "available": t.weight - unavailable, "unavailable": unavailable },
        "addresses": [{
            "ip": t.host,
            "port": t.port,
            "weight": t.weight,
            "health": health_word(b, i),
        }],
    })
}

/// `data` of `GET /upstreams/{u}/health`: one entry per target.
pub fn targets(b: &Balancer) -> Value {
    Value::Array(
        (0..b.targets.len())
            .map(|i| {
                let t = &b.targets[i];
                json!({
                    "id": t.id,
                    "target": format!("{}:{}", t.host, t.port),
                    "upstream": { "id": b.id },
                    "weight": t.weight,
                    "health": health_word(b, i),
                    "data": target_status(b, i),
                })
            })
            .collect(),
    )
}

/// `data` of `GET /upstreams/{u}/health?balancer_health=1`.
pub fn balancer(b: &Balancer) -> Value {
    let (total, available) = b.weights();
    let healthy = b.is_healthy();
    let word = if healthy { "HEALTHY" } else { "UNHEALTHY" };
    json!({
        "id": b.id,
        "health": if b.checks.enabled() { word } else { "HEALTHCHECKS_OFF" },
        "balancer_health": word,
        "details": {
            "healthy": healthy,
            "weight": { "total": total, "available": available, "unavailable": total - available },
            "hosts": (0..b.targets.len()).map(|i| target_status(b, i)).collect::<Vec<_>>(),
        },
    })
}

/// The body of `GET /upstreams/{key}/health` (`key`: name or id), or None when there is no
/// such upstream. `whole`: `?balancer_health=1` (the upstream's own health).
pub fn health(
    snap: &crate::snapshot::Snapshot,
    key: &str,
    whole: bool,
    node_id: &str,
) -> Option<Value> {
    let b = snap
        .balancers
        .iter()
        .find(|b| b.name == key || b.id == key)?;
    let data = if whole { balancer(b) } else { targets(b) };
    Some(json!({ "data": data, "next": null, "node_id": node_id }))
}
