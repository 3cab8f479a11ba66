//! Running the plugin chain's phases for one request.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::respond::{self, messages, write_exit, VIA};
use super::{batch, Ctx, Gateway};
use crate::plugins::chain::Link;
use crate::plugins::{lua, Exit, Flow, Instance, Phase, PhaseCtx, PluginError};
use crate::snapshot::Snapshot;

impl Gateway {
    /// Records the phase call of instance `i` that began at `started`, and returns when it
    /// ended (the next call of the phase starts from there: one clock read per call).
    pub(super) fn observe(
        &self,
        snap: &Snapshot,
        i: usize,
        phase: Phase,
        started: Instant,
        failed: bool,
    ) -> Instant {
        let ended = Instant::now();
        self.record(snap, i, phase, started, ended, failed);
        ended
    }

    /// Records a phase call of instance `i` from `started` to `ended`.
    pub(super) fn record(
        &self,
        snap: &Snapshot,
        i: usize,
        phase: Phase,
        started: Instant,
        ended: Instant,
        failed: bool,
    ) {
        let ms = ended.saturating_duration_since(started).as_secs_f64() * 1000.0;
        let plugin = &snap.config.plugins[i].name;
        if let Some(slots) = snap.plugin_latency.get(i) {
            slots[phase.index()]
                .get_or_init(|| self.metrics.plugin_latency.series(plugin, phase.as_str()))
                .observe(ms);
        }
        if failed {
            self.metrics
                .plugin_errors
                .with_label_values(&[plugin, phase.as_str()])
                .inc();
        }
    }

