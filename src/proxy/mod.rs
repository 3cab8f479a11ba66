//! The Pingora `ProxyHttp` implementation. It maps Pingora's phases onto Kong's and nothing
//! else: routing, plugins and upstream selection are done by the snapshot's parts.
//!
//! | Pingora                  | Kong                                  |
//! |--------------------------|---------------------------------------|
//! | `request_filter`         | router + `access` of the plugin chain |
//! | `upstream_peer`          | balancer                              |
//! | `upstream_request_filter`| upstream URI, Host, X-Forwarded-*     |
//! | `response_filter`        | `header_filter`                       |
//! | `logging`                | `log`                                 |

mod headers;
mod resolve;
pub mod respond;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::metrics::Metrics;
use crate::plugins::{AccessCtx, Exit, Flow};
use crate::router::{normalize_path, RequestInfo, RouteMatch};
use crate::snapshot::Snapshot;
use respond::{messages, write_error, write_exit, VIA};

/// The gateway: the current snapshot and what outlives snapshots.
pub struct Gateway {
    state: Arc<ArcSwap<Snapshot>>,
    resolver: resolve::Resolver,
    metrics: Arc<Metrics>,
    access_log: bool,
    inflight: Arc<AtomicUsize>,
}

impl Gateway {
    /// A gateway serving from `state` (swapped by reloads).
    pub fn new(state: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>, access_log: bool) -> Self {
        Gateway {
            state,
            resolver: resolve::Resolver::default(),
            metrics,
            access_log,
            inflight: Arc::default(),
        }
    }

    /// The number of requests being served, for draining at shutdown.
    pub fn inflight(&self) -> Arc<AtomicUsize> {
        self.inflight.clone()
    }
}

/// Counts a request as in flight for as long as its context lives.
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-request state. Holds the snapshot the request started with, so a reload in the middle
/// of a request changes nothing for it.
pub struct Ctx {
    snap: Arc<Snapshot>,
    started: Instant,
    /// Config index of the matched route.
    route: Option<usize>,
    matched: Option<RouteMatch>,
    /// Instances whose access phase ran (their header_filter runs on the response).
    ran: Vec<usize>,
    tries: u16,
    upstream_started: Option<Instant>,
    proxy_latency: Option<Duration>,
    upstream_latency: Option<Duration>,
    /// Status of a response the gateway wrote itself.
    own_status: Option<u16>,
    /// Kong's response source: `service`, `exit` (a plugin or the gateway answered) or `error`.
    source: &'static str,
    _inflight: InflightGuard,
}

impl Ctx {
    fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }
}

fn scheme(session: &Session) -> &'static str {
    if session
        .as_downstream()
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
    {
        "https"
    } else {
        "http"
    }
}

impl Gateway {
    /// Kong's prometheus-plugin request metrics.
    fn record_metrics(&self, session: &Session, ctx: &Ctx, status: u16) {
        let snap = &ctx.snap;
        let route = ctx.route.map(|r| &snap.routes[r]);
        let route_name = route.map_or("", |r| r.name.as_deref().unwrap_or(&r.id));
        let service_name = route.and_then(|r| r.service).map_or("", |s| {
            snap.services[s]
                .name
                .as_deref()
                .unwrap_or(&snap.services[s].id)
        });
        let m = &self.metrics;
        let code = status.to_string();
        m.requests
            .with_label_values(&[service_name, route_name, &code, ctx.source, "default", ""])
            .inc();
        let total = ctx.started.elapsed().as_secs_f64() * 1000.0;
        let labels = [service_name, route_name, "default"];
        m.request_latency.with_label_values(&labels).observe(total);
        if let Some(up) = ctx.upstream_latency {
            let up = up.as_secs_f64() * 1000.0;
            m.upstream_latency.with_label_values(&labels).observe(up);
            m.kong_latency
                .with_label_values(&labels)
                .observe((total - up).max(0.0));
        } else {
            m.kong_latency.with_label_values(&labels).observe(total);
        }
        let ingress = session.body_bytes_read() as u64;
        let egress = session.body_bytes_sent() as u64;
        m.bandwidth
            .with_label_values(&[service_name, route_name, "ingress", "default", ""])
            .inc_by(ingress);
        m.bandwidth
            .with_label_values(&[service_name, route_name, "egress", "default", ""])
            .inc_by(egress);
    }

