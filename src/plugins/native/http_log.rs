//! `http-log`: sends each request's log entry (Kong's serializer shape) to an HTTP endpoint,
//! batched and retried off the request path.
//!
//! The log phase only pushes the entry into a bounded queue (`queue.max_entries`; a full
//! queue drops the entry with a warning, never waits). A background thread with its own
//! runtime drains every queue: batches of up to `queue.max_batch_size` entries, gathered for
//! at most `queue.max_coalescing_delay` seconds, are sent as one JSON object (batch size 1)
//! or a JSON array, and retried with exponential backoff (`initial_retry_delay` doubling up to
//! `max_retry_delay`) until `max_retry_time` has passed. Queues are shared by instances with
//! the same id and settings, so a reload keeps the entries waiting to be sent.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{log_serializer, BuildCtx, Bundled};
use crate::plugins::{Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "http-log",
    priority: 12,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "http-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = { type = "record", fields = {
      { http_endpoint = typedefs.url { required = true, referenceable = true } },
      { method = { type = "string", default = "POST", one_of = { "POST", "PUT", "PATCH" } } },
      { content_type = { type = "string", default = "application/json",
                         one_of = { "application/json", "application/json; charset=utf-8" } } },
      { timeout = { type = "number", default = 10000 } },
      { keepalive = { type = "number", default = 60000 } },
      { retry_count = { type = "integer" } },
      { queue_size = { type = "integer" } },
      { flush_timeout = { type = "number" } },
      { headers = { type = "map", keys = typedefs.header_name,
                    values = { type = "string", referenceable = true } } },
      { queue = { type = "record", fields = {
        { max_batch_size = { type = "integer", default = 1, between = { 1, 1000000 } } },
        { max_coalescing_delay = { type = "number", default = 1, between = { 0, 3600 } } },
        { max_entries = { type = "integer", default = 10000, between = { 1, 1000000 } } },
        { max_bytes = { type = "integer" } },
        { max_retry_time = { type = "number", default = 60 } },
        { initial_retry_delay = { type = "number", default = 0.01, between = { 0.001, 1000000 } } },
        { max_retry_delay = { type = "number", default = 60, between = { 0.001, 1000000 } } },
        { concurrency_limit = { type = "integer", default = 1, one_of = { -1, 1 } } },
      } } },
      { custom_fields_by_lua = { type = "map", keys = { type = "string", len_min = 1 },
                                 values = { type = "string", len_min = 1 } } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize, Clone, PartialEq)]
struct QueueConf {
    max_batch_size: usize,
    max_coalescing_delay: f64,
    max_entries: usize,
    max_retry_time: f64,
    initial_retry_delay: f64,
    max_retry_delay: f64,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
struct Conf {
    http_endpoint: String,
    method: String,
    content_type: String,
    timeout: f64,
    headers: Option<HashMap<String, String>>,
    queue: QueueConf,
    custom_fields_by_lua: Option<HashMap<String, String>>,
}

/// Where and how a queue sends its batches.
struct Target {
    uri: http::Uri,
    method: http::Method,
    headers: Vec<(String, String)>,
    timeout: Duration,
    queue: QueueConf,
}

struct HttpLog {
    queue: Arc<QueueHandle>,
}

/// The sending side of a queue; the queue's task ends once every handle is gone.
struct QueueHandle {
    tx: mpsc::Sender<Value>,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    if conf
        .custom_fields_by_lua
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err("custom_fields_by_lua is not supported by this gateway".into());
    }
    let uri: http::Uri = conf
        .http_endpoint
        .parse()
        .map_err(|e| format!("http_endpoint: {e}"))?;
    let mut headers: Vec<(String, String)> = conf
        .headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    headers.sort();
    headers.push(("content-type".into(), conf.content_type.clone()));
    // Credentials in the URL become Basic authentication, as Kong sends them.
    let authority = uri.authority().map(|a| a.as_str().to_string());
    let uri = match authority.as_deref() {
        Some(auth) if auth.contains('@') => {
            let (userinfo, hostport) = auth.rsplit_once('@').unwrap_or(("", auth));
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
            headers.push(("authorization".into(), format!("Basic {encoded}")));
            let mut parts = uri.into_parts();
            parts.authority = Some(
                hostport
                    .parse()
                    .map_err(|e| format!("http_endpoint: {e}"))?,
            );
            http::Uri::from_parts(parts).map_err(|e| format!("http_endpoint: {e}"))?
        }
        _ => uri,
    };
    let target = Target {
        uri,
        method: conf.method.parse().map_err(|e| format!("method: {e}"))?,
        headers,
        timeout: Duration::from_millis(conf.timeout.max(1.0) as u64),
        queue: conf.queue.clone(),
    };
    let key = format!(
        "{}|{}",
        ctx.plugin.id,
        serde_json::to_string(ctx.conf).unwrap_or_default()
    );
    Ok(Arc::new(HttpLog {
        queue: queue_for(key, target),
    }))
}

