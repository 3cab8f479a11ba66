//! Kong's per-route request metrics (`kong_http_requests_total`, the three latency histograms
//! and `kong_bandwidth_bytes`), stored compactly and exposed through the registry as one
//! collector, so the text exposition is the same as the prometheus crate's.
//!
//! The crate's labelled metrics cost 1–2 KiB per series (label pairs, a copy of the bucket
//! bounds, two histogram shards), about 7 KiB for a route that has served one request; with every
//! route of a 10,000-route config used that was ~70 MiB of the process. Here a series is its label
//! values and plain atomics, and a route's three latency histograms share one key: under 1 KiB
//! per route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use super::family::{exposed, Family};
use super::histogram::Histogram;

/// Kong's metrics carry the workspace; DB-less Kong has one.
const WORKSPACE: (&str, &str) = ("workspace", "default");

/// The latency histograms of one service and route.
#[derive(Default)]
pub struct Latency {
    /// `kong_request_latency_ms`
    pub request: Histogram,
    /// `kong_upstream_latency_ms`
    pub upstream: Histogram,
    /// `kong_kong_latency_ms`
    pub kong: Histogram,
}

/// `kong_bandwidth_bytes` of one service, route and consumer.
#[derive(Default)]
pub struct Bandwidth {
    /// Request bytes read.
    pub ingress: AtomicU64,
    /// Response bytes sent.
    pub egress: AtomicU64,
}

/// Kong's request metrics of every route.
pub struct RequestMetrics {
    descs: Vec<Desc>,
    requests: Family<AtomicU64>,
    latency: Family<Latency>,
    bandwidth: Family<Bandwidth>,
}

const REQUESTS: (&str, &str) = (
    "kong_http_requests_total",
    "HTTP status codes per consumer/service/route in Kong",
);
const LATENCY: [(&str, &str); 3] = [
    (
        "kong_request_latency_ms",
        "Total latency incurred during requests for each service/route in Kong",
    ),
    (
        "kong_upstream_latency_ms",
        "Latency added by upstream response for each service/route in Kong",
    ),
    (
        "kong_kong_latency_ms",
        "Latency added by Kong and enabled plugins for each service/route in Kong",
    ),
];
const BANDWIDTH: (&str, &str) = (
    "kong_bandwidth_bytes",
    "Total bandwidth (ingress/egress) throughput in bytes",
);

impl RequestMetrics {
    /// Empty families.
    pub fn new() -> RequestMetrics {
        let requests = Family::new(&["service", "route", "code", "source", "consumer"]);
        let latency = Family::new(&["service", "route"]);
        let bandwidth = Family::new(&["service", "route", "consumer"]);
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            let labels = labels.iter().map(|l| l.to_string());
            let labels = labels.chain(["workspace".to_string()]).collect();
            Desc::new(name.into(), help.into(), labels, HashMap::new()).expect("valid metric")
        };
        let mut descs = vec![desc(REQUESTS, requests.labels)];
        descs.extend(LATENCY.map(|l| desc(l, latency.labels)));
        let mut labels = bandwidth.labels.to_vec();
        labels.push("direction");
        descs.push(desc(BANDWIDTH, &labels));
        RequestMetrics {
            descs,
            requests,
            latency,
            bandwidth,
        }
    }

    /// `kong_http_requests_total{service,route,code,source,consumer}`.
    pub fn requests(&self, labels: [&str; 5]) -> Arc<AtomicU64> {
        self.requests.get(&labels)
    }

    /// The latency histograms of `{service,route}`.
    pub fn latency(&self, labels: [&str; 2]) -> Arc<Latency> {
        self.latency.get(&labels)
    }

    /// `kong_bandwidth_bytes{service,route,consumer}`.
    pub fn bandwidth(&self, labels: [&str; 3]) -> Arc<Bandwidth> {
        self.bandwidth.get(&labels)
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(labels: Vec<LabelPair>, value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels);
    m.set_counter(c);
    m
}

/// The families are exposed through this handle (the registry takes ownership of a collector).
pub(super) struct Exposed(pub(super) Arc<RequestMetrics>);

impl Collector for Exposed {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = &self.0;
        let requests = m.requests.collect(&[WORKSPACE], |n, labels, out| {
            out.push(counter(labels, n.load(Relaxed)))
        });
        let mut out = vec![exposed(REQUESTS, MetricType::COUNTER, requests)];
        for (i, names) in LATENCY.into_iter().enumerate() {
            let metrics = m.latency.collect(&[WORKSPACE], |l, labels, out| {
                let h = [&l.request, &l.upstream, &l.kong][i];
                let mut metric = proto::Metric::from_label(labels);
                metric.set_histogram(h.proto());
                out.push(metric);
            });
            out.push(exposed(names, MetricType::HISTOGRAM, metrics));
        }
        let mut bandwidth = m
            .bandwidth
            .collect(&[WORKSPACE, ("direction", "ingress")], |b, labels, out| {
                out.push(counter(labels, b.ingress.load(Relaxed)))
            });
        bandwidth.extend(
            m.bandwidth
                .collect(&[WORKSPACE, ("direction", "egress")], |b, labels, out| {
                    out.push(counter(labels, b.egress.load(Relaxed)))
                }),
        );
        out.push(exposed(BANDWIDTH, MetricType::COUNTER, bandwidth));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_shared_by_labels_and_exposed_with_sorted_labels() {
        let m = Arc::new(RequestMetrics::new());
        m.latency(["svc", "r1"]).request.observe(3.0);
        m.latency(["svc", "r1"]).request.observe(4.0);
        m.requests(["svc", "r1", "200", "service", ""])
            .fetch_add(2, Relaxed);
        let b = m.bandwidth(["svc", "r1", "alice"]);
        b.ingress.fetch_add(10, Relaxed);
        b.egress.fetch_add(20, Relaxed);
        let registry = prometheus::Registry::new();
        registry.register(Box::new(Exposed(m))).unwrap();
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buf,
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        for line in [
            "kong_request_latency_ms_count{route=\"r1\",service=\"svc\",workspace=\"default\"} 2",
            "kong_request_latency_ms_bucket{route=\"r1\",service=\"svc\",workspace=\"default\",le=\"5\"} 2",
            "kong_request_latency_ms_sum{route=\"r1\",service=\"svc\",workspace=\"default\"} 7",
            "kong_upstream_latency_ms_count{route=\"r1\",service=\"svc\",workspace=\"default\"} 0",
            "kong_http_requests_total{code=\"200\",consumer=\"\",route=\"r1\",service=\"svc\",source=\"service\",workspace=\"default\"} 2",
            "kong_bandwidth_bytes{consumer=\"alice\",direction=\"egress\",route=\"r1\",service=\"svc\",workspace=\"default\"} 20",
            "kong_bandwidth_bytes{consumer=\"alice\",direction=\"ingress\",route=\"r1\",service=\"svc\",workspace=\"default\"} 10",
            "# TYPE kong_request_latency_ms histogram",
            "# TYPE kong_http_requests_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
