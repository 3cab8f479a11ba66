//! Kong's prometheus-plugin request metrics, recorded after each request. Metric handles are
//! cached per worker thread and snapshot generation: `with_label_values` hashes the labels and
//! takes a lock on every call, which showed up in profiles with many routes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use pingora::proxy::Session;

use super::{Ctx, Gateway};
use crate::metrics::requests::{Bandwidth, Latency};
use crate::plugins::MetricFlags;

/// The handles of one route (and consumer), each family created when first recorded (a series
/// that exists is exported, even at zero).
#[derive(Default)]
struct RouteHandles {
    /// Request, upstream and Kong latency.
    latency: Option<Arc<Latency>>,
    /// Ingress and egress bytes.
    bandwidth: Option<Arc<Bandwidth>>,
    /// Request counters by status and response source: a few per route.
    requests: Vec<(u16, &'static str, Arc<AtomicU64>)>,
}

/// Route and consumer indexes.
type RouteKey = (Option<usize>, Option<usize>);

/// The handles of one snapshot generation. Requests without a consumer find theirs by route
/// index, in one dense vector (with 10,000 routes, a hash map's probe and the key's hashing were
/// cache misses and instructions on every request); those with one, by route and consumer.
#[derive(Default)]
struct Cache {
    generation: u64,
    /// Slot 0: no route; slot `r + 1`: route `r`.
    routes: Vec<RouteHandles>,
    consumers: HashMap<RouteKey, RouteHandles>,
}

/// Route and consumer pairs kept at most per thread (labels of a config with very
/// many routes and consumers); past it the cache starts again.
const MAX_ENTRIES: usize = 100_000;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

impl Cache {
    /// The handles of `route` and `consumer` in the generation of a snapshot with `routes` routes.
    fn handles(&mut self, generation: u64, routes: usize, key: RouteKey) -> &mut RouteHandles {
        if self.generation != generation || self.consumers.len() > MAX_ENTRIES {
            *self = Cache {
                generation,
                ..Cache::default()
            };
        }
        match key {
            (route, None) => {
                let slot = route.map_or(0, |r| r + 1);
                if self.routes.len() <= slot {
                    // Grown as routes are used (doubling), up to the snapshot's count.
                    let len = (2 * self.routes.len()).clamp(slot + 1, (routes + 1).max(slot + 1));
                    self.routes.resize_with(len, RouteHandles::default);
                }
                &mut self.routes[slot]
            }
            _ => self.consumers.entry(key).or_default(),
        }
    }
}

impl Gateway {
    /// Records one finished request.
    pub(super) fn record_metrics(&self, session: &Session, ctx: &Ctx, status: u16) {
        let snap = &ctx.snap;
        let flags = match (snap.prometheus, ctx.state.metrics) {
            (false, _) => MetricFlags::ALL,
            (true, Some(flags)) => flags,
            (true, None) => return,
        };
        let route = ctx.state.route;
        let consumer = ctx.state.consumer.filter(|_| flags.per_consumer);
        let labels = || {
            let r = route.map(|r| &snap.config.routes[r]);
            let route_name = r.map_or(String::new(), |r| {
                r.name.clone().unwrap_or_else(|| r.id.clone())
            });
            let service_name = r.and_then(|r| r.service).map_or(String::new(), |s| {
                let s = &snap.services[s];
                s.name.clone().unwrap_or_else(|| s.id.clone())
            });
            let consumer_name = consumer.map_or(String::new(), |c| {
                let c = &snap.config.consumers[c];
                c.username.clone().unwrap_or_else(|| c.id.clone())
            });
            (service_name, route_name, consumer_name)
        };
        let m = &self.metrics;
        let total = ctx.started.elapsed().as_secs_f64() * 1000.0;
        let upstream = ctx.upstream_latency.map(|d| d.as_secs_f64() * 1000.0);
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let h = cache.handles(snap.generation, snap.config.routes.len(), (route, consumer));
            if flags.status_codes {
                let source = ctx.state.source;
                let found = h
                    .requests
                    .iter()
                    .position(|(code, src, _)| *code == status && *src == source);
                let i = found.unwrap_or_else(|| {
                    let (service, route_name, consumer_name) = labels();
                    let code = status.to_string();
                    let counter = m.requests.requests([
                        service.as_str(),
                        route_name.as_str(),
                        code.as_str(),
                        source,
                        consumer_name.as_str(),
                    ]);
                    h.requests.push((status, source, counter));
                    h.requests.len() - 1
                });
                h.requests[i].2.fetch_add(1, Relaxed);
            }
            if !flags.latency && !flags.bandwidth {
                return;
            }
            if flags.latency {
                let l = h.latency.get_or_insert_with(|| {
                    let (service, route_name, _) = labels();
                    m.requests.latency([service.as_str(), route_name.as_str()])
                });
                l.request.observe(total);
                match upstream {
                    Some(up) => {
                        l.upstream.observe(up);
                        l.kong.observe((total - up).max(0.0));
                    }
                    None => l.kong.observe(total),
                }
            }
            if flags.bandwidth {
                let b = h.bandwidth.get_or_insert_with(|| {
                    let (service, route_name, consumer_name) = labels();
                    m.requests.bandwidth([
                        service.as_str(),
                        route_name.as_str(),
                        consumer_name.as_str(),
                    ])
                });
                b.ingress
                    .fetch_add(session.body_bytes_read() as u64, Relaxed);
                b.egress
                    .fetch_add(session.body_bytes_sent() as u64, Relaxed);
            }
        });
    }
}

impl Gateway {
    /// Fills in what log-phase plugins report about the finished exchange.
    pub(super) fn fill_log_data(&self, session: &Session, ctx: &mut Ctx) {
        let down = session.as_downstream();
        let log = &mut ctx.state.log;
        if let Some(resp) = down.response_written() {
            log.response_headers = resp
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_string(), v)
                })
                .collect();
            let head: usize = log
                .response_headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum();
            log.response_size = head + 17 + down.body_bytes_sent();
        }
        let req = session.req_header();
        let head: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + req.method.as_str().len()
            + req.uri.to_string().len()
            + 12;
        log.request_size = head + down.body_bytes_read();
        log.request_ms = ctx.started.elapsed().as_millis() as u64;
        log.upstream_ms = ctx.upstream_latency.map(|d| d.as_millis() as u64);
    }
}

/// Counts a request as in flight for as long as its context lives.
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub(super) fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Relaxed);
        crate::metrics::connections::request(true);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
        crate::metrics::connections::request(false);
    }
}
