//! Kong's own router test vectors (see tests/data/SOURCE.md) run against `sluice::router`.
//!
//! * `router_select_cases.json`: Kong's `spec/01-unit/08-router_spec.lua` for the
//!   `traditional_compatible` flavor, as data. `select` cases pass the path as given;
//!   `exec` cases pass the raw request URI, which is split at `?` and normalized first
//!   (Kong's `exec` does the same).
//! * `router_path_handling_cases.json`: Kong's upstream-path fixture, run in plain form
//!   and (for cases with a route path) in Kong's regex form `~/[0]?` + prefix.
//!
//! The routes in the spec are raw Lua tables handed to the router without schema
//! defaults, so an absent `strip_path`/`preserve_host` is `nil`, i.e. false.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sluice::router::{
    normalize_path, Endpoint, PathHandling, RequestInfo, RouteInput, RouteMatch, Router,
    ServiceTarget,
};

/// Cases whose Kong expectation this product deliberately does not reproduce:
/// (spec_line, case name, call_index or 0, reason). Keep it as short as possible.
const KNOWN_DEVIATIONS: &[(u64, &str, u64, &str)] = &[];

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {path}: {e}"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn service_from_json(v: &Value) -> Option<std::sync::Arc<ServiceTarget>> {
    let o = v.as_object()?;
    let protocol = o
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("http")
        .to_owned();
    let default_port = match protocol.as_str() {
        "https" | "grpcs" | "wss" | "tls" => 443,
        _ => 80,
    };
    Some(std::sync::Arc::new(ServiceTarget {
        host: o
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        port: o
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(default_port),
        path: o.get("path").and_then(Value::as_str).map(str::to_owned),
        protocol,
    }))
}

fn endpoints(v: Option<&Value>) -> Vec<Endpoint> {
    let Some(a) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    a.iter()
        .map(|e| {
            let ip = e.get("ip").and_then(Value::as_str).and_then(|s| {
                let (addr, len) = s.split_once('/').unwrap_or((s, ""));
                let addr: IpAddr = addr.parse().ok()?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                Some((addr, len.parse().unwrap_or(max)))
            });
            let port = e
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            Endpoint { ip, port }
        })
        .collect()
}

fn route_from_json(v: &Value) -> RouteInput {
    let headers = v
        .get("headers")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, vals)| (k.clone(), strings(Some(vals))))
                .collect()
        })
        .unwrap_or_default();
    RouteInput {
        id: v.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
        protocols: strings(v.get("protocols")),
        methods: strings(v.get("methods")),
        hosts: strings(v.get("hosts")),
        paths: strings(v.get("paths")),
        headers,
        snis: strings(v.get("snis")),
        sources: endpoints(v.get("sources")),
        destinations: endpoints(v.get("destinations")),
        regex_priority: v.get("regex_priority").and_then(Value::as_i64).unwrap_or(0),
        strip_path: v
            .get("strip_path")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        preserve_host: v
            .get("preserve_host")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        path_handling: match v.get("path_handling").and_then(Value::as_str) {
            Some("v1") => PathHandling::V1,
            _ => PathHandling::V0,
        },
        service: v.get("service").and_then(service_from_json),
        expression: None,
        priority: 0,
    }
}

fn header_map(v: Option<&Value>) -> HeaderMap {
    let mut map = HeaderMap::new();
    let Some(o) = v.and_then(Value::as_object) else {
        return map;
    };
    for (name, vals) in o {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("header {name}: {e}"));
        let list: Vec<&str> = match vals {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for s in list {
            let value =
                HeaderValue::from_str(s).unwrap_or_else(|e| panic!("header value {s:?}: {e}"));
            map.append(name.clone(), value);
        }
    }
    map
}

/// The request of a case, owned so a `RequestInfo` can borrow it.
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    host: String,
    scheme: String,
    sni: Option<String>,
    headers: HeaderMap,
}

impl Req {
    fn from_case(req: &Value, exec: bool) -> Req {
        let get = |k: &str| req.get(k).and_then(Value::as_str);
        let raw_path = get("path").unwrap_or("/");
        let (path, query) = if exec {
            // Kong's strip_uri_args looks for `?` from the second character on.
            let (p, q) = match raw_path.get(1..).and_then(|t| t.find('?')) {
                Some(i) => (&raw_path[..=i], Some(raw_path[i + 2..].to_owned())),
                None => (raw_path, None),
            };
            (normalize_path(p).into_owned(), q)
        } else {
            (raw_path.to_owned(), None)
        };
        Req {
            method: get("method").unwrap_or("GET").to_owned(),
            path,
            query,
            host: get("host").unwrap_or("").to_owned(),
            scheme: get("scheme").unwrap_or("http").to_owned(),
            sni: get("sni").map(str::to_owned),
            headers: header_map(req.get("headers")),
        }
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            path: &self.path,
            host: &self.host,
            headers: &self.headers,
            scheme: &self.scheme,
            sni: self.sni.as_deref(),
            src: None,
            dst: None,
            query: self.query.as_deref(),
        }
    }
}

