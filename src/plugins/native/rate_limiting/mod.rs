//! `rate-limiting`: limits requests per second/minute/hour/day/month/year for an identifier
//! (consumer, credential, ip, service, header or path), in calendar-aligned UTC windows as Kong
//! counts them, with Kong's policies: `local` (counters in this process, kept across reloads)
//! and `redis` (counters in Redis under Kong's keys, shared by every replica; see
//! [`redis::RedisPolicy`]). `cluster` needs Kong's database and is refused. Sets
//! X-RateLimit-Limit/Remaining-<Period> and the RateLimit-Limit/Remaining/Reset headers; over
//! the limit: `error_code` with `{"message": error_message}` and Retry-After.

mod local;
mod redis;
pub(crate) mod window;

use std::sync::Arc;

use serde::Deserialize;

use super::redis::{RedisConf, RedisError, Target};
use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, HeaderOp, Instance, Phase, PhaseCtx, PluginError};
pub(crate) use local::{key_hash, COUNTERS};
use redis::{Counter, RedisPolicy, Usage};
use window::{window_start, Period, PERIODS};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "rate-limiting",
    priority: 910,
    schema: SCHEMA,
    build,
};
/// Lua shared by the schemas of rate-limiting and response-ratelimiting (put in front of each
/// with `concat!`): Kong's period-order check, the refusal of `cluster`, Kong's deprecated flat
/// `redis_*` fields and the checks of the redis policy.
macro_rules! limits_schema_lua {
    () => {
        r#"
local typedefs = require "kong.db.schema.typedefs"
local redis_schema = require "kong.tools.redis.schema"
local PERIODS = { "second", "minute", "hour", "day", "month", "year" }

-- Kong's validate_periods_order; `first` is the first word of its message, which the two plugins
-- capitalise differently.
local function periods_out_of_order(limits, first)
  for i, lower in ipairs(PERIODS) do
    local v1 = limits[lower]
    if type(v1) == "number" then
      for j = i + 1, #PERIODS do
        local upper = PERIODS[j]
        local v2 = limits[upper]
        if type(v2) == "number" and v2 < v1 then
          return string.format(first .. " limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)",
                               upper, v2, lower, v1)
        end
      end
    end
  end
end

local CLUSTER_REFUSED = "policy 'cluster' keeps counters in Kong's database, which a DB-less "
  .. "gateway does not have: use 'redis' to share counters between replicas, or 'local'"

-- Kong's deprecated flat redis_* fields of `plugin`, moved into the redis record.
local function redis_shorthands(plugin)
  local function moved(field, def)
    def.func = function(value) return { redis = { [field] = value } } end
    def.deprecation = { replaced_with = { { path = { "redis", field } } },
      message = plugin .. ": config.redis_" .. field .. " is deprecated, please use config.redis."
        .. field .. " instead", removal_in_version = "4.0" }
    return { ["redis_" .. field] = def }
  end
  return {
    moved("host", { type = "string" }),
    moved("port", { type = "integer" }),
    moved("password", { type = "string", len_min = 0 }),
    moved("username", { type = "string" }),
    moved("ssl", { type = "boolean" }),
    moved("ssl_verify", { type = "boolean" }),
    moved("server_name", { type = "string" }),
    moved("timeout", { type = "integer" }),
    moved("database", { type = "integer" }),
  }
end

-- `before`, the redis policy's required fields, then `after` (entity_checks in Kong's order).
local function with_redis_checks(before, after)
  local checks = {}
  for _, c in ipairs(before) do checks[#checks + 1] = c end
  for _, field in ipairs({ "host", "port", "timeout" }) do
    checks[#checks + 1] = { conditional = { if_field = "config.policy", if_match = { eq = "redis" },
      then_field = "config.redis." .. field, then_match = { required = true } } }
  end
  for _, c in ipairs(after) do checks[#checks + 1] = c end
  return checks
end
"#
    };
}
pub(crate) use limits_schema_lua;

