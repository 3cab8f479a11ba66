//! Kong's buffered proxying: when a plugin of the request implements `response`, or one called
//! `kong.service.request.enable_buffering()`, the upstream response is read whole before any
//! of it is sent (Pingora holds it back, see `vendor/README.md`). The `response` handlers then
//! see it all (`kong.service.response.get_raw_body`, the status and headers) and may change the
//! status and headers or answer with `kong.response.exit`; header_filter, body_filter and log
//! follow as for any response.
//!
//! As in Kong, a connection upgrade (WebSocket) turns buffering off, and gRPC services are
//! never buffered.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::respond::{self, messages};
use super::{balance, Ctx, Gateway};
use crate::config::model::Protocol;
use crate::plugins::{Exit, Flow, Phase, ServiceResponse};

impl Gateway {
    /// Asks Pingora to hold the upstream response back when the request needs buffered
    /// proxying. Called once access has run.
    pub(super) fn maybe_hold_response(&self, session: &mut Session, ctx: &mut Ctx) {
        if !ctx.state.buffering && !Self::runs_in(ctx, &[Phase::Response]) {
            return;
        }
        let grpc = ctx.state.service.is_some_and(|s| {
            matches!(
                ctx.snap.services[s].protocol,
                Protocol::Grpc | Protocol::Grpcs
            )
        });
        if grpc {
            ctx.state.buffering = false;
            return;
        }
        if let Some(upgrade) = session.req_header().headers.get(http::header::UPGRADE) {
            tracing::info!(
                upgrade = %String::from_utf8_lossy(upgrade.as_bytes()),
                "response buffering was turned off: connection upgrade"
            );
            ctx.state.buffering = false;
            return;
        }
        ctx.state.buffering = true;
        session.hold_response(self.limits.buffered_response);
    }

    /// The whole upstream response is here: keeps it for `kong.service.response`, then runs
    /// the `response` handlers on it. A handler's exit replaces it; a failing handler turns it
    /// into Kong's 500.
    pub(super) async fn response_held(
        &self,
        session: &mut Session,
        header: &mut ResponseHeader,
        body: &mut Bytes,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let Some(at) = ctx.upstream_started {
            ctx.upstream_latency = Some(at.elapsed());
        }
        balance::responded(ctx, header.status.as_u16(), ctx.upstream_latency);
        balance::released(ctx);
        ctx.response_held = true;
        ctx.state.source = "service";
        ctx.state.status = header.status.as_u16();
        ctx.state.service_response = Some(Box::new(ServiceResponse {
            status: header.status.as_u16(),
            headers: header.headers.clone(),
            body: body.clone(),
        }));
        if let Some(exit) = self.run_response_handlers(session, ctx, header).await {
            *header = respond::exit_header(&exit, ctx.elapsed_ms())?;
            // The request was proxied: the latency headers are the upstream's (response_filter).
            header.remove_header("x-kong-response-latency");
            *body = exit.body;
            ctx.state.status = exit.status;
        }
        Ok(())
    }

    /// Runs `response` for the request's instances in chain order; returns the response that
    /// replaces the upstream's, if a handler exited or failed.
    async fn run_response_handlers(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        header: &mut ResponseHeader,
    ) -> Option<Exit> {
        let snap = ctx.snap.clone();
        let ran = std::mem::take(&mut ctx.ran);
        let mut replaced = None;
        let mut clock = None;
        for &i in &ran {
            let Some(instance) = &snap.instances[i] else {
                continue;
            };
            if !instance.phases().contains(&Phase::Response) {
                continue;
            }
            let name = &snap.config.plugins[i].name;
            let started = clock.unwrap_or_else(Instant::now);
            let result = Self::run_waiting(
                session,
                ctx,
                &snap,
                Phase::Response,
                Some(&mut *header),
                started,
                |pctx, resumed| Self::call_request_phase(&**instance, pctx, resumed),
            )
            .await;
            clock = Some(self.observe(&snap, i, Phase::Response, started, result.is_err()));
            match result {
                Ok(Flow::Continue | Flow::Wait) => {}
                Ok(Flow::Exit(exit)) => {
                    ctx.state.source = "exit";
                    replaced = Some(exit);
                    break;
                }
                Err(e) => {
                    tracing::error!(plugin = %name, phase = "response", error = %e, "plugin failed");
                    ctx.state.source = "error";
                    replaced = Some(Exit::message(500, messages::UNEXPECTED));
                    break;
                }
            }
        }
        ctx.ran = ran;
        replaced
    }
}