fn json_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Compares `got` with an expectation that is JSON null (absent) or a string.
fn check_opt(errs: &mut Vec<String>, what: &str, got: Option<&str>, want: &Value) {
    let want = json_str(want);
    if got != want {
        errs.push(format!("{what}: got {got:?}, want {want:?}"));
    }
}

/// Every expectation of one select/exec case; returns what differed.
fn check_case(case: &Value, group: &Value, routes: &[RouteInput], router: &Router) -> Vec<String> {
    let mut errs = Vec::new();
    let exec = case.get("api").and_then(Value::as_str) == Some("exec");
    let req = Req::from_case(&case["request"], exec);
    let m: Option<RouteMatch> = router.select(&req.info());

    let by_index = group
        .get("duplicate_route_ids")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let want_index = case.get("expect_route_index").and_then(Value::as_u64);
    let want_id = case.get("expect_route_id").and_then(Value::as_str);
    match (&m, want_id) {
        (None, None) => return errs,
        (None, Some(id)) => {
            errs.push(format!(
                "no route matched, want {id} (index {want_index:?})"
            ));
            return errs;
        }
        (Some(m), None) => {
            errs.push(format!(
                "matched route {} ({}), want none",
                m.route, routes[m.route].id
            ));
            return errs;
        }
        (Some(m), Some(id)) => {
            let ok = if by_index {
                want_index == Some(m.route as u64)
            } else {
                routes[m.route].id == id
            };
            if !ok {
                errs.push(format!(
                    "matched route {} ({}), want index {want_index:?} ({id})",
                    m.route, routes[m.route].id
                ));
                return errs;
            }
        }
    }
    let Some(m) = m else { return errs };
    let route = &routes[m.route];
    let service = route.service.as_ref();

    if let Some(want) = case.get("expect_upstream_uri") {
        let mut got = m.upstream_path.clone();
        if let Some(q) = &req.query {
            got.push('?');
            got.push_str(q);
        }
        check_opt(&mut errs, "upstream_uri", Some(&got), want);
    }
    if let Some(want) = case.get("expect_upstream_host") {
        check_opt(&mut errs, "upstream_host", m.upstream_host.as_deref(), want);
    }

    let caps = m.uri_captures.as_ref();
    let cap = |k: &str| caps.and_then(|c| c.get(k));
    if let Some(want) = case.get("expect_uri_captures") {
        match (want, caps) {
            (Value::Null, None) => {}
            (Value::Null, Some(c)) => errs.push(format!("uri_captures: got {c:?}, want none")),
            (Value::Object(o), _) => {
                for (k, v) in o {
                    check_opt(&mut errs, &format!("uri_captures[{k}]"), cap(k), v);
                }
            }
            (other, _) => errs.push(format!("unsupported expect_uri_captures {other}")),
        }
    }
    if let Some(o) = case
        .get("expect_uri_captures_subset")
        .and_then(Value::as_object)
    {
        for (k, v) in o {
            check_opt(&mut errs, &format!("uri_captures[{k}]"), cap(k), v);
        }
    }
    for key in strings(case.get("expect_uri_captures_absent")) {
        if let Some(v) = cap(&key) {
            errs.push(format!("uri_captures[{key}]: got {v:?}, want absent"));
        }
    }
    for key in strings(case.get("expect_uri_captures_falsy")) {
        if let Some(v) = cap(&key) {
            errs.push(format!("uri_captures[{key}]: got {v:?}, want falsy"));
        }
    }
    if let Some(want) = case.get("expect_uri_captures_len").and_then(Value::as_u64) {
        // Lua's `#t`: positional captures 1, 2, ... up to the first missing one.
        let got = caps.map_or(0, |c| {
            c.positional
                .iter()
                .skip(1)
                .take_while(|x| x.is_some())
                .count()
        });
        if got as u64 != want {
            errs.push(format!("#uri_captures: got {got}, want {want}"));
        }
    }

    if let Some(fields) = case.get("expect_fields").and_then(Value::as_object) {
        for (field, want) in fields {
            match field.as_str() {
                "matches.method" => check_opt(&mut errs, field, m.matched_method.as_deref(), want),
                "matches.uri" => check_opt(&mut errs, field, m.matched_uri.as_deref(), want),
                "matches.host" => check_opt(&mut errs, field, m.matched_host.as_deref(), want),
                "matches.headers" => {
                    if !(want.is_null() && m.matched_headers.is_empty()) {
                        errs.push(format!("{field}: got {:?}, want {want}", m.matched_headers));
                    }
                }
                "prefix" => check_opt(&mut errs, field, m.prefix.as_deref(), want),
                "upstream_url_t.host" => {
                    check_opt(&mut errs, field, service.map(|s| s.host.as_str()), want)
                }
                "upstream_url_t.port" => {
                    let got = service.map(|s| u64::from(s.port));
                    if got != want.as_u64() {
                        errs.push(format!("{field}: got {got:?}, want {want}"));
                    }
                }
                "service.protocol" => {
                    check_opt(&mut errs, field, service.map(|s| s.protocol.as_str()), want)
                }
                "service" => {
                    if want.is_null() != service.is_none() {
                        errs.push(format!("service: got {service:?}, want {want}"));
                    }
                }
                other => errs.push(format!("unsupported expect_fields key {other}")),
            }
        }
    }
    errs
}

