//! The router: routes built from the input's lines (paths, hosts, header regexes), then the
//! last line as a request path (normalized first). Building either succeeds or fails with an
//! error; selecting never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::router::{normalize_path, RequestInfo, RouteInput, Router};

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
                _ => route.paths.push(line.to_string()),
            }
            route.strip_path = i % 2 == 0;
            route
        })
        .collect();
    let Ok(router) = Router::new(routes) else {
        return;
    };
    let (path, host) = request.split_once(' ').unwrap_or((request, "example.com"));
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
    };
    let _ = router.select(&req);
});
