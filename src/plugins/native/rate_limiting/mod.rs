//! `rate-limiting`: limits requests per second/minute/hour/day/month/year for an identifier
//! (consumer, credential, ip, service, header or path), with the `local` policy: counters in
//! this process, kept across reloads (keyed by the plugin instance's id), in calendar-aligned
//! UTC windows as Kong counts them. Sets X-RateLimit-Limit/Remaining-<Period> and the
//! RateLimit-Limit/Remaining/Reset headers; over the limit: 429 (error_code) with
//! `{"message": error_message}` and Retry-After.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, HeaderOp, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "rate-limiting",
    priority: 910,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
local PERIODS = { "second", "minute", "hour", "day", "month", "year" }

local function increasing(entity)
  local conf = entity.config
  local prev, prev_name
  for _, p in ipairs(PERIODS) do
    local v = conf[p]
    if type(v) == "number" then
      if prev and v < prev then
        return nil, string.format("the limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)",
                                  p, v, prev_name, prev)
      end
      prev, prev_name = v, p
    end
  end
  return true
end

local function supported(entity)
  local policy = entity.config.policy
  if policy ~= "local" then
    return nil, "policy '" .. tostring(policy) .. "' is not supported by this gateway: "
      .. "use 'local' (counters are kept per gateway process)"
  end
  return true
end

local redis = { type = "record", required = false, fields = {
  { host = typedefs.host },
  { port = typedefs.port },
  { timeout = typedefs.timeout },
  { connect_timeout = typedefs.timeout },
  { send_timeout = typedefs.timeout },
  { read_timeout = typedefs.timeout },
  { username = { type = "string" } },
  { password = { type = "string" } },
  { database = { type = "integer" } },
  { ssl = { type = "boolean" } },
  { ssl_verify = { type = "boolean" } },
  { server_name = typedefs.sni },
  { keepalive_pool_size = { type = "integer" } },
  { keepalive_backlog = { type = "integer" } },
  { sentinel_master = { type = "string" } },
  { sentinel_role = { type = "string" } },
  { sentinel_nodes = { type = "array", elements = { type = "record", fields = {
      { host = typedefs.host }, { port = typedefs.port } } } } },
  { sentinel_username = { type = "string" } },
  { sentinel_password = { type = "string" } },
  { cluster_nodes = { type = "array", elements = { type = "record", fields = {
      { ip = typedefs.host }, { port = typedefs.port } } } } },
  { cluster_max_redirections = { type = "integer" } },
  { connection_is_proxied = { type = "boolean" } },
} }

