//! The plugin model: definitions, instances, per-route chains ordered by priority with Kong's
//! scope precedence. Native (Rust) plugins live in [`native`].

pub mod chain;
pub mod condition;
pub mod entity;
pub mod lua;
pub mod native;
mod request_api;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};

/// A response a plugin sends instead of proxying (Kong's `kong.response.exit`).
#[derive(Debug, Clone)]
pub struct Exit {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (empty for none).
    pub body: Bytes,
}

impl Exit {
    /// An exit with a JSON body, as `kong.response.exit(status, table)` sends it.
    pub fn json(status: u16, body: &serde_json::Value) -> Exit {
        Exit {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// Kong's `{"message": ...}` error shape.
    pub fn message(status: u16, message: &str) -> Exit {
        Exit::json(status, &serde_json::json!({ "message": message }))
    }
}

/// What a phase handler tells the proxy to do next.
#[derive(Debug)]
pub enum Flow {
    /// Run the next plugin.
    Continue,
    /// Stop the phase and answer the client with this response.
    Exit(Exit),
    /// The handler waits for I/O ([`RequestState::io`]): await [`lua::io::Io::wait`], then
    /// call [`Instance::resume`].
    Wait,
}

/// A plugin failed while handling a request (the request gets a 500, never the process).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// Kong's plugin phases that run per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before routing; global instances only.
    Rewrite,
    /// After routing, before proxying.
    Access,
    /// On the whole upstream response, before it is sent (Kong's buffered proxying).
    Response,
    /// On the response header.
    HeaderFilter,
    /// On each response body chunk.
    BodyFilter,
    /// After the response was sent.
    Log,
}

impl Phase {
    /// Every phase, in the order of [`Phase::index`].
    pub const ALL: [Phase; 6] = [
        Phase::Rewrite,
        Phase::Access,
        Phase::Response,
        Phase::HeaderFilter,
        Phase::BodyFilter,
        Phase::Log,
    ];

    /// The phase's place in [`Phase::ALL`], for per-phase arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Kong's name of the phase (the handler method name).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::Response => "response",
            Phase::HeaderFilter => "header_filter",
            Phase::BodyFilter => "body_filter",
            Phase::Log => "log",
        }
    }
}

/// What a plugin asked to change in the request sent upstream (applied by the proxy).
#[derive(Debug, Default, Clone)]
pub struct UpstreamChanges {
    /// `kong.service.request.set_path`
    pub path: Option<String>,
    /// `kong.service.request.set_raw_query` / `set_query`
    pub query: Option<String>,
    /// `kong.service.request.set_method`
    pub method: Option<http::Method>,
    /// `kong.service.request.set_scheme`
    pub scheme: Option<String>,
    /// `kong.service.set_target(host, port)`
    pub target: Option<(String, u16)>,
    /// `kong.service.set_upstream(name)`: index of the balancer.
    pub balancer: Option<usize>,
    /// `kong.service.request.set_raw_body` / `set_body`: replaces the request body.
    pub body: Option<Bytes>,
    /// `kong.service.request.set_header("Host", ...)`: the Host header sent upstream.
    pub host: Option<String>,
    /// `ngx.var.upstream_x_forwarded_{host,port,proto,path,prefix} = v`: the X-Forwarded-*
    /// values sent upstream, in that order (None keeps Kong's own).
    pub forwarded: [Option<String>; 5],
    /// `kong.service.set_retries`: replaces the service's `retries`.
    pub retries: Option<u16>,
    /// `kong.service.set_timeouts`: connect, write and read timeouts.
    pub timeouts: Option<[std::time::Duration; 3]>,
    /// `kong.service.set_tls_verify`: replaces the service's `tls_verify`.
    pub tls_verify: Option<bool>,
    /// Largest request body allowed while it streams (request-size-limiting on a body of
    /// unknown length): more gives 413.
    pub body_limit: Option<u64>,
}

/// A change to response headers requested before the response exists (rewrite/access).
#[derive(Debug, Clone)]
pub enum HeaderOp {
    /// Replace all values.
    Set(String, String),
    /// Add a value.
    Add(String, String),
    /// Remove all values.
    Clear(String),
}

impl HeaderOp {
    /// Applies the change to a response header, moving the name and value into it.
    pub fn apply_owned(self, resp: &mut ResponseHeader) {
        let _ = match self {
            HeaderOp::Set(n, v) => resp.insert_header(n, v).map(|_| ()),
            HeaderOp::Add(n, v) => resp.append_header(n, v).map(|_| ()),
            HeaderOp::Clear(n) => {
                resp.remove_header(n.as_str());
                Ok(())
            }
        };
    }

