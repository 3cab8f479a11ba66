//! The yielding half of the PDK: cosockets (`ngx.socket.tcp/udp`), `ngx.sleep`, light threads
//! (`ngx.thread`), and what is built on them (`resty.http`, `resty.redis`, `kong.cache`).
//!
//! How a handler waits without blocking its worker thread, and without a Lua value ever
//! crossing an `.await` (`mlua::Lua` is not `Send`):
//!
//! 1. In the phases that may wait (rewrite, access, response), the runtime runs a handler as a
//!    coroutine under the scheduler of `io.lua`, which also runs the handler's light threads.
//! 2. A waiting call (a socket read that finds no data, a sleep) asks [`Io`], the request's
//!    executor, to start the operation as a Rust future, gets a ticket, and yields it to the
//!    scheduler. Fast paths never yield: a read served from the socket's buffer, a write the
//!    kernel takes at once, a connection from the keepalive pool.
//! 3. When no light thread can run, the scheduler yields to Rust: the phase call returns
//!    [`Flow::Wait`](crate::plugins::Flow::Wait), the proxy awaits [`Io::wait`] (plain data,
//!    `Send`), then resumes the call with the finished ticket's [`Outcome`].
//!
//! The CPU budget counts only the time spent inside resumes. Sockets, the keepalive pool and
//! the resolver are Rust objects referenced from Lua by handles.

pub mod cache;
mod conn;
pub mod dns;
pub mod egress;
mod lua_api;
pub mod pool;

pub use lua_api::{install, outcome_values, RUN, STATES};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use openssl::ssl::{SslConnector, SslMethod};
use sync_wrapper::SyncWrapper;

use conn::{Conn, Failed, Got, Read};

/// The requirable modules built on waiting (`require` hands them out).
pub const MODULE_NAMES: &[&str] = &["resty.http", "resty.http_headers", "resty.redis"];

/// Names one operation in progress.
pub type Ticket = u64;

/// What a finished operation hands back to the Lua code that waited for it.
#[derive(Debug)]
pub enum Outcome {
    /// Done, nothing to return (a sleep).
    Unit,
    /// A count (`1` for connect/handshake, bytes for send).
    Int(i64),
    /// Data received.
    Data(Bytes),
    /// `receiveuntil`: data, and whether the pattern was reached.
    Until(Bytes, bool),
    /// Failed: the error string and the data read before it.
    Fail(String, Bytes),
}

impl Outcome {
    fn fail(err: impl Into<String>) -> Outcome {
        Outcome::Fail(err.into(), Bytes::new())
    }

    fn of(r: Result<&Got, &Failed>) -> Outcome {
        match r {
            Ok(Got::Data(d)) => Outcome::Data(d.clone()),
            Ok(Got::Until(d, found)) => Outcome::Until(d.clone(), *found),
            Err(f) => Outcome::Fail(f.err.clone(), f.partial.clone()),
        }
    }
}

/// A TCP cosocket's state.
#[derive(Debug)]
struct Tcp {
    /// None while not connected, or while an operation holds it.
    conn: Option<Conn>,
    busy: bool,
    /// connect, send and read timeouts.
    timeouts: [Duration; 3],
    /// The keepalive pool the connection belongs to.
    pool: String,
}

/// A UDP cosocket's state.
#[derive(Debug)]
struct Udp {
    sock: Option<Arc<tokio::net::UdpSocket>>,
    busy: bool,
    timeout: Duration,
}

#[derive(Debug)]
enum Sock {
    Tcp(Tcp),
    Udp(Udp),
}

/// What an operation gives back to its socket when it ends.
enum GiveBack {
    Nothing,
    Tcp(Conn),
    Udp(Arc<tokio::net::UdpSocket>),
    /// The operation failed in a way that closed the connection.
    Closed,
}

struct Finished {
    ticket: Ticket,
    socket: usize,
    give_back: GiveBack,
    outcome: Outcome,
}

/// lua-nginx-module's defaults (`lua_socket_connect_timeout` and the others: 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One request's plugin I/O: its sockets and the operations in progress.
#[derive(Default)]
pub struct Io {
    sockets: Vec<Option<Sock>>,
    running: SyncWrapper<FuturesUnordered<BoxFuture<'static, Finished>>>,
    aborts: HashMap<Ticket, AbortHandle>,
    done: VecDeque<(Ticket, Outcome)>,
    next_ticket: Ticket,
    /// The request took part in kong.cache fills (they end with it if it ends first).
    pub fill_owner: Option<u64>,
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some(owner) = self.fill_owner {
            cache::unlock_all(owner);
        }
    }
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("sockets", &self.sockets.len())
            .field("running", &self.aborts.len())
            .finish()
    }
}

