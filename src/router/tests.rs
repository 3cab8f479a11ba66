//! Unit tests of the whole router (Kong's own vectors live in tests/router_kong_cases.rs).

use std::net::SocketAddr;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};

use super::*;

fn route(id: usize) -> RouteInput {
    RouteInput {
        id: format!("00000000-0000-4000-8000-{id:012}"),
        ..RouteInput::default()
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

struct Req {
    method: &'static str,
    path: String,
    host: String,
    scheme: &'static str,
    sni: Option<&'static str>,
    headers: HeaderMap,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
}

fn req(method: &'static str, host: &str, path: &str) -> Req {
    Req {
        method,
        path: path.to_owned(),
        host: host.to_owned(),
        scheme: "http",
        sni: None,
        headers: HeaderMap::new(),
        src: None,
        dst: None,
    }
}

impl Req {
    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: self.method,
            path: &self.path,
            host: &self.host,
            headers: &self.headers,
            scheme: self.scheme,
            sni: self.sni,
            src: self.src,
            dst: self.dst,
            query: None,
        }
    }
}

/// Selects and cross-checks the indexed lookup against the naive reference.
fn pick(router: &Router, r: &Req) -> Option<usize> {
    let fast = router.select(&r.info());
    let slow = router.select_naive(&r.info());
    assert_eq!(
        fast.as_ref()
            .map(|m| (m.route, &m.upstream_path, &m.prefix, &m.uri_captures)),
        slow.as_ref()
            .map(|m| (m.route, &m.upstream_path, &m.prefix, &m.uri_captures)),
        "index and reference disagree for {} {}{}",
        r.method,
        r.host,
        r.path
    );
    fast.map(|m| m.route)
}

/// Deterministic xorshift, to avoid a dev-dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 10,000 routes: plain hosts with prefixes, host-less prefixes, wildcard hosts with
/// regexes, host-less regexes sharing one literal prefix (run as a `RegexSet`), and
/// method-specific twins of the plain-host routes.
fn ten_thousand_routes() -> Vec<RouteInput> {
    (0..10_000)
        .map(|i| {
            let mut r = route(i);
            r.strip_path = true;
            match i % 5 {
                0 => {
                    r.hosts = vec![format!("h{}.example.com", i % 100)];
                    r.paths = vec![format!("/svc{i}")];
                }
                1 => r.paths = vec![format!("/api/v{i}/")],
                2 => {
                    r.hosts = vec![format!("*.w{}.example.org", i % 50)];
                    r.paths = vec![format!("~/items/{i}/(?<id>\\d+)$")];
                }
                3 => r.paths = vec![format!("~/r/(\\d+)/{i}$")],
                _ => {
                    r.hosts = vec![format!("h{}.example.com", (i - 4) % 100)];
                    r.methods = strs(&["POST"]);
                    r.paths = vec![format!("/svc{}", i - 4)];
                }
            }
            r
        })
        .collect()
}

#[test]
fn ten_thousand_routes_select_correctly() {
    let t = Instant::now();
    let router = Router::new(ten_thousand_routes()).expect("routes compile");
    let built = t.elapsed();

    assert_eq!(
        pick(&router, &req("GET", "h5.example.com", "/svc5/abc")),
        Some(5)
    );
    assert_eq!(
        pick(&router, &req("POST", "h5.example.com", "/svc5/abc")),
        Some(9)
    );
    assert_eq!(
        pick(&router, &req("GET", "H5.Example.COM:8080", "/svc105")),
        Some(105)
    );
    assert_eq!(pick(&router, &req("GET", "h6.example.com", "/svc5")), None);
    assert_eq!(pick(&router, &req("GET", "", "/api/v6/users")), Some(6));
    assert_eq!(
        pick(&router, &req("GET", "h5.example.com", "/api/v6/users")),
        Some(6)
    );
    assert_eq!(pick(&router, &req("GET", "any.host", "/r/123/8")), Some(8));
    assert_eq!(pick(&router, &req("GET", "any.host", "/r/x/8")), None);
    assert_eq!(
        pick(&router, &req("GET", "a.b.w7.example.org", "/items/7/42")),
        Some(7)
    );
    assert_eq!(
        pick(&router, &req("GET", "a.w7.example.org", "/items/57/42")),
        Some(57)
    );
    assert_eq!(
        pick(&router, &req("GET", "a.w8.example.org", "/items/7/42")),
        None
    );
    assert_eq!(
        pick(&router, &req("GET", "h5.example.com", "/nothing")),
        None
    );

    let m = router.select(&req("GET", "x.w7.example.org", "/items/7/42").info());
    let caps = m.and_then(|m| m.uri_captures).expect("captures");
    assert_eq!(caps.get("id"), Some("42"));
    assert_eq!(caps.get("0"), Some("/items/7/42"));

    let m = router.select(&req("GET", "h5.example.com", "/svc5/abc").info());
    assert_eq!(
        m.map(|m| (m.upstream_path, m.prefix)),
        Some(("/abc".to_owned(), Some("/svc5".to_owned())))
    );

    // Random requests: the index must agree with the naive reference scan.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut hits = 0;
    for _ in 0..2_000 {
        let i = rng.below(10_000);
        let host = match rng.below(4) {
            0 => format!("h{}.example.com", rng.below(120)),
            1 => format!("x.w{}.example.org", rng.below(60)),
            2 => String::new(),
            _ => "other.test".to_owned(),
        };
        let path = match rng.below(5) {
            0 => format!("/svc{i}/x"),
            1 => format!("/api/v{i}/y"),
            2 => format!("/items/{i}/{}", rng.below(100)),
            3 => format!("/r/{}/{i}", rng.below(100)),
            _ => format!("/svc{i}"),
        };
        let method = if rng.below(2) == 0 { "GET" } else { "POST" };
        hits += usize::from(pick(&router, &req(method, &host, &path)).is_some());
    }
    assert!(hits > 100, "the random requests should hit routes ({hits})");

    // Rough figures for humans (no assertion; debug builds are slow).
    let probe = req("GET", "a.w7.example.org", "/items/9999/1");
    let t = Instant::now();
    for _ in 0..1_000 {
        std::hint::black_box(router.select(&probe.info()));
    }
    println!(
        "10k routes: build {built:?}, miss-ish lookup {:?}",
        t.elapsed() / 1_000
    );
}

