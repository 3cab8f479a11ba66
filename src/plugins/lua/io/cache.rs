//! `kong.cache`'s shared level (Kong's L2, a `lua_shared_dict`): one store for the whole
//! process, so every worker sees what one of them cached, bounded in bytes (least recently used
//! entries go first), kept across reloads, and emptied by the admin API's `DELETE /cache`.
//! Each worker VM keeps its own first level in Lua (`cache.lua`).
//!
//! Values are copied out of Lua into plain data ([`Stored`]: nil, booleans, numbers, strings
//! and tables of those, without metatables) and copied back into a fresh table on a hit, as
//! mlcache serializes into its shared dict.
//!
//! Fills: the callback that computes a missing value runs once per key at a time across the
//! process. Other requests asking for the key meanwhile wait (without blocking their worker)
//! until the filler stores its value or gives up, then read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;
use mlua::{Lua, Table, Value};
use tokio::sync::watch;

/// A cached value, outside any VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// nil (a negative entry).
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Num(f64),
    /// A string.
    Str(Bytes),
    /// A table's pairs (nested tables copied).
    Table(Arc<Vec<(Stored, Stored)>>),
}

/// Deepest table nesting a cached value may have (a cycle ends there too).
const MAX_DEPTH: usize = 64;

impl Stored {
    /// Copies a Lua value; Kong's error for the types a shared dict cannot hold.
    pub fn from_lua(v: &Value, depth: usize, size: &mut usize) -> Result<Stored, String> {
        *size += 16;
        // Also bounds the walk of a table whose subtables are shared many times over.
        if *size > capacity() {
            return Err("cannot cache value: larger than the cache (--mem-cache-size)".into());
        }
        Ok(match v {
            Value::Nil => Stored::Nil,
            Value::Boolean(b) => Stored::Bool(*b),
            Value::Integer(i) => Stored::Int(*i),
            Value::Number(n) => Stored::Num(*n),
            Value::String(s) => {
                let b = s.as_bytes();
                *size += b.len();
                Stored::Str(Bytes::copy_from_slice(&b))
            }
            Value::Table(t) => {
                if depth >= MAX_DEPTH {
                    return Err("cannot cache value: tables nested too deeply (or a cycle)".into());
                }
                let mut pairs = Vec::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair.map_err(|e| e.to_string())?;
                    pairs.push((
                        Stored::from_lua(&k, depth + 1, size)?,
                        Stored::from_lua(&v, depth + 1, size)?,
                    ));
                }
                Stored::Table(Arc::new(pairs))
            }
            other => {
                return Err(format!(
                    "cannot cache value of type {}",
                    crate::plugins::lua::util::support::type_name(other)
                ))
            }
        })
    }

    /// A fresh Lua value.
    pub fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Stored::Nil => Value::Nil,
            Stored::Bool(b) => Value::Boolean(*b),
            Stored::Int(i) => Value::Integer(*i),
            Stored::Num(n) => Value::Number(*n),
            Stored::Str(s) => Value::String(lua.create_string(s)?),
            Stored::Table(pairs) => {
                let t: Table = lua.create_table_with_capacity(0, pairs.len())?;
                for (k, v) in pairs.iter() {
                    t.raw_set(k.to_lua(lua)?, v.to_lua(lua)?)?;
                }
                Value::Table(t)
            }
        })
    }

    /// As JSON (the admin API's `GET /cache/{key}`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Stored::Nil => J::Null,
            Stored::Bool(b) => J::Bool(*b),
            Stored::Int(i) => J::from(*i),
            Stored::Num(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
            Stored::Str(s) => J::String(String::from_utf8_lossy(s).into_owned()),
            Stored::Table(pairs) => {
                let is_array = !pairs.is_empty()
                    && (1..=pairs.len()).all(|i| {
                        pairs.iter().any(|(k, _)| {
                            matches!(k, Stored::Int(n) if *n == i as i64)
                                || matches!(k, Stored::Num(n) if *n == i as f64)
                        })
                    });
                if is_array {
                    let mut items: Vec<(f64, J)> = pairs
                        .iter()
                        .map(|(k, v)| {
                            let i = match k {
                                Stored::Int(n) => *n as f64,
                                Stored::Num(n) => *n,
                                _ => 0.0,
                            };
                            (i, v.to_json())
                        })
                        .collect();
                    items.sort_by(|a, b| a.0.total_cmp(&b.0));
                    J::Array(items.into_iter().map(|(_, v)| v).collect())
                } else {
                    let mut map = serde_json::Map::new();
                    for (k, v) in pairs.iter() {
                        let key = match k {
                            Stored::Str(s) => String::from_utf8_lossy(s).into_owned(),
                            other => other.to_json().to_string(),
                        };
                        map.insert(key, v.to_json());
                    }
                    J::Object(map)
                }
            }
        }
    }
}