    /// Applies the change to a response header (a copy of it: the op can be applied again).
    pub fn apply(&self, resp: &mut ResponseHeader) {
        self.clone().apply_owned(resp)
    }
}

/// Per-request state every plugin phase can read and change. Owned by the proxy's per-request
/// context; plain Rust data (the Lua side keeps its per-request tables in the worker's VM,
/// keyed by [`RequestState::id`]).
#[derive(Debug)]
pub struct RequestState {
    /// Unique per process; keys the request's Lua tables (kong.ctx.*, ngx.ctx).
    pub id: u64,
    /// When the request started.
    pub started: std::time::SystemTime,
    /// The client's address: the connection's, or the one a trusted proxy gave (nginx's
    /// `$remote_addr` after realip; port 0 when the proxy gave none).
    pub client: Option<std::net::SocketAddr>,
    /// The connection's peer address (nginx's `$realip_remote_addr`).
    pub peer: Option<std::net::SocketAddr>,
    /// The client address the connection's PROXY protocol header gave.
    pub proxy_protocol: Option<std::net::SocketAddr>,
    /// Local address the request came in on.
    pub server: Option<std::net::SocketAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// Config index of the matched route.
    pub route: Option<usize>,
    /// Config index of the route's service.
    pub service: Option<usize>,
    /// Config index of the authenticated consumer.
    pub consumer: Option<usize>,
    /// The credential used to authenticate (as JSON, for `kong.client.get_credential`).
    pub credential: Option<serde_json::Value>,
    /// Regex captures of the matched route path.
    pub captures: Option<crate::router::UriCaptures>,
    /// Changes to the upstream request.
    pub upstream: UpstreamChanges,
    /// A response a plugin asked for (`kong.response.exit`), until the proxy sends it.
    pub exit: Option<Exit>,
    /// Response header changes asked for before the response existed.
    pub response_headers: Vec<HeaderOp>,
    /// Response status as seen by plugins (header_filter and later).
    pub status: u16,
    /// Whether the response came from the service (`service`), a plugin/gateway exit
    /// (`exit`) or an error (`error`): `kong.response.get_source()`.
    pub source: &'static str,
    /// The request body, when it was read for plugins.
    pub body: Option<bytes::Bytes>,
    /// nginx's `client_body_buffer_size`: a larger body is one nginx would keep in a file.
    pub body_buffer: usize,
    /// Buffered proxying was asked for (`kong.service.request.enable_buffering`).
    pub buffering: bool,
    /// The upstream's response as received, when it was buffered whole (Kong's buffered
    /// proxying): `kong.service.response.*` read it.
    pub service_response: Option<Box<ServiceResponse>>,
    /// Response body buffered by `kong.response.get_raw_body` (body_filter).
    pub response_body: Option<bytes::BytesMut>,
    /// Edits of the log serializer's output (`kong.log.set_serialize_value`), in order.
    pub serialize_values: Vec<SerializeValue>,
    /// A body_filter plugin ended the body (`ngx.arg[2] = true`, `set_raw_body`): later chunks
    /// are dropped without running body_filter.
    pub body_ended: bool,
    /// The buffered body is whole (the eof chunk was added to it).
    pub response_body_complete: bool,
    /// Per-request values of native plugins, kept between phases (Kong's `kong.ctx.plugin`).
    pub plugin_data: PluginData,
    /// The response headers as sent, for body_filter and log plugins that read them.
    pub sent_headers: Option<http::HeaderMap>,
    /// A Lua plugin called `kong.client.authenticate`: its tables (in the request's Lua
    /// tables) are what `get_consumer`/`get_credential` return.
    pub lua_auth: bool,
    /// The request ran Lua: the worker counts it among its generation's users until it ends.
    pub lua_tables: bool,
    /// The Lua worker holds something under this request's id (its kong.ctx/ngx.ctx tables,
    /// a call waiting for I/O, light threads' state), to drop when the request ends.
    pub lua_keyed: bool,
    /// Generation of the snapshot the request runs on.
    pub generation: u64,
    /// What the log phase reports about the exchange (filled in by the proxy).
    pub log: LogData,
    /// Metrics the prometheus plugin asked for this request.
    pub metrics: Option<MetricFlags>,
    /// Plugin sockets and waits of the request (created when a Lua plugin first uses them).
    pub io: Option<Box<lua::io::Io>>,
    /// CPU budget the Lua call in progress has used in its earlier resumes (it waited).
    pub lua_spent: std::time::Duration,
}

/// An upstream response read whole before it was sent (buffered proxying).
#[derive(Debug, Clone)]
pub struct ServiceResponse {
    /// Status code.
    pub status: u16,
    /// Headers as received.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// How `kong.log.set_serialize_value` changes the serializer's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerializeMode {
    /// Create the path if needed and set the value.
    Set,
    /// Set only where no value is.
    Add,
    /// Set only where a value is.
    Replace,
}

