//! Route fields and priorities through the real proxy: which route a request reaches.

mod common;

use common::{render, Proxy, Upstream};

const ROUTES: &str = r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}
routes:
  - {name: by-method, service: s, methods: [DELETE], strip_path: false}
  - {name: exact-host, service: s, hosts: [api.example.com], strip_path: false}
  - {name: wildcard-suffix, service: s, hosts: ["*.example.com"], strip_path: false}
  - {name: wildcard-prefix, service: s, hosts: ["example.*"], strip_path: false}
  - {name: host-port, service: s, hosts: ["ports.example.org:8443"], strip_path: false}
  - {name: header, service: s, headers: {x-version: [v1, v2]}, strip_path: false}
  - {name: header-regex, service: s, headers: {x-tenant: ["~*^acme-\\d+$"]}, strip_path: false}
  - {name: prefix-short, service: s, paths: [/shop], strip_path: false}
  - {name: prefix-long, service: s, paths: [/shop/cart], strip_path: false}
  - {name: regex-low, service: s, paths: ["~/items/\\d+$"], regex_priority: 1, strip_path: false}
  - {name: regex-high, service: s, paths: ["~/items/(?<id>\\d+)"], regex_priority: 5, strip_path: false}
  - {name: path-and-method, service: s, paths: [/shop], methods: [POST], strip_path: false}
"#;

/// The name of the route that answered (every route echoes through request-termination), or
/// `none` for a 404.
async fn route_of(proxy: &Proxy, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let r = proxy.request(method, path, headers).await;
    match r.status {
        200 => r.json()["matched_route"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        404 => "none".to_string(),
        other => panic!("unexpected status {other}: {}", r.text()),
    }
}

/// Every route answers with request-termination's echo, which names the matched route.
fn echo_everywhere(template: &str) -> String {
    let mut out = template.to_string();
    out.push_str(
        "plugins:\n  - name: request-termination\n    config: {status_code: 200, echo: true}\n",
    );
    out
}

/// method, path, headers, expected route.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn each_route_field_and_the_priority_rules() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&echo_everywhere(&render(ROUTES, &[&up]))).await;
    let cases: &[Case] = &[
        ("DELETE", "/anything", &[], "by-method"),
        ("GET", "/", &[("host", "api.example.com")], "exact-host"),
        (
            "GET",
            "/",
            &[("host", "www.example.com")],
            "wildcard-suffix",
        ),
        ("GET", "/", &[("host", "example.net")], "wildcard-prefix"),
        (
            "GET",
            "/",
            &[("host", "ports.example.org:8443")],
            "host-port",
        ),
        ("GET", "/", &[("host", "ports.example.org")], "none"),
        ("GET", "/", &[("x-version", "V2")], "header"),
        ("GET", "/", &[("x-tenant", "ACME-42")], "header-regex"),
        ("GET", "/", &[("x-tenant", "acme-x")], "none"),
        ("GET", "/shop/cart/1", &[], "prefix-long"),
        ("GET", "/shop/other", &[], "prefix-short"),
        ("GET", "/shopping", &[], "prefix-short"),
        // regex_priority decides between regexes.
        ("GET", "/items/12", &[], "regex-high"),
        // More fields (paths + methods) beat paths alone.
        ("POST", "/shop/cart", &[], "path-and-method"),
        // A plain host beats a wildcard host when both match.
        ("GET", "/", &[("host", "api.example.com")], "exact-host"),
        ("GET", "/nothing", &[], "none"),
    ];
    for (method, path, headers, want) in cases {
        let got = route_of(&proxy, method, path, headers).await;
        assert_eq!(&got, want, "{method} {path} {headers:?}");
    }
}

#[tokio::test]
async fn regex_captures_reach_the_upstream_path() {
    let up = Upstream::start().await;
    let config = render(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}/svc
    routes:
      - name: users
        paths: ["~/users/(?<id>\\d+)"]
"#,
        &[&up],
    );
    let proxy = Proxy::start(&config).await;
    let r = proxy.get("/users/42/profile", &[]).await;
    assert_eq!(r.status, 200);
    // strip_path removes the whole regex match.
    assert_eq!(up.last().uri, "/svc/profile");
    assert_eq!(up.last().header("x-forwarded-prefix"), Some("/users/42"));
}