/// How a PDK function's operation went: finished at once, or started (wait for the ticket).
pub enum Step {
    /// Finished without waiting.
    Now(Outcome),
    /// Started; the caller yields the ticket.
    Wait(Ticket),
}

impl Io {
    /// Whether an operation is in progress or a finished one is not yet delivered.
    pub fn pending(&self) -> bool {
        !self.aborts.is_empty() || !self.done.is_empty()
    }

    /// The next finished operation, if one is ready to deliver.
    pub fn take_done(&mut self) -> Option<(Ticket, Outcome)> {
        self.done.pop_front()
    }

    /// Waits until an operation finishes (false when none is in progress).
    pub async fn wait(&mut self) -> bool {
        if !self.done.is_empty() {
            return true;
        }
        while let Some(f) = self.running.get_mut().next().await {
            let cancelled = self.aborts.remove(&f.ticket).is_none();
            self.give_back(f.socket, f.give_back);
            if !cancelled {
                self.done.push_back((f.ticket, f.outcome));
                return true;
            }
        }
        false
    }

    /// Cancels an operation (its socket, if it held one, is closed).
    pub fn cancel(&mut self, ticket: Ticket) {
        if let Some(h) = self.aborts.remove(&ticket) {
            h.abort();
        }
        self.done.retain(|(t, _)| *t != ticket);
    }

    /// Cancels everything in progress (the call that waited ended).
    pub fn cancel_all(&mut self) {
        for (_, h) in self.aborts.drain() {
            h.abort();
        }
        self.done.clear();
    }

    fn give_back(&mut self, socket: usize, what: GiveBack) {
        let Some(Some(sock)) = self.sockets.get_mut(socket) else {
            return;
        };
        match (sock, what) {
            (Sock::Tcp(t), GiveBack::Tcp(conn)) => {
                t.conn = Some(conn);
                t.busy = false;
            }
            (Sock::Tcp(t), _) => t.busy = false,
            (Sock::Udp(u), GiveBack::Udp(s)) => {
                u.sock = Some(s);
                u.busy = false;
            }
            (Sock::Udp(u), GiveBack::Closed) => {
                u.sock = None;
                u.busy = false;
            }
            (Sock::Udp(u), _) => u.busy = false,
        }
    }

    fn start(
        &mut self,
        socket: usize,
        fut: impl std::future::Future<Output = (GiveBack, Outcome)> + Send + 'static,
    ) -> Step {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let (handle, registration) = AbortHandle::new_pair();
        self.aborts.insert(ticket, handle);
        let fut = Abortable::new(fut, registration).map(move |r| {
            let (give_back, outcome) = r.unwrap_or((GiveBack::Closed, Outcome::Unit));
            Finished {
                ticket,
                socket,
                give_back,
                outcome,
            }
        });
        self.running.get_mut().push(fut.boxed());
        Step::Wait(ticket)
    }