#[test]
fn priorities_follow_kong() {
    let mut routes = Vec::new();
    // 0: wildcard host only
    let mut r = route(0);
    r.hosts = strs(&["*.a.com"]);
    routes.push(r);
    // 1: plain host only: beats the wildcard at equal weight
    let mut r = route(1);
    r.hosts = strs(&["x.a.com"]);
    routes.push(r);
    // 2: wildcard host + method: more fields beat plain host
    let mut r = route(2);
    r.hosts = strs(&["*.a.com"]);
    r.methods = strs(&["POST"]);
    routes.push(r);
    // 3, 4: regexes ordered by regex_priority (4 has the lower uuid but higher priority)
    let mut r = route(4);
    r.paths = strs(&["~/re/\\d+"]);
    r.regex_priority = 1;
    routes.push(r);
    let mut r = route(3);
    r.paths = strs(&["~/re/"]);
    r.regex_priority = 2;
    routes.push(r);
    // 5: a prefix: regexes beat any prefix, even a longer one
    let mut r = route(5);
    r.paths = strs(&["/re/123/long/prefix"]);
    routes.push(r);
    // 6: negative regex priority comes after a plain prefix? No: the regex bit wins first.
    let mut r = route(6);
    r.paths = strs(&["~/neg"]);
    r.regex_priority = -5;
    routes.push(r);
    let mut r = route(7);
    r.paths = strs(&["/negative"]);
    routes.push(r);
    let router = Router::new(routes).expect("compiles");

    assert_eq!(pick(&router, &req("GET", "y.a.com", "/")), Some(0));
    assert_eq!(pick(&router, &req("GET", "x.a.com", "/")), Some(1));
    assert_eq!(pick(&router, &req("POST", "x.a.com", "/")), Some(2));
    assert_eq!(
        pick(&router, &req("GET", "", "/re/123/long/prefix")),
        Some(4)
    );
    assert_eq!(pick(&router, &req("GET", "", "/re/abc")), Some(4));
    assert_eq!(pick(&router, &req("GET", "", "/negative")), Some(6));
}

