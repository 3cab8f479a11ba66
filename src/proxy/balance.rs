//! The proxy's side of load balancing: picking a target per try, counting the request in
//! flight on it, and feeding passive health checks (statuses, connection failures,
//! timeouts) and latency samples back to the balancer.

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::respond::messages;
use super::Ctx;
use crate::balancer::hash::{self, HashRequest};
use crate::balancer::health::Report;
use crate::balancer::InFlight;
use crate::config::model::Algorithm;
use crate::plugins::HeaderOp;
use crate::router::normalize_path;
use crate::snapshot::CheckSource;

/// What one request did with its balancer.
#[derive(Debug, Default)]
pub struct Balancing {
    /// `(balancer, target)` of the current try.
    current: Option<(usize, usize)>,
    /// Targets of earlier tries that failed to connect.
    tried: Vec<usize>,
    /// Consistent-hashing value, computed on the first try.
    hash: Option<String>,
    /// The current try's outcome was reported to the health checks.
    reported: bool,
    /// Counts the request on its current target (least-connections).
    _inflight: Option<InFlight>,
}

/// Picks the target for this try when the request is balanced (its service's host, or the
/// upstream a plugin chose, names an upstream and no plugin set a target); None otherwise.
pub fn pick(session: &Session, ctx: &mut Ctx) -> Result<Option<(String, u16)>> {
    if ctx.state.upstream.target.is_some() {
        return Ok(None);
    }
    let service = ctx.state.service.map(|s| &ctx.snap.services[s]);
    let Some(b) = ctx
        .state
        .upstream
        .balancer
        .or(service.and_then(|s| s.balancer))
    else {
        return Ok(None);
    };
    let snap = ctx.snap.clone();
    let bal = &snap.balancers[b];
    if bal.algorithm == Algorithm::ConsistentHashing && ctx.balancing.hash.is_none() {
        let req = session.req_header();
        let path = normalize_path(req.uri.path());
        let credential_id = ctx
            .state
            .credential
            .as_ref()
            .and_then(|c| c.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let input = HashRequest {
            consumer_id: ctx
                .state
                .consumer
                .map(|c| snap.config.consumers[c].id.as_str()),
            credential_id: credential_id.as_deref(),
            client_ip: ctx.state.client.map(|a| a.ip()),
            headers: &req.headers,
            path: &path,
            query: req.uri.query(),
            captures: ctx.state.captures.as_ref(),
        };
        let value = hash::value(&bal.hash_on.0, &bal.hash_on.1, &bal.cookie_path, &input);
        if let Some(cookie) = value.set_cookie {
            ctx.state
                .response_headers
                .push(HeaderOp::Add("set-cookie".into(), cookie));
        }
        ctx.balancing.hash = Some(value.value);
    }
    let hash = ctx.balancing.hash.as_deref().unwrap_or("");
    let Some(i) = bal.pick(hash, &ctx.balancing.tried) else {
        return Err(Error::explain(
            ErrorType::CustomCode("no peer", 503),
            messages::NO_PEER,
        ));
    };
    let t = &bal.targets[i];
    let b_ = &mut ctx.balancing;
    b_.current = Some((b, i));
    b_.reported = false;
    // Replacing the guard moves the in-flight count from the previous try's target.
    b_._inflight = Some(InFlight::new(t.state.clone()));
    Ok(Some((t.host.clone(), t.port)))
}

/// A connection to the current target failed (Pingora is about to retry or give up).
pub fn connect_failed(ctx: &mut Ctx, e: &Error) {
    let Some((b, i)) = ctx.balancing.current else {
        return;
    };
    let report = match e.etype() {
        ErrorType::ConnectTimedout => Report::Timeout,
        _ => Report::TcpFailure,
    };
    ctx.snap.balancers[b].report(i, CheckSource::Passive, report);
    ctx.balancing.reported = true;
    if !ctx.balancing.tried.contains(&i) {
        ctx.balancing.tried.push(i);
    }
}

/// The current target answered with `status` after `took` (connect + wait for the header).
pub fn responded(ctx: &mut Ctx, status: u16, took: Option<std::time::Duration>) {
    let Some((b, i)) = ctx.balancing.current else {
        return;
    };
    let bal = &ctx.snap.balancers[b];
    if let Some(took) = took {
        bal.targets[i].state.record_latency(took);
    }
    bal.report_status(i, CheckSource::Passive, status);
    ctx.balancing.reported = true;
}

/// The current target sent its whole response: the request no longer counts against it.
/// nginx frees its least-connections count when the upstream request ends too, so the
/// client's next request, which may start before this one's log phase, sees it released.
pub fn released(ctx: &mut Ctx) {
    ctx.balancing._inflight = None;
}

/// The request is over: an upstream error not reported yet (a timeout or a broken connection
/// after connecting) counts against the target.
pub fn finished(ctx: &mut Ctx, e: Option<&Error>) {
    let (Some((b, i)), Some(e)) = (ctx.balancing.current, e) else {
        return;
    };
    if ctx.balancing.reported || e.esource() != &ErrorSource::Upstream {
        return;
    }
    let report = match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Report::Timeout
        }
        _ => Report::TcpFailure,
    };
    ctx.snap.balancers[b].report(i, CheckSource::Passive, report);
    ctx.balancing.reported = true;
    released(ctx);
}

/// The Host header Kong sends to a balanced target: the upstream's `host_header`, else the
/// target's name, with `:port` unless it is the scheme's default port. None when the request
/// was not balanced.
pub fn host_header(ctx: &Ctx, tls: bool) -> Option<String> {
    let (b, i) = ctx.balancing.current?;
    let bal = &ctx.snap.balancers[b];
    let t = &bal.targets[i];
    let name = bal.host_header.as_deref().unwrap_or(&t.host);
    let default = if tls { 443 } else { 80 };
    Some(if t.port == default {
        name.to_string()
    } else {
        format!("{name}:{}", t.port)
    })
}
