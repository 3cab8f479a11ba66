//! `proxy`: the command line. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Parser;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;

use pingora::server::RunArgs;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use sluice::admin::Admin;
use sluice::config::LoadError;
use sluice::listen::Listener;
use sluice::metrics::Metrics;
use sluice::proxy::Gateway;
use sluice::reload::watch::{Drain, FileWatcher, Signals};
use sluice::reload::Reloader;
use sluice::snapshot;

mod cli;

use cli::{Cli, Command, LogFormat, PluginCommand};

#[global_allocator]
static GLOBAL: sluice::allocator::MiMalloc = sluice::allocator::MiMalloc;

/// Turns transparent huge pages off for this process (and the workers a daemon forks), unless
/// `MIMALLOC_ALLOW_THP` is set. mimalloc is also built without its huge-page advice (the
/// `no_thp` feature), so that a kernel in `madvise` mode (Debian's default) gives no huge pages
/// even to what is allocated before `main`; this call covers kernels in `always` mode. With
/// THP (16 of a 1-route start's 41 MiB were huge pages), a 2 MiB page stays whole while a
/// single small block on it lives, and khugepaged folds purged ranges back into huge pages, so
/// RSS crept up reload after reload: in `bench/memory.py --soak 1000` the RSS once idle went
/// 122 → 134 MiB with THP and 97 → 98 MiB without. The cost, measured: routing over 10,000
/// regex routes ~6% slower (probably TLB misses); the plain proxy hop did not move. The kernel
/// applies the flag to mappings that already exist too. Errors are ignored: a kernel without
/// the flag (before 3.15) keeps its own setting.
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory descriptor; it
    // reads no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_load_error(e: &LoadError) {
    match e {
        LoadError::Invalid(errs) => {
            for err in &errs.0 {
                eprintln!("{err}");
            }
            let n = errs.0.len();
            eprintln!("{n} error{}", if n == 1 { "" } else { "s" });
        }
        other => eprintln!("{other}"),
    }
}

fn check(path: &std::path::Path, trust: TrustCheck) -> anyhow::Result<ExitCode> {
    let loaded = snapshot::load_file(path, 0);
    trust_checked(trust)?;
    Ok(match loaded {
        Ok(snap) => {
            let c = &snap.config;
            println!(
                "{}: OK: {} services, {} routes, {} plugins, {} consumers, {} upstreams",
                path.display(),
                c.services.len(),
                c.routes.len(),
                c.plugins.len(),
                c.consumers.len(),
                c.upstreams.len()
            );
            // The process ends here: freeing 100,000 routes one by one would only cost time.
            std::mem::forget(snap);
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_load_error(&e);
            ExitCode::FAILURE
        }
    })
}