const SCHEMA: &str = concat!(
    limits_schema_lua!(),
    r#"
local function validate(config)
  local out_of_order = periods_out_of_order(config, "The")
  if out_of_order then
    return nil, out_of_order
  end
  if config.policy == "cluster" then
    return nil, CLUSTER_REFUSED
  end
  if config.policy ~= "redis" and config.sync_rate ~= -1 then
    return nil, "sync_rate can only be used with the redis policy"
  end
  if config.policy == "redis" and config.sync_rate ~= -1 and config.sync_rate < 0.02 then
    return nil, "sync_rate must be greater than 0.02, or -1 to disable"
  end
  return true
end

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
      { policy = { type = "string", default = "local", len_min = 0,
                   one_of = { "local", "cluster", "redis" } } },
      { fault_tolerant = { type = "boolean", required = true, default = true } },
      { redis = redis_schema.config_schema },
      { hide_client_headers = { type = "boolean", required = true, default = false } },
      { error_code = { type = "number", default = 429, gt = 0 } },
      { error_message = { type = "string", default = "API rate limit exceeded" } },
      { sync_rate = { type = "number", required = true, default = -1 } },
    },
    custom_validator = validate,
    shorthand_fields = redis_shorthands("rate-limiting"),
    } },
  },
  entity_checks = with_redis_checks({
    { at_least_one_of = { "config.second", "config.minute", "config.hour", "config.day",
                          "config.month", "config.year" } },
  }, {
    { conditional = { if_field = "config.limit_by", if_match = { eq = "header" },
                      then_field = "config.header_name", then_match = { required = true } } },
    { conditional = { if_field = "config.limit_by", if_match = { eq = "path" },
                      then_field = "config.path", then_match = { required = true } } },
  }),
}
"#
);

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
    policy: String,
    fault_tolerant: bool,
    #[serde(default)]
    redis: Option<RedisConf>,
    hide_client_headers: bool,
    error_code: f64,
    error_message: String,
    sync_rate: f64,
}

/// One configured limit.
#[derive(Debug, Clone, Copy)]
struct Limit {
    period: Period,
    /// Kong's name of the period ("minute").
    name: &'static str,
    /// Header suffix ("Minute").
    suffix: &'static str,
    /// Kong's expiration (window length) in seconds.
    secs: i64,
    limit: u64,
}

enum Policy {
    Local,
    Redis(RedisPolicy),
}

struct RateLimiting {
    conf: Conf,
    limits: Vec<Limit>,
    /// The instance's id: local counters survive reloads of an unchanged instance.
    plugin_id: String,
    /// Kong's `route_id:service_id` of the instance's scope, in Redis keys.
    scope: String,
    /// Where the instance is in the config, for logs.
    label: String,
    policy: Policy,
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
        .filter_map(|(&(period, name, suffix, secs), limit)| {
            Some(Limit {
                period,
                name,
                suffix,
                secs,
                limit: limit? as u64,
            })
        })
        .collect();
    let policy = match conf.policy.as_str() {
        "redis" => {
            let (target, timeout) = conf
                .redis
                .as_ref()
                .and_then(Target::of)
                .ok_or("config.redis.host: required field missing")?;
            Policy::Redis(RedisPolicy::new(target, timeout, conf.sync_rate))
        }
        _ => Policy::Local,
    };
    let cfg = ctx.config;
    let scope = window::scope(
        ctx.plugin.route.map(|i| cfg.routes[i].id.as_str()),
        ctx.plugin.service.map(|i| cfg.services[i].id.as_str()),
    );
    Ok(Arc::new(RateLimiting {
        conf,
        limits,
        plugin_id: ctx.plugin.id.clone(),
        scope,
        label: ctx.plugin.label.clone(),
        policy,
    }))
}

/// Kong's identifier of a request for `limit_by`: the consumer's id (else the credential's),
/// the credential's id, or what `other` gives for the other kinds; without one, the client IP
/// (behind trusted proxies, the one they name).
pub(crate) fn identifier(
    ctx: &PhaseCtx<'_>,
    limit_by: &str,
    other: impl FnOnce() -> Option<String>,
) -> String {
    let credential_id = || {
        ctx.state
            .credential
            .as_ref()
            .and_then(|c| c.get("id"))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let id = match limit_by {
        "consumer" => ctx
            .state
            .consumer
            .map(|i| ctx.snap.config.consumers[i].id.clone())
            .or_else(credential_id),
        "credential" => credential_id(),
        _ => other(),
    };
    match id.filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => ctx.client_ip().map(|ip| ip.to_string()).unwrap_or_default(),
    }
}

/// What a request waiting for Redis takes back in `resume`.
struct Fetched {
    now: i64,
    counters: Vec<Counter>,
    used: Result<Vec<i64>, RedisError>,
}

impl RateLimiting {
    /// Kong's identifier for `limit_by`, falling back to the client IP.
    fn identifier(&self, ctx: &PhaseCtx<'_>) -> String {
        identifier(ctx, &self.conf.limit_by, || {
            match self.conf.limit_by.as_str() {
                "service" => ctx
                    .state
                    .service
                    .map(|i| ctx.snap.config.services[i].id.clone()),
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
            }
        })
    }

