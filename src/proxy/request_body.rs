//! The request body read for plugins that may ask for it (Kong's `get_raw_body`), before the
//! access phase.

use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Ctx, Gateway};
use crate::snapshot::Snapshot;

/// Largest request body read for plugins (it must also fit Pingora's retry buffer, which
/// replays it upstream); larger bodies stream through unread and `get_raw_body` answers nil and
/// an error. Bodies over `client_body_buffer_size` are read too, but, as in Kong, handed out
/// only to a `get_raw_body(max_allowed_file_size)` call.
pub const MAX_PLUGIN_BODY: usize = 64 * 1024;

impl Gateway {
    /// Reads a small request body for plugins that may ask for it (Kong's get_raw_body).
    pub(super) async fn read_body_for_plugins(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let len = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match len {
            Some(0) => ctx.state.body = Some(bytes::Bytes::new()),
            Some(n) if n <= MAX_PLUGIN_BODY => {
                session.enable_retry_buffering();
                let mut buf = bytes::BytesMut::with_capacity(n);
                // A body that stops arriving is the client's fault (408), not ours.
                while let Some(chunk) = session.read_request_body().await.map_err(|mut e| {
                    e.as_down();
                    e
                })? {
                    buf.extend_from_slice(&chunk);
                    if buf.len() > MAX_PLUGIN_BODY {
                        break;
                    }
                }
                ctx.state.body = Some(buf.freeze());
            }
            None if !session
                .req_header()
                .headers
                .contains_key(http::header::TRANSFER_ENCODING) =>
            {
                ctx.state.body = Some(bytes::Bytes::new());
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether an instance in the chain may read the request body.
    pub(super) fn wants_body(snap: &Snapshot, chain: &[crate::plugins::chain::Link]) -> bool {
        chain.iter().any(|l| {
            l.candidates.iter().any(|(i, _)| {
                snap.instances[*i]
                    .as_ref()
                    .is_some_and(|inst| inst.may_read_body())
            })
        })
    }
}