/// One `kong.log.set_serialize_value` edit.
#[derive(Debug, Clone)]
pub struct SerializeValue {
    /// The key, split at unescaped dots.
    pub path: Vec<String>,
    /// The value (`null` removes the key).
    pub value: serde_json::Value,
    /// The mode.
    pub mode: SerializeMode,
}

impl RequestState {
    /// Whether the connection comes from a trusted proxy (`--trusted-ips`).
    pub fn peer_trusted(&self) -> bool {
        self.peer
            .is_some_and(|p| crate::proxy::realip::is_trusted(p.ip()))
    }

    /// The request's id as nginx's `$request_id` gives it (32 hex digits): unique per request,
    /// not guessable from another's. `kong.response.error` bodies and `ngx.var.request_id`.
    pub fn request_id(&self) -> String {
        static SEED: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let (a, b) = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair());
        // splitmix64 of the per-process counter, keyed by the process's random seed.
        let mut z = self.id.wrapping_add(b).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{a:016x}{:016x}", z ^ (z >> 31))
    }
}

/// Which per-request metric families to record (the prometheus plugin's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFlags {
    /// Fill in the consumer label.
    pub per_consumer: bool,
    /// `kong_http_requests_total`.
    pub status_codes: bool,
    /// The latency histograms.
    pub latency: bool,
    /// `kong_bandwidth_bytes`.
    pub bandwidth: bool,
}

impl MetricFlags {
    /// Everything on: what is recorded when no prometheus instance is configured.
    pub const ALL: MetricFlags = MetricFlags {
        per_consumer: true,
        status_codes: true,
        latency: true,
        bandwidth: true,
    };
}

/// The finished exchange as the log phase sees it (Kong's log serializer reads it).
#[derive(Debug, Default, Clone)]
pub struct LogData {
    /// Upstream addresses tried, in order.
    pub tries: Vec<std::net::SocketAddr>,
    /// Path and query sent upstream.
    pub upstream_uri: Option<String>,
    /// Response headers sent to the client.
    pub response_headers: Vec<(String, String)>,
    /// Request bytes received (header and body).
    pub request_size: usize,
    /// Response bytes sent (header and body).
    pub response_size: usize,
    /// Whole request, in milliseconds.
    pub request_ms: u64,
    /// Upstream response time (header received), in milliseconds.
    pub upstream_ms: Option<u64>,
}

impl RequestState {
    /// A fresh state for request `id` on snapshot `generation`.
    pub fn new(id: u64, generation: u64) -> Self {
        RequestState {
            id,
            started: std::time::SystemTime::now(),
            client: None,
            peer: None,
            proxy_protocol: None,
            server: None,
            scheme: "http",
            sni: None,
            route: None,
            service: None,
            consumer: None,
            credential: None,
            captures: None,
            upstream: UpstreamChanges::default(),
            exit: None,
            response_headers: Vec::new(),
            status: 0,
            source: "exit",
            body: None,
            body_buffer: 8 << 10,
            response_body: None,
            buffering: false,
            service_response: None,
            plugin_data: PluginData::default(),
            lua_tables: false,
            lua_keyed: false,
            lua_auth: false,
            response_body_complete: false,
            body_ended: false,
            serialize_values: Vec::new(),
            sent_headers: None,
            generation,
            log: LogData::default(),
            metrics: None,
            io: None,
            lua_spent: std::time::Duration::ZERO,
        }
    }
}

/// Values native plugin instances keep for one request between their phases, keyed by the
/// instance's name (a clone has its own).
#[derive(Default)]
pub struct PluginData(Vec<(Box<str>, Box<dyn std::any::Any + Send + Sync>)>);

