//! `response-ratelimiting`: limits by usage the upstream reports. The upstream answers with a
//! header (`x-kong-limit: videos=2, images=1`) saying how much of each named limit a response
//! used; later requests over a limit get a 429. Kong's plugin (kong/plugins/response-
//! ratelimiting): usage read in access (sent upstream as `X-RateLimit-Remaining-<limit>`,
//! `block_on_first_violation` refuses there), the header parsed and removed in header_filter
//! (`X-RateLimit-Limit/Remaining-<limit>-<period>` to the client, 429 without a body when a
//! used-up limit is used again), the counters increased after the response (log), with the
//! `local` and `redis` policies and Kong's Redis keys.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::Deserialize;

use super::rate_limiting::window::{self, window_start, Period, PERIODS};
use super::rate_limiting::{key_hash, COUNTERS};
use super::redis::{self as client, RedisConf, RedisError, Target};
use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "response-ratelimiting",
    priority: 900,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = concat!(
    super::rate_limiting::limits_schema_lua!(),
    r#"
-- Kong's validate_periods_order, and at least one period per limit.
local function validate_limit(limit)
  local out_of_order = periods_out_of_order(limit, "the")
  if out_of_order then
    return nil, out_of_order
  end
  for _, p in ipairs(PERIODS) do
    if type(limit[p]) == "number" then
      return true
    end
  end
  return nil, "at least one of these fields must be non-empty: 'second', 'minute', 'hour', 'day', 'month', 'year'"
end

local function validate(config)
  if config.policy == "cluster" then
    return nil, CLUSTER_REFUSED
  end
  return true
end

return {
  name = "response-ratelimiting",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { header_name = { type = "string", default = "x-kong-limit" } },
      { limit_by = { type = "string", default = "consumer", one_of = { "consumer", "credential", "ip" } } },
      { policy = { type = "string", default = "local", one_of = { "local", "cluster", "redis" } } },
      { fault_tolerant = { type = "boolean", required = true, default = true } },
      { redis = redis_schema.config_schema },
      { block_on_first_violation = { type = "boolean", required = true, default = false } },
      { hide_client_headers = { type = "boolean", required = true, default = false } },
      { limits = { type = "map", required = true, len_min = 1,
          keys = { type = "string" },
          values = { type = "record", required = true, fields = {
            { second = { type = "number", gt = 0 } },
            { minute = { type = "number", gt = 0 } },
            { hour = { type = "number", gt = 0 } },
            { day = { type = "number", gt = 0 } },
            { month = { type = "number", gt = 0 } },
            { year = { type = "number", gt = 0 } },
          }, custom_validator = validate_limit } } },
    },
    custom_validator = validate,
    shorthand_fields = redis_shorthands("response-ratelimiting"),
    } },
  },
  entity_checks = with_redis_checks({}, {}),
}
"#
);

#[derive(Debug, Deserialize)]
struct Conf {
    header_name: String,
    limit_by: String,
    policy: String,
    fault_tolerant: bool,
    #[serde(default)]
    redis: Option<RedisConf>,
    block_on_first_violation: bool,
    hide_client_headers: bool,
    limits: std::collections::BTreeMap<String, PeriodLimits>,
}

#[derive(Debug, Deserialize)]
struct PeriodLimits {
    second: Option<f64>,
    minute: Option<f64>,
    hour: Option<f64>,
    day: Option<f64>,
    month: Option<f64>,
    year: Option<f64>,
}

