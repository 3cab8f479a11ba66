//! The `redis` policy: counters in Redis under Kong's keys, so replicas (of this gateway and of
//! Kong) share them.
//!
//! With `sync_rate = -1` every request increments its counters in Redis and reads the usage
//! before it in one round trip (one script for all configured periods; Kong runs one script
//! per period). With `sync_rate > 0` a request counts locally: the usage of a key is read from
//! Redis once (that read counts the request), later requests add to a local delta, and the
//! deltas of the target are written every `sync_rate` seconds, after which usage is read again.
//! Unlike Kong's per-worker tables, the local state is the process's (all workers count
//! together) and a delta added while a write is in flight is not lost.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::plugins::native::redis::{self as client, RedisError, Target};

/// Increments each key, giving a new key its expiration; returns the counts before.
static USAGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local used = {}
for i, key in ipairs(KEYS) do
  local n = redis.call("incr", key)
  if n == 1 then
    redis.call("expire", key, ARGV[i])
  end
  used[i] = n - 1
end
return used
"#,
    )
});

/// Adds each delta, giving a new key its expiration time (Kong's sync script, for many keys).
static SYNC: LazyLock<redis::Script> = LazyLock::new(|| client::adding_script("expireat"));

/// One counter of a request: Kong's key, the window's expiration and when the window ends.
#[derive(Debug, Clone)]
pub struct Counter {
    /// `ratelimit:<route>:<service>:<identifier>:<window start ms>:<period>`.
    pub key: String,
    /// Kong's expiration of the period in seconds.
    pub expiration: i64,
    /// Unix seconds when the window's key expires (start + expiration).
    pub expire_at: i64,
}

/// The policy of one plugin instance.
pub struct RedisPolicy {
    target: Target,
    timeout: Duration,
    /// None: every request in Redis (`sync_rate = -1`).
    sync_rate: Option<Duration>,
    /// The local state of the target, when counting locally.
    synced: Option<Arc<Mutex<Synced>>>,
}

/// Usage of a request's counters: known now, or after a Redis round trip.
pub enum Usage {
    /// Counts before this request, in the order of the counters.
    Now(Vec<i64>),
    /// Resolves to the counts.
    Later(BoxFuture<'static, Result<Vec<i64>, RedisError>>),
}

impl RedisPolicy {
    /// The policy for `target`; `sync_rate` in seconds (-1: synchronous).
    pub fn new(target: Target, timeout: Duration, sync_rate: f64) -> RedisPolicy {
        let sync_rate = (sync_rate > 0.0).then(|| Duration::from_secs_f64(sync_rate));
        let synced = sync_rate.map(|_| synced_state(&target));
        RedisPolicy {
            target,
            timeout,
            sync_rate,
            synced,
        }
    }

    /// The counts before this request of `counters`.
    pub fn usage(&self, counters: Vec<Counter>) -> Usage {
        let Some(synced) = &self.synced else {
            return Usage::Later(self.fetch(counters).boxed());
        };
        let now = super::window::now();
        let mut known = Vec::with_capacity(counters.len());
        let mut missing = Vec::new();
        {
            let mut state = synced.lock().unwrap_or_else(|e| e.into_inner());
            for (i, c) in counters.iter().enumerate() {
                let entry = state.entries.get_mut(&c.key);
                match entry {
                    Some(e) if e.usage.is_some() && e.expire_at > now => {
                        known.push(e.usage.unwrap_or(0) + e.delta);
                    }
                    Some(e) if e.usage.is_some() => {
                        // Kong: a cached window that expired starts again from zero.
                        e.usage = Some(0);
                        e.delta = 0;
                        e.expire_at = c.expire_at;
                        known.push(0);
                    }
                    _ => {
                        known.push(0);
                        missing.push(i);
                    }
                }
            }
        }
        if missing.is_empty() {
            return Usage::Now(known);
        }
        let fetch = self.fetch(missing.iter().map(|&i| counters[i].clone()).collect());
        let synced = synced.clone();
        Usage::Later(
            async move {
                let fetched = fetch.await?;
                let mut state = synced.lock().unwrap_or_else(|e| e.into_inner());
                for (&i, used) in missing.iter().zip(fetched) {
                    let c = &counters[i];
                    let e = state.entries.entry(c.key.clone()).or_insert(Entry {
                        usage: None,
                        delta: 0,
                        expire_at: c.expire_at,
                    });
                    // The count before this request: Redis's and what is counted here and not
                    // yet written.
                    known[i] = used + e.delta;
                    // The read counted this request in Redis: the local usage includes it, and
                    // the delta takes it back so that the increment of a passing request is
                    // not written twice (Kong keeps the count before, so its local view lags
                    // one request behind after each read).
                    e.usage = Some(used + 1);
                    e.delta -= 1;
                    e.expire_at = c.expire_at;
                }
                Ok(known)
            }
            .boxed(),
        )
    }

