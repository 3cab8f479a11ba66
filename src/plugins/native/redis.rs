//! Redis for bundled plugins (rate-limiting and response-ratelimiting with `policy: redis`).
//!
//! A target is Kong's `redis` record without its timeout (host, port, credentials, database,
//! TLS settings). Each worker thread keeps one multiplexed connection per target: the commands
//! of concurrent requests are pipelined on it, it lives on the thread's runtime (no cross-thread
//! wake-ups per command), and it outlives reloads, so every plugin instance that names the same
//! target shares it. A connection that fails is dropped and made again by the next command;
//! after a failed connect, commands fail at once for [`RETRY_AFTER`] instead of each waiting for
//! its own connect timeout. TLS goes through the OpenSSL the gateway links, verifying with the CA
//! bundle of `--lua-ssl-trusted-certificate` (Kong's `lua_ssl_trusted_certificate`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
use redis::aio::MultiplexedConnection;
use serde::Deserialize;

use crate::plugins::lua::io::{conn, dns, socket};

/// How long commands fail at once after a connect failed.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Kong's `redis` record (kong/tools/redis/schema.lua), as the schema fills it in.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RedisConf {
    /// Host name or IP address.
    pub host: Option<String>,
    /// Port (default 6379).
    pub port: Option<u16>,
    /// Connect, send and read timeout in milliseconds (default 2000).
    pub timeout: Option<u64>,
    /// ACL user name (Redis 6+).
    pub username: Option<String>,
    /// Password; absent or empty: no AUTH.
    pub password: Option<String>,
    /// Database index (SELECT).
    pub database: i64,
    /// TLS to Redis.
    pub ssl: bool,
    /// Verify Redis's certificate.
    pub ssl_verify: bool,
    /// SNI and the name verified.
    pub server_name: Option<String>,
}

/// Where commands go: everything about a connection except the per-instance timeout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    database: i64,
    ssl: bool,
    ssl_verify: bool,
    server_name: Option<String>,
}

impl Target {
    /// The target of a `redis` record and its timeout; None without a host.
    pub fn of(conf: &RedisConf) -> Option<(Target, Duration)> {
        let present = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let target = Target {
            host: present(&conf.host)?,
            port: conf.port.unwrap_or(6379),
            username: present(&conf.username),
            password: present(&conf.password),
            database: conf.database,
            ssl: conf.ssl,
            ssl_verify: conf.ssl_verify,
            server_name: present(&conf.server_name),
        };
        let timeout = Duration::from_millis(conf.timeout.unwrap_or(2000).max(1));
        Some((target, timeout))
    }

    /// Kong's name for the target in logs and pool names: `host:port;database`.
    pub fn name(&self) -> String {
        format!("{}:{};{}", self.host, self.port, self.database)
    }
}

/// A failed command: what went wrong, in words a log reader can act on.
#[derive(Debug, Clone)]
pub struct RedisError(pub String);

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, RedisError>>>;

enum State {
    Idle,
    Connecting(Connecting),
    Ready(MultiplexedConnection),
    Down { until: Instant, err: RedisError },
}

/// One worker thread's connection to a target.
pub struct Client {
    target: Target,
    state: Mutex<State>,
}

thread_local! {
    static CLIENTS: RefCell<HashMap<Target, Arc<Client>>> = RefCell::new(HashMap::new());
}

/// This worker thread's client for `target`.
pub fn client(target: &Target) -> Arc<Client> {
    CLIENTS.with(|c| {
        let mut clients = c.borrow_mut();
        if let Some(client) = clients.get(target) {
            return client.clone();
        }
        let client = Arc::new(Client {
            target: target.clone(),
            state: Mutex::new(State::Idle),
        });
        clients.insert(target.clone(), client.clone());
        client
    })
}

impl Client {
    /// Runs `op` on the connection (made first if needed) within `limit`: the operation's
    /// result, or why it failed. Counted in the Redis metrics.
    pub async fn run<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = self.run_timed(limit, op).await;
        LATENCY.observe(started.elapsed().as_secs_f64() * 1000.0);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.0.ends_with("timeout") => "timeout",
            Err(_) => "error",
        };
        OPERATIONS.with_label_values(&[outcome]).inc();
        result
    }

    async fn run_timed<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection(limit).await?;
        match tokio::time::timeout(limit, op(conn)).await {
            Err(_) => Err(self.failed("timeout")),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_unrecoverable_error() || e.is_connection_dropped() || e.is_io_error() {
                    // The connection is gone: the next command makes a new one.
                    self.reset();
                }
                Err(self.failed(&describe(&e)))
            }
        }
    }

    fn failed(&self, what: &str) -> RedisError {
        RedisError(format!("redis {}: {what}", self.target.name()))
    }

    fn reset(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::Ready(_)) {
            *state = State::Idle;
        }
    }

    /// The connection, or the connect in progress to wait for (made by one command, shared by
    /// the others that arrive meanwhile).
    async fn connection(&self, limit: Duration) -> Result<MultiplexedConnection, RedisError> {
        let connecting = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match &*state {
                State::Ready(c) => return Ok(c.clone()),
                State::Down { until, err } if Instant::now() < *until => return Err(err.clone()),
                State::Connecting(f) => f.clone(),
                State::Idle | State::Down { .. } => {
                    let f = connect(self.target.clone(), limit).boxed().shared();
                    *state = State::Connecting(f.clone());
                    f
                }
            }
        };
        let result = connecting.await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::Connecting(_)) {
            *state = match &result {
                Ok(c) => State::Ready(c.clone()),
                Err(err) => State::Down {
                    until: Instant::now() + RETRY_AFTER,
                    err: err.clone(),
                },
            };
        }
        result
    }
}

