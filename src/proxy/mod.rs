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

mod balance;
mod batch;
mod buffered;
mod headers;
pub(crate) use headers::ip_text;
pub mod limits;
mod observe;
mod phases;
pub mod proxy_protocol;
pub mod realip;
mod request_body;
mod resolve;
pub mod respond;
pub mod tls;
mod transport;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use crate::plugins::{Exit, Phase, RequestState};
use crate::router::{normalize_path, RequestInfo, RouteMatch};
use crate::snapshot::{ServiceRt, Snapshot};
use headers::{names, PutNamed};
pub use observe::InflightGuard;
pub use request_body::MAX_PLUGIN_BODY;
use respond::{messages, write_exit, VIA};
use transport::{bodiless, chunked_if_unsized, scheme, server_name, upstream_tls_and_version};

/// The gateway: the current snapshot and what outlives snapshots.
pub struct Gateway {
    state: Arc<ArcSwap<Snapshot>>,
    resolver: resolve::Resolver,
    metrics: Arc<Metrics>,
    access_log: bool,
    inflight: Arc<AtomicUsize>,
    limits: limits::ClientLimits,
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
            limits: limits::ClientLimits::default(),
        }
    }

    /// The same gateway with these client connection limits.
    pub fn with_limits(mut self, limits: limits::ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The number of requests being served, for draining at shutdown.
    pub fn inflight(&self) -> Arc<AtomicUsize> {
        self.inflight.clone()
    }
}

/// Per-request state. Holds the snapshot the request started with, so a reload in the middle
/// of a request changes nothing for it.
pub struct Ctx {
    snap: Arc<Snapshot>,
    started: Instant,
    /// What plugins see and change (route, consumer, upstream changes, exit, ...).
    state: RequestState,
    matched: Option<RouteMatch>,
    /// Instances selected for this request (their response phases run too).
    ran: Vec<usize>,
    tries: u16,
    upstream_started: Option<Instant>,
    proxy_latency: Option<Duration>,
    upstream_latency: Option<Duration>,
    /// body_filter plugins run on this response.
    filter_body: bool,
    /// The upstream response was held whole and the response phase ran on it.
    response_held: bool,
    /// The replacement request body was sent.
    body_sent: bool,
    /// Request body bytes streamed upstream so far.
    body_streamed: u64,
    /// Target choice and passive health reporting.
    balancing: balance::Balancing,
    _inflight: InflightGuard,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.state.lua_tables {
            crate::plugins::lua::runtime::release(
                self.state.id,
                self.state.generation,
                self.state.lua_keyed,
            );
        }
    }
}

impl Ctx {
    fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }
}

