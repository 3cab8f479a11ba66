//! The command line: flags (each with its Kong environment variable where Kong has one) and
//! subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A Kong-compatible, DB-less API gateway on Pingora.
#[derive(Parser, Debug)]
#[command(name = "proxy", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// The declarative configuration (Kong decK format, `_format_version: "3.0"`); also read
    /// from KONG_DECLARATIVE_CONFIG. Default: `kong.yaml`, and when that file does not exist
    /// the gateway starts with no configuration (not ready) and waits for `POST /config`, as
    /// a DB-less Kong without declarative_config does (the Kong Ingress Controller's setup).
    #[arg(long, short = 'c', env = "PROXY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to serve HTTP on; repeat for several.
    #[arg(
        long,
        env = "PROXY_LISTEN",
        default_value = "0.0.0.0:8000",
        value_delimiter = ','
    )]
    pub(crate) listen: Vec<String>,
    /// HTTPS listen addresses (Kong's default port; certificates come from the config's
    /// `certificates`/`snis`), comma-separated, or `off`. HTTP/2 is offered by ALPN.
    #[arg(
        long,
        env = "PROXY_LISTEN_TLS",
        default_value = "0.0.0.0:8443",
        value_delimiter = ','
    )]
    pub(crate) listen_tls: Vec<String>,
    /// Default certificate (PEM chain) for TLS clients whose SNI matches no `snis` entry
    /// (Kong's `ssl_cert`); without it a self-signed one is made at startup.
    #[arg(long, env = "PROXY_SSL_CERT", requires = "ssl_cert_key")]
    pub(crate) ssl_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of `--ssl-cert` (Kong's `ssl_cert_key`).
    #[arg(long, env = "PROXY_SSL_CERT_KEY", requires = "ssl_cert")]
    pub(crate) ssl_cert_key: Option<std::path::PathBuf>,
    /// Also accept HTTP/2 without TLS (h2c, prior knowledge) on the plain listeners.
    #[arg(long, env = "PROXY_H2C")]
    pub(crate) h2c: bool,
    /// Worker threads, each with its own runtime (default: number of cores).
    #[arg(long, env = "PROXY_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PROXY_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log filter (tracing's syntax, e.g. `info` or `sluice=debug`); RUST_LOG overrides it.
    #[arg(long, default_value = "info", env = "PROXY_LOG_LEVEL")]
    pub(crate) log_level: String,
    /// Admin API addresses in Kong's syntax (`ip:port [ssl] [http2] ...`, comma-separated),
    /// or `off`. Loopback by default; `ssl` serves it over TLS with the proxy's certificates.
    #[arg(long, env = "PROXY_ADMIN_LISTEN", default_value = "127.0.0.1:8001")]
    pub(crate) admin_listen: String,
    /// Status API addresses (Kong's `status_listen`: `GET /status`, `/status/ready`,
    /// `/metrics`, no credentials), or `off`.
    #[arg(long, env = "PROXY_STATUS_LISTEN", default_value = "off")]
    pub(crate) status_listen: String,
    /// The Kong version the admin API reports in `GET /` (clients such as the Kong Ingress
    /// Controller choose their behaviour by it): the newest Kong OSS release whose behaviour
    /// this gateway reproduces.
    #[arg(long, env = "PROXY_KONG_COMPAT_VERSION", default_value = "3.9.1", value_parser = sluice::env::parse_semver)]
    pub(crate) kong_compat_version: String,
    /// Kong's router_flavor: `traditional_compatible` (Kong's default) or `traditional`, both
    /// served with Kong's traditional_compatible rules (KONG.md), or `expressions`, where
    /// routes may be written in Kong's expressions language (`expression`, `priority`).
    #[arg(long, global = true, env = "PROXY_ROUTER_FLAVOR", default_value = "traditional_compatible", value_parser = ["traditional", "traditional_compatible", "expressions"])]
    pub(crate) router_flavor: String,
    /// A declarative file holding only `custom_plugins` and `cloned_plugins`, merged into every
    /// configuration loaded (the file, SIGHUP, `POST /config`): plugins that survive a
    /// controller replacing the whole configuration. Read at startup.
    #[arg(long, global = true, env = "PROXY_PLUGINS_FILE")]
    pub(crate) plugins_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on the admin API.
    #[arg(long, env = "PROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Do not watch the config file for changes (SIGHUP and POST /config still reload).
    #[arg(long)]
    pub(crate) no_watch: bool,
    /// CPU time (the worker thread's own, not wall time) one call into Lua plugin code may
    /// take, in milliseconds, loading included; past it the request fails with a 500 and the
    /// plugin cannot catch it.
    #[arg(long, env = "PROXY_LUA_CPU_BUDGET_MS", default_value_t = 100)]
    pub(crate) lua_cpu_budget_ms: u64,
    /// Memory each worker's Lua VM may use, in MiB; an allocation past it fails the request.
    #[arg(long, env = "PROXY_LUA_MEMORY_MB", default_value_t = 256)]
    pub(crate) lua_memory_mb: usize,
    /// Where Lua plugin sockets may connect: comma-separated `host[:port]` entries (IPs, CIDR
    /// ranges, names, `*.suffix`, `unix:/path/prefix`, `*` for any host); default: anywhere.
    #[arg(long, env = "PROXY_LUA_SOCKET_ALLOW", default_value = "*", value_parser = sluice::plugins::lua::io::egress::Egress::parse)]
    pub(crate) lua_socket_allow: sluice::plugins::lua::io::egress::Egress,
    /// CA bundle (PEM) plugin sockets verify TLS peers with (Kong's
    /// lua_ssl_trusted_certificate); default: the system's store.
    #[arg(long, env = "PROXY_LUA_SSL_TRUSTED_CERTIFICATE")]
    pub(crate) lua_ssl_trusted_certificate: Option<PathBuf>,
    /// Modules plugins may `require`: names restrict the list to those, `-name` removes one
    /// from it (e.g. `-resty.redis,-resty.http`); default: all the gateway provides (Kong's
    /// untrusted_lua_sandbox_requires in spirit).
    #[arg(long, env = "PROXY_LUA_SANDBOX_REQUIRES", default_value = "")]
    pub(crate) lua_sandbox_requires: String,
    /// Size of kong.cache's shared level for all workers (Kong's mem_cache_size), e.g. 128m.
    #[arg(long, env = "PROXY_MEM_CACHE_SIZE", default_value = "128m", value_parser = sluice::proxy::limits::parse_size)]
    pub(crate) mem_cache_size: usize,
    /// Prefix of the environment variables kong.vault's env vault reads (Kong's
    /// vault_env_prefix).
    #[arg(long, env = "KONG_VAULT_ENV_PREFIX")]
    pub(crate) vault_env_prefix: Option<String>,
    /// Seconds a client may take to send a request header once it started, and to start its
    /// first request (nginx's client_header_timeout); past it: 408, or a silent close.
    #[arg(long, env = "PROXY_CLIENT_HEADER_TIMEOUT", default_value_t = 60)]
    pub(crate) client_header_timeout: u64,
    /// Seconds allowed between two reads of a request body (nginx's client_body_timeout);
    /// past it: 408.
    #[arg(long, env = "PROXY_CLIENT_BODY_TIMEOUT", default_value_t = 60)]
    pub(crate) client_body_timeout: u64,
    /// Seconds an idle client connection is kept open between requests (nginx's
    /// keepalive_timeout).
    #[arg(long, env = "PROXY_KEEPALIVE_TIMEOUT", default_value_t = 75)]
    pub(crate) keepalive_timeout: u64,
    /// Requests served on one client connection before it is closed (Kong's
    /// nginx_http_keepalive_requests).
    #[arg(long, env = "PROXY_KEEPALIVE_REQUESTS", default_value_t = 10_000)]
    pub(crate) keepalive_requests: u32,
    /// Seconds an idle upstream keep-alive connection stays open for reuse (Kong's
    /// upstream_keepalive_idle_timeout); 0 keeps it until the upstream closes it.
    #[arg(
        long,
        env = "KONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT",
        default_value_t = 60
    )]
    pub(crate) upstream_keepalive_idle_timeout: u64,
    /// nginx's large_client_header_buffers: a longer request line gets 414, a longer header
    /// line or a larger header 400 "Request header or cookie too large".
    #[arg(long, env = "PROXY_LARGE_CLIENT_HEADER_BUFFERS", default_value = "4 8k", value_parser = sluice::proxy::limits::parse_header_buffers)]
    pub(crate) large_client_header_buffers: pingora::protocols::http::v1::server::HeaderLimits,
    /// Open client connections per worker thread; connections beyond it are closed on
    /// accept (nginx's worker_connections).
    #[arg(
        long,
        env = "PROXY_MAX_CONNECTIONS_PER_WORKER",
        default_value_t = 16_384
    )]
    pub(crate) max_connections_per_worker: usize,
    /// Largest upstream response body, in MiB, read whole for buffered proxying (plugins
    /// with a `response` phase); a larger one fails that request with 502.
    #[arg(long, env = "PROXY_MAX_BUFFERED_RESPONSE_MB", default_value_t = 64)]
    pub(crate) max_buffered_response_mb: usize,
    /// nginx's client_body_buffer_size (Kong's default 8k): request bodies larger than this
    /// are, as in Kong, returned by kong.request.get_raw_body() only when the plugin passes a
    /// max_allowed_file_size.
    #[arg(long, env = "PROXY_CLIENT_BODY_BUFFER_SIZE", default_value = "8k", value_parser = sluice::proxy::limits::parse_size)]
    pub(crate) client_body_buffer_size: usize,
    /// Addresses whose client-address headers (or PROXY protocol) are believed (Kong's
    /// trusted_ips): comma-separated IPs, CIDR ranges and `unix:`; `0.0.0.0/0,::/0` trusts
    /// every peer. Default: none (the connection's peer is the client).
    #[arg(long, env = "KONG_TRUSTED_IPS", default_value = "")]
    pub(crate) trusted_ips: String,
    /// Where a trusted peer's client address is read (Kong's real_ip_header): a header name
    /// (X-Real-IP, X-Forwarded-For, ...) or `proxy_protocol`.
    #[arg(long, env = "KONG_REAL_IP_HEADER", default_value = "X-Real-IP")]
    pub(crate) real_ip_header: String,
    /// nginx's real_ip_recursive (Kong's real_ip_recursive): `on` walks an address list from the
    /// right past trusted addresses; `off` takes its last entry.
    #[arg(long, env = "KONG_REAL_IP_RECURSIVE", default_value = "off", value_parser = sluice::env::parse_on_off, action = clap::ArgAction::Set)]
    pub(crate) real_ip_recursive: bool,
    /// Do not log one line per request.
    #[arg(long, env = "PROXY_NO_ACCESS_LOG")]
    pub(crate) no_access_log: bool,
    /// Seconds to keep accepting after SIGTERM before closing the listeners (lets a load
    /// balancer stop sending traffic first).
    #[arg(long, default_value_t = 0)]
    pub(crate) shutdown_delay: u64,
    /// Seconds in-flight requests get to finish after the listeners close (the process exits as
    /// soon as none is left).
    #[arg(long, default_value_t = 10)]
    pub(crate) shutdown_timeout: u64,
    /// Run in the background (Pingora daemon mode; logs still go to stderr).
    #[arg(long)]
    pub(crate) daemon: bool,
    /// Take over the listening sockets of a running instance (zero-downtime binary upgrade).
    #[arg(long)]
    pub(crate) upgrade: bool,
    /// Pingora server settings file (YAML), kept apart from the declarative config.
    #[arg(long)]
    pub(crate) pingora_conf: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Validate a declarative file: print every error with its location, exit non-zero if any.
    Check {
        /// The file to check.
        path: PathBuf,
    },
    /// Work with streamed (custom) Lua plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PluginCommand {
    /// Print a plugin directory (handler.lua + schema.lua) as a `custom_plugins` entry:
    /// `proxy plugin embed plugins/foo >> kong.yaml`.
    Embed {
        /// The plugin directory.
        dir: PathBuf,
        /// The plugin's name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Print only the list item, to add under an existing `custom_plugins:` key.
        #[arg(long)]
        entry: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}