    /// Runs the route's header_filter phase on a response header.
    fn header_filter(ctx: &Ctx, resp: &mut ResponseHeader) {
        for &i in &ctx.ran {
            if let Some(instance) = &ctx.snap.instances[i] {
                if let Err(e) = instance.header_filter(resp) {
                    let name = &ctx.snap.config.plugins[i].name;
                    tracing::error!(plugin = %name, phase = "header_filter", error = %e, "plugin failed");
                }
            }
        }
    }

    /// Writes a response produced by the gateway or a plugin, with header_filter applied.
    async fn exit(&self, session: &mut Session, ctx: &mut Ctx, exit: &Exit) -> Result<bool> {
        ctx.own_status = Some(exit.status);
        let ms = ctx.elapsed_ms();
        write_exit(session, exit, ms, |resp| {
            let _ = resp.insert_header("via", VIA);
            Self::header_filter(ctx, resp);
        })
        .await?;
        Ok(true)
    }

    /// Runs the access phase of the route's chain. `Ok(Some(exit))` stops the request.
    fn access(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<Option<Exit>, String> {
        let snap = ctx.snap.clone();
        let Some(route_idx) = ctx.route else {
            return Ok(None);
        };
        let route = &snap.routes[route_idx];
        let service = route.service.map(|s| &snap.services[s]);
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        for link in &route.chain {
            let Some(i) = link.select(None) else {
                continue;
            };
            let Some(instance) = &snap.instances[i] else {
                continue;
            };
            ctx.ran.push(i);
            let mut actx = AccessCtx {
                req: session.req_header_mut(),
                client_ip,
                route: Some((route.id.as_str(), route.name.as_deref())),
                service: service.map(|s| (s.id.as_str(), s.name.as_deref())),
            };
            let started = Instant::now();
            let result = instance.access(&mut actx);
            self.metrics
                .plugin_latency
                .with_label_values(&[link.name.as_str(), "access"])
                .observe(started.elapsed().as_secs_f64() * 1000.0);
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Exit(exit)) => return Ok(Some(exit)),
                Err(e) => {
                    self.metrics
                        .plugin_errors
                        .with_label_values(&[link.name.as_str(), "access"])
                        .inc();
                    return Err(format!("plugin {} failed in access: {e}", link.name));
                }
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: self.state.load_full(),
            started: Instant::now(),
            route: None,
            matched: None,
            ran: Vec::new(),
            tries: 0,
            upstream_started: None,
            proxy_latency: None,
            upstream_latency: None,
            own_status: None,
            source: "exit",
            _inflight: InflightGuard::new(&self.inflight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let scheme = scheme(session);
        let matched = {
            let req = session.req_header();
            let raw_path = req.uri.path();
            let path = normalize_path(raw_path);
            let host = req
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()))
                .unwrap_or("");
            let info = RequestInfo {
                method: req.method.as_str(),
                path: &path,
                host,
                headers: &req.headers,
                scheme,
                sni: None,
                src: session.client_addr().and_then(|a| a.as_inet()).copied(),
                dst: session.server_addr().and_then(|a| a.as_inet()).copied(),
            };
            ctx.snap.router.select(&info)
        };
        let Some(matched) = matched else {
            write_error(session, 404, messages::NO_ROUTE, ctx.elapsed_ms()).await;
            ctx.own_status = Some(404);
            return Ok(true);
        };
        let route_idx = ctx.snap.router_routes[matched.route];
        ctx.route = Some(route_idx);
        ctx.matched = Some(matched);
        let snap = ctx.snap.clone();
        let route = &snap.routes[route_idx];

        if !route.protocols.iter().any(|p| p.as_str() == scheme) {
            let exit = headers::https_redirect(session, route.https_redirect_status_code);
            return self.exit(session, ctx, &exit).await;
        }
        match self.access(session, ctx) {
            Ok(None) => {}
            Ok(Some(exit)) => return self.exit(session, ctx, &exit).await,
            Err(e) => {
                tracing::error!(route = %route.id, error = %e, "plugin error");
                let exit = Exit::message(500, messages::UNEXPECTED);
                return self.exit(session, ctx, &exit).await;
            }
        }
        if route.service.is_none() {
            let exit = Exit::message(503, messages::NO_SERVICE);
            return self.exit(session, ctx, &exit).await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snap = &ctx.snap;
        let service = ctx
            .route
            .and_then(|r| snap.routes[r].service)
            .map(|s| &snap.services[s])
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no service"))?;
        let (host, port) = match service.balancer {
            Some(b) => match snap.balancers[b].next() {
                Some((h, p)) => (h.to_string(), p),
                None => {
                    return Err(Error::explain(
                        ErrorType::CustomCode("no peer", 503),
                        messages::NO_PEER,
                    ))
                }
            },
            None => (service.host.clone(), service.port),
        };
        let addrs = self.resolver.resolve(&host, port).await.map_err(|e| {
            Error::because(ErrorType::ConnectNoRoute, format!("resolving {host}"), e)
        })?;
        let addr = addrs[usize::from(ctx.tries) % addrs.len()];
        let tls = service.protocol.is_tls();
        let sni = if tls {
            service.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        let opts = &mut peer.options;
        opts.connection_timeout = Some(service.connect_timeout);
        opts.read_timeout = Some(service.read_timeout);
        opts.write_timeout = Some(service.write_timeout);
        opts.verify_cert = service.tls_verify;
        opts.verify_hostname = service.tls_verify;
        if ctx.upstream_started.is_none() {
            ctx.proxy_latency = Some(ctx.started.elapsed());
        }
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = ctx
            .route
            .and_then(|r| ctx.snap.routes[r].service)
            .map_or(0, |s| ctx.snap.services[s].retries);
        if ctx.tries < retries {
            ctx.tries += 1;
            tracing::debug!(peer = %peer, try_ = ctx.tries, error = %e, "retrying upstream connection");
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let snap = &ctx.snap;
        let (Some(route_idx), Some(matched)) = (ctx.route, ctx.matched.as_ref()) else {
            return Ok(());
        };
        let route = &snap.routes[route_idx];
        let Some(service) = route.service.map(|s| &snap.services[s]) else {
            return Ok(());
        };
        headers::upstream(session, upstream, route, service, matched)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(at) = ctx.upstream_started {
            ctx.upstream_latency = Some(at.elapsed());
        }
        ctx.source = "service";
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let upstream_ms = ctx.upstream_latency.map_or(0, |d| d.as_millis());
        let proxy_ms = ctx.proxy_latency.map_or(0, |d| d.as_millis());
        resp.append_header("via", VIA)?;
        resp.insert_header("x-kong-upstream-latency", upstream_ms.to_string())?;
        resp.insert_header("x-kong-proxy-latency", proxy_ms.to_string())?;
        Self::header_filter(ctx, resp);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy
    where
        Ctx: Send + Sync,
    {
        let (code, message) = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => (*code, messages::UNEXPECTED),
            (_, ErrorType::CustomCode(_, 503)) => (503, messages::NO_PEER),
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => (0, ""),
            (ErrorSource::Downstream, _) => (400, "Bad request"),
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => (504, messages::TIMEOUT),
            (ErrorSource::Upstream, _) => (502, messages::BAD_GATEWAY),
            _ => (500, messages::UNEXPECTED),
        };
        if code > 0 && session.as_downstream().response_written().is_none() {
            let exit = Exit::message(code, message);
            let ms = ctx.elapsed_ms();
            if let Err(err) = write_exit(session, &exit, ms, |resp| {
                let _ = resp.insert_header("via", VIA);
            })
            .await
            {
                tracing::debug!(error = %err, "could not write the error response");
            }
        }
        ctx.own_status = Some(code);
        ctx.source = "error";
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .as_downstream()
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        self.record_metrics(session, ctx, status);
        if !self.access_log {
            return;
        }
        let req = session.req_header();
        let route = ctx.route.map(|r| {
            ctx.snap.routes[r]
                .name
                .as_deref()
                .unwrap_or(&ctx.snap.routes[r].id)
        });
        tracing::info!(
            target: "access",
            client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
            method = %req.method,
            uri = %req.uri,
            status,
            route = route.unwrap_or("-"),
            latency_ms = ctx.elapsed_ms() as u64,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
        );
    }
}