/// Request ids, unique in the process.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora holds the context by value in its per-request futures (twice in
    /// `process_request`'s), which the keep-alive loop moves; a pointer moves cheaply.
    type CTX = Box<Ctx>;

    fn new_ctx(&self) -> Box<Ctx> {
        let snap = self.state.load_full();
        let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
        let generation = snap.generation;
        let mut state = RequestState::new(id, generation);
        state.body_buffer = self.limits.body_buffer;
        Box::new(Ctx {
            snap,
            started: Instant::now(),
            state,
            matched: None,
            ran: Vec::new(),
            tries: 0,
            upstream_started: None,
            proxy_latency: None,
            upstream_latency: None,
            filter_body: false,
            response_held: false,
            body_sent: false,
            body_streamed: 0,
            balancing: balance::Balancing::default(),
            _inflight: InflightGuard::new(&self.inflight),
        })
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.limits.prepare(session)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let scheme = scheme(session);
        ctx.state.scheme = scheme;
        let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
        ctx.state.peer = peer;
        ctx.state.proxy_protocol = proxy_protocol::source(session);
        ctx.state.client = realip::settings().client(
            peer,
            &session.req_header().headers,
            ctx.state.proxy_protocol,
        );
        ctx.state.server = session.server_addr().and_then(|a| a.as_inet()).copied();
        ctx.state.sni = server_name(session);
        let snap = ctx.snap.clone();

        // Kong's rewrite phase: global instances, before routing.
        if !snap.global_chain.is_empty() {
            if let Some(exit) = self
                .run_request_phase(session, ctx, Phase::Rewrite, &snap.global_chain)
                .await
            {
                return self.exit(session, ctx, &exit).await;
            }
        }

        let matched = {
            let req = session.req_header();
            let path = normalize_path(req.uri.path());
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
                sni: ctx.state.sni.as_deref(),
                src: ctx.state.client,
                dst: ctx.state.server,
                query: req.uri.query(),
            };
            snap.router.select(&info)
        };
        let Some(matched) = matched else {
            // Global instances still see the 404 in their response phases, as in Kong.
            self.collect_unrouted(session, ctx);
            let exit = Exit::message(404, messages::NO_ROUTE);
            return self.exit(session, ctx, &exit).await;
        };
        let route_idx = snap.router_routes[matched.route];
        let route = &snap.routes[route_idx];
        ctx.state.route = Some(route_idx);
        ctx.state.service = route.service;
        ctx.state.captures = matched.uri_captures.clone();
        ctx.matched = Some(matched);

        if let Some(exit) = headers::protocol_refusal(session, &ctx.state, route, scheme) {
            return self.exit(session, ctx, &exit).await;
        }
        if Self::wants_body(&snap, &route.chain) {
            self.read_body_for_plugins(session, ctx).await?;
        }
        if let Some(exit) = self
            .run_request_phase(session, ctx, Phase::Access, &route.chain)
            .await
        {
            return self.exit(session, ctx, &exit).await;
        }
        if route.service.is_none() && ctx.state.upstream.target.is_none() {
            let exit = Exit::message(503, messages::NO_SERVICE);
            return self.exit(session, ctx, &exit).await;
        }
        self.maybe_hold_response(session, ctx);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let balanced = balance::pick(session, ctx)?;
        let snap = &ctx.snap;
        let service = ctx.state.service.map(|s| &snap.services[s]);
        let changes = &ctx.state.upstream;
        let tls = match changes.scheme.as_deref() {
            Some(s) => s == "https",
            None => service.is_some_and(|s| s.protocol.is_tls()),
        };
        let (addr, sni) = match (&changes.target, balanced, service) {
            // The service's own IP address: nothing to resolve or copy.
            (
                None,
                None,
                Some(ServiceRt {
                    ip: Some(ip),
                    host,
                    port,
                    ..
                }),
            ) => {
                let sni = if tls { host.clone() } else { String::new() };
                (std::net::SocketAddr::new(*ip, *port), sni)
            }
            (target, balanced, _) => {
                let (host, port) = match (target, balanced) {
                    (Some((h, p)), _) => (h.clone(), *p),
                    (None, Some(target)) => target,
                    (None, None) => match service {
                        Some(s) => (s.host.clone(), s.port),
                        None => return Err(Error::explain(ErrorType::InternalError, "no service")),
                    },
                };
                let addrs = self.resolver.resolve(&host, port).await.map_err(|e| {
                    Error::because(ErrorType::ConnectNoRoute, format!("resolving {host}"), e)
                })?;
                let addr = addrs[usize::from(ctx.tries) % addrs.len()];
                let sni = match (tls, service) {
                    (false, _) => String::new(),
                    (true, Some(s)) => s.host.clone(),
                    (true, None) => host,
                };
                (addr, sni)
            }
        };
        if ctx.snap.log_data {
            ctx.state.log.tries.push(addr);
        }
        let mut peer = HttpPeer::new(addr, tls, sni);
        let opts = &mut peer.options;
        let default = Duration::from_secs(60);
        let [connect, write, read] = changes.timeouts.unwrap_or_else(|| {
            service.map_or([default; 3], |s| {
                [s.connect_timeout, s.write_timeout, s.read_timeout]
            })
        });
        opts.connection_timeout = Some(connect);
        opts.read_timeout = Some(read);
        opts.write_timeout = Some(write);
        opts.idle_timeout = self.limits.upstream_idle_timeout;
        let verify = changes
            .tls_verify
            .unwrap_or_else(|| service.is_some_and(|s| s.tls_verify));
        opts.verify_cert = verify;
        opts.verify_hostname = verify;
        upstream_tls_and_version(&mut peer, snap, ctx.state.service);
        let now = Instant::now();
        if ctx.upstream_started.is_none() {
            ctx.proxy_latency = Some(now.saturating_duration_since(ctx.started));
        }
        ctx.upstream_started = Some(now);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        balance::connect_failed(ctx, &e);
        let retries = ctx.state.upstream.retries.unwrap_or_else(|| {
            ctx.state
                .service
                .map_or(0, |s| ctx.snap.services[s].retries)
        });
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
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let snap = &ctx.snap;
        let (Some(route_idx), Some(matched)) = (ctx.state.route, ctx.matched.as_ref()) else {
            return Ok(());
        };
        let route = &snap.routes[route_idx];
        let service = ctx.state.service.map(|s| &snap.services[s]);
        headers::upstream(session, upstream, route, service, matched, &ctx.state)?;
        if ctx.state.upstream.host.is_none() && matched.upstream_host.is_none() {
            let tls = service.is_some_and(|s| s.protocol.is_tls());
            if let Some(host) = balance::host_header(ctx, tls) {
                upstream.insert_header(http::header::HOST, host)?;
            }
        }
        if ctx.snap.log_data {
            ctx.state.log.upstream_uri = Some(upstream.uri.to_string());
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(limit), Some(chunk)) = (ctx.state.upstream.body_limit, body.as_ref()) {
            ctx.body_streamed += chunk.len() as u64;
            if ctx.body_streamed > limit {
                return Err(Error::explain(
                    ErrorType::CustomCode("request body too large", 413),
                    "request body over the size limit",
                ));
            }
        }
        // A plugin replaced the body: send the replacement once, drop what the client sent.
        if let Some(replacement) = &ctx.state.upstream.body {
            *body = if ctx.body_sent {
                None
            } else {
                ctx.body_sent = true;
                Some(replacement.clone())
            };
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // A held response was accounted for (and maybe replaced) in upstream_response_held.
        if ctx.response_held {
            return Ok(());
        }
        if let Some(at) = ctx.upstream_started {
            ctx.upstream_latency = Some(at.elapsed());
        }
        balance::responded(ctx, resp.status.as_u16(), ctx.upstream_latency);
        if bodiless(session, resp) {
            balance::released(ctx);
        }
        ctx.state.source = "service";
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            balance::released(ctx);
        }
        Ok(None)
    }

    async fn upstream_response_held(
        &self,
        session: &mut Session,
        header: &mut ResponseHeader,
        body: &mut bytes::Bytes,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.response_held(session, header, body, ctx).await
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        static VIA_VALUE: http::HeaderValue = http::HeaderValue::from_static(VIA);
        let ms = |d: Option<Duration>| {
            http::HeaderValue::from(d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)))
        };
        resp.reserve_headers(3);
        resp.append_header("Via", VIA_VALUE.clone())?;
        resp.put(&names::X_KONG_UPSTREAM_LATENCY, ms(ctx.upstream_latency))?;
        resp.put(&names::X_KONG_PROXY_LATENCY, ms(ctx.proxy_latency))?;
        if !self.run_header_filter(session, ctx, resp) {
            // Headers are not sent yet: turn the response into Kong's 500.
            ctx.state.source = "error";
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "header_filter failed",
            ));
        }
        // A header_filter that ended the body (response-ratelimiting's 429) drops the
        // upstream's body too.
        if Self::has_body_filter(ctx) || ctx.state.body_ended {
            // body_filter may change the body's length: send it chunked (HTTP/1.1) rather than
            // delimited by closing the connection.
            ctx.filter_body = true;
            chunked_if_unsized(session, resp);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if ctx.filter_body && !self.run_body_filter(session, ctx, body, end_of_stream) {
            return Err(Error::explain(
                ErrorType::InternalError,
                "body_filter failed",
            ));
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Ctx: Send + Sync,
    {
        let (code, message) = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => (*code, limits::status_message(*code)),
            (_, ErrorType::InternalError) => (500, messages::UNEXPECTED),
            (_, ErrorType::CustomCode(_, 503)) => (503, messages::NO_PEER),
            (_, ErrorType::CustomCode(_, 413)) => (413, messages::TOO_LARGE),
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => (0, ""),
            // A request body that stops arriving (client_body_timeout).
            (ErrorSource::Downstream, ErrorType::ReadTimedout) => {
                (408, limits::status_message(408))
            }
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
                let _ = resp.insert_header("Via", VIA);
            })
            .await
            {
                tracing::debug!(error = %err, "could not write the error response");
            }
        }
        if code > 0 {
            ctx.state.status = code;
        }
        ctx.state.source = "error";
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        balance::finished(ctx, e);
        let status = session
            .as_downstream()
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.state.status);
        ctx.state.status = status;
        if !ctx.ran.is_empty() {
            let snap = &ctx.snap;
            let needed = ctx.ran.iter().any(|&i| {
                snap.instances[i]
                    .as_ref()
                    .is_some_and(|x| x.needs_log_data())
            });
            if needed {
                self.fill_log_data(session, ctx);
            }
            self.run_log(session, ctx);
        }
        self.record_metrics(session, ctx, status);
        if !self.access_log {
            return;
        }
        let req = session.req_header();
        let route = ctx.state.route.map(|r| {
            let r = &ctx.snap.config.routes[r];
            r.name.as_deref().unwrap_or(&r.id)
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
