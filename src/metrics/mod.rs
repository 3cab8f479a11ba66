//! Prometheus metrics. Request metrics use the names and labels of Kong's prometheus plugin so
//! existing dashboards work; the gateway's own metrics are prefixed `sluice_`.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

mod family;
pub mod histogram;
pub mod local;
pub mod plugins;
pub mod requests;

pub use plugins::PluginLatency;
pub use requests::RequestMetrics;

/// Kong's default latency buckets (milliseconds).
const LATENCY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0,
    2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    /// Kong's request metrics per route: `kong_http_requests_total`, `kong_*_latency_ms`,
    /// `kong_bandwidth_bytes`.
    pub requests: Arc<RequestMetrics>,
    /// `sluice_config_generation`
    pub config_generation: IntGauge,
    /// `sluice_config_reloads_total{result}` (result: success, failure)
    pub reloads: IntCounterVec,
    /// `sluice_config_reload_duration_seconds`
    pub reload_duration: Histogram,
    /// `sluice_config_last_reload_success_timestamp_seconds`
    pub last_reload_success: IntGauge,
    /// `sluice_plugin_phase_latency_ms{plugin,phase}`
    pub plugin_latency: Arc<PluginLatency>,
    /// `sluice_plugin_errors_total{plugin,phase}`
    pub plugin_errors: IntCounterVec,
    /// `sluice_lua_memory_bytes` (all workers' VMs)
    pub lua_memory: IntGauge,
    /// `sluice_admin_requests_total`
    pub admin_requests: IntCounter,
    /// `sluice_lua_socket_connections_total{result}` (connected, reused, failed, denied)
    pub lua_socket_connections: IntCounterVec,
    /// `sluice_lua_socket_bytes_total{direction}` (sent, received)
    pub lua_socket_bytes: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let requests = Arc::new(RequestMetrics::new());
        registry
            .register(Box::new(requests::Exposed(requests.clone())))
            .expect("unique metric");
        let plugin_latency = Arc::new(PluginLatency::new());
        registry
            .register(Box::new(plugins::Exposed(plugin_latency.clone())))
            .expect("unique metric");
        let reload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_config_reload_duration_seconds",
                "Time to parse, validate and compile a configuration",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid histogram");
        registry
            .register(Box::new(reload_duration.clone()))
            .expect("unique metric");
        let admin_requests = IntCounter::new("sluice_admin_requests_total", "Admin API requests")
            .expect("valid counter");
        registry
            .register(Box::new(admin_requests.clone()))
            .expect("unique metric");
        Metrics {
            requests,
            config_generation: gauge(
                "sluice_config_generation",
                "Generation of the configuration being served",
            ),
            reloads: counter(
                "sluice_config_reloads_total",
                "Configuration reloads by result",
                &["result"],
            ),
            reload_duration,
            last_reload_success: gauge(
                "sluice_config_last_reload_success_timestamp_seconds",
                "Unix time of the last configuration applied",
            ),
            plugin_latency,
            plugin_errors: counter(
                "sluice_plugin_errors_total",
                "Plugin phase failures (the request got a 500)",
                &["plugin", "phase"],
            ),
            lua_memory: gauge("sluice_lua_memory_bytes", "Memory used by the Lua VMs"),
            lua_socket_connections: counter(
                "sluice_lua_socket_connections_total",
                "Connections plugin sockets made, by result (connected, reused from the keepalive pool, failed, denied by --lua-socket-allow)",
                &["result"],
            ),
            lua_socket_bytes: counter(
                "sluice_lua_socket_bytes_total",
                "Bytes plugin sockets sent and received",
                &["direction"],
            ),
            admin_requests,
            registry,
        }
        .with_redis()
    }

    /// Registers the Redis client's metrics (process-wide: they count every worker's commands).
    fn with_redis(self) -> Metrics {
        use crate::plugins::native::redis::{LATENCY, OPERATIONS};
        self.registry
            .register(Box::new(OPERATIONS.clone()))
            .expect("unique metric");
        self.registry
            .register(Box::new(LATENCY.clone()))
            .expect("unique metric");
        self
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // Figures counted outside the registry, brought up to date.
        let (connections, bytes) = crate::plugins::lua::io::egress::totals();
        for (vec, counts) in [
            (&self.lua_socket_connections, &connections[..]),
            (&self.lua_socket_bytes, &bytes[..]),
        ] {
            for (label, total) in counts {
                let c = vec.with_label_values(&[label]);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Process-wide connection and request counts, the figures of nginx's stub_status
/// (`kong.nginx.get_statistics`). Counted per worker ([`super::local`]): every request counts
/// twice, and one cache line shared by all workers moved between cores at each.
pub mod connections {
    use std::sync::LazyLock;

    use super::local::Counters;

    const ACCEPTED: usize = 0;
    const HANDLED: usize = 1;
    const ACTIVE: usize = 2;
    const IN_FLIGHT: usize = 3;
    const REQUESTS: usize = 4;

    static COUNTS: LazyLock<Counters<5>> = LazyLock::new(Counters::default);

    /// A connection was accepted; `handled` when it is served (not refused by a cap).
    pub fn accepted(handled: bool) {
        COUNTS.add(ACCEPTED, 1);
        if handled {
            COUNTS.add(HANDLED, 1);
            COUNTS.add(ACTIVE, 1);
        }
    }

    /// A handled connection closed.
    pub fn closed() {
        COUNTS.add(ACTIVE, -1);
    }

    /// A request started (`true`) or finished (`false`).
    pub fn request(started: bool) {
        if started {
            COUNTS.add(REQUESTS, 1);
            COUNTS.add(IN_FLIGHT, 1);
        } else {
            COUNTS.add(IN_FLIGHT, -1);
        }
    }

    /// `[active, reading, writing, waiting, accepted, handled, total_requests]`, as nginx
    /// counts them (reading: 0, a request header is read before it counts here).
    pub fn snapshot() -> [u64; 7] {
        let active = COUNTS.level(ACTIVE);
        let writing = COUNTS.level(IN_FLIGHT);
        [
            active,
            0,
            writing,
            active.saturating_sub(writing),
            COUNTS.sum(ACCEPTED),
            COUNTS.sum(HANDLED),
            COUNTS.sum(REQUESTS),
        ]
    }
}
