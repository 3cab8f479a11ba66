//! The yielding half of the PDK: cosockets (`ngx.socket.tcp/udp`), `ngx.sleep`, light threads
//! (`ngx.thread`), and what is built on them (`resty.http`, `resty.redis`, `kong.cache`).
//!
//! How a handler waits without blocking its worker thread, and without a Lua value ever
//! crossing an `.await` (`mlua::Lua` is not `Send`):
//!
//! 1. In the phases that may wait (rewrite, access, response), the runtime runs a handler in a
//!    coroutine of its own (`wait.lua`'s `run`).
//! 2. An operation that must wait (a socket read that finds no data, a sleep) is started by
//!    [`Io`], the request's executor, as a Rust future; the Lua side gets a ticket and yields
//!    it. Fast paths never yield: a read served from the socket's buffer, a write the kernel
//!    takes at once, a connection from the keepalive pool.
//! 3. The yield reaches Rust: the phase call returns [`Flow::Wait`](crate::plugins::Flow::Wait),
//!    the proxy awaits [`Io::wait`] (plain data, `Send`), then resumes the call with the
//!    finished ticket and its [`Outcome`]. A result for one of the handler's light threads is
//!    handed to that thread by the handler's own coroutine (`wait.lua`).
//!
//! The CPU budget counts only the time spent inside resumes. Sockets, the keepalive pool and
//! the resolver are Rust objects referenced from Lua by handles (socket.rs, socket.lua).

pub mod cache;
pub(crate) mod conn;
pub mod dns;
pub mod egress;
mod lua_api;
pub mod pool;
pub(crate) mod socket;

pub use lua_api::{install, outcome_values, RUN, STATES};
pub use socket::{check_trusted_certificate, set_trusted_certificate};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use sync_wrapper::SyncWrapper;

use conn::{Conn, Failed, Got};

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
    /// What a bundled plugin's operation produced, for that plugin's `resume` to take back.
    Native(Box<dyn std::any::Any + Send + Sync>),
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

/// Sockets one request may hold at once (each may hold a file descriptor): a plugin cannot
/// exhaust the process's descriptors.
pub const MAX_SOCKETS: usize = 256;
/// Handles are slot + generation × SLOT_SPAN.
const SLOT_SPAN: usize = 1 << 16;

/// lua-nginx-module's defaults (`lua_socket_connect_timeout` and the others: 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One request's plugin I/O: its sockets and the operations in progress.
#[derive(Default)]
pub struct Io {
    sockets: Vec<Option<Sock>>,
    /// Generation of each socket slot: a handle names a slot and its generation, so an old
    /// object whose slot was given to a new socket finds it closed.
    gens: Vec<u32>,
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

    /// Starts a future that ends with `outcome` (kong.cache waiting for another request's
    /// fill, a bundled plugin's Redis command).
    pub fn wait_for(
        &mut self,
        fut: impl std::future::Future<Output = Outcome> + Send + 'static,
    ) -> Step {
        self.start(usize::MAX, fut.map(|o| (GiveBack::Nothing, o)))
    }

    /// A new TCP cosocket; its handle.
    pub fn tcp(&mut self) -> Result<usize, String> {
        self.add(Sock::Tcp(Tcp {
            conn: None,
            busy: false,
            timeouts: [DEFAULT_TIMEOUT; 3],
            pool: String::new(),
        }))
    }

    /// A new UDP cosocket; its handle.
    pub fn udp(&mut self) -> Result<usize, String> {
        self.add(Sock::Udp(Udp {
            sock: None,
            busy: false,
            timeout: DEFAULT_TIMEOUT,
        }))
    }

    fn add(&mut self, sock: Sock) -> Result<usize, String> {
        let i = if self.sockets.len() < MAX_SOCKETS {
            self.sockets.push(None);
            self.gens.push(0);
            self.sockets.len() - 1
        } else {
            // At the cap, a socket the plugin closed (or never connected) gives its slot.
            let closed = self.sockets.iter().position(|s| match s {
                None => true,
                Some(Sock::Tcp(t)) => t.conn.is_none() && !t.busy,
                Some(Sock::Udp(u)) => u.sock.is_none() && !u.busy,
            });
            let Some(i) = closed else {
                return Err(format!(
                    "too many sockets: a request may have {MAX_SOCKETS} open at once"
                ));
            };
            self.gens[i] = self.gens[i].wrapping_add(1);
            i
        };
        self.sockets[i] = Some(sock);
        Ok(i + self.gens[i] as usize * SLOT_SPAN)
    }

    /// The socket a handle names, if its slot still holds it.
    fn slot_mut(&mut self, h: usize) -> Option<&mut Sock> {
        let i = h % SLOT_SPAN;
        if self.gens.get(i).copied()? as usize != h / SLOT_SPAN {
            return None;
        }
        self.sockets.get_mut(i)?.as_mut()
    }

    fn tcp_mut(&mut self, h: usize) -> Result<&mut Tcp, String> {
        match self.slot_mut(h) {
            Some(Sock::Tcp(t)) => Ok(t),
            _ => Err("closed".into()),
        }
    }

    fn udp_mut(&mut self, h: usize) -> Result<&mut Udp, String> {
        match self.slot_mut(h) {
            Some(Sock::Udp(u)) => Ok(u),
            _ => Err("closed".into()),
        }
    }
}