return {
  name = "rate-limiting",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { second = { type = "number", gt = 0 } },
      { minute = { type = "number", gt = 0 } },
      { hour = { type = "number", gt = 0 } },
      { day = { type = "number", gt = 0 } },
      { month = { type = "number", gt = 0 } },
      { year = { type = "number", gt = 0 } },
      { limit_by = { type = "string", default = "consumer",
                     one_of = { "consumer", "credential", "ip", "service", "header", "path" } } },
      { header_name = typedefs.header_name },
      { path = typedefs.path },
      { policy = { type = "string", default = "local", one_of = { "local", "cluster", "redis" } } },
      { fault_tolerant = { type = "boolean", required = true, default = true } },
      { redis = redis },
      { hide_client_headers = { type = "boolean", required = true, default = false } },
      { error_code = { type = "number", default = 429, gt = 0 } },
      { error_message = { type = "string", default = "API rate limit exceeded" } },
      { sync_rate = { type = "number", default = -1 } },
      { redis_host = typedefs.host },
      { redis_port = typedefs.port },
      { redis_password = { type = "string" } },
      { redis_username = { type = "string" } },
      { redis_ssl = { type = "boolean" } },
      { redis_ssl_verify = { type = "boolean" } },
      { redis_server_name = typedefs.sni },
      { redis_timeout = typedefs.timeout },
      { redis_database = { type = "integer" } },
    } } },
  },
  entity_checks = {
    { at_least_one_of = { "config.second", "config.minute", "config.hour", "config.day",
                          "config.month", "config.year" } },
    { conditional = { if_field = "config.limit_by", if_match = { eq = "header" },
                      then_field = "config.header_name", then_match = { required = true } } },
    { conditional = { if_field = "config.limit_by", if_match = { eq = "path" },
                      then_field = "config.path", then_match = { required = true } } },
    { custom_entity_check = { field_sources = { "config" }, fn = increasing } },
    { custom_entity_check = { field_sources = { "config" }, fn = supported } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    second: Option<f64>,
    minute: Option<f64>,
    hour: Option<f64>,
    day: Option<f64>,
    month: Option<f64>,
    year: Option<f64>,
    limit_by: String,
    header_name: Option<String>,
    path: Option<String>,
    hide_client_headers: bool,
    error_code: f64,
    error_message: String,
}

/// Kong's periods, their header suffix and window length in seconds (month: 30 days and
/// year: 365 days, as Kong's reset computation uses).
const PERIODS: [(Period, &str, i64); 6] = [
    (Period::Second, "Second", 1),
    (Period::Minute, "Minute", 60),
    (Period::Hour, "Hour", 3600),
    (Period::Day, "Day", 86400),
    (Period::Month, "Month", 2_592_000),
    (Period::Year, "Year", 31_536_000),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

struct RateLimiting {
    conf: Conf,
    /// `(period, header suffix, window seconds, limit)` for the configured periods.
    limits: Vec<(Period, &'static str, i64, u64)>,
    /// The instance's id: counters survive reloads of an unchanged instance.
    plugin_id: String,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let configured = [
        conf.second,
        conf.minute,
        conf.hour,
        conf.day,
        conf.month,
        conf.year,
    ];
    let limits = PERIODS
        .iter()
        .zip(configured)
        .filter_map(|(&(p, name, secs), limit)| Some((p, name, secs, limit? as u64)))
        .collect();
    Ok(Arc::new(RateLimiting {
        conf,
        limits,
        plugin_id: ctx.plugin.id.clone(),
    }))
}

impl RateLimiting {
    /// Kong's identifier for `limit_by`, falling back to the client IP.
    fn identifier(&self, ctx: &PhaseCtx<'_>) -> String {
        let cfg = &ctx.snap.config;
        let credential_id = || {
            ctx.state
                .credential
                .as_ref()
                .and_then(|c| c.get("id"))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        let id = match self.conf.limit_by.as_str() {
            "consumer" => ctx
                .state
                .consumer
                .map(|i| cfg.consumers[i].id.clone())
                .or_else(credential_id),
            "credential" => credential_id(),
            "service" => ctx.state.service.map(|i| cfg.services[i].id.clone()),
            "header" => self
                .conf
                .header_name
                .as_deref()
                .and_then(|h| ctx.header(h))
                .map(String::from),
            "path" => self
                .conf
                .path
                .as_ref()
                .filter(|p| ctx.req.uri.path() == p.as_str())
                .cloned(),
            _ => None,
        };
        match id.filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => ctx.client_ip().map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }
}

impl Instance for RateLimiting {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| PluginError(format!("clock: {e}")))?;
        let now_s = now.as_secs() as i64;
        let identifier = self.identifier(ctx);
        let key = key_hash(&self.plugin_id, &identifier);

        // Usage before this request, per period; over any limit stops the request.
        let mut usage = Vec::with_capacity(self.limits.len());
        let mut stop = None;
        for &(period, name, secs, limit) in &self.limits {
            let start = window_start(period, now_s);
            let used = COUNTERS.get(key, period, start);
            let remaining = limit as i64 - used as i64;
            if remaining <= 0 && stop.is_none() {
                stop = Some(period);
            }
            usage.push((period, name, secs, limit, remaining, start));
        }

        if !self.conf.hide_client_headers {
            // The RateLimit-* headers describe the most limiting period.
            let mut best: Option<(u64, i64, i64, i64)> = None; // limit, remaining, window, reset
            for &(period, name, secs, limit, remaining, start) in &usage {
                let remaining = if stop.is_none() || stop == Some(period) {
                    remaining - 1
                } else {
                    remaining
                }
                .max(0);
                let reset = (secs - (now_s - start)).max(1);
                let better = match best {
                    None => true,
                    Some((_, r, w, _)) => remaining < r || (remaining == r && secs > w),
                };
                if better {
                    best = Some((limit, remaining, secs, reset));
                }
                let ops = &mut ctx.state.response_headers;
                ops.push(HeaderOp::Set(
                    format!("X-RateLimit-Limit-{name}"),
                    limit.to_string(),
                ));
                ops.push(HeaderOp::Set(
                    format!("X-RateLimit-Remaining-{name}"),
                    remaining.to_string(),
                ));
            }
            if let Some((limit, remaining, _, reset)) = best {
                let ops = &mut ctx.state.response_headers;
                ops.push(HeaderOp::Set("RateLimit-Limit".into(), limit.to_string()));
                ops.push(HeaderOp::Set(
                    "RateLimit-Remaining".into(),
                    remaining.to_string(),
                ));
                ops.push(HeaderOp::Set("RateLimit-Reset".into(), reset.to_string()));
                if stop.is_some() {
                    ops.push(HeaderOp::Set("Retry-After".into(), reset.to_string()));
                }
            }
        }
        if stop.is_some() {
            let status = self.conf.error_code as u16;
            return Ok(Flow::Exit(Exit::message(status, &self.conf.error_message)));
        }
        for &(period, _, secs, _, _, start) in &usage {
            COUNTERS.increment(key, period, start, start + secs);
        }
        Ok(Flow::Continue)
    }
}

/// Start (unix seconds, UTC) of the calendar window of `period` containing `now`.
fn window_start(period: Period, now: i64) -> i64 {
    match period {
        Period::Second => now,
        Period::Minute => now - now.rem_euclid(60),
        Period::Hour => now - now.rem_euclid(3600),
        Period::Day => now - now.rem_euclid(86400),
        Period::Month | Period::Year => {
            let days = now.div_euclid(86400);
            let (y, m, _) = civil_from_days(days);
            let month = if period == Period::Month { m } else { 1 };
            days_from_civil(y, month, 1) * 86400
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One hash for (plugin instance, identifier): counters are keyed without allocating.
fn key_hash(plugin: &str, identifier: &str) -> u64 {
    let mut h = HASHER.build_hasher();
    plugin.hash(&mut h);
    identifier.hash(&mut h);
    h.finish()
}

static HASHER: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// The local policy's counters, shared by all workers, sharded to keep lock contention low.
static COUNTERS: LazyLock<Counters> = LazyLock::new(Counters::default);

const SHARDS: usize = 32;

type CounterKey = (u64, Period, i64);

#[derive(Default)]
struct Shard {
    /// key → (count, window end in unix seconds)
    counts: HashMap<CounterKey, (u64, i64)>,
    /// Increments since the last sweep of expired windows.
    since_sweep: u32,
}

#[derive(Default)]
struct Counters {
    shards: [Mutex<Shard>; SHARDS],
}

impl Counters {
    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: u64, period: Period, start: i64) -> u64 {
        self.shard(key)
            .counts
            .get(&(key, period, start))
            .map_or(0, |(n, _)| *n)
    }

    fn increment(&self, key: u64, period: Period, start: i64, end: i64) {
        let mut shard = self.shard(key);
        shard
            .counts
            .entry((key, period, start))
            .or_insert((0, end))
            .0 += 1;
        shard.since_sweep += 1;
        if shard.since_sweep >= 4096 {
            shard.since_sweep = 0;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            shard.counts.retain(|_, (_, end)| *end > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows() {
        // 2026-11-22T07:10:21Z
        let t = 1_795_331_421;
        assert_eq!(window_start(Period::Minute, t), t - 21);
        assert_eq!(window_start(Period::Hour, t), t - 10 * 60 - 21);
        assert_eq!(window_start(Period::Day, t), t - (7 * 3600 + 10 * 60 + 21));
        // 2026-11-01T00:00:00Z and 2026-01-01T00:00:00Z
        assert_eq!(window_start(Period::Month, t), 1_793_491_200);
        assert_eq!(window_start(Period::Year, t), 1_767_225_600);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