    /// Runs rewrite or access over `chain`, selecting each plugin's instance with the consumer
    /// known at that moment (auth plugins earlier in the chain may have set it). Returns the
    /// response to send instead of proxying: a plugin's exit, or Kong's 500 when one failed.
    pub(super) async fn run_request_phase(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        phase: Phase,
        chain: &[Link],
    ) -> Option<Exit> {
        let snap = ctx.snap.clone();
        // When the previous call of the phase ended, the start of the next one.
        let mut clock = None;
        let mut n = 0;
        while n < chain.len() {
            if let Some(g) =
                batch::Gathered::gather(&snap, phase, batch::links(&snap, chain, n, phase))
            {
                let started = clock.unwrap_or_else(Instant::now);
                match self
                    .run_request_batch(session, ctx, chain, phase, g, started)
                    .await
                {
                    Ok((ended, next)) => (clock, n) = (Some(ended), next),
                    Err(exit) => return Some(exit),
                }
                continue;
            }
            let link = &chain[n];
            n += 1;
            let Some(i) = link.select(ctx.state.consumer) else {
                continue;
            };
            let Some(instance) = &snap.instances[i] else {
                continue;
            };
            if phase == Phase::Access {
                match Self::condition_holds(session, ctx, i) {
                    Ok(true) => {}
                    // Skips access and, as the instance is not recorded, later phases.
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(plugin = %link.name, error = %e, "plugin condition failed");
                        return Some(Exit::message(500, messages::UNEXPECTED));
                    }
                }
                if !ctx.ran.contains(&i) {
                    ctx.ran.push(i);
                }
            }
            if !instance.phases().contains(&phase) {
                continue;
            }
            let started = clock.unwrap_or_else(Instant::now);
            let result = Self::run_waiting(
                session,
                ctx,
                &snap,
                phase,
                None,
                started,
                |pctx, resumed| Self::call_request_phase(&**instance, pctx, resumed),
            )
            .await;
            clock = Some(self.observe(&snap, i, phase, started, result.is_err()));
            if let Some(exit) = self.after_request_call(session, ctx, chain, n - 1, phase, result) {
                return Some(exit);
            }
        }
        None
    }

    /// Runs a batch of Lua instances gathered from `chain` in rewrite or access. Returns when
    /// the last member ended and the index of the link to go on from, or the response to send
    /// instead of proxying.
    async fn run_request_batch(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        chain: &[Link],
        phase: Phase,
        mut g: Box<batch::Gathered<'_>>,
        started: Instant,
    ) -> Result<(Instant, usize), Exit> {
        let snap = ctx.snap.clone();
        if phase == Phase::Access {
            // Recorded for the response phases, as each is when reached (a member's exit
            // records the rest of the chain anyway).
            for link in &chain[g.members.position(0)..g.next] {
                if let Some(&(i, _)) = link.candidates.first() {
                    if snap.instances[i].is_some() && !ctx.ran.contains(&i) {
                        ctx.ran.push(i);
                    }
                }
            }
        }
        let batch = &mut g.batch;
        let result = Self::run_waiting(
            session,
            ctx,
            &snap,
            phase,
            None,
            started,
            |pctx, resumed| {
                if resumed {
                    lua::runtime::resume_batch(batch, pctx)
                } else {
                    lua::runtime::call_batch(batch, pctx)
                }
            },
        )
        .await;
        let ended = self.observe_batch(&snap, &g, phase, started, result.is_err());
        let at = g.members.position(g.batch.reached());
        match self.after_request_call(session, ctx, chain, at, phase, result) {
            Some(exit) => Err(exit),
            None => Ok((ended, g.resume_at())),
        }
    }

    /// The first call or a resume of `instance` in a request phase.
    pub(super) fn call_request_phase(
        instance: &dyn Instance,
        pctx: &mut PhaseCtx<'_>,
        resumed: bool,
    ) -> Result<Flow, PluginError> {
        match (resumed, pctx.phase) {
            (true, _) => instance.resume(pctx),
            (false, Phase::Rewrite) => instance.rewrite(pctx),
            (false, Phase::Response) => instance.response(pctx),
            (false, _) => instance.access(pctx),
        }
    }

    /// After the call of link `n` in rewrite or access: the response to send instead of
    /// proxying, if it exited or failed (in access, the rest of the chain is then recorded
    /// for the response phases).
    fn after_request_call(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        chain: &[Link],
        n: usize,
        phase: Phase,
        result: Result<Flow, PluginError>,
    ) -> Option<Exit> {
        let exit = match result {
            Ok(Flow::Continue | Flow::Wait) => return None,
            Ok(Flow::Exit(exit)) => exit,
            Err(e) => {
                tracing::error!(plugin = %chain[n].name, phase = phase.as_str(), error = %e, "plugin failed");
                Exit::message(500, messages::UNEXPECTED)
            }
        };
        if phase == Phase::Access {
            self.collect(session, ctx, &chain[n + 1..]);
        }
        Some(exit)
    }

    /// Runs a phase that may wait (rewrite, access, response) with `call` (given whether it
    /// resumes a call that waited): while plugin code waits for I/O, the request's operations
    /// are awaited (the worker serves other requests meanwhile) and the call resumed.
    pub(super) async fn run_waiting(
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        phase: Phase,
        mut resp: Option<&mut ResponseHeader>,
        started: Instant,
        mut call: impl FnMut(&mut PhaseCtx<'_>, bool) -> Result<Flow, PluginError>,
    ) -> Result<Flow, PluginError> {
        let mut resumed = false;
        loop {
            let result = {
                let mut pctx = PhaseCtx {
                    phase,
                    snap,
                    state: &mut ctx.state,
                    req: session.req_header_mut(),
                    resp: resp.as_deref_mut(),
                    chunk: None,
                    started,
                };
                call(&mut pctx, resumed)
            };
            if !matches!(result, Ok(Flow::Wait)) {
                return result;
            }
            resumed = true;
            let ready = match ctx.state.io.as_mut() {
                Some(io) => io.wait().await,
                None => false,
            };
            if !ready {
                return Err(PluginError(
                    "the plugin waits, but no operation of its is in progress".into(),
                ));
            }
        }
    }

    /// Whether instance `i`'s `condition` holds for the request (true without one).
    fn condition_holds(session: &mut Session, ctx: &mut Ctx, i: usize) -> Result<bool, String> {
        if ctx.snap.conditions[i].is_none() {
            return Ok(true);
        }
        let snap = ctx.snap.clone();
        let Some(condition) = &snap.conditions[i] else {
            return Ok(true);
        };
        let pctx = PhaseCtx {
            phase: Phase::Access,
            snap: &snap,
            state: &mut ctx.state,
            req: session.req_header_mut(),
            resp: None,
            chunk: None,
            started: Instant::now(),
        };
        condition.eval(&pctx)
    }

    /// Records the global instances for a request that matched no route: their response
    /// phases run on the 404 (access does not run; an instance whose condition does not hold
    /// is left out).
    pub(super) fn collect_unrouted(&self, session: &mut Session, ctx: &mut Ctx) {
        let snap = ctx.snap.clone();
        self.collect(session, ctx, &snap.global_chain);
    }

    /// Records the instances of `links` for the response phases without running their
    /// access (a plugin before them answered, or no route matched), as Kong runs the response
    /// phases of every plugin collected for the request.
    fn collect(&self, session: &mut Session, ctx: &mut Ctx, links: &[Link]) {
        let snap = ctx.snap.clone();
        for link in links {
            let Some(i) = link.select(ctx.state.consumer) else {
                continue;
            };
            if snap.instances[i].is_none() || ctx.ran.contains(&i) {
                continue;
            }
            if Self::condition_holds(session, ctx, i) != Ok(true) {
                continue;
            }
            ctx.ran.push(i);
        }
    }

    /// Writes a response produced by the gateway or a plugin, with header_filter applied.
    pub(super) async fn exit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        exit: &Exit,
    ) -> pingora::Result<bool> {
        ctx.state.status = exit.status;
        ctx.state.source = "exit";
        let ms = ctx.elapsed_ms();
        let mut resp = respond::exit_header(exit, ms)?;
        resp.insert_header("Via", VIA)?;
        if !self.run_header_filter(session, ctx, &mut resp) {
            let failed = Exit::message(500, messages::UNEXPECTED);
            ctx.state.status = 500;
            write_exit(session, &failed, ms, |resp| {
                let _ = resp.insert_header("Via", VIA);
            })
            .await?;
            return Ok(true);
        }
        // The whole body is at hand: body_filter runs before the header leaves, so the length
        // it produces is the one announced (nginx runs it even on an empty body).
        let head = session.req_header().method == http::Method::HEAD;
        let mut body = Some(exit.body.clone());
        if Self::has_body_filter(ctx) && !head {
            self.run_body_filter(session, ctx, &mut body, true);
            let len = body.as_ref().map_or(0, |b| b.len());
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            resp.insert_header(http::header::CONTENT_LENGTH, len)?;
        }
        let head_only = head || body.as_ref().is_none_or(|b| b.is_empty());
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(body, true).await?;
        }
        Ok(true)
    }

    /// Runs header_filter for the instances that took part in the request. A failure turns the
    /// response into a 500 (headers are not sent yet).
    pub(super) fn run_header_filter(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        resp: &mut ResponseHeader,
    ) -> bool {
        for op in std::mem::take(&mut ctx.state.response_headers) {
            op.apply(resp);
        }
        ctx.state.status = resp.status.as_u16();
        let ok = self.run_response_phase(session, ctx, Phase::HeaderFilter, Some(resp), None);
        // Plugins read the headers again in body_filter and log (ngx.header,
        // kong.response.get_headers): keep them as sent, only for requests with such plugins.
        if Self::has_late_phase(ctx) {
            ctx.state.sent_headers = Some(resp.headers.clone());
        }
        ok
    }

    /// Whether an instance of the request runs in body_filter or log.
    fn has_late_phase(ctx: &Ctx) -> bool {
        Self::runs_in(ctx, &[Phase::BodyFilter, Phase::Log])
    }

    /// Whether any instance of the request has a body_filter phase.
    pub(super) fn has_body_filter(ctx: &Ctx) -> bool {
        Self::runs_in(ctx, &[Phase::BodyFilter])
    }

    /// Whether an instance that took part in the request implements one of `phases`.
    pub(super) fn runs_in(ctx: &Ctx, phases: &[Phase]) -> bool {
        ctx.ran.iter().any(|&i| {
            ctx.snap.instances[i]
                .as_ref()
                .is_some_and(|inst| inst.phases().iter().any(|p| phases.contains(p)))
        })
    }

    /// Runs body_filter on one chunk. On failure the rest of the body is dropped (the status
    /// line is already sent) and the error is logged.
    ///
    /// As nginx does, the end of the body is its own call: a last chunk with data is filtered
    /// with `eof = false`, then an empty chunk with `eof = true` (plugins that buffer until eof
    /// see every byte once), and the two outputs are sent together.
    pub(super) fn run_body_filter(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        body: &mut Option<Bytes>,
        eof: bool,
    ) -> bool {
        if ctx.state.body_ended {
            *body = None;
            return true;
        }
        if eof && body.as_ref().is_some_and(|b| !b.is_empty()) {
            if !self.run_body_filter(session, ctx, body, false) {
                return false;
            }
            let mut last = Some(Bytes::new());
            let ok = self.run_body_filter(session, ctx, &mut last, true);
            *body = match (body.take(), last) {
                (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
                    let mut joined = bytes::BytesMut::with_capacity(a.len() + b.len());
                    joined.extend_from_slice(&a);
                    joined.extend_from_slice(&b);
                    Some(joined.freeze())
                }
                (Some(a), Some(b)) if b.is_empty() => Some(a),
                (a, None) => a,
                (_, b) => b,
            };
            return ok;
        }
        let ok = self.run_response_phase(
            session,
            ctx,
            Phase::BodyFilter,
            None,
            Some((&mut *body, eof)),
        );
        if !ok {
            *body = None;
        }
        ok
    }

    /// Runs the log phase of the request's instances (a failing one does not stop the others).
    pub(super) fn run_log(&self, session: &mut Session, ctx: &mut Ctx) {
        self.run_response_phase(session, ctx, Phase::Log, None, None);
    }

    /// Runs a response-side phase for the instances that took part in the request, in chain
    /// order. Returns false when one failed (header_filter and body_filter stop there).
    fn run_response_phase(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        phase: Phase,
        mut resp: Option<&mut ResponseHeader>,
        mut chunk: Option<(&mut Option<Bytes>, bool)>,
    ) -> bool {
        let snap = ctx.snap.clone();
        let ran = std::mem::take(&mut ctx.ran);
        let mut ok = true;
        let mut clock = None;
        let mut n = 0;
        while n < ran.len() {
            let Some(instance) = snap.instances[ran[n]]
                .as_ref()
                .filter(|inst| inst.phases().contains(&phase))
            else {
                n += 1;
                continue;
            };
            let items = ran[n..].iter().enumerate().map(|(k, &i)| (n + k, Some(i)));
            let gathered = batch::Gathered::gather(&snap, phase, items);
            let started = clock.unwrap_or_else(Instant::now);
            let mut pctx = PhaseCtx {
                phase,
                snap: &snap,
                state: &mut ctx.state,
                req: session.req_header_mut(),
                resp: resp.as_deref_mut(),
                chunk: chunk.as_mut().map(|(body, eof)| (&mut **body, *eof)),
                started,
            };
            let (i, result) = if let Some(mut g) = gathered {
                // These phases do not wait: the batch returns once all ran or one failed.
                let result = lua::runtime::call_batch(&mut g.batch, &mut pctx).map(|_| ());
                clock = Some(self.observe_batch(&snap, &g, phase, started, result.is_err()));
                let at = g.members.position(g.batch.reached());
                n = if result.is_ok() {
                    g.resume_at()
                } else {
                    at + 1
                };
                (ran[at], result)
            } else {
                let i = ran[n];
                n += 1;
                let result = match phase {
                    Phase::HeaderFilter => instance.header_filter(&mut pctx),
                    Phase::BodyFilter => instance.body_filter(&mut pctx),
                    _ => instance.log(&mut pctx),
                };
                clock = Some(self.observe(&snap, i, phase, started, result.is_err()));
                (i, result)
            };
            if let Err(e) = result {
                let name = &snap.config.plugins[i].name;
                tracing::error!(plugin = %name, phase = phase.as_str(), error = %e, "plugin failed");
                ok = false;
                if phase != Phase::Log {
                    break;
                }
            }
        }
        ctx.ran = ran;
        ok
    }
}