struct Entry {
    value: Stored,
    size: usize,
    /// None: never expires (ttl 0).
    expires: Option<Instant>,
}

struct Store {
    entries: LruCache<String, Entry>,
    bytes: usize,
    capacity: usize,
}

/// Kong's `mem_cache_size` default.
pub const DEFAULT_CAPACITY: usize = 128 << 20;

static CAPACITY: OnceLock<usize> = OnceLock::new();
static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the shared level's size in bytes (once, at startup).
pub fn set_capacity(bytes: usize) {
    let _ = CAPACITY.set(bytes.max(1 << 20));
}

fn capacity() -> usize {
    CAPACITY.get().copied().unwrap_or(DEFAULT_CAPACITY)
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        Mutex::new(Store {
            entries: LruCache::unbounded(),
            bytes: 0,
            capacity: capacity(),
        })
    })
}

fn locked() -> std::sync::MutexGuard<'static, Store> {
    store().lock().unwrap_or_else(|e| e.into_inner())
}

/// Changes whenever entries are invalidated or purged: each VM empties its first level when
/// it sees a new value.
pub fn epoch() -> u64 {
    EPOCH.load(std::sync::atomic::Ordering::Acquire)
}

fn bump() {
    EPOCH.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

/// A live entry: its value and the seconds it has left (0: no expiry).
pub fn get(key: &str) -> Option<(Stored, f64)> {
    let mut s = locked();
    let now = Instant::now();
    let (value, left) = match s.entries.get(key) {
        None => return None,
        Some(e) => match e.expires {
            Some(at) if at <= now => (None, 0.0),
            Some(at) => (Some(e.value.clone()), (at - now).as_secs_f64().max(0.001)),
            None => (Some(e.value.clone()), 0.0),
        },
    };
    if value.is_none() {
        if let Some(e) = s.entries.pop(key) {
            s.bytes -= e.size;
        }
    }
    value.map(|v| (v, left))
}

/// Stores `value` for `ttl` seconds (0: no expiry); the least recently used entries make room.
/// False when the value alone is larger than the store (`safe_set`'s "no memory").
pub fn set(key: &str, value: Stored, size: usize, ttl: f64) -> bool {
    let size = size + key.len() + 64;
    let mut s = locked();
    if size > s.capacity {
        return false;
    }
    if let Some(old) = s.entries.pop(key) {
        s.bytes -= old.size;
    }
    while s.bytes + size > s.capacity {
        match s.entries.pop_lru() {
            Some((_, e)) => s.bytes -= e.size,
            None => break,
        }
    }
    let expires = (ttl > 0.0).then(|| Instant::now() + Duration::from_secs_f64(ttl));
    s.bytes += size;
    s.entries.put(
        key.to_string(),
        Entry {
            value,
            size,
            expires,
        },
    );
    true
}

/// Removes `key` from the shared level and, through the epoch, from every first level.
pub fn invalidate(key: &str) {
    let mut s = locked();
    if let Some(e) = s.entries.pop(key) {
        s.bytes -= e.size;
    }
    drop(s);
    bump();
}

/// Empties the cache (`DELETE /cache`, `kong.cache:purge()`).
pub fn purge() {
    let mut s = locked();
    s.entries.clear();
    s.bytes = 0;
    drop(s);
    bump();
}

/// Entries and bytes in use, and the capacity.
pub fn usage() -> (usize, usize, usize) {
    let s = locked();
    (s.entries.len(), s.bytes, s.capacity)
}

// Fills -------------------------------------------------------------------------------------

/// How long a fill may hold its key before others stop waiting for it (mlcache's lock exptime).
const FILL_EXPIRES: Duration = Duration::from_secs(10);
/// How long a request waits for another's fill (mlcache's lock timeout).
pub const FILL_WAIT: Duration = Duration::from_secs(5);

struct Fill {
    done: watch::Sender<()>,
    since: Instant,
    owner: u64,
}

fn fills() -> &'static Mutex<HashMap<String, Fill>> {
    static FILLS: OnceLock<Mutex<HashMap<String, Fill>>> = OnceLock::new();
    FILLS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Takes the fill of `key` for request `owner`, or, when another request holds it, a
/// receiver that wakes when that fill ends.
pub fn lock(key: &str, owner: u64) -> Result<(), watch::Receiver<()>> {
    let mut all = fills().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = all.get(key) {
        if f.since.elapsed() < FILL_EXPIRES && f.owner != owner {
            return Err(f.done.subscribe());
        }
    }
    let (done, _) = watch::channel(());
    all.insert(
        key.to_string(),
        Fill {
            done,
            since: Instant::now(),
            owner,
        },
    );
    Ok(())
}

/// Ends the fill of `key` by `owner` (its waiters wake and read the store).
pub fn unlock(key: &str, owner: u64) {
    let mut all = fills().lock().unwrap_or_else(|e| e.into_inner());
    if all.get(key).is_some_and(|f| f.owner == owner) {
        all.remove(key);
    }
}

/// Ends every fill `owner` still holds (its request ended in the middle of one).
pub fn unlock_all(owner: u64) {
    let mut all = fills().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|_, f| f.owner != owner);
}