/// A named limit and its periods: (period, Kong's period name, limit).
struct Named {
    name: String,
    periods: Vec<(Period, &'static str, u64)>,
}

struct ResponseRateLimiting {
    conf: Conf,
    limits: Vec<Named>,
    plugin_id: String,
    /// Kong's `route_id:service_id` of the instance's scope, in Redis keys.
    scope: String,
    label: String,
    /// Name under which the request's state is kept between phases.
    name: String,
    redis: Option<(Target, Duration)>,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let limits = conf
        .limits
        .iter()
        .map(|(name, l)| Named {
            name: name.clone(),
            periods: PERIODS
                .iter()
                .zip([l.second, l.minute, l.hour, l.day, l.month, l.year])
                .filter_map(|(&(p, pname, _, _), v)| Some((p, pname, v? as u64)))
                .collect(),
        })
        .collect();
    let redis = match conf.policy.as_str() {
        "redis" => Some(
            conf.redis
                .as_ref()
                .and_then(Target::of)
                .ok_or("config.redis.host: required field missing")?,
        ),
        _ => None,
    };
    let cfg = ctx.config;
    let scope = window::scope(
        ctx.plugin.route.map(|i| cfg.routes[i].id.as_str()),
        ctx.plugin.service.map(|i| cfg.services[i].id.as_str()),
    );
    Ok(Arc::new(ResponseRateLimiting {
        conf,
        limits,
        plugin_id: ctx.plugin.id.clone(),
        scope,
        label: ctx.plugin.label.clone(),
        name: ctx.name.to_string(),
        redis,
    }))
}

/// What the request keeps between phases (Kong's `kong.ctx.plugin`).
struct Kept {
    now: i64,
    identifier: String,
    /// Remaining before this request, per limit and period (in `limits` order).
    remaining: Vec<Vec<i64>>,
    /// What the upstream reported, per limit.
    increments: Vec<i64>,
    /// The response was refused: nothing is counted.
    stop_log: bool,
}

/// Usage read from Redis, handed to `resume`.
struct Fetched {
    now: i64,
    identifier: String,
    used: Result<Vec<i64>, RedisError>,
}

/// Kong's Redis key of a counter.
fn redis_key(scope: &str, identifier: &str, start: i64, limit: &str, period: &str) -> String {
    format!(
        "response-ratelimit:{scope}:{identifier}:{}:{limit}:{period}",
        start * 1000
    )
}

/// Adds each increment to a counter, giving a new key its expiration (seconds).
static INCREMENT: LazyLock<redis::Script> = LazyLock::new(|| client::adding_script("expire"));

impl ResponseRateLimiting {
    fn identifier(&self, ctx: &PhaseCtx<'_>) -> String {
        super::rate_limiting::identifier(ctx, &self.conf.limit_by, || None)
    }

    /// The Redis keys of the configured periods, in `limits` order.
    fn configured_keys(&self, identifier: &str, now: i64) -> Vec<String> {
        self.limits
            .iter()
            .flat_map(|l| {
                l.periods.iter().map(move |&(p, pname, _)| {
                    redis_key(
                        &self.scope,
                        identifier,
                        window_start(p, now),
                        &l.name,
                        pname,
                    )
                })
            })
            .collect()
    }

    /// With the usage known: the upstream header, `block_on_first_violation`, and what the
    /// later phases need.
    fn apply(
        &self,
        ctx: &mut PhaseCtx<'_>,
        now: i64,
        identifier: String,
        used: Vec<i64>,
    ) -> Result<Flow, PluginError> {
        let mut used = used.into_iter();
        let mut remaining = Vec::with_capacity(self.limits.len());
        for l in &self.limits {
            let left: Vec<i64> = l
                .periods
                .iter()
                .map(|&(_, _, limit)| limit as i64 - used.next().unwrap_or(0))
                .collect();
            if self.conf.block_on_first_violation && left.contains(&0) {
                return Ok(Flow::Exit(Exit::message(
                    429,
                    &format!("API rate limit exceeded for '{}'", l.name),
                )));
            }
            if let Some(min) = left.iter().min() {
                ctx.set_header(
                    &format!("X-RateLimit-Remaining-{}", l.name),
                    &min.to_string(),
                )?;
            }
            remaining.push(left);
        }
        ctx.state.plugin_data.insert(
            &self.name,
            Kept {
                now,
                identifier,
                remaining,
                increments: vec![0; self.limits.len()],
                stop_log: false,
            },
        );
        Ok(Flow::Continue)
    }

    /// What the upstream's usage header says each limit used (Kong's parse_header).
    fn increments(&self, header: &str) -> Vec<i64> {
        let mut inc = vec![0; self.limits.len()];
        for part in header.split(',') {
            let mut kv = part.splitn(3, '=');
            let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
                continue;
            };
            if let Some(i) = self.limits.iter().position(|l| l.name == k.trim()) {
                inc[i] = v.trim().parse().unwrap_or(0);
            }
        }
        inc
    }