    /// Kong's Redis counters of a request.
    fn counters(&self, identifier: &str, now: i64) -> Vec<Counter> {
        self.limits
            .iter()
            .map(|l| {
                let start = window_start(l.period, now);
                Counter {
                    key: format!(
                        "ratelimit:{}:{identifier}:{}:{}",
                        self.scope,
                        start * 1000,
                        l.name
                    ),
                    expiration: l.secs,
                    expire_at: start + l.secs,
                }
            })
            .collect()
    }

    /// Applies the usage before this request: headers, and the verdict.
    fn decide(
        &self,
        ctx: &mut PhaseCtx<'_>,
        now: i64,
        used: &[i64],
    ) -> Result<Option<Exit>, PluginError> {
        let usage: Vec<(Limit, i64)> = self
            .limits
            .iter()
            .zip(used)
            .map(|(l, &u)| (*l, l.limit as i64 - u))
            .collect();
        // Kong keeps the last period over its limit (its loop order is unspecified).
        let stop = usage
            .iter()
            .rev()
            .find(|(_, remaining)| *remaining <= 0)
            .map(|(l, _)| l.period);
        if !self.conf.hide_client_headers {
            // The RateLimit-* headers describe the most limiting period.
            let mut best: Option<(u64, i64, i64, i64)> = None; // limit, remaining, window, reset
            for &(l, remaining) in &usage {
                let remaining = if stop.is_none() || stop == Some(l.period) {
                    remaining - 1
                } else {
                    remaining
                }
                .max(0);
                let reset = (l.secs - (now - window_start(l.period, now))).max(1);
                let better = match best {
                    None => true,
                    Some((_, r, w, _)) => remaining < r || (remaining == r && l.secs > w),
                };
                if better {
                    best = Some((l.limit, remaining, l.secs, reset));
                }
                let ops = &mut ctx.state.response_headers;
                ops.push(HeaderOp::Set(
                    format!("X-RateLimit-Limit-{}", l.suffix),
                    l.limit.to_string(),
                ));
                ops.push(HeaderOp::Set(
                    format!("X-RateLimit-Remaining-{}", l.suffix),
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
        Ok(stop.map(|_| {
            let status = self.conf.error_code as u16;
            Exit::message(status, &self.conf.error_message)
        }))
    }

    /// The end of a Redis-policy request: usage known (or Redis failed).
    fn finish(&self, ctx: &mut PhaseCtx<'_>, fetched: Fetched) -> Result<Flow, PluginError> {
        let Policy::Redis(policy) = &self.policy else {
            return Err(PluginError("rate-limiting: resumed without Redis".into()));
        };
        match &fetched.used {
            Ok(used) => {
                if let Some(exit) = self.decide(ctx, fetched.now, used)? {
                    return Ok(Flow::Exit(exit));
                }
            }
            Err(e) if !self.conf.fault_tolerant => {
                return Err(PluginError(format!(
                    "{}: failed to get usage: {e}",
                    self.label
                )));
            }
            Err(e) => {
                tracing::error!(plugin = "rate-limiting", instance = %self.label, error = %e,
                    "failed to get usage; the request passes (fault_tolerant)");
            }
        }
        policy.increment(&fetched.counters);
        Ok(Flow::Continue)
    }
}

impl Instance for RateLimiting {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let now = window::now();
        let identifier = self.identifier(ctx);
        let policy = match &self.policy {
            Policy::Redis(policy) => policy,
            Policy::Local => return self.access_local(ctx, now, &identifier),
        };
        let counters = self.counters(&identifier, now);
        match policy.usage(counters.clone()) {
            Usage::Now(used) => self.finish(
                ctx,
                Fetched {
                    now,
                    counters,
                    used: Ok(used),
                },
            ),
            Usage::Later(fut) => Ok(super::wait(ctx, async move {
                Fetched {
                    now,
                    counters,
                    used: fut.await,
                }
            })),
        }
    }

    fn resume(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let fetched: Fetched = super::waited(ctx)?;
        self.finish(ctx, fetched)
    }
}

impl RateLimiting {
    fn access_local(
        &self,
        ctx: &mut PhaseCtx<'_>,
        now: i64,
        identifier: &str,
    ) -> Result<Flow, PluginError> {
        let key = key_hash(&[&self.plugin_id, identifier]);
        let used: Vec<i64> = self
            .limits
            .iter()
            .map(|l| COUNTERS.get(key, l.period, window_start(l.period, now)) as i64)
            .collect();
        if let Some(exit) = self.decide(ctx, now, &used)? {
            return Ok(Flow::Exit(exit));
        }
        for l in &self.limits {
            let start = window_start(l.period, now);
            COUNTERS.add(key, l.period, start, start + l.secs, 1);
        }
        Ok(Flow::Continue)
    }
}