/// Live queues by (instance id, settings): a reload of an unchanged instance reuses its queue.
static QUEUES: LazyLock<Mutex<HashMap<String, Weak<QueueHandle>>>> =
    LazyLock::new(Default::default);

/// The runtime that sends every queue's batches, on a thread of its own.
static SENDER: LazyLock<tokio::runtime::Handle> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("http-log".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the http-log runtime starts");
            let _ = tx.send(rt.handle().clone());
            rt.block_on(std::future::pending::<()>());
        });
    if let Err(e) = spawned {
        panic!("cannot start the http-log thread: {e}");
    }
    rx.recv().expect("the http-log runtime starts")
});

fn queue_for(key: String, target: Target) -> Arc<QueueHandle> {
    let mut queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner());
    queues.retain(|_, q| q.strong_count() > 0);
    if let Some(q) = queues.get(&key).and_then(Weak::upgrade) {
        return q;
    }
    let (tx, rx) = mpsc::channel(target.queue.max_entries.max(1));
    SENDER.spawn(drain(rx, target));
    let handle = Arc::new(QueueHandle { tx });
    queues.insert(key, Arc::downgrade(&handle));
    handle
}

/// Sends the queue's entries in batches until every sender is gone and the queue is empty.
async fn drain(mut rx: mpsc::Receiver<Value>, target: Target) {
    let https = hyper_openssl::client::legacy::HttpsConnector::new();
    let client = match https {
        Ok(c) => Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(c),
        Err(e) => {
            tracing::error!(error = %e, "http-log: cannot set up TLS; entries are dropped");
            while rx.recv().await.is_some() {}
            return;
        }
    };
    let q = &target.queue;
    let coalesce = Duration::from_secs_f64(q.max_coalescing_delay.max(0.0));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + coalesce;
        while batch.len() < q.max_batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(entry)) => batch.push(entry),
                Ok(None) | Err(_) => break,
            }
        }
        let body = if q.max_batch_size == 1 && batch.len() == 1 {
            batch.pop().map(|v| v.to_string()).unwrap_or_default()
        } else {
            Value::Array(batch).to_string()
        };
        send_with_retries(&client, &target, Bytes::from(body)).await;
    }
}

type HttpClient = Client<
    hyper_openssl::client::legacy::HttpsConnector<
        hyper_util::client::legacy::connect::HttpConnector,
    >,
    Full<Bytes>,
>;

async fn send_with_retries(client: &HttpClient, target: &Target, body: Bytes) {
    let q = &target.queue;
    let started = Instant::now();
    let mut delay = Duration::from_secs_f64(q.initial_retry_delay.max(0.001));
    let max_delay = Duration::from_secs_f64(q.max_retry_delay.max(0.001));
    let max_time = Duration::from_secs_f64(q.max_retry_time.max(0.0));
    loop {
        let failure = match send(client, target, body.clone()).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if started.elapsed() + delay > max_time {
            tracing::error!(endpoint = %target.uri, error = %failure, "http-log: giving up on a batch");
            return;
        }
        tracing::warn!(endpoint = %target.uri, error = %failure, retry_in = ?delay, "http-log: send failed");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max_delay);
    }
}

async fn send(client: &HttpClient, target: &Target, body: Bytes) -> Result<(), String> {
    let mut req = http::Request::builder()
        .method(target.method.clone())
        .uri(target.uri.clone());
    for (k, v) in &target.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(target.timeout, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

impl Instance for HttpLog {
    fn phases(&self) -> &[Phase] {
        &[Phase::Log]
    }

    fn needs_log_data(&self) -> bool {
        true
    }

    fn log(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        let entry = log_serializer::serialize(ctx);
        match self.queue.tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PluginError(
                "http-log: the queue is full; entry dropped".into(),
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PluginError(
                "http-log: the queue is closed; entry dropped".into(),
            )),
        }
    }
}
