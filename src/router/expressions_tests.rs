//! The expressions flavor against the vectors of Kong's `spec/01-unit/08-router_spec.lua`
//! (its `flavor = "expressions"` blocks), plus the guards this gateway adds.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};

use super::super::{Flavor, RequestInfo, RouteInput, Router, ServiceTarget};

fn id(n: u32) -> String {
    format!("e8fb37f1-102d-461e-9c51-6608a6bb81{n:02}")
}

fn expr(n: u32, expression: &str, priority: u64) -> RouteInput {
    RouteInput {
        id: id(n),
        expression: Some(expression.to_owned()),
        priority,
        ..RouteInput::default()
    }
}

fn router(routes: Vec<RouteInput>) -> Router {
    Router::with_flavor(routes, Flavor::Expressions).expect("routes compile")
}

/// A request; `with` fills the optional parts.
struct Req {
    method: &'static str,
    path: String,
    host: String,
    scheme: &'static str,
    headers: HeaderMap,
    query: Option<String>,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
}

fn get(path: &str) -> Req {
    Req {
        method: "GET",
        path: path.to_owned(),
        host: String::new(),
        scheme: "http",
        headers: HeaderMap::new(),
        query: None,
        src: None,
        dst: None,
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers
            .append(name, HeaderValue::from_str(value).expect("header value"));
        self
    }
    fn query(mut self, q: &str) -> Req {
        self.query = Some(q.to_owned());
        self
    }
    fn host(mut self, h: &str) -> Req {
        self.host = h.to_owned();
        self
    }
    /// Which input route matched, if any.
    fn on(&self, r: &Router) -> Option<usize> {
        self.select(r).map(|m| m.route)
    }
    fn select(&self, r: &Router) -> Option<super::super::RouteMatch> {
        r.select(&RequestInfo {
            method: self.method,
            path: &self.path,
            host: &self.host,
            headers: &self.headers,
            scheme: self.scheme,
            sni: None,
            src: self.src,
            dst: self.dst,
            query: self.query.as_deref(),
        })
    }
}