    /// `ngx.sleep(seconds)`: 0 yields to other requests and comes back at once.
    pub fn sleep(&mut self, d: Duration) -> Step {
        self.start(usize::MAX, async move {
            if d.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(d).await;
            }
            (GiveBack::Nothing, Outcome::Unit)
        })
    }

    /// Starts a future that ends with `outcome` (kong.cache waiting for another request's fill).
    pub fn wait_for(
        &mut self,
        fut: impl std::future::Future<Output = Outcome> + Send + 'static,
    ) -> Step {
        self.start(usize::MAX, fut.map(|o| (GiveBack::Nothing, o)))
    }

    /// A new TCP cosocket; its handle.
    pub fn tcp(&mut self) -> usize {
        self.add(Sock::Tcp(Tcp {
            conn: None,
            busy: false,
            timeouts: [DEFAULT_TIMEOUT; 3],
            pool: String::new(),
        }))
    }

    /// A new UDP cosocket; its handle.
    pub fn udp(&mut self) -> usize {
        self.add(Sock::Udp(Udp {
            sock: None,
            busy: false,
            timeout: DEFAULT_TIMEOUT,
        }))
    }

    fn add(&mut self, sock: Sock) -> usize {
        // Reuse a closed slot so a loop creating sockets does not grow the table.
        if let Some(i) = self.sockets.iter().position(Option::is_none) {
            self.sockets[i] = Some(sock);
            return i;
        }
        self.sockets.push(Some(sock));
        self.sockets.len() - 1
    }

    fn tcp_mut(&mut self, h: usize) -> Result<&mut Tcp, String> {
        match self.sockets.get_mut(h) {
            Some(Some(Sock::Tcp(t))) => Ok(t),
            _ => Err("closed".into()),
        }
    }

    fn udp_mut(&mut self, h: usize) -> Result<&mut Udp, String> {
        match self.sockets.get_mut(h) {
            Some(Some(Sock::Udp(u))) => Ok(u),
            _ => Err("closed".into()),
        }
    }

    /// `settimeouts(connect, send, read)` (milliseconds; None keeps a value).
    pub fn set_timeouts(&mut self, h: usize, t: [Option<Duration>; 3]) {
        match self.sockets.get_mut(h) {
            Some(Some(Sock::Tcp(tcp))) => {
                for (slot, v) in tcp.timeouts.iter_mut().zip(t) {
                    if let Some(v) = v {
                        *slot = v;
                    }
                }
            }
            Some(Some(Sock::Udp(u))) => {
                if let Some(v) = t[2] {
                    u.timeout = v;
                }
            }
            _ => {}
        }
    }

    /// `tcpsock:connect(host, port, {pool = ...})`, or a Unix socket path with port None.
    pub fn connect(
        &mut self,
        h: usize,
        host: String,
        port: Option<u16>,
        pool: Option<String>,
    ) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        // Connecting again closes the previous connection, as in OpenResty.
        tcp.conn = None;
        let name = pool.unwrap_or_else(|| match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        });
        tcp.pool = name.clone();
        if let Some(conn) = pool::take(&name) {
            egress::count_connection(egress::Outcome::Reused);
            tcp.conn = Some(conn);
            return Ok(Step::Now(Outcome::Int(1)));
        }
        let limit = tcp.timeouts[0];
        let target = match port {
            None => {
                let path = host.strip_prefix("unix:").unwrap_or(&host).to_string();
                if let Err(e) = egress::check_unix(&path) {
                    return Ok(Step::Now(Outcome::fail(e)));
                }
                Target::Unix(path)
            }
            Some(port) => match egress::check_name(&host, port) {
                Err(e) => return Ok(Step::Now(Outcome::fail(e))),
                Ok(by_name) => Target::Tcp {
                    host,
                    port,
                    check_ip: !by_name,
                },
            },
        };
        tcp.busy = true;
        let resolver = matches!(target, Target::Tcp { .. }).then(dns::resolver);
        Ok(self.start(h, async move {
            let r = match (target, resolver) {
                (Target::Unix(path), _) => Conn::unix(&path, limit).await.map_err(|f| f.err),
                (
                    Target::Tcp {
                        host,
                        port,
                        check_ip,
                    },
                    Some(resolver),
                ) => match dns::resolve(&resolver, &host).await {
                    Err(e) => Err(e),
                    Ok(ip) => match check_ip.then(|| egress::check_ip(&host, ip, port)) {
                        Some(Err(e)) => Err(e),
                        _ => Conn::tcp((ip, port).into(), limit).await.map_err(|f| f.err),
                    },
                },
                _ => Err("no resolver".into()),
            };
            match r {
                Ok(conn) => {
                    egress::count_connection(egress::Outcome::Connected);
                    (GiveBack::Tcp(conn), Outcome::Int(1))
                }
                Err(e) => {
                    if !e.contains("egress policy") {
                        egress::count_connection(egress::Outcome::Failed);
                    }
                    (GiveBack::Closed, Outcome::fail(e))
                }
            }
        }))
    }

    /// `tcpsock:sslhandshake(_, server_name, verify)`: TLS over the connection (nothing to do
    /// on a connection from the pool that already speaks TLS).
    pub fn handshake(
        &mut self,
        h: usize,
        server_name: Option<String>,
        verify: bool,
    ) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        let Some(conn) = tcp.conn.take() else {
            return Err("closed".into());
        };
        if conn.is_tls() {
            tcp.conn = Some(conn);
            return Ok(Step::Now(Outcome::Int(1)));
        }
        let connector = match tls_connector() {
            Ok(c) => c,
            Err(e) => {
                tcp.conn = Some(conn);
                return Ok(Step::Now(Outcome::fail(e)));
            }
        };
        tcp.busy = true;
        let limit = tcp.timeouts[0];
        Ok(self.start(h, async move {
            match conn
                .handshake(&connector, server_name.as_deref(), verify, limit)
                .await
            {
                Ok(conn) => (GiveBack::Tcp(conn), Outcome::Int(1)),
                Err(f) => (GiveBack::Closed, Outcome::fail(f.err)),
            }
        }))
    }

    /// `tcpsock:send(data)`: the bytes sent.
    pub fn send(&mut self, h: usize, data: Bytes) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy writing".into());
        }
        let Some(conn) = tcp.conn.as_mut() else {
            return Err("closed".into());
        };
        let offset = match conn.try_send(&data) {
            Some(Ok(n)) if n == data.len() => {
                egress::count_bytes(true, n);
                return Ok(Step::Now(Outcome::Int(n as i64)));
            }
            Some(Ok(n)) => n,
            Some(Err(f)) => {
                tcp.conn = None;
                return Ok(Step::Now(Outcome::fail(f.err)));
            }
            None => 0,
        };
        let mut conn = tcp.conn.take().expect("checked above");
        tcp.busy = true;
        let limit = tcp.timeouts[1];
        Ok(self.start(h, async move {
            match conn.send(&data[offset..], limit).await {
                Ok(_) => {
                    egress::count_bytes(true, data.len());
                    (GiveBack::Tcp(conn), Outcome::Int(data.len() as i64))
                }
                Err(f) => (GiveBack::Closed, Outcome::fail(f.err)),
            }
        }))
    }

    /// `tcpsock:receive(...)`, `receiveany`, a `receiveuntil` iterator.
    pub fn receive(&mut self, h: usize, read: Read) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy reading".into());
        }
        let Some(conn) = tcp.conn.as_mut() else {
            return Err("closed".into());
        };
        if let Some(r) = conn.try_read(&read) {
            let outcome = Outcome::of(r.as_ref());
            count_received(&outcome);
            if matches!(&r, Err(f) if f.fatal) {
                tcp.conn = None;
            }
            return Ok(Step::Now(outcome));
        }
        let mut conn = tcp.conn.take().expect("checked above");
        tcp.busy = true;
        let limit = tcp.timeouts[2];
        Ok(self.start(h, async move {
            let r = conn.read(&read, limit).await;
            let outcome = Outcome::of(r.as_ref());
            count_received(&outcome);
            match r {
                Err(f) if f.fatal => (GiveBack::Closed, outcome),
                _ => (GiveBack::Tcp(conn), outcome),
            }
        }))
    }

    /// `tcpsock:setkeepalive(timeout, size)`: the connection goes to its pool and the socket
    /// is closed for the plugin.
    pub fn keepalive(&mut self, h: usize, idle: Duration, size: usize) -> Result<(), String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        let Some(conn) = tcp.conn.take() else {
            return Err("closed".into());
        };
        if conn.buffered() > 0 {
            return Err("unread data in buffer".into());
        }
        let name = std::mem::take(&mut tcp.pool);
        pool::put(&name, conn, idle, size);
        Ok(())
    }

    /// `tcpsock:getreusedtimes()`.
    pub fn reused(&mut self, h: usize) -> Result<u32, String> {
        match &self.tcp_mut(h)?.conn {
            Some(conn) => Ok(conn.reused),
            None => Err("closed".into()),
        }
    }

    /// `tcpsock:close()` / `udpsock:close()`.
    pub fn close(&mut self, h: usize) -> Result<(), String> {
        let open = match self.sockets.get_mut(h) {
            Some(Some(Sock::Tcp(t))) if !t.busy => t.conn.take().is_some(),
            Some(Some(Sock::Udp(u))) if !u.busy => u.sock.take().is_some(),
            Some(Some(_)) => return Err("socket busy".into()),
            _ => false,
        };
        if open {
            Ok(())
        } else {
            Err("closed".into())
        }
    }

    /// Forgets a socket object the plugin no longer holds (its Lua object was collected).
    pub fn drop_socket(&mut self, h: usize) {
        if let Some(slot) = self.sockets.get_mut(h) {
            let busy = matches!(
                slot,
                Some(Sock::Tcp(Tcp { busy: true, .. })) | Some(Sock::Udp(Udp { busy: true, .. }))
            );
            if !busy {
                *slot = None;
            }
        }
    }

    /// `udpsock:setpeername(host, port)`.
    pub fn udp_peer(&mut self, h: usize, host: String, port: u16) -> Result<Step, String> {
        let udp = self.udp_mut(h)?;
        if udp.busy {
            return Err("socket busy".into());
        }
        udp.sock = None;
        let check_ip = match egress::check_name(&host, port) {
            Err(e) => return Ok(Step::Now(Outcome::fail(e))),
            Ok(by_name) => !by_name,
        };
        udp.busy = true;
        let resolver = dns::resolver();
        Ok(self.start(h, async move {
            let r = async {
                let ip = dns::resolve(&resolver, &host).await?;
                if check_ip {
                    egress::check_ip(&host, ip, port)?;
                }
                let local: std::net::SocketAddr = if ip.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = tokio::net::UdpSocket::bind(local)
                    .await
                    .map_err(|e| conn::describe(&e))?;
                sock.connect((ip, port))
                    .await
                    .map_err(|e| conn::describe(&e))?;
                Ok::<_, String>(sock)
            };
            match r.await {
                Ok(sock) => {
                    egress::count_connection(egress::Outcome::Connected);
                    (GiveBack::Udp(Arc::new(sock)), Outcome::Int(1))
                }
                Err(e) => {
                    egress::count_connection(egress::Outcome::Failed);
                    (GiveBack::Closed, Outcome::fail(e))
                }
            }
        }))
    }

    /// `udpsock:send(data)`: datagrams go out at once (or fail).
    pub fn udp_send(&mut self, h: usize, data: &[u8]) -> Result<Outcome, String> {
        let udp = self.udp_mut(h)?;
        let Some(sock) = &udp.sock else {
            return Err("closed".into());
        };
        match sock.try_send(data) {
            Ok(n) => {
                egress::count_bytes(true, n);
                Ok(Outcome::Int(1))
            }
            Err(e) => Ok(Outcome::fail(conn::describe(&e))),
        }
    }

    /// `udpsock:receive(size)`.
    pub fn udp_receive(&mut self, h: usize, size: usize) -> Result<Step, String> {
        let udp = self.udp_mut(h)?;
        if udp.busy {
            return Err("socket busy".into());
        }
        let Some(sock) = udp.sock.clone() else {
            return Err("closed".into());
        };
        udp.busy = true;
        let limit = udp.timeout;
        Ok(self.start(h, async move {
            let r = conn::udp_receive(&sock, size, limit).await;
            match r {
                Ok(d) => {
                    egress::count_bytes(false, d.len());
                    (GiveBack::Udp(sock), Outcome::Data(d))
                }
                Err(f) => (GiveBack::Udp(sock), Outcome::fail(f.err)),
            }
        }))
    }
}