impl PluginData {
    /// The value `plugin` stored, if it has the type `T`.
    pub fn get_mut<T: std::any::Any>(&mut self, plugin: &str) -> Option<&mut T> {
        self.0
            .iter_mut()
            .find(|(k, _)| &**k == plugin)
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// Stores `value` for `plugin`, replacing what it stored before.
    pub fn insert<T: std::any::Any + Send + Sync>(&mut self, plugin: &str, value: T) {
        self.remove(plugin);
        self.0.push((plugin.into(), Box::new(value)));
    }

    /// Drops what `plugin` stored.
    pub fn remove(&mut self, plugin: &str) {
        self.0.retain(|(k, _)| &**k != plugin);
    }
}

impl std::fmt::Debug for PluginData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Everything a phase handler can see and change.
pub struct PhaseCtx<'a> {
    /// The phase being run.
    pub phase: Phase,
    /// The snapshot serving the request.
    pub snap: &'a crate::snapshot::Snapshot,
    /// The request's state.
    pub state: &'a mut RequestState,
    /// The client's request (changes made in rewrite/access go upstream).
    pub req: &'a mut RequestHeader,
    /// The response header (header_filter).
    pub resp: Option<&'a mut ResponseHeader>,
    /// The current body chunk and whether it is the last (body_filter).
    pub chunk: Option<(&'a mut Option<Bytes>, bool)>,
    /// When the caller began this call of the phase (read once, for its latency metric): the
    /// Lua runtime also times the call's CPU budget from it rather than read the clock again.
    pub started: std::time::Instant,
}

impl PhaseCtx<'_> {
    /// The response's headers: the header itself in header_filter, the copy kept as it was
    /// sent in body_filter and log (None before the response exists).
    pub fn response_headers(&self) -> Option<&http::HeaderMap> {
        match self.resp.as_deref() {
            Some(r) => Some(&r.headers),
            None => self.state.sent_headers.as_ref(),
        }
    }

    /// The request's query string as nginx's `$args` holds it: what a plugin set with
    /// `kong.service.request.set_query`/`set_raw_query` or `ngx.req.set_uri_args`, else the
    /// client's (None when there is none).
    pub fn query(&self) -> Option<&str> {
        match &self.state.upstream.query {
            Some(q) => Some(q.as_str()),
            None => self.req.uri.query(),
        }
    }

    /// The client's IP address (behind trusted proxies, the one they gave).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.state.client.map(|a| a.ip())
    }

    /// Whether the connection comes from a trusted proxy (Kong's
    /// `kong.ip.is_trusted(kong.client.get_ip())`).
    pub fn peer_trusted(&self) -> bool {
        self.state.peer_trusted()
    }

    /// A request header, only when the connection comes from a trusted proxy (the
    /// X-Forwarded-* family).
    pub fn trusted_header(&self, name: &str) -> Option<&str> {
        if self.peer_trusted() {
            self.header(name)
        } else {
            None
        }
    }

    /// `(id, name)` of the matched route.
    pub fn route(&self) -> Option<(&str, Option<&str>)> {
        self.state
            .route
            .map(|i| &self.snap.config.routes[i])
            .map(|r| (r.id.as_str(), r.name.as_deref()))
    }

    /// `(id, name)` of the matched service.
    pub fn service(&self) -> Option<(&str, Option<&str>)> {
        self.state
            .service
            .map(|i| &self.snap.services[i])
            .map(|s| (s.id.as_str(), s.name.as_deref()))
    }
}

/// A configured plugin instance, ready to run. Instances are shared by all workers; a phase
/// that is not overridden does nothing.
pub trait Instance: Send + Sync {
    /// Which phases the instance implements (others are skipped without a call).
    fn phases(&self) -> &[Phase];

    /// Whether the request phases may read the request body (it is then read beforehand).
    fn may_read_body(&self) -> bool {
        false
    }

    /// Whether the log phase reads [`RequestState::log`] (the proxy fills it in only then).
    fn needs_log_data(&self) -> bool {
        false
    }

    /// Kong's `rewrite` phase (global instances, before routing).
    fn rewrite(&self, _ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Kong's `access` phase.
    fn access(&self, _ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Kong's `response` phase: the whole upstream response is in `ctx.resp` and
    /// [`RequestState::service_response`]; an exit replaces it.
    fn response(&self, _ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Continues a rewrite, access or response call that returned [`Flow::Wait`], once
    /// [`RequestState::io`] has a finished operation for it.
    fn resume(&self, _ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        Err(PluginError("this plugin does not wait".into()))
    }

    /// Kong's `header_filter` phase.
    fn header_filter(&self, _ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// Kong's `body_filter` phase, once per chunk.
    fn body_filter(&self, _ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// Kong's `log` phase.
    fn log(&self, _ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// The Lua instance this is: consecutive Lua instances of a phase run together, in one
    /// entry into Lua (`lua::runtime::Batch`).
    fn as_lua(&self) -> Option<&lua::LuaInstance> {
        None
    }
}

/// How a plugin's instances are built.
#[derive(Clone)]
pub enum Kind {
    /// A bundled plugin in Rust: its schema and instance builder.
    Native(&'static native::Bundled),
    /// A streamed Lua plugin (its handler and schema).
    Lua(Arc<lua::LuaPlugin>),
}

/// A plugin that instances can name.
#[derive(Clone)]
pub struct Definition {
    /// The plugin's name.
    pub name: String,
    /// Kong's PRIORITY: higher runs first.
    pub priority: i64,
    /// Native or Lua.
    pub kind: Kind,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish()
    }
}
