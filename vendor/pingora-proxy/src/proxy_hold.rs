// Holding a whole upstream response back before it is filtered and sent downstream.
//
// An application that must see the body before the header goes out (to change the status or
// the headers from what the body says, as an API gateway's buffered response phase does) asks
// for it with `Session::hold_response(limit)` before the upstream request is sent. The upstream
// tasks are then collected instead of being forwarded; once the response is complete,
// `ProxyHttp::upstream_response_held` sees the header and the whole body, and the result is
// forwarded as one header and one body task through the usual filters. Informational (1xx)
// headers other than 101 pass through unheld; a response over the limit fails with 502.

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::HttpTask;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

/// The state of a held response.
#[derive(Debug)]
pub(crate) struct ResponseHold {
    limit: usize,
    header: Option<Box<ResponseHeader>>,
    body: BytesMut,
    trailers: Option<Box<http::HeaderMap>>,
    done: bool,
}

/// A complete held response, handed to the application.
pub(crate) struct Held {
    pub header: Box<ResponseHeader>,
    pub body: Bytes,
    pub trailers: Option<Box<http::HeaderMap>>,
}

/// What holding a batch of upstream tasks gives.
pub(crate) struct HoldOutcome {
    /// Tasks to forward now (informational headers).
    pub pass: Vec<HttpTask>,
    /// The whole response, once its end was seen.
    pub complete: Option<Held>,
}

impl ResponseHold {
    pub(crate) fn new(limit: usize) -> Self {
        ResponseHold {
            limit,
            header: None,
            body: BytesMut::new(),
            trailers: None,
            done: false,
        }
    }

    /// Whether the held response was already handed over (later tasks pass through).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Collects `tasks`. An upstream failure, or a body over the limit, is returned as the
    /// error (nothing has been sent downstream yet).
    pub(crate) fn hold(&mut self, tasks: Vec<HttpTask>) -> Result<HoldOutcome> {
        let mut pass = Vec::new();
        let mut end = false;
        for task in tasks {
            if end {
                break;
            }
            end = task.is_end();
            match task {
                HttpTask::Header(header, _)
                    if header.status.is_informational() && header.status.as_u16() != 101 =>
                {
                    end = false;
                    pass.push(HttpTask::Header(header, false));
                }
                HttpTask::Header(header, _) => self.header = Some(header),
                HttpTask::Body(data, _) | HttpTask::UpgradedBody(data, _) => {
                    if let Some(data) = data {
                        if self.body.len() + data.len() > self.limit {
                            return Error::e_explain(
                                ErrorType::HTTPStatus(502),
                                format!(
                                    "upstream response body larger than the {} bytes that may be held",
                                    self.limit
                                ),
                            )
                            .map_err(|e| e.into_up());
                        }
                        self.body.extend_from_slice(&data);
                    }
                }
                HttpTask::Trailer(trailers) => self.trailers = trailers,
                HttpTask::Done => {}
                HttpTask::Failed(e) => return Err(e),
            }
        }
        if !end {
            return Ok(HoldOutcome {
                pass,
                complete: None,
            });
        }
        let Some(header) = self.header.take() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "upstream response without a header")
                .map_err(|e| e.into_up());
        };
        self.done = true;
        Ok(HoldOutcome {
            pass,
            complete: Some(Held {
                header,
                body: std::mem::take(&mut self.body).freeze(),
                trailers: self.trailers.take(),
            }),
        })
    }
}

impl Held {
    /// The response as tasks again, framed by the length of its (possibly changed) body.
    /// `head` tells whether the request was a HEAD (the header's framing is kept then).
    pub(crate) fn into_tasks(self, head: bool) -> Result<Vec<HttpTask>> {
        let Held {
            mut header,
            body,
            trailers,
        } = self;
        let status = header.status.as_u16();
        let bodiless = head || matches!(status, 204 | 304) || header.status.is_informational();
        if bodiless {
            return Ok(vec![HttpTask::Header(header, true)]);
        }
        header.remove_header(&http::header::TRANSFER_ENCODING);
        header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        let mut tasks = vec![
            HttpTask::Header(header, false),
            HttpTask::Body(Some(body), trailers.is_none()),
        ];
        if let Some(t) = trailers {
            tasks.push(HttpTask::Trailer(Some(t)));
        }
        Ok(tasks)
    }
}

impl<SV, C> crate::HttpProxy<SV, C>
where
    C: pingora_core::connectors::http::custom::Connector,
{
    /// Holds `tasks` when the session asked for it: returns the tasks to forward now (None:
    /// nothing yet), with the complete response already passed through
    /// [crate::ProxyHttp::upstream_response_held].
    pub(crate) async fn hold_upstream_tasks(
        &self,
        session: &mut crate::Session,
        ctx: &mut SV::CTX,
        tasks: Vec<HttpTask>,
    ) -> Result<Option<Vec<HttpTask>>>
    where
        SV: crate::ProxyHttp + Send + Sync,
        SV::CTX: Send + Sync,
    {
        if !session.holds_response() || session.was_upgraded() {
            return Ok(Some(tasks));
        }
        let Some(hold) = session.response_hold.as_mut() else {
            return Ok(Some(tasks));
        };
        let HoldOutcome { mut pass, complete } = hold.hold(tasks)?;
        if let Some(held) = complete {
            let Held {
                mut header,
                mut body,
                trailers,
            } = held;
            self.inner
                .upstream_response_held(session, &mut header, &mut body, ctx)
                .await?;
            let head = session.req_header().method == http::Method::HEAD;
            let held = Held {
                header,
                body,
                trailers,
            };
            pass.extend(held.into_tasks(head)?);
        }
        Ok((!pass.is_empty()).then_some(pass))
    }
}