#[test]
fn headers_snis_and_networks() {
    let mut routes = Vec::new();
    let mut r = route(0);
    r.headers = vec![("X_Version".to_owned(), strs(&["V1", "~*^beta-\\d+$"]))];
    routes.push(r);
    let mut r = route(1);
    r.snis = strs(&["*.sni.test"]);
    r.paths = strs(&["/tls"]);
    routes.push(r);
    let mut r = route(2);
    r.sources = vec![Endpoint {
        ip: Some(("10.0.0.0".parse().expect("ip"), 8)),
        port: None,
    }];
    routes.push(r);
    let mut r = route(3);
    r.destinations = vec![Endpoint {
        ip: None,
        port: Some(8443),
    }];
    r.paths = strs(&["/dst"]);
    routes.push(r);
    let mut r = route(4);
    r.hosts = strs(&["port.test:8000"]);
    routes.push(r);
    let router = Router::new(routes).expect("compiles");

    let mut q = req("GET", "", "/");
    q.headers
        .insert("x-version", HeaderValue::from_static("v1"));
    assert_eq!(pick(&router, &q), Some(0));
    let mut q = req("GET", "", "/");
    q.headers
        .insert("x_version", HeaderValue::from_static("BETA-12"));
    assert_eq!(pick(&router, &q), Some(0));
    let mut q = req("GET", "", "/");
    q.headers
        .insert("x-version", HeaderValue::from_static("beta-x"));
    assert_eq!(pick(&router, &q), None);

    // SNIs only constrain https requests.
    assert_eq!(pick(&router, &req("GET", "", "/tls")), Some(1));
    let mut q = req("GET", "", "/tls");
    q.scheme = "https";
    assert_eq!(pick(&router, &q), None);
    q.sni = Some("a.SNI.test");
    assert_eq!(pick(&router, &q), Some(1));

    let mut q = req("GET", "", "/x");
    q.src = "10.9.8.7:5555".parse().ok();
    assert_eq!(pick(&router, &q), Some(2));
    q.src = "11.9.8.7:5555".parse().ok();
    assert_eq!(pick(&router, &q), None);

    let mut q = req("GET", "", "/dst");
    q.dst = "127.0.0.1:8443".parse().ok();
    assert_eq!(pick(&router, &q), Some(3));
    q.dst = "127.0.0.1:8000".parse().ok();
    assert_eq!(pick(&router, &q), None);

    // A port-specific host uses the Host header's port, else the local port.
    assert_eq!(pick(&router, &req("GET", "port.test:8000", "/")), Some(4));
    assert_eq!(pick(&router, &req("GET", "port.test", "/")), None);
    let mut q = req("GET", "port.test", "/");
    q.dst = "127.0.0.1:8000".parse().ok();
    assert_eq!(pick(&router, &q), Some(4));
}

#[test]
fn upstream_fields() {
    let mut r = route(0);
    r.paths = strs(&["/api"]);
    r.strip_path = true;
    r.preserve_host = true;
    r.path_handling = PathHandling::V1;
    r.service = Some(std::sync::Arc::new(ServiceTarget {
        protocol: "http".to_owned(),
        host: "svc".to_owned(),
        port: 80,
        path: Some("/base".to_owned()),
    }));
    let router = Router::new(vec![r]).expect("compiles");
    let m = router.select(&req("GET", "Front.test:8080", "/apix/y").info());
    let m = m.expect("match");
    assert_eq!(m.upstream_path, "/basex/y");
    assert_eq!(m.upstream_host.as_deref(), Some("Front.test:8080"));
    assert_eq!(m.prefix.as_deref(), Some("/api"));
    assert!(m.uri_captures.is_none());
}

#[test]
fn ignored_routes_and_errors() {
    let mut stream = route(0);
    stream.protocols = strs(&["tcp"]);
    stream.paths = strs(&["/"]);
    let empty = route(1);
    let router = Router::new(vec![stream, empty]).expect("compiles");
    assert_eq!(router.len(), 2);
    assert_eq!(pick(&router, &req("GET", "a", "/")), None);

    let mut bad = route(1);
    bad.paths = strs(&["/ok", "~/(unclosed"]);
    let e = Router::new(vec![route(0), bad]).err().expect("error");
    assert_eq!((e.route, e.field.as_str()), (1, "paths[1]"));

    let mut bad = route(0);
    bad.headers = vec![("x".to_owned(), strs(&["~*(("]))];
    let e = Router::new(vec![bad]).err().expect("error");
    assert_eq!(e.field, "headers.x[0]");

    let mut bad = route(0);
    bad.hosts = strs(&["a.*.com"]);
    let e = Router::new(vec![bad]).err().expect("error");
    assert_eq!(e.field, "hosts[0]");
}

#[test]
fn first_matching_regex_of_a_route_gives_the_captures() {
    let mut r = route(0);
    r.paths = strs(&["~/a/(?<x>\\d+)", "~/(?<y>a)/1"]);
    r.strip_path = true;
    let router = Router::new(vec![r]).expect("compiles");
    let m = router
        .select(&req("GET", "", "/a/1/rest").info())
        .expect("match");
    let caps = m.uri_captures.expect("captures");
    assert_eq!((caps.get("x"), caps.get("y")), (Some("1"), None));
    assert_eq!(m.prefix.as_deref(), Some("/a/1"));
    assert_eq!(m.upstream_path, "/rest");
    let m = router
        .select(&req("GET", "", "/a/1x").info())
        .expect("match");
    assert_eq!(
        m.uri_captures.and_then(|c| c.get("x").map(str::to_owned)),
        Some("1".to_owned())
    );
}
