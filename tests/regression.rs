//! One test per bug found.

mod common;

use common::{render, Proxy, Upstream};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice::plugins::lua::embed;

/// Bug: conf tables of Lua instances were kept as mlua handles, which live on a bounded
/// auxiliary Lua stack; with ~10,000 instances requests failed with "out of Lua stack".
#[tokio::test]
async fn ten_thousand_lua_instances_do_not_exhaust_the_lua_stack() {
    const ROUTES: usize = 10_000;
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  kong.service.request.set_header(\"x-n\", conf.n)\nend\nreturn P\n";
    let schema = "return { name = \"n\", fields = { { config = { type = \"record\", fields = { { n = { type = \"string\", required = true } } } } } } }";
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("n", handler, schema, true));
    let mut routes =
        String::from("services:\n  - name: s\n    url: http://{upstream}\n    routes:\n");
    for i in 0..ROUTES {
        routes.push_str(&format!(
            "      - {{name: r{i}, paths: [/r{i}/], plugins: [{{name: n, config: {{n: \"{i}\"}}}}]}}\n"
        ));
    }
    cfg.push_str(&render(&routes, &[&up]));
    let proxy = Proxy::start(&cfg).await;

    // One keep-alive connection, every route once (each builds its conf table in the VM).
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..ROUTES {
        let req = hyper::Request::get(format!("/r{i}/x"))
            .header("host", "localhost")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            200,
            "route {i}: {}\n{}",
            String::from_utf8_lossy(&body),
            proxy.stderr()
        );
    }
    assert_eq!(up.seen().len(), ROUTES);
    assert_eq!(up.last().header("x-n"), Some("9999"));
}

/// Bug: with a body_filter plugin the response lost its Content-Length without becoming
/// chunked, so it was delimited by closing the connection (no keep-alive), and a plugin's
/// exit body kept a Content-Length the filter then made wrong. (Since issue #12 an exit body is
/// filtered before its header is sent and carries the filtered length.)
#[tokio::test]
async fn body_filter_responses_are_chunked_and_keep_the_connection() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:body_filter(conf)\n  local chunk = ngx.arg[1]\n  if chunk then ngx.arg[1] = string.upper(chunk) .. \"!\" end\nend\nreturn P\n";
    let schema =
        "return { name = \"shout\", fields = { { config = { type = \"record\", fields = {} } } } }";
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("shout", handler, schema, true));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/r]}\n      - name: t\n        paths: [/t]\n        plugins: [{name: request-termination, config: {status_code: 200, body: 'hi', content_type: text/plain}}]\nplugins:\n  - name: shout\n",
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Two requests on one connection: the first response must end without closing it.
    // The filter adds "!" to every chunk, the final empty one (eof) included, as under nginx.
    for (path, want) in [("/t", "HI!!"), ("/r", ""), ("/t", "HI!!")] {
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .expect("connection kept alive");
        assert_eq!(resp.status(), 200);
        let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap());
        if want.is_empty() {
            // Proxied: the filtered length is unknown when the header leaves.
            assert!(header("content-length").is_none());
            assert_eq!(header("transfer-encoding"), Some("chunked"));
        } else {
            // A plugin's exit: the whole body is filtered first, so its length is exact.
            assert_eq!(header("content-length"), Some("4"));
            assert!(header("transfer-encoding").is_none());
        }
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        if want.is_empty() {
            assert!(body.contains("!"), "{body}");
            assert_eq!(body, body.to_uppercase());
        } else {
            assert_eq!(body, want);
        }
    }
}

/// Bug: with transparent huge pages (mimalloc advises its arenas), RSS crept up with every
/// reload as khugepaged folded freed ranges back into huge pages. The process turns THP off
/// for itself unless `MIMALLOC_ALLOW_THP` asks otherwise.
#[tokio::test]
async fn transparent_huge_pages_are_off_unless_asked_for() {
    let thp_enabled = |pid: u32| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .expect("the kernel reports THP_enabled (Linux 5.0+)")
            .trim()
            .to_string()
    };
    let up = Upstream::start().await;
    let cfg = render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/]}\n",
        &[&up],
    );
    let default = Proxy::start(&cfg).await;
    assert_eq!(thp_enabled(default.pid()), "0");
    let asked = Proxy::start_with_env(&cfg, &[], &[("MIMALLOC_ALLOW_THP", "1")]).await;
    assert_eq!(thp_enabled(asked.pid()), "1");
}

/// Guards a change, not a bug seen: the request-keyed entries in the worker's VM (kong.ctx,
/// ngx.ctx) are dropped only for requests that made some (`RequestState::lua_keyed`). A
/// request that made them and kept them would fill the VM: 400 requests of ~768 KB each are
/// far past the 64 MB limit.
#[tokio::test]
async fn per_request_lua_tables_are_dropped_when_their_request_ends() {
    let up = Upstream::start().await;
    let handler = r#"local P = { PRIORITY = 1, VERSION = "1.0.0" }
function P:access(conf)
  local big = string.rep("x", 256 * 1024) .. ngx.var.request_uri
  kong.ctx.shared.big = big .. "s"
  kong.ctx.plugin.big = big .. "p"
  ngx.ctx.big = big .. "n"
end
function P:header_filter(conf)
  kong.response.set_header("x-sizes", #kong.ctx.shared.big + #kong.ctx.plugin.big + #ngx.ctx.big)
end
return P
"#;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render(
        "keeper",
        handler,
        &common::empty_schema("keeper"),
        false,
    ));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: keeper}]}\n",
        &[&up],
    ));
    let proxy = Proxy::start_with(&cfg, &["--lua-memory-mb", "64"]).await;
    for i in 0..400 {
        let r = proxy.get(&format!("/{i}"), &[]).await;
        assert_eq!(
            r.status,
            200,
            "request {i}: {}\n{}",
            r.text(),
            proxy.stderr()
        );
        let uri = format!("/{i}").len();
        assert_eq!(
            r.header("x-sizes"),
            Some((3 * (256 * 1024 + uri + 1)).to_string().as_str())
        );
    }
    let log = proxy.stderr();
    assert!(!log.contains("exhausted"), "{log}");
}
