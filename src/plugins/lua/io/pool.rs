//! The keepalive pool of plugin sockets (`setkeepalive`), one per worker thread as each nginx
//! worker has its own: connections are registered with the thread's runtime, and a request
//! never leaves its thread. Pools are named (`host:port` unless the plugin names one), bounded
//! in size, and hand out a connection only if it is still open and idle.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::conn::Conn;

struct Idle {
    conn: Conn,
    expires: Option<Instant>,
}

/// Most pools one worker keeps (the least recently used pool is dropped past it).
const MAX_POOLS: usize = 1024;
/// Most idle connections one worker keeps in all its pools (each holds a file descriptor).
const MAX_IDLE: usize = 1024;

thread_local! {
    static POOLS: RefCell<HashMap<String, VecDeque<Idle>>> = RefCell::new(HashMap::new());
}

/// An idle connection of pool `name`, if one is still usable (most recently returned first).
pub fn take(name: &str) -> Option<Conn> {
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        let idle = pools.get_mut(name)?;
        let now = Instant::now();
        let mut found = None;
        while let Some(entry) = idle.pop_back() {
            if entry.expires.is_some_and(|at| at <= now) || !entry.conn.alive() {
                continue;
            }
            found = Some(entry.conn);
            break;
        }
        if idle.is_empty() {
            pools.remove(name);
        }
        found.map(|mut conn| {
            conn.reused += 1;
            conn
        })
    })
}

/// Returns `conn` to pool `name`, which keeps at most `size` connections (the oldest goes);
/// `idle` 0 keeps it without limit of time.
pub fn put(name: &str, conn: Conn, idle: Duration, size: usize) {
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        if !pools.contains_key(name) && pools.len() >= MAX_POOLS {
            // Drop the pools' idle connections that expired, then any one pool if still full.
            let now = Instant::now();
            pools.retain(|_, idle| {
                idle.retain(|e| e.expires.is_none_or(|at| at > now));
                !idle.is_empty()
            });
            if pools.len() >= MAX_POOLS {
                if let Some(victim) = pools.keys().next().cloned() {
                    pools.remove(&victim);
                }
            }
        }
        if pools.values().map(VecDeque::len).sum::<usize>() >= MAX_IDLE {
            // Full: the connection is closed rather than kept.
            return;
        }
        let pool = pools.entry(name.to_string()).or_default();
        let expires = (!idle.is_zero()).then(|| Instant::now() + idle);
        pool.push_back(Idle { conn, expires });
        while pool.len() > size.max(1) {
            pool.pop_front();
        }
    })
}

/// Idle connections this worker keeps, in all pools.
pub fn idle_count() -> usize {
    POOLS.with(|pools| pools.borrow().values().map(VecDeque::len).sum())
}