fn deviation(line: u64, name: &str, call: u64) -> Option<&'static str> {
    KNOWN_DEVIATIONS
        .iter()
        .find(|(l, n, c, _)| *l == line && *n == name && *c == call)
        .map(|(_, _, _, reason)| *reason)
}

fn report(title: &str, total: usize, deviations: &[String], failures: &[String]) {
    println!(
        "{title}: {total} cases, {} passed, {} failed, {} known deviations",
        total - failures.len() - deviations.len(),
        failures.len(),
        deviations.len()
    );
    for d in deviations {
        println!("  known deviation: {d}");
    }
    assert!(
        failures.is_empty(),
        "{title}: {} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn kong_select_cases() {
    let groups = load("router_select_cases.json");
    let groups = groups.as_array().expect("an array of groups");
    let mut total = 0;
    let mut failures = Vec::new();
    let mut deviations = Vec::new();
    let mut per_api: BTreeMap<String, usize> = BTreeMap::new();
    for group in groups {
        let routes: Vec<RouteInput> = group["routes"]
            .as_array()
            .map(|a| a.iter().map(route_from_json).collect())
            .unwrap_or_default();
        let group_name = group["group"].as_str().unwrap_or("");
        let router = match Router::new(routes.clone()) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "group {group_name:?} (spec_line {}): build failed: {e}",
                    group["spec_line"]
                ));
                continue;
            }
        };
        for case in group["cases"].as_array().into_iter().flatten() {
            total += 1;
            let api = case["api"].as_str().unwrap_or("?").to_owned();
            *per_api.entry(api).or_default() += 1;
            let name = case["name"].as_str().unwrap_or("");
            let line = case["spec_line"].as_u64().unwrap_or(0);
            let call = case.get("call_index").and_then(Value::as_u64).unwrap_or(0);
            let errs = check_case(case, group, &routes, &router);
            let label = format!("{name:?} (spec_line {line}, call {call}, group {group_name:?})");
            match (errs.is_empty(), deviation(line, name, call)) {
                (true, None) => {}
                (true, Some(_)) => {
                    failures.push(format!("{label}: listed in KNOWN_DEVIATIONS but passes"))
                }
                (false, Some(reason)) => deviations.push(format!("{label}: {reason}")),
                (false, None) => failures.push(format!("{label}: {}", errs.join("; "))),
            }
        }
    }
    println!("select cases by api: {per_api:?}");
    assert_eq!(total, 390, "the data file should hold 390 cases");
    report("router_select_cases", total, &deviations, &failures);
}

#[test]
fn kong_path_handling_cases() {
    let cases = load("router_path_handling_cases.json");
    let cases = cases.as_array().expect("an array of cases");
    assert_eq!(cases.len(), 106, "the data file should hold 106 cases");
    let mut total = 0;
    let mut failures = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        let service_path = c["service_path"].as_str().map(str::to_owned);
        let route_path = c["route_path"].as_str();
        let strip_path = c["strip_path"].as_bool().unwrap_or(false);
        let request_path = c["request_path"].as_str().unwrap_or("/");
        let want = c["expected_upstream_path"].as_str().unwrap_or("");
        let host = format!("localbin-{k}.com");

        // Plain form, then Kong's regex form for cases that have a route path.
        let mut forms: Vec<(&str, Vec<String>)> =
            vec![("plain", route_path.map(str::to_owned).into_iter().collect())];
        if let Some(p) = route_path {
            forms.push(("regex", vec![format!("~/[0]?{}", &p[1..])]));
        }
        for (form, paths) in forms {
            total += 1;
            let route = RouteInput {
                id: format!("e8fb37f1-102d-461e-9c51-6608a6{k:06}"),
                hosts: vec![host.clone()],
                paths,
                strip_path,
                service: Some(std::sync::Arc::new(ServiceTarget {
                    protocol: "http".to_owned(),
                    host: "example.org".to_owned(),
                    port: 80,
                    path: service_path.clone(),
                })),
                ..RouteInput::default()
            };
            let label = format!(
                "line {} ({form}): service {service_path:?}, route {route_path:?}, strip {strip_path}, req {request_path}",
                c["line"]
            );
            let router = match Router::new(vec![route]) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{label}: build failed: {e}"));
                    continue;
                }
            };
            let headers = HeaderMap::new();
            let path = normalize_path(request_path);
            let req = RequestInfo {
                method: "GET",
                path: &path,
                host: &host,
                headers: &headers,
                scheme: "http",
                sni: None,
                src: None,
                dst: None,
                query: None,
            };
            match router.select(&req) {
                None => failures.push(format!("{label}: no match")),
                Some(m) if m.upstream_path != want => failures.push(format!(
                    "{label}: upstream path {:?}, want {want:?}",
                    m.upstream_path
                )),
                Some(_) => {}
            }
        }
    }
    report("router_path_handling_cases", total, &[], &failures);
}