fn serve(cli: Cli, trust: TrustCheck, kong_env: sluice::env::Applied) -> anyhow::Result<ExitCode> {
    init_logging(cli.log_format, &cli.log_level);
    for (from, to, value) in &kong_env.mapped {
        tracing::info!("{from} read as {to}={value}");
    }
    if !kong_env.unused.is_empty() {
        tracing::info!(variables = ?kong_env.unused, "Kong settings this gateway does not read");
    }
    let explicit = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("KONG_DECLARATIVE_CONFIG").map(PathBuf::from));
    let config_path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from("kong.yaml"));
    let path = config_path.clone();
    // Startup is not followed by another compile soon: its scratch memory goes back at once.
    let snap = match sluice::reload::compiler::run(move || {
        let snap = snapshot::load_file(&path, 1);
        sluice::reload::release_freed_memory();
        snap
    }) {
        Ok(s) => s,
        Err(LoadError::Io { source, .. })
            if explicit.is_none() && source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!(
                "no kong.yaml here and no --config given: starting with no configuration (not ready until POST /config)"
            );
            snapshot::empty(1)
        }
        Err(e) => {
            print_load_error(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    trust_checked(trust)?;
    tracing::info!(
        config = %config_path.display(),
        hash = %&snap.hash[..12],
        services = snap.config.services.len(),
        routes = snap.config.routes.len(),
        plugins = snap.config.plugins.len(),
        "configuration loaded"
    );
    let state = Arc::new(ArcSwap::from_pointee(snap));
    let metrics = Arc::new(Metrics::new());
    let reloader = Arc::new(Reloader::new(config_path, state.clone(), metrics.clone()));

    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    sluice::metrics::local::set_workers(workers);
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        nocapture: false,
        test: false,
        conf: cli.pingora_conf.clone(),
    };
    let mut conf = match &cli.pingora_conf {
        Some(path) => {
            ServerConf::load_from_yaml(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?
        }
        None => ServerConf::default(),
    };
    // One runtime per worker thread and no work stealing: a request stays on the thread that
    // accepted it, which the per-worker Lua VMs rely on.
    conf.threads = workers;
    conf.work_stealing = false;
    conf.daemon = cli.daemon;
    // Pingora stops accepting, then sleeps the grace period before stopping its runtimes (which
    // drops unfinished requests): the grace period is the drain timeout, and `Drain` exits
    // earlier once nothing is in flight.
    conf.grace_period_seconds = Some(cli.shutdown_timeout);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    conf.max_retries = 32767;
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let tls_state = state.clone();
    server.add_service(background_service(
        "health checks",
        sluice::balancer::probe::HealthChecker::new(state.clone()),
    ));
    let limits = sluice::proxy::limits::ClientLimits {
        header_timeout: Duration::from_secs(cli.client_header_timeout.max(1)),
        body_timeout: Duration::from_secs(cli.client_body_timeout.max(1)),
        keepalive_timeout: Duration::from_secs(cli.keepalive_timeout.max(1)),
        keepalive_requests: cli.keepalive_requests.max(1),
        header: cli.large_client_header_buffers,
        connections_per_worker: cli.max_connections_per_worker,
        buffered_response: cli.max_buffered_response_mb << 20,
        body_buffer: cli.client_body_buffer_size,
        upstream_idle_timeout: (cli.upstream_keepalive_idle_timeout > 0)
            .then(|| Duration::from_secs(cli.upstream_keepalive_idle_timeout)),
    };
    // The errors Pingora writes itself go out in Kong's shape.
    pingora::protocols::http::server::set_error_responder(sluice::proxy::limits::error_response);
    // Nothing reads the streams' pending read/write times: no clock reads for them.
    pingora::protocols::l4::stream::set_pending_time_tracking(false);
    let gateway =
        Gateway::new(state, metrics.clone(), !cli.no_access_log).with_limits(limits.clone());
    server.add_service(background_service(
        "drain",
        Drain::new(
            gateway.inflight(),
            Duration::from_secs(cli.shutdown_timeout),
        ),
    ));
    let mut proxy = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
    proxy.handle_init_modules();
    proxy.server_options = Some(limits.server_options(cli.h2c));
    // HTTP/2 requests get the header size limit of HTTP/1 ones (Pingora's bounded defaults
    // otherwise: concurrent streams, malformed-stream budget).
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(u32::try_from(limits.header.total).unwrap_or(u32::MAX));
    proxy.h2_options = Some(h2);
    let mut service = Service::new(
        "proxy".to_string(),
        sluice::proxy::limits::ConnectionCap::new(proxy, limits.connections_per_worker),
    );
    let mut proxy_protocol = Vec::new();
    let mut plain = Vec::new();
    let mut tls_listen = Vec::new();
    let mut proxy_listeners = Vec::new();
    for entry in cli.listen.iter().chain(&cli.listen_tls) {
        let from_tls_flag = cli.listen_tls.contains(entry);
        for mut l in Listener::parse_list(entry).map_err(anyhow::Error::msg)? {
            l.ssl |= from_tls_flag;
            if l.proxy_protocol {
                proxy_protocol.push(l.addr.clone());
            }
            if l.ssl {
                tls_listen.push(l.clone());
            } else {
                sluice::listen::add_tcp(&mut service, &l);
                plain.push(l.addr.clone());
            }
            proxy_listeners.push(l);
        }
    }
    if !proxy_protocol.is_empty() {
        let addrs = proxy_protocol
            .iter()
            .map(|a| {
                a.parse::<std::net::SocketAddr>()
                    .with_context(|| format!("proxy_protocol listener {a:?}: an IP:port"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let reader = sluice::proxy::proxy_protocol::Reader::new(addrs, limits.header_timeout);
        service
            .endpoints()
            .set_pre_tls_callback(std::sync::Arc::new(reader));
    }
    // One certificate selector for every TLS listener, proxy and admin alike (the default
    // certificate may be made at startup: once).
    let mut selector = None;
    for l in &tls_listen {
        add_tls(&mut service, l, &mut selector, &cli, &tls_state)?;
    }
    let listen_tls: Vec<&str> = tls_listen.iter().map(|l| l.addr.as_str()).collect();
    tracing::info!(listen = ?plain, ?listen_tls, ?proxy_protocol, workers, "serving");
    server.add_service(service);

    let admin_listeners = Listener::parse_list(&cli.admin_listen).map_err(anyhow::Error::msg)?;
    let status_listeners = Listener::parse_list(&cli.status_listen).map_err(anyhow::Error::msg)?;
    let node = Arc::new(sluice::admin::Node {
        kong_version: cli.kong_compat_version.clone(),
        router_flavor: cli.router_flavor.clone(),
        proxy_listeners,
        admin_listeners: admin_listeners.clone(),
        status_listeners: status_listeners.clone(),
        node_id: uuid::Uuid::new_v4().to_string(),
        log_level: cli.log_level.clone(),
    });
    for (what, listeners, status_only) in [
        ("admin API", admin_listeners, false),
        ("status API", status_listeners, true),
    ] {
        if listeners.is_empty() {
            continue;
        }
        let admin = Admin::new(
            reloader.clone(),
            metrics.clone(),
            cli.admin_token.clone(),
            node.clone(),
            status_only,
        );
        let mut admin_service = Service::new(what.to_string(), admin);
        for l in &listeners {
            if l.ssl {
                add_tls(&mut admin_service, l, &mut selector, &cli, &tls_state)?;
            } else {
                sluice::listen::add_tcp(&mut admin_service, l);
            }
        }
        admin_service.threads = Some(1);
        tracing::info!(listen = ?listeners.iter().map(Listener::kong_string).collect::<Vec<_>>(), "{what}");
        server.add_service(admin_service);
    }
    if !cli.no_watch {
        server.add_service(background_service(
            "config watcher",
            FileWatcher::new(reloader.clone()),
        ));
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(
            reloader,
            Duration::from_secs(cli.shutdown_delay),
        )),
    });
    Ok(ExitCode::SUCCESS)
}

/// Settings of what Lua plugins may reach: sockets, TLS trust, modules, cache, vault.
/// Returns the check of the trusted CA bundle, running beside the config load (parsing the
/// system bundle takes ~70 ms); wait for it with [`trust_checked`].
fn plugin_io(cli: &Cli) -> anyhow::Result<TrustCheck> {
    use sluice::plugins::lua::{io, pdk};
    io::egress::set(cli.lua_socket_allow.clone());
    io::set_trusted_certificate(cli.lua_ssl_trusted_certificate.clone());
    let trust = std::thread::Builder::new()
        .name("tls-trust".into())
        .spawn(io::check_trusted_certificate)
        .context("spawning the CA bundle check")?;
    io::cache::set_capacity(cli.mem_cache_size);
    sluice::config::vault::set_env_prefix(cli.vault_env_prefix.clone());
    pdk::set_requires(&cli.lua_sandbox_requires)
        .map_err(|e| anyhow::anyhow!("--lua-sandbox-requires: {e}"))?;
    Ok(trust)
}

/// The CA bundle check started by [`plugin_io`].
type TrustCheck = std::thread::JoinHandle<Result<(), String>>;

/// Waits for the CA bundle check; a bundle that cannot be loaded stops the start.
fn trust_checked(trust: TrustCheck) -> anyhow::Result<()> {
    trust
        .join()
        .map_err(|_| anyhow::anyhow!("the CA bundle check panicked"))?
        .map_err(|e| anyhow::anyhow!("--lua-ssl-trusted-certificate: {e}"))
}

/// Adds a TLS listener (HTTP/2 offered by ALPN) certified by the selector in `selector`, built
/// on first use.
fn add_tls<A>(
    service: &mut Service<A>,
    l: &Listener,
    selector: &mut Option<sluice::proxy::tls::CertSelector>,
    cli: &Cli,
    state: &Arc<ArcSwap<sluice::snapshot::Snapshot>>,
) -> anyhow::Result<()> {
    if selector.is_none() {
        let default = cli.ssl_cert.as_deref().zip(cli.ssl_cert_key.as_deref());
        *selector = Some(
            sluice::proxy::tls::CertSelector::from_files(state.clone(), default)
                .map_err(|e| anyhow::anyhow!("--ssl-cert: {e}"))?,
        );
    }
    let selector = selector.clone().expect("built above");
    sluice::listen::add_tls(service, l, selector).context("TLS settings")
}

fn main() -> anyhow::Result<ExitCode> {
    no_transparent_huge_pages();
    sluice::allocator::keep_freed_pages_for(sluice::reload::compiler::KEEP_SCRATCH);
    // Threads that do not set their own stack size (Pingora's workers, the reloader, the admin
    // runtime) run Lua: give them room for the nesting the stack guard allows. Set before any
    // thread is spawned (std reads it once).
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var(
            "RUST_MIN_STACK",
            sluice::plugins::lua::sandbox::stack::THREAD_STACK.to_string(),
        );
    }
    // Kong's variables (a Kong deployment's container spec) onto ours, before flags are read.
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let (set, kong_env) = sluice::env::map_kong_vars(&vars).map_err(anyhow::Error::msg)?;
    for (name, value) in set {
        std::env::set_var(name, value);
    }
    let cli = Cli::parse();
    sluice::plugins::lua::sandbox::set_limits(sluice::plugins::lua::sandbox::Limits {
        cpu_budget: Duration::from_millis(cli.lua_cpu_budget_ms.max(1)),
        memory: cli.lua_memory_mb.max(1) << 20,
    });
    let trust = plugin_io(&cli)?;
    sluice::proxy::realip::set(
        sluice::proxy::realip::Settings::parse(
            &cli.trusted_ips,
            &cli.real_ip_header,
            cli.real_ip_recursive,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    sluice::config::set_router_flavor(if cli.router_flavor == "expressions" {
        sluice::router::Flavor::Expressions
    } else {
        sluice::router::Flavor::TraditionalCompatible
    });
    if let Some(path) = &cli.plugins_file {
        snapshot::library::set_library_file(path).map_err(|e| match e {
            LoadError::Invalid(errs) => {
                anyhow::anyhow!("--plugins-file {}:\n{errs}", path.display())
            }
            other => anyhow::anyhow!("--plugins-file: {other}"),
        })?;
    }
    match &cli.command {
        Some(Command::Check { path }) => check(path, trust),
        Some(Command::Plugin {
            command: PluginCommand::Embed { dir, name, entry },
        }) => {
            let yaml = sluice::plugins::lua::embed::embed_dir(dir, name.as_deref(), !entry)?;
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        None => serve(cli, trust, kong_env).context("proxy failed"),
    }
}