    /// Counts what the response used, in every period (as Kong does).
    fn count(&self, kept: &Kept) {
        let counted: Vec<(usize, i64)> = kept
            .increments
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n != 0)
            .collect();
        if counted.is_empty() {
            return;
        }
        let Some((target, timeout)) = &self.redis else {
            for (i, n) in counted {
                let key = key_hash(&[&self.plugin_id, &kept.identifier, &self.limits[i].name]);
                for &(p, _, _, secs) in &PERIODS {
                    let start = window_start(p, kept.now);
                    COUNTERS.add(key, p, start, start + secs, n.max(0) as u64);
                }
            }
            return;
        };
        let mut batch = Vec::new();
        for (i, n) in counted {
            for &(p, pname, _, secs) in &PERIODS {
                let start = window_start(p, kept.now);
                let key = redis_key(
                    &self.scope,
                    &kept.identifier,
                    start,
                    &self.limits[i].name,
                    pname,
                );
                batch.push((key, n, secs));
            }
        }
        let client = client::client(target);
        let (timeout, label) = (*timeout, self.label.clone());
        // After the response, as Kong's timer: the client does not wait for it.
        tokio::spawn(async move {
            let result = client
                .run(timeout, move |mut conn| async move {
                    let mut call = INCREMENT.prepare_invoke();
                    for (key, _, _) in &batch {
                        call.key(key);
                    }
                    for (_, n, secs) in &batch {
                        call.arg(*n).arg(*secs);
                    }
                    call.invoke_async::<i64>(&mut conn).await
                })
                .await;
            if let Err(e) = result {
                tracing::error!(plugin = "response-ratelimiting", instance = %label, error = %e,
                    "failed to increment the counters in Redis");
            }
        });
    }

    fn failed(&self, e: RedisError) -> Result<Flow, PluginError> {
        if !self.conf.fault_tolerant {
            return Err(PluginError(format!(
                "{}: failed to get usage: {e}",
                self.label
            )));
        }
        tracing::error!(plugin = "response-ratelimiting", instance = %self.label, error = %e,
            "failed to get usage; the request passes (fault_tolerant)");
        Ok(Flow::Continue)
    }
}

impl Instance for ResponseRateLimiting {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access, Phase::HeaderFilter, Phase::Log]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let now = window::now();
        let identifier = self.identifier(ctx);
        let Some((target, timeout)) = &self.redis else {
            let used = self
                .limits
                .iter()
                .flat_map(|l| {
                    let key = key_hash(&[&self.plugin_id, &identifier, &l.name]);
                    l.periods
                        .iter()
                        .map(move |&(p, _, _)| COUNTERS.get(key, p, window_start(p, now)) as i64)
                })
                .collect();
            return self.apply(ctx, now, identifier, used);
        };
        let keys = self.configured_keys(&identifier, now);
        let client = client::client(target);
        let timeout = *timeout;
        Ok(super::wait(ctx, async move {
            let used = client
                .run(timeout, move |mut conn| async move {
                    redis::cmd("MGET")
                        .arg(&keys)
                        .query_async::<Vec<Option<i64>>>(&mut conn)
                        .await
                })
                .await
                .map(|v| v.into_iter().map(|n| n.unwrap_or(0)).collect());
            Fetched {
                now,
                identifier,
                used,
            }
        }))
    }

    fn resume(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let fetched: Fetched = super::waited(ctx)?;
        match fetched.used {
            Ok(used) => self.apply(ctx, fetched.now, fetched.identifier, used),
            Err(e) => self.failed(e),
        }
    }

    fn header_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        let Some(resp) = ctx.resp.as_deref_mut() else {
            return Ok(());
        };
        let reported = resp
            .headers
            .get_all(self.conf.header_name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let increments = self.increments(&reported);
        resp.remove_header(self.conf.header_name.as_str());
        let Some(kept) = ctx.state.plugin_data.get_mut::<Kept>(&self.name) else {
            return Ok(());
        };
        kept.increments = increments;
        let mut stop = false;
        let mut headers = Vec::new();
        for (i, l) in self.limits.iter().enumerate() {
            let inc = kept.increments[i];
            for (&(_, pname, limit), &left) in l.periods.iter().zip(&kept.remaining[i]) {
                if !self.conf.hide_client_headers {
                    headers.push((format!("X-RateLimit-Limit-{}-{pname}", l.name), limit));
                    let remain = (left - inc).max(0);
                    headers.push((
                        format!("X-RateLimit-Remaining-{}-{pname}", l.name),
                        remain as u64,
                    ));
                }
                if inc > 0 && left <= 0 {
                    stop = true;
                }
            }
        }
        kept.stop_log = stop;
        let resp = ctx.resp.as_deref_mut().expect("checked above");
        for (name, value) in headers {
            resp.insert_header(name, value.to_string())
                .map_err(|e| PluginError(format!("invalid header: {e}")))?;
        }
        if stop {
            // Kong's `kong.response.exit(429)` in header_filter: the status and an empty body.
            resp.set_status(429)
                .map_err(|e| PluginError(format!("status: {e}")))?;
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            resp.insert_header(http::header::CONTENT_LENGTH, "0")
                .map_err(|e| PluginError(format!("invalid header: {e}")))?;
            ctx.state.body_ended = true;
        }
        Ok(())
    }

    fn log(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        if let Some(kept) = ctx.state.plugin_data.get_mut::<Kept>(&self.name) {
            if !kept.stop_log {
                self.count(kept);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_follow_kongs_layout() {
        assert_eq!(
            super::redis_key("r:s", "1.2.3.4", 60, "videos", "minute"),
            "response-ratelimit:r:s:1.2.3.4:60000:videos:minute"
        );
    }
}
