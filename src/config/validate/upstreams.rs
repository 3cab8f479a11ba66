//! Validation of upstreams (algorithm, hashing, health checks with Kong's defaults) and targets.

use std::collections::HashMap;

use super::super::checks;
use super::super::load::{Document, Item, Parent};
use super::super::model::*;
use super::super::raw::{
    RawActiveChecks, RawHealthchecks, RawPassiveChecks, RawPassiveUnhealthy, RawUpstream,
};
use super::super::yaml::PathSeg;
use super::{Index, Validator};

const ALGORITHMS: &[&str] = &[
    "round-robin",
    "consistent-hashing",
    "least-connections",
    "latency",
];
const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];
const CHECK_TYPES: &[&str] = &["http", "https", "tcp"];

/// Kong's default status lists.
const ACTIVE_HEALTHY: &[u16] = &[200, 302];
const ACTIVE_UNHEALTHY: &[u16] = &[429, 404, 500, 501, 502, 503, 504, 505];
const PASSIVE_HEALTHY: &[u16] = &[
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308,
];
const PASSIVE_UNHEALTHY: &[u16] = &[429, 500, 503];

/// A path below an upstream item, for locating errors.
type Path<'a> = Vec<PathSeg<'a>>;

fn at<'a>(base: &[PathSeg<'a>], more: &[&'a str]) -> Path<'a> {
    let mut p = base.to_vec();
    p.extend(more.iter().map(|k| PathSeg::Key(k)));
    p
}

impl Validator<'_> {
    pub(super) fn upstreams(&mut self, doc: &Document, cfg: &mut Config) {
        let mut names = HashMap::new();
        let mut index = Index::default();
        for (i, item) in doc.upstreams.iter().enumerate() {
            let r = &item.raw;
            let natural = r.name.as_deref().unwrap_or(&item.path);
            let id = self.id("upstreams", item, &r.id, natural);
            let name = match &r.name {
                Some(n) => {
                    if let Err(e) = checks::hostname(n) {
                        self.err(item, &[PathSeg::Key("name")], e);
                    }
                    self.unique(&mut names, item, "name", n);
                    n.clone()
                }
                None => {
                    if !item.broken {
                        self.err(item, &[], "missing required field `name`");
                    }
                    String::new()
                }
            };
            let (algorithm, hash_on, hash_fallback) = self.balancing(item);
            let slots = self.range(item, "slots", r.slots, 10000, 10, 65536) as u32;
            let hash_on_cookie_path = r.hash_on_cookie_path.clone().unwrap_or_else(|| "/".into());
            if !hash_on_cookie_path.starts_with('/') {
                self.err(
                    item,
                    &[PathSeg::Key("hash_on_cookie_path")],
                    "should start with: /",
                );
            }
            let healthchecks = self.healthchecks(item, r.healthchecks.as_ref());
            index.by_id.insert(id.clone(), i);
            index.by_name.insert(name.clone(), i);
            cfg.upstreams.push(Upstream {
                id,
                name,
                algorithm,
                hash_on,
                hash_fallback,
                hash_on_cookie_path,
                slots,
                healthchecks,
                host_header: r.host_header.clone(),
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
        self.targets(doc, cfg, &index);
    }

    /// algorithm, hash_on and hash_fallback with Kong's entity checks. As in Kong, a `hash_on`
    /// other than `none` selects `consistent-hashing` unless another algorithm is written.
    fn balancing(&mut self, item: &Item<RawUpstream>) -> (Algorithm, HashOn, HashOn) {
        let r = &item.raw;
        let kind = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        let (on, fallback) = (kind(&r.hash_on), kind(&r.hash_fallback));
        for (field, v) in [("hash_on", &on), ("hash_fallback", &fallback)] {
            if !HASH_ON.contains(&v.as_str()) {
                self.err(
                    item,
                    &[PathSeg::Key(field)],
                    format!(
                        "invalid {field} {v:?}: expected one of {}",
                        HASH_ON.join(", ")
                    ),
                );
            }
        }
        let algorithm = match r.algorithm.as_deref() {
            None if on != "none" => Algorithm::ConsistentHashing,
            None => Algorithm::RoundRobin,
            Some(a) => Algorithm::parse(a).unwrap_or_else(|| {
                self.err(
                    item,
                    &[PathSeg::Key("algorithm")],
                    format!(
                        "invalid algorithm {a:?}: expected one of {}",
                        ALGORITHMS.join(", ")
                    ),
                );
                Algorithm::RoundRobin
            }),
        };
        if matches!(algorithm, Algorithm::LeastConnections | Algorithm::Latency) {
            // Kong drops hash_on for these algorithms.
            return (algorithm, HashOn::None, HashOn::None);
        }
        let algorithm = if on == "none" {
            algorithm
        } else {
            Algorithm::ConsistentHashing
        };
        let forbidden: &[&str] = match on.as_str() {
            "none" | "cookie" => &[
                "consumer",
                "ip",
                "header",
                "cookie",
                "path",
                "query_arg",
                "uri_capture",
            ],
            "consumer" => &["consumer"],
            "ip" => &["ip"],
            "path" => &["path"],
            _ => &[],
        };
        if forbidden.contains(&fallback.as_str()) {
            self.err(
                item,
                &[PathSeg::Key("hash_fallback")],
                format!("hash_fallback {fallback:?} is not allowed when hash_on is {on:?}"),
            );
        }
        let on = self.hash_input(
            item,
            &on,
            "hash_on_header",
            &r.hash_on_header,
            &r.hash_on_query_arg,
            &r.hash_on_uri_capture,
        );
        let fallback = self.hash_input(
            item,
            &fallback,
            "hash_fallback_header",
            &r.hash_fallback_header,
            &r.hash_fallback_query_arg,
            &r.hash_fallback_uri_capture,
        );
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        for (f1, f2, same) in [
            (
                "hash_on_header",
                "hash_fallback_header",
                same(
                    &r.hash_on_header.as_ref().map(|h| h.to_ascii_lowercase()),
                    &r.hash_fallback_header
                        .as_ref()
                        .map(|h| h.to_ascii_lowercase()),
                ),
            ),
            (
                "hash_on_query_arg",
                "hash_fallback_query_arg",
                same(&r.hash_on_query_arg, &r.hash_fallback_query_arg),
            ),
            (
                "hash_on_uri_capture",
                "hash_fallback_uri_capture",
                same(&r.hash_on_uri_capture, &r.hash_fallback_uri_capture),
            ),
        ] {
            if same {
                self.err(
                    item,
                    &[PathSeg::Key(f2)],
                    format!("values of {f1} and {f2} must be distinct"),
                );
            }
        }
        (algorithm, on, fallback)
    }

    /// One hash input with the field it needs (`hash_on_header` when hashing on a header, ...).
    fn hash_input(
        &mut self,
        item: &Item<RawUpstream>,
        kind: &str,
        header_field: &'static str,
        header: &Option<String>,
        query_arg: &Option<String>,
        capture: &Option<String>,
    ) -> HashOn {
        let prefix = if header_field.starts_with("hash_on") {
            "hash_on"
        } else {
            "hash_fallback"
        };
        let mut need = |field: &'static str, v: &Option<String>| -> String {
            match v {
                Some(v) if !v.is_empty() => v.clone(),
                Some(_) => {
                    self.err(item, &[PathSeg::Key(field)], "length must be at least 1");
                    String::new()
                }
                None => {
                    self.err(
                        item,
                        &[PathSeg::Key(field)],
                        format!("required when {prefix} is {kind:?}"),
                    );
                    String::new()
                }
            }
        };
        match kind {
            "consumer" => HashOn::Consumer,
            "ip" => HashOn::Ip,
            "path" => HashOn::Path,
            "header" => {
                let name = need(header_field, header).to_ascii_lowercase();
                if !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.err(item, &[PathSeg::Key(header_field)], "invalid header name");
                }
                HashOn::Header(name)
            }
            "cookie" => HashOn::Cookie(need("hash_on_cookie", &item.raw.hash_on_cookie)),
            "query_arg" => HashOn::QueryArg(need(
                if prefix == "hash_on" {
                    "hash_on_query_arg"
                } else {
                    "hash_fallback_query_arg"
                },
                query_arg,
            )),
            "uri_capture" => HashOn::UriCapture(need(
                if prefix == "hash_on" {
                    "hash_on_uri_capture"
                } else {
                    "hash_fallback_uri_capture"
                },
                capture,
            )),
            _ => HashOn::None,
        }
    }

    /// `healthchecks` with Kong's defaults; every value range-checked where it is written.
    fn healthchecks(
        &mut self,
        item: &Item<RawUpstream>,
        raw: Option<&RawHealthchecks>,
    ) -> Healthchecks {
        let base = [PathSeg::Key("healthchecks")];
        let empty = RawHealthchecks::default();
        let raw = raw.unwrap_or(&empty);
        let threshold = match raw.threshold {
            Some(t) if !(0.0..=100.0).contains(&t) => {
                self.err(
                    item,
                    &at(&base, &["threshold"]),
                    format!("value {t} out of range: expected a number between 0 and 100"),
                );
                0.0
            }
            t => t.unwrap_or(0.0),
        };
        Healthchecks {
            active: self.active(item, &at(&base, &["active"]), raw.active.as_ref()),
            passive: self.passive(item, &at(&base, &["passive"]), raw.passive.as_ref()),
            threshold,
        }
    }

    fn active(
        &mut self,
        item: &Item<RawUpstream>,
        base: &[PathSeg<'_>],
        raw: Option<&RawActiveChecks>,
    ) -> ActiveChecks {
        let empty = RawActiveChecks::default();
        let r = raw.unwrap_or(&empty);
        let kind = self.check_type(item, &at(base, &["type"]), &r.kind);
        let timeout = self.seconds(item, &at(base, &["timeout"]), r.timeout, 1.0);
        let concurrency = self.int(
            item,
            &at(base, &["concurrency"]),
            r.concurrency,
            10,
            1,
            1 << 31,
        ) as u32;
        let http_path = r.http_path.clone().unwrap_or_else(|| "/".into());
        if let Err(e) = checks::service_path(&http_path) {
            self.err(item, &at(base, &["http_path"]), e);
        }
        if let Some(sni) = &r.https_sni {
            if let Err(e) = checks::hostname(sni) {
                self.err(item, &at(base, &["https_sni"]), e);
            }
        }
        let mut headers = Vec::new();
        for (name, values) in r.headers.iter().flatten() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(
                    item,
                    &at(base, &["headers", name.as_str()]),
                    "invalid header name",
                );
            }
            for v in values {
                headers.push((name.clone(), v.clone()));
            }
        }
        let h = r.healthy.clone().unwrap_or_default();
        let u = r.unhealthy.clone().unwrap_or_default();
        let hb = at(base, &["healthy"]);
        let ub = at(base, &["unhealthy"]);
        ActiveChecks {
            kind,
            timeout,
            concurrency,
            http_path,
            https_sni: r.https_sni.clone(),
            https_verify_certificate: r.https_verify_certificate.unwrap_or(true),
            headers,
            healthy: HealthyRule {
                interval: self.seconds(item, &at(&hb, &["interval"]), h.interval, 0.0),
                http_statuses: self.statuses(
                    item,
                    &at(&hb, &["http_statuses"]),
                    &h.http_statuses,
                    ACTIVE_HEALTHY,
                ),
                successes: self.int(item, &at(&hb, &["successes"]), h.successes, 0, 0, 255) as u8,
            },
            unhealthy: {
                let interval = self.seconds(item, &at(&ub, &["interval"]), u.interval, 0.0);
                let statuses = (&u.http_statuses, ACTIVE_UNHEALTHY);
                let counters = (u.tcp_failures, u.timeouts, u.http_failures);
                self.unhealthy(item, &ub, interval, statuses, counters)
            },
        }
    }

    fn passive(
        &mut self,
        item: &Item<RawUpstream>,
        base: &[PathSeg<'_>],
        raw: Option<&RawPassiveChecks>,
    ) -> PassiveChecks {
        let empty = RawPassiveChecks::default();
        let r = raw.unwrap_or(&empty);
        let h = r.healthy.clone().unwrap_or_default();
        let u: RawPassiveUnhealthy = r.unhealthy.clone().unwrap_or_default();
        let hb = at(base, &["healthy"]);
        let ub = at(base, &["unhealthy"]);
        PassiveChecks {
            kind: self.check_type(item, &at(base, &["type"]), &r.kind),
            healthy: HealthyRule {
                interval: 0.0,
                http_statuses: self.statuses(
                    item,
                    &at(&hb, &["http_statuses"]),
                    &h.http_statuses,
                    PASSIVE_HEALTHY,
                ),
                successes: self.int(item, &at(&hb, &["successes"]), h.successes, 0, 0, 255) as u8,
            },
            unhealthy: {
                let statuses = (&u.http_statuses, PASSIVE_UNHEALTHY);
                let counters = (u.tcp_failures, u.timeouts, u.http_failures);
                self.unhealthy(item, &ub, 0.0, statuses, counters)
            },
        }
    }

    /// An `unhealthy` record (active or passive): statuses with their default, and the
    /// tcp_failures / timeouts / http_failures counters (0–255).
    fn unhealthy(
        &mut self,
        item: &Item<RawUpstream>,
        base: &[PathSeg<'_>],
        interval: f64,
        (statuses, default): (&Option<Vec<i64>>, &[u16]),
        (tcp, timeouts, http): (Option<i64>, Option<i64>, Option<i64>),
    ) -> UnhealthyRule {
        let mut counter =
            |name: &str, v: Option<i64>| self.int(item, &at(base, &[name]), v, 0, 0, 255) as u8;
        let tcp_failures = counter("tcp_failures", tcp);
        let timeouts = counter("timeouts", timeouts);
        let http_failures = counter("http_failures", http);
        UnhealthyRule {
            interval,
            http_statuses: self.statuses(item, &at(base, &["http_statuses"]), statuses, default),
            tcp_failures,
            timeouts,
            http_failures,
        }
    }

    fn check_type(
        &mut self,
        item: &Item<RawUpstream>,
        path: &[PathSeg<'_>],
        v: &Option<String>,
    ) -> CheckType {
        match v.as_deref() {
            None | Some("http") => CheckType::Http,
            Some("https") => CheckType::Https,
            Some("tcp") => CheckType::Tcp,
            Some(other) => {
                self.err(
                    item,
                    path,
                    format!(
                        "invalid type {other:?}: expected one of {}",
                        CHECK_TYPES.join(", ")
                    ),
                );
                CheckType::Http
            }
        }
    }

    fn seconds(
        &mut self,
        item: &Item<RawUpstream>,
        path: &[PathSeg<'_>],
        v: Option<f64>,
        default: f64,
    ) -> f64 {
        match v {
            None => default,
            Some(x) if (0.0..=65535.0).contains(&x) => x,
            Some(x) => {
                self.err(
                    item,
                    path,
                    format!(
                        "value {x} out of range: expected a number of seconds between 0 and 65535"
                    ),
                );
                default
            }
        }
    }

    fn int(
        &mut self,
        item: &Item<RawUpstream>,
        path: &[PathSeg<'_>],
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> i64 {
        match v {
            None => default,
            Some(x) if (lo..=hi).contains(&x) => x,
            Some(x) => {
                self.err(
                    item,
                    path,
                    format!("value {x} out of range: expected an integer between {lo} and {hi}"),
                );
                default
            }
        }
    }

    fn statuses(
        &mut self,
        item: &Item<RawUpstream>,
        path: &[PathSeg<'_>],
        v: &Option<Vec<i64>>,
        default: &[u16],
    ) -> Vec<u16> {
        let Some(list) = v else {
            return default.to_vec();
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, &s) in list.iter().enumerate() {
            if (100..=999).contains(&s) {
                out.push(s as u16);
            } else {
                let mut p = path.to_vec();
                p.push(PathSeg::Index(i));
                self.err(
                    item,
                    &p,
                    format!("value {s} out of range: expected an HTTP status between 100 and 999"),
                );
            }
        }
        out
    }

    fn targets(&mut self, doc: &Document, cfg: &mut Config, index: &Index) {
        let mut seen = HashMap::new();
        for item in &doc.targets {
            let r = &item.raw;
            let nested = match item.parent {
                Some(Parent::Upstream(i)) => Some(i),
                _ => None,
            };
            let upstream = self.owner(item, "upstream", nested, &r.upstream, index, "upstream");
            if upstream.is_none() && !item.broken && r.upstream.is_none() {
                self.err(item, &[], "a target needs an upstream: nest it under `upstreams[].targets` or set `upstream`");
            }
            let (host, port) = match &r.target {
                Some(t) => {
                    let (h, p) = checks::split_host_port(t);
                    if let Err(e) = checks::hostname(h) {
                        self.err(item, &[PathSeg::Key("target")], e);
                    }
                    let port = match p.map(checks::parse_port) {
                        None => 8000,
                        Some(Ok(p)) => p,
                        Some(Err(e)) => {
                            self.err(item, &[PathSeg::Key("target")], e);
                            8000
                        }
                    };
                    (h.to_string(), port)
                }
                None => {
                    if !item.broken {
                        self.err(item, &[], "missing required field `target`");
                    }
                    (String::new(), 0)
                }
            };
            let weight = self.range(item, "weight", r.weight, 100, 0, 65535) as u32;
            if let Some(u) = upstream {
                let key = format!("{u}/{host}:{port}");
                if let Some(first) = seen.insert(key, item.path.clone()) {
                    self.err(item, &[PathSeg::Key("target")], format!("duplicate target {host}:{port} in this upstream: already defined by {first}"));
                }
            }
            let natural = format!(
                "{}:{host}:{port}",
                upstream.map_or(String::new(), |u| cfg.upstreams[u].id.clone())
            );
            let id = self.id("targets", item, &r.id, &natural);
            cfg.targets.push(Target {
                id,
                upstream: upstream.unwrap_or(usize::MAX),
                host,
                port,
                weight,
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
    }
}
