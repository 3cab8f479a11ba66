//! The router: routes built from the input's lines (paths, hosts, header regexes, `expr`
//! expressions, which switch to the expressions flavor), then the last line as a request path
//! with its query (normalized first). Building either succeeds or fails with an error;
//! selecting never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::router::{normalize_path, Flavor, RequestInfo, RouteInput, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.lines().collect();
    let Some(request) = lines.pop() else {
        return;
    };
    let routes: Vec<RouteInput> = lines
        .iter()
        .take(64)
        .enumerate()
        .map(|(i, line)| {
            let mut route = RouteInput {
                id: format!("00000000-0000-0000-0000-{i:012}"),
                ..Default::default()
            };
            match line.split_once(' ') {
                Some(("host", h)) => route.hosts.push(h.to_string()),
                Some(("header", v)) => route.headers.push(("x-f".into(), vec![v.to_string()])),
                Some(("method", m)) => route.methods.push(m.to_string()),
                Some(("expr", e)) => {
                    route.expression = Some(e.to_string());
                    route.priority = i as u64 % 3;
                }
                _ => route.paths.push(line.to_string()),
            }
            route.strip_path = i % 2 == 0;
            route
        })
        .collect();
    let flavor = if routes.iter().any(|r| r.expression.is_some()) {
        Flavor::Expressions
    } else {
        Flavor::TraditionalCompatible
    };
    // What the config loader checks first (shape limits) guards the engine here too.
    if routes
        .iter()
        .filter_map(|r| r.expression.as_deref())
        .any(|e| sluice::router::validate_expression(e).is_err())
    {
        return;
    }
    let Ok(router) = Router::with_flavor(routes, flavor) else {
        return;
    };
    let (target, host) = request.split_once(' ').unwrap_or((request, "example.com"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = normalize_path(path);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(host) {
        headers.insert("x-f", v);
    }
    let req = RequestInfo {
        method: "GET",
        path: &path,
        host,
        headers: &headers,
        scheme: "http",
        sni: None,
        src: None,
        dst: None,
        query,
    };
    let _ = router.select(&req);
});