/// Connects, authenticates and selects the database; the connection's driver runs on this
/// thread's runtime until every handle to the connection is dropped.
async fn connect(target: Target, limit: Duration) -> Result<MultiplexedConnection, RedisError> {
    let name = target.name();
    let fail = |what: String| RedisError(format!("redis {name}: {what}"));
    let deadline = tokio::time::Instant::now() + limit;
    let ip = dns::resolve(&dns::resolver(), &target.host)
        .await
        .map_err(|e| fail(format!("failed to connect: {e}")))?;
    let tcp =
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((ip, target.port)))
            .await
        {
            Err(_) => return Err(fail("failed to connect: timeout".into())),
            Ok(Err(e)) => return Err(fail(format!("failed to connect: {}", conn::describe(&e)))),
            Ok(Ok(s)) => s,
        };
    let _ = tcp.set_nodelay(true);
    let info = redis::RedisConnectionInfo {
        db: target.database,
        username: target.username.clone(),
        password: target.password.clone(),
        ..Default::default()
    };
    let setup = async {
        if target.ssl {
            let connector = socket::tls_connector().map_err(|e| fail(format!("TLS: {e}")))?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let tls = conn::tls(
                tcp,
                &connector,
                target.server_name.as_deref(),
                target.ssl_verify,
                left,
            )
            .await
            .map_err(|e| fail(format!("failed to do the TLS handshake: {e}")))?;
            let (c, driver) = MultiplexedConnection::new(&info, tls)
                .await
                .map_err(|e| fail(setup_error(&e)))?;
            tokio::spawn(driver);
            Ok(c)
        } else {
            let (c, driver) = MultiplexedConnection::new(&info, tcp)
                .await
                .map_err(|e| fail(setup_error(&e)))?;
            tokio::spawn(driver);
            Ok(c)
        }
    };
    let result = match tokio::time::timeout_at(deadline, setup).await {
        Err(_) => Err(fail("failed to connect: timeout".into())),
        Ok(r) => r,
    };
    if let Err(e) = &result {
        OPERATIONS.with_label_values(&["connect_error"]).inc();
        tracing::error!(error = %e, "cannot connect to Redis");
    }
    result
}

/// The error of the AUTH/SELECT a new connection runs, said the way Kong logs it.
fn setup_error(e: &redis::RedisError) -> String {
    let text = describe(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("wrongpass") || lower.contains("auth") || lower.contains("password") {
        format!("failed to authenticate: {text} (check config.redis.username/password)")
    } else if lower.contains("db index") || lower.contains("select") {
        format!("failed to select database: {text} (check config.redis.database)")
    } else {
        format!("failed to set up the connection: {text}")
    }
}

/// A Redis error as logged ("timeout" in OpenResty's word).
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    e.to_string()
}

/// A script that adds `ARGV[2i-1]` to each key `KEYS[i]`, and gives a key that did not exist the
/// expiration `ARGV[2i]` with `expire_command` (`expire`: seconds, `expireat`: a unix time), as
/// Kong's rate-limiting policies do; returns the number of keys.
pub fn adding_script(expire_command: &str) -> redis::Script {
    redis::Script::new(&format!(
        r#"
for i, key in ipairs(KEYS) do
  local exists = redis.call("exists", key)
  redis.call("incrby", key, ARGV[2 * i - 1])
  if exists == 0 then
    redis.call("{expire_command}", key, ARGV[2 * i])
  end
end
return #KEYS
"#
    ))
}

/// `sluice_redis_operations_total{result}`: ok, error, timeout, connect_error.
pub static OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "sluice_redis_operations_total",
            "Redis operations of bundled plugins (rate-limiting, response-ratelimiting), by result (ok, error, timeout, connect_error)",
        ),
        &["result"],
    )
    .expect("valid counter")
});

/// `sluice_redis_latency_ms`: time of each Redis operation, connect included.
pub static LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "sluice_redis_latency_ms",
            "Time of each Redis operation of bundled plugins in milliseconds (a connect included)",
        )
        .buckets(vec![
            0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
        ]),
    )
    .expect("valid histogram")
});