    /// Reads (and counts) `counters` in Redis.
    fn fetch(
        &self,
        counters: Vec<Counter>,
    ) -> impl std::future::Future<Output = Result<Vec<i64>, RedisError>> + Send + 'static {
        let client = client::client(&self.target);
        let timeout = self.timeout;
        async move {
            client
                .run(timeout, move |mut conn| async move {
                    let mut call = USAGE.prepare_invoke();
                    for c in &counters {
                        call.key(&c.key);
                    }
                    for c in &counters {
                        call.arg(c.expiration);
                    }
                    call.invoke_async::<Vec<i64>>(&mut conn).await
                })
                .await
        }
    }

    /// Counts a request that passed (with `sync_rate = -1` the read already counted it).
    pub fn increment(&self, counters: &[Counter]) {
        let (Some(synced), Some(every)) = (&self.synced, self.sync_rate) else {
            return;
        };
        let start_flush = {
            let mut state = synced.lock().unwrap_or_else(|e| e.into_inner());
            for c in counters {
                state
                    .entries
                    .entry(c.key.clone())
                    .or_insert(Entry {
                        usage: None,
                        delta: 0,
                        expire_at: c.expire_at,
                    })
                    .delta += 1;
            }
            !std::mem::replace(&mut state.pending, true)
        };
        if start_flush {
            let synced = synced.clone();
            let target = self.target.clone();
            let timeout = self.timeout;
            tokio::spawn(async move {
                tokio::time::sleep(every).await;
                flush(&synced, &target, timeout).await;
            });
        }
    }
}

/// The local counts of one target (sync_rate > 0).
#[derive(Default)]
struct Synced {
    entries: HashMap<String, Entry>,
    /// A flush is scheduled.
    pending: bool,
}

struct Entry {
    /// The count last read from Redis (None: read it on next use).
    usage: Option<i64>,
    /// Counted here and not yet written.
    delta: i64,
    /// When the key expires (unix seconds).
    expire_at: i64,
}

/// The local state of each target, shared by the instances that count locally against it and
/// kept across reloads.
fn synced_state(target: &Target) -> Arc<Mutex<Synced>> {
    static ALL: LazyLock<Mutex<HashMap<Target, Arc<Mutex<Synced>>>>> =
        LazyLock::new(Default::default);
    ALL.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target.clone())
        .or_default()
        .clone()
}

/// Writes the deltas of a target in one script call, then forgets the usage read (the next
/// request reads the sum of every replica's counts).
async fn flush(synced: &Mutex<Synced>, target: &Target, timeout: Duration) {
    let batch: Vec<(String, i64, i64)> = {
        let mut state = synced.lock().unwrap_or_else(|e| e.into_inner());
        state.pending = false;
        let mut batch = Vec::new();
        for (key, e) in state.entries.iter_mut() {
            if e.delta != 0 {
                batch.push((key.clone(), e.delta, e.expire_at));
                // Until the write is read back, the usage includes what is being written.
                e.usage = e.usage.map(|u| u + e.delta);
                e.delta = 0;
            }
        }
        batch
    };
    if batch.is_empty() {
        return;
    }
    let result = client::client(target)
        .run(timeout, move |mut conn| async move {
            let mut call = SYNC.prepare_invoke();
            for (key, _, _) in &batch {
                call.key(key);
            }
            for (_, delta, expire_at) in &batch {
                call.arg(*delta).arg(*expire_at);
            }
            call.invoke_async::<i64>(&mut conn).await
        })
        .await;
    if let Err(e) = &result {
        // As Kong: the counts of this interval are dropped.
        tracing::error!(plugin = "rate-limiting", error = %e, "failed to write the counters to Redis");
    }
    let now = super::window::now();
    let mut state = synced.lock().unwrap_or_else(|e| e.into_inner());
    state
        .entries
        .retain(|_, e| e.delta != 0 && e.expire_at > now);
    for e in state.entries.values_mut() {
        e.usage = None;
    }
}