enum Target {
    Tcp {
        host: String,
        port: u16,
        check_ip: bool,
    },
    Unix(String),
}

fn count_received(o: &Outcome) {
    match o {
        Outcome::Data(d) | Outcome::Until(d, _) => egress::count_bytes(false, d.len()),
        Outcome::Fail(_, p) => egress::count_bytes(false, p.len()),
        _ => {}
    }
}

static TRUSTED_CA: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();

/// Sets the CA bundle plugin sockets verify TLS peers with (Kong's
/// `lua_ssl_trusted_certificate`); without it, the system's store.
pub fn set_trusted_certificate(path: Option<std::path::PathBuf>) {
    let _ = TRUSTED_CA.set(path);
}

/// Checks that the CA bundle can be loaded (at startup, so a bad path fails fast).
pub fn check_trusted_certificate() -> Result<(), String> {
    tls_connector().map(|_| ())
}

fn tls_connector() -> Result<SslConnector, String> {
    static CONNECTOR: OnceLock<Result<SslConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let mut b =
                SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
            match TRUSTED_CA.get().and_then(|p| p.as_ref()) {
                Some(path) => b
                    .set_ca_file(path)
                    .map_err(|e| format!("cannot load {}: {e}", path.display()))?,
                None => b.set_default_verify_paths().map_err(|e| e.to_string())?,
            }
            Ok(b.build())
        })
        .clone()
}
