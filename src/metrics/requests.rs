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
use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use super::LATENCY_BUCKETS;

/// One latency histogram: observations per bucket (the last past every bound) and their sum.
/// The count is the buckets' total, so a scrape never sees a count that disagrees with them.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// Records one observation (milliseconds).
    pub fn observe(&self, v: f64) {
        let i = LATENCY_BUCKETS.partition_point(|bound| *bound < v);
        self.buckets[i].fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Relaxed);
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = proto::Histogram::default();
        h.set_sample_count(cumulative + self.buckets[LATENCY_BUCKETS.len()].load(Relaxed));
        h.set_sample_sum(f64::from_bits(self.sum.load(Relaxed)));
        h.set_bucket(buckets);
        h
    }
}

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

/// A series' label values, in its family's label order.
type Values = Box<[Box<str>]>;

/// Series by label values. Series live as long as the process,
/// as the crate's did: a counter must not restart while Prometheus scrapes it.
struct Family<T> {
    labels: &'static [&'static str],
    series: RwLock<HashMap<Values, Arc<T>>>,
}

impl<T: Default> Family<T> {
    fn new(labels: &'static [&'static str]) -> Self {
        Family {
            labels,
            series: RwLock::default(),
        }
    }

    fn get(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        let key: Values = values.iter().map(|v| Box::from(*v)).collect();
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_default().clone()
    }

    /// One metric per series, made by `fill` from the series and its label pairs (the
    /// family's labels, `workspace` and `extra`, sorted by name as the crate sorts them).
    fn collect(
        &self,
        extra: &[(&str, &str)],
        mut fill: impl FnMut(&T, Vec<LabelPair>, &mut Vec<proto::Metric>),
    ) -> Vec<proto::Metric> {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(series.len());
        for (values, s) in series.iter() {
            let mut pairs: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(|v| &**v))
                .chain([("workspace", "default")])
                .chain(extra.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|(name, _)| *name);
            let pairs = pairs
                .into_iter()
                .map(|(name, value)| {
                    let mut p = LabelPair::default();
                    p.set_name(name.to_string());
                    p.set_value(value.to_string());
                    p
                })
                .collect();
            fill(s, pairs, &mut out);
        }
        out
    }
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

fn family(
    (name, help): (&str, &str),
    kind: MetricType,
    metrics: Vec<proto::Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
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
        let requests = m.requests.collect(&[], |n, labels, out| {
            out.push(counter(labels, n.load(Relaxed)))
        });
        let mut out = vec![family(REQUESTS, MetricType::COUNTER, requests)];
        for (i, names) in LATENCY.into_iter().enumerate() {
            let metrics = m.latency.collect(&[], |l, labels, out| {
                let h = [&l.request, &l.upstream, &l.kong][i];
                let mut metric = proto::Metric::from_label(labels);
                metric.set_histogram(h.proto());
                out.push(metric);
            });
            out.push(family(names, MetricType::HISTOGRAM, metrics));
        }
        let mut bandwidth = m
            .bandwidth
            .collect(&[("direction", "ingress")], |b, labels, out| {
                out.push(counter(labels, b.ingress.load(Relaxed)))
            });
        bandwidth.extend(
            m.bandwidth
                .collect(&[("direction", "egress")], |b, labels, out| {
                    out.push(counter(labels, b.egress.load(Relaxed)))
                }),
        );
        out.push(family(BANDWIDTH, MetricType::COUNTER, bandwidth));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::default();
        for v in [0.5, 1.0, 1.5, 7.0, 99_999.0] {
            h.observe(v);
        }
        let p = h.proto();
        let counts: Vec<u64> = p
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        // ≤ 1: 0.5 and 1.0; ≤ 2: +1.5; ≤ 7: +7.0; past 60000: only in the count.
        assert_eq!(&counts[..4], &[2, 3, 3, 4]);
        assert_eq!(*counts.last().unwrap(), 4);
        assert_eq!(p.get_sample_count(), 5);
        assert_eq!(h.count(), 5);
        assert_eq!(p.get_sample_sum(), 0.5 + 1.0 + 1.5 + 7.0 + 99_999.0);
    }

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