#[test]
fn queries_one_empty_and_many_values() {
    let r = router(vec![
        expr(
            1,
            r#"http.path == "/foo/bar" && http.queries.a == "1""#,
            100,
        ),
        expr(2, r#"http.path == "/foo/bar" && http.queries.a == """#, 100),
        expr(
            3,
            r#"http.path == "/foo/bar" && any(http.queries.a) == "2""#,
            100,
        ),
    ]);
    assert_eq!(get("/foo/bar").query("a=1").on(&r), Some(0));
    assert_eq!(get("/foo/bar").query("a=").on(&r), Some(1));
    assert_eq!(get("/foo/bar").query("a").on(&r), Some(1));
    assert_eq!(get("/foo/bar").query("a=2&a=10").on(&r), Some(2));
    assert_eq!(get("/foo/bar").query("a=x").on(&r), None);
    // Decoded as nginx's get_uri_args decodes.
    assert_eq!(get("/foo/bar").query("a=%31").on(&r), Some(0));
}

#[test]
fn headers_are_case_sensitive_unless_lowered() {
    let r = router(vec![
        expr(
            1,
            r#"http.path == "/foo/bar" && http.headers.test1 == "Quote""#,
            100,
        ),
        expr(
            2,
            r#"http.path == "/foo/bar" && lower(http.headers.test2) == "quote""#,
            100,
        ),
    ]);
    assert_eq!(get("/foo/bar").header("test1", "quote").on(&r), None);
    assert_eq!(get("/foo/bar").header("test1", "quoTe").on(&r), None);
    assert_eq!(get("/foo/bar").header("test1", "Quote").on(&r), Some(0));
    assert_eq!(get("/foo/bar").header("test2", "QuoTe").on(&r), Some(1));
    assert_eq!(get("/foo/bar").header("test2", "QUOTE").on(&r), Some(1));
}

#[test]
fn header_field_underscores_read_dashes() {
    let r = router(vec![expr(1, r#"http.headers.x_version == "2""#, 0)]);
    assert_eq!(get("/").header("x-version", "2").on(&r), Some(0));
    assert_eq!(get("/").header("x-version", "3").on(&r), None);
}

#[test]
fn net_port_means_the_destination_port_from_the_host_header_first() {
    let r = router(vec![
        expr(
            1,
            r#"http.host == "www.example.com" && net.port == 8000"#,
            100,
        ),
        expr(
            2,
            r#"net.src.ip == 1.1.1.1 && net.dst.ip == 2.2.2.2 && http.method == "GET""#,
            100,
        ),
    ]);
    assert_eq!(get("/").host("www.example.com:80").on(&r), None);
    assert_eq!(get("/").host("www.example.com:8000").on(&r), Some(0));
    // No port in Host: the listener's port.
    let mut req = get("/foo").host("www.example.com");
    assert_eq!(req.on(&r), None);
    req.dst = Some("127.0.0.1:8000".parse().expect("addr"));
    assert_eq!(req.on(&r), Some(0));

    let mut req = get("/foo").host("domain.org");
    assert_eq!(req.on(&r), None);
    req.src = Some("1.1.1.1:5000".parse().expect("addr"));
    req.dst = Some("2.2.2.2:80".parse().expect("addr"));
    assert_eq!(req.on(&r), Some(1));
}

#[test]
fn single_segments() {
    let r = router(vec![
        expr(
            1,
            r#"http.path.segments.0 == "foo" && http.path.segments.1 == "bar""#,
            100,
        ),
        expr(
            2,
            r#"http.path.segments.0 == "foo" && http.path.segments.2 ^= "baz""#,
            200,
        ),
        expr(
            3,
            r##"http.path.segments.0 == "foo" && http.path.segments.3 ~ r#"\d+"#"##,
            300,
        ),
    ]);
    assert_eq!(get("/foo/bar").on(&r), Some(0));
    assert_eq!(get("/foo/bar/bazxxx").on(&r), Some(1));
    assert_eq!(get("/foo/bar/baz/12345").on(&r), Some(2));
    assert_eq!(get("/foo/xxx").on(&r), None);
}

#[test]
fn segments_len_ignores_trailing_slashes() {
    let r = router(vec![expr(
        1,
        r#"http.path.segments.0 == "foo" && http.path.segments.len == 1"#,
        100,
    )]);
    assert_eq!(get("/foo").on(&r), Some(0));
    assert_eq!(get("/foo/").on(&r), Some(0));
    assert_eq!(get("/foo/xxx").on(&r), None);
}

#[test]
fn segment_ranges() {
    let r = router(vec![
        expr(1, r##"http.path.segments.0_1 ~ r#"\d+/\w+"#"##, 100),
        expr(2, r##"http.path.segments.1_3 == r#"xxx/yyy/zzz"#"##, 100),
        expr(
            3,
            r##"http.path.segments.1_2 == r#"xxx/yyy"# && http.path.segments.len == 3"##,
            100,
        ),
    ]);
    assert_eq!(get("/123/foo/bar").on(&r), Some(0));
    assert_eq!(get("/123/hello-world/bar").on(&r), Some(0));
    assert_eq!(get("/foo/xxx/yyy/zzz/bar").on(&r), Some(1));
    assert_eq!(get("/foo/xxx/yyy").on(&r), Some(2));
    assert_eq!(get("/foo/xxx/yyy/").on(&r), Some(2));
}

#[test]
fn out_of_range_segments_never_match() {
    let r = router(vec![
        expr(1, r##"http.path.segments.4_1 == r#"foo"#"##, 100),
        expr(2, r##"http.path.segments.10_11 == r#"foo/bar"#"##, 100),
    ]);
    assert_eq!(get("/foo/bar").on(&r), None);
}

#[test]
fn not_expression() {
    let r = router(vec![expr(1, r##"!(http.path ^= r#"/foo"#)"##, 100)]);
    assert_eq!(get("/123/foo/bar").on(&r), Some(0));
    assert_eq!(get("/xyz/hello-world/bar").on(&r), Some(0));
    assert_eq!(get("/foo/bar").on(&r), None);
}

#[test]
fn expression_routes_outrank_traditional_ones() {
    let traditional = RouteInput {
        id: id(1),
        paths: vec!["/foo".to_owned()],
        ..RouteInput::default()
    };
    let r = router(vec![traditional.clone()]);
    assert_eq!(get("/foo/bar").on(&r), Some(0));
    let r = router(vec![traditional, expr(2, r##"http.path ^= r#"/foo"#"##, 0)]);
    assert_eq!(get("/foo/bar").on(&r), Some(1));
}

#[test]
fn priority_near_two_to_the_46() {
    let p = (1u64 << 46) - 3;
    let r = router(vec![expr(1, r##"http.path ^= r#"/foo"#"##, p)]);
    assert_eq!(get("/foo/bar").on(&r), Some(0));
    let r = router(vec![
        expr(1, r##"http.path ^= r#"/foo"#"##, p),
        expr(2, r##"http.path ^= r#"/foo"#"##, p + 1),
    ]);
    assert_eq!(get("/foo/bar").on(&r), Some(1));
}

#[test]
fn equal_priorities_go_to_the_larger_id() {
    let r = router(vec![
        expr(7, r#"http.path ^= "/""#, 5),
        expr(9, r#"http.path ^= "/""#, 5),
        expr(8, r#"http.path ^= "/""#, 5),
    ]);
    assert_eq!(get("/x").on(&r), Some(1));
}

#[test]
fn protocols_restrict_unless_https_only() {
    let mut http_only = expr(1, r#"http.path ^= "/a""#, 0);
    http_only.protocols = vec!["http".to_owned()];
    let mut https_only = expr(2, r#"http.path ^= "/b""#, 0);
    https_only.protocols = vec!["https".to_owned()];
    let mut trad_http = RouteInput {
        id: id(3),
        paths: vec!["/c".to_owned()],
        protocols: vec!["http".to_owned()],
        ..RouteInput::default()
    };
    let r = router(vec![http_only, https_only, trad_http.clone()]);
    let mut tls = get("/a");
    tls.scheme = "https";
    assert_eq!(tls.on(&r), None);
    assert_eq!(get("/a").on(&r), Some(0));
    // An https-only route still sees plain requests (the proxy answers 426).
    assert_eq!(get("/b").on(&r), Some(1));
    let mut tls = get("/c");
    tls.scheme = "https";
    assert_eq!(tls.on(&r), None);
    assert_eq!(get("/c").on(&r), Some(2));
    // Under traditional_compatible the protocols do not take part in matching.
    trad_http.protocols = vec!["http".to_owned()];
    let r = Router::new(vec![trad_http]).expect("compiles");
    assert_eq!(tls.on(&r), Some(0));
}

#[test]
fn strip_path_and_captures_come_from_the_path_predicate() {
    let mut route = expr(1, r##"http.path ~ r#"^/users/(?P<id>\d+)"#"##, 0);
    route.strip_path = true;
    route.service = Some(std::sync::Arc::new(ServiceTarget {
        protocol: "http".to_owned(),
        host: "backend".to_owned(),
        port: 80,
        path: Some("/api".to_owned()),
    }));
    let mut prefix = expr(2, r#"http.path ^= "/files""#, 0);
    prefix.strip_path = true;
    let r = router(vec![route, prefix]);
    let m = get("/users/42/profile").select(&r).expect("match");
    assert_eq!(m.upstream_path, "/api/profile");
    assert_eq!(m.prefix.as_deref(), Some("/users/42"));
    let caps = m.uri_captures.expect("captures");
    assert_eq!(caps.get("0"), Some("/users/42"));
    assert_eq!(caps.get("1"), Some("42"));
    assert_eq!(caps.get("id"), Some("42"));
    let m = get("/files/a.txt").select(&r).expect("match");
    assert_eq!(m.upstream_path, "/a.txt");
    assert!(m.uri_captures.is_none());
}

#[test]
fn validation_follows_kong() {
    use super::validate;
    assert!(validate(r#"http.path ^= "/foo" && net.port == 80"#).is_ok());
    assert!(validate(r#"http.path.segments.1_3 == "a/b/c""#).is_ok());
    let bad = |e: &str| validate(e).expect_err(e);
    assert!(bad(r#"http.path.segments.4_1 == "x""#).contains("illformed"));
    assert!(bad(r#"http.path.segments.01 == "x""#).contains("illformed"));
    assert_eq!(bad(r#"http.nope == "x""#), "Unknown LHS field".to_owned());
    assert!(!bad(r#"http.path == "#).is_empty());
    // Type mismatch: an integer field compared with a string.
    assert!(!bad(r#"net.dst.port == "80""#).is_empty());
}

#[test]
fn pathological_expressions_are_refused_not_overflowing_the_stack() {
    let deep = format!(
        r#"{}http.path == "/"{}"#,
        "(".repeat(1000),
        ")".repeat(1000)
    );
    assert!(super::validate(&deep)
        .expect_err("too deep")
        .contains("nested"));
    let huge = format!(r#"http.path == "{}""#, "a".repeat(100_000));
    assert!(super::validate(&huge)
        .expect_err("too long")
        .contains("longer"));
    let long_chain = vec![r#"http.path == "/""#; 3000].join(" && ");
    assert!(super::validate(&long_chain)
        .expect_err("too many")
        .contains("operators"));
    // The largest accepted chain is matched on a thread with a proxy worker's stack.
    let chain = vec![r#"http.path != "/x""#; 2049].join(" && ");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let r = router(vec![expr(1, &chain, 0)]);
            assert_eq!(get("/").on(&r), Some(0));
        })
        .expect("thread")
        .join()
        .expect("no overflow");
}

#[test]
fn a_repeated_request_gets_the_same_answer_from_the_outcome_cache() {
    let mut captures = expr(1, r##"http.path ~ r#"^/u/(?P<id>\d+)"#"##, 5);
    captures.strip_path = true;
    let r = router(vec![
        captures,
        expr(2, r#"http.path ^= "/u" && http.headers.x_a == "1""#, 9),
        expr(3, r#"http.queries.q == "x""#, 1),
    ]);
    let cases = [
        get("/u/42/a"),
        get("/u/42/a").header("x-a", "1"),
        get("/u/7/b"),
        get("/other").query("q=x"),
        get("/other").query("q=y"),
        // Values that would collide if they were merely concatenated.
        get("/u/1").header("x-a", "1").header("x-a", "2"),
        get("/u/1").header("x-a", "12"),
    ];
    for req in &cases {
        let first = req
            .select(&r)
            .map(|m| (m.route, m.upstream_path, m.uri_captures));
        for _ in 0..3 {
            let again = req
                .select(&r)
                .map(|m| (m.route, m.upstream_path, m.uri_captures));
            assert_eq!(again, first, "{}", req.path);
        }
    }
    assert_eq!(cases[0].on(&r), Some(0));
    assert_eq!(cases[1].on(&r), Some(1));
    let m = cases[2].select(&r).expect("match");
    assert_eq!(m.uri_captures.expect("captures").get("id"), Some("7"));
    assert_eq!(m.upstream_path, "/b");
    assert_eq!(cases[3].on(&r), Some(2));
    assert_eq!(cases[4].on(&r), None);
    // `x-a: 1, 2`: `http.headers.x_a == "1"` needs every value to be "1" (Kong's default).
    assert_eq!(cases[5].on(&r), Some(0));
    assert_eq!(cases[6].on(&r), Some(0));
}