/// Waits until the fill a receiver watches ends, at most [`FILL_WAIT`]; whether it ended.
pub async fn wait_fill(mut rx: watch::Receiver<()>) -> bool {
    // The sender goes away when the fill ends: `changed` then fails at once.
    matches!(
        tokio::time::timeout(FILL_WAIT, rx.changed()).await,
        Ok(Err(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_types_are_refused() {
        let lua = Lua::new();
        let v: Value = lua
            .load("return { 1, 'two', x = { y = true }, [3.5] = false }")
            .eval()
            .unwrap();
        let mut size = 0;
        let stored = Stored::from_lua(&v, 0, &mut size).unwrap();
        let back = stored.to_lua(&lua).unwrap();
        let again = Stored::from_lua(&back, 0, &mut 0).unwrap();
        // The same pairs (a table's order of iteration may differ).
        let sorted = |s: &Stored| match s {
            Stored::Table(pairs) => {
                let mut v: Vec<String> = pairs.iter().map(|p| format!("{p:?}")).collect();
                v.sort();
                v
            }
            other => vec![format!("{other:?}")],
        };
        assert_eq!(sorted(&stored), sorted(&again));
        let f: Value = lua.load("return function() end").eval().unwrap();
        assert_eq!(
            Stored::from_lua(&f, 0, &mut 0).unwrap_err(),
            "cannot cache value of type function"
        );
        let cyclic: Value = lua.load("local t = {} t.t = t return t").eval().unwrap();
        assert!(Stored::from_lua(&cyclic, 0, &mut 0).is_err());
        // 2^40 paths through 40 shared levels: refused once the copy outgrows the cache.
        let shared: Value = lua
            .load("local t = { 'x' } for i = 1, 40 do t = { a = t, b = t } end return t")
            .eval()
            .unwrap();
        assert!(Stored::from_lua(&shared, 0, &mut 0)
            .unwrap_err()
            .contains("larger than the cache"));
    }

    #[test]
    fn the_store_is_bounded_and_expires() {
        let key = |i: usize| format!("test-bounded-{i}");
        let cap = locked().capacity;
        let big = Stored::Str(Bytes::from(vec![b'x'; cap / 4]));
        for i in 0..8 {
            assert!(set(&key(i), big.clone(), cap / 4, 0.0));
        }
        assert!(usage().1 <= cap);
        assert!(get(&key(7)).is_some());
        assert!(get(&key(0)).is_none(), "the oldest went first");
        assert!(!set("too-big", big.clone(), cap * 2, 0.0));
        assert!(set("test-short", Stored::Bool(true), 1, 0.001));
        std::thread::sleep(Duration::from_millis(5));
        assert!(get("test-short").is_none());
        let before = epoch();
        invalidate(&key(7));
        assert!(get(&key(7)).is_none());
        assert!(epoch() > before);
    }

    #[test]
    fn one_fill_per_key() {
        assert!(lock("test-fill", 1).is_ok());
        let rx = lock("test-fill", 2).unwrap_err();
        assert!(lock("test-fill", 1).is_ok(), "the owner may take it again");
        unlock("test-fill", 1);
        assert!(rx.has_changed().is_err(), "waiters see the fill end");
        assert!(lock("test-fill", 2).is_ok());
        unlock_all(2);
        assert!(lock("test-fill", 3).is_ok());
        unlock("test-fill", 3);
    }
}
