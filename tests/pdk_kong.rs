//! Kong's PDK behaviours that Kong's own PDK tests (t/01-pdk) and real plugins rely on, checked
//! here end to end (issue #12): argument errors as Kong's strings, getters' caps, the error
//! page negotiation, request bodies, the loader's rules, body_filter's end of body, kong.log
//! facilities and serializer edits, absolute-form request targets, per-request timeouts.

mod common;

use common::{empty_schema, exchange_raw, render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// A plugin whose access phase answers 200 with what `code` returns (as a string).
fn answering(code: &str) -> String {
    format!(
        "local P = {{ PRIORITY = 1, VERSION = \"0.1\" }}\nfunction P:access(conf)\n  local result = (function() {code} end)()\n  return kong.response.exit(200, tostring(result))\nend\nreturn P\n"
    )
}

/// A config with the streamed plugin `name` on the only route, `/`, of a service on `up`.
fn one_plugin(name: &str, handler: &str, schema: &str, up: &Upstream) -> String {
    format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}{}",
        embed::render(name, handler, schema, false),
        render(
            &format!("services:\n  - name: s\n    url: http://{{upstream}}\n    routes:\n      - {{name: r, paths: [/], plugins: [{{name: {name}}}]}}\n"),
            &[up],
        )
    )
}

/// (name, Lua code returning the answer, expected body)
const CASES: &[(&str, &str, &str)] = &[
    (
        "header-name-number",
        "local ok, err = pcall(kong.service.request.set_header, 127001, 'x') return err",
        "invalid header name \"127001\": got number, expected string",
    ),
    (
        "header-value-function",
        "local ok, err = pcall(kong.response.set_header, 'foo', print) return err",
        "invalid header value for \"foo\": got function, expected array of string, string, number or boolean",
    ),
    (
        "scheme-invalid",
        "local ok, err = pcall(kong.service.request.set_scheme, 'HTTP') return err",
        "invalid scheme: HTTP",
    ),
    (
        "method-invalid",
        "local ok, err = pcall(kong.service.request.set_method, 'get') return err",
        "invalid method: get",
    ),
    (
        "max-args",
        "local ok, err = pcall(kong.request.get_query, 0) return err",
        "max_args must be >= 1",
    ),
    (
        "retries-range",
        "local ok, err = pcall(kong.service.set_retries, 32768) return err",
        "retries must be an integer between 0 and 32767: given 32768",
    ),
    (
        "error-string-concat",
        "local ok, err = pcall(kong.response.exit, '200') return 'error: ' .. err",
        "error: code must be a number",
    ),
    (
        "error-position",
        "local ok, err = pcall(function() kong.request.get_header(1) end) return err",
        "error-position/handler.lua:3: header name must be a string",
    ),
    (
        "json-not-object",
        "local body, err = kong.request.get_body('application/json') return tostring(body) .. ' ' .. err",
        "nil invalid json body",
    ),
    (
        "unsupported-body",
        "local body, err = kong.request.get_body('text/foo') return err",
        "unsupported content type 'text/foo'",
    ),
    (
        "query-cap",
        "local args, err = kong.request.get_query() local n = 0 for _ in pairs(args) do n = n + 1 end return n .. ' ' .. tostring(err)",
        "100 truncated",
    ),
    (
        "query-set-visible",
        "kong.service.request.set_query({ b = '2', a = 'x y' }) return kong.request.get_raw_query() .. ' ' .. kong.request.get_query_arg('a')",
        "a=x%20y&b=2 x y",
    ),
    (
        "clear-query-arg",
        "kong.service.request.set_raw_query('a=1&b=2&a=3') kong.service.request.clear_query_arg('a') return kong.request.get_raw_query()",
        "b=2",
    ),
    (
        "authenticate-any-table",
        "kong.client.authenticate({ id = 'external', username = 'from-idp' }, { id = 'cred' }) return kong.client.get_consumer().username .. ' ' .. kong.client.get_credential().id",
        "from-idp cred",
    ),
    (
        "log-facility",
        "local l = kong.log.new('my_ns', '%namespace says %message') l.notice('hello') return 'ok'",
        "ok",
    ),
    (
        "log-new-check",
        "local ok, err = pcall(kong.log.new, '') return err",
        "namespace cannot be an empty string",
    ),
    (
        "memory-stats-check",
        "local ok, err = pcall(kong.node.get_memory_stats, 'V') return err",
        "invalid unit 'V' (expected 'k/K', 'm/M', or 'g/G')",
    ),
    (
        "modules",
        "local lru = require('resty.lrucache').new(2) lru:set('a', 1) lru:set('b', 2) lru:get('a') lru:set('c', 3) \
         local sha = require('resty.sha256'):new() sha:update('abc') \
         local gz = require('kong.tools.gzip') \
         return tostring(lru:get('b')) .. lru:get('a') .. lru:count() .. ' ' \
           .. table.concat(require('ngx.re').split('a,b,,c', ','), '|') .. ' ' \
           .. require('resty.string').to_hex(sha:final()):sub(1, 8) .. ' ' \
           .. gz.inflate_gzip(gz.deflate_gzip('zipped')) .. ' ' \
           .. require('kong.constants').HEADERS.CONSUMER_ID .. ' ' .. ngx.get_phase()",
        "nil12 a|b||c ba7816bf zipped X-Consumer-ID access",
    ),
    (
        "require-error",
        "local ok, err = pcall(require, 'resty.nope') return err:match('^(module .-: plugins may only require) ') .. tostring(err:find('resty.lrucache', 1, true) ~= nil)",
        "module 'resty.nope' not found: plugins may only requiretrue",
    ),
    (
        "disable-tls-balancer-only",
        "local ok, err = pcall(kong.service.request.disable_tls) return err",
        "function cannot be called in access phase (only in: balancer, preread)",
    ),
    (
        "service-body",
        "local ok, err = pcall(kong.service.response.get_raw_body) return err",
        "service body is only available with buffered proxying (see: kong.service.request.enable_buffering function)",
    ),
    (
        "statistics",
        "local s = kong.nginx.get_statistics() return tostring(s.connections_active >= 1 and s.total_requests >= 1)",
        "true",
    ),
];

#[tokio::test]
async fn pdk_functions_check_arguments_and_answer_as_kong_does() {
    let up = Upstream::start().await;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    let mut routes = String::new();
    for (name, code, _) in CASES {
        cfg.push_str(&embed::render(
            name,
            &answering(code),
            &empty_schema(name),
            false,
        ));
        routes.push_str(&format!(
            "      - {{name: {name}, paths: [/{name}], plugins: [{{name: {name}}}]}}\n"
        ));
    }
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n",
        &[&up],
    ));
    cfg.push_str(&routes);
    let proxy = Proxy::start(&cfg).await;

    let many: String = (1..=150).map(|i| format!("a{i}=1&")).collect();
    for (name, _, expected) in CASES {
        let target = if *name == "query-cap" {
            format!("/{name}?{many}")
        } else {
            format!("/{name}")
        };
        let r = proxy
            .request_body(
                "POST",
                &target,
                &[("content-type", "application/json")],
                bytes::Bytes::from_static(b"\"a string\""),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.text(), *expected, "{name}");
    }
    let log = proxy.stderr();
    assert!(log.contains("my_ns says hello"), "{log}");
}

#[tokio::test]
async fn error_pages_follow_accept_and_carry_the_request_id() {
    let up = Upstream::start().await;
    let name = "err-page";
    let handler = "local P = { PRIORITY = 1, VERSION = \"1\" }\nfunction P:access()\n  return kong.response.error(502)\nend\nreturn P\n";
    let grpc = "grpc-exit";
    let grpc_handler = "local P = { PRIORITY = 1, VERSION = \"1\" }\nfunction P:access()\n  return kong.response.exit(403, 'denied', { ['Content-Type'] = 'application/grpc' })\nend\nreturn P\n";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}{}{}",
        embed::render(name, handler, &empty_schema(name), false),
        embed::render(grpc, grpc_handler, &empty_schema(grpc), false),
        render(
            "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: e, paths: [/e], plugins: [{name: err-page}]}\n      - {name: g, paths: [/g], plugins: [{name: grpc-exit}]}\n",
            &[&up],
        )
    );
    let proxy = Proxy::start(&cfg).await;

    let json = proxy.get("/e", &[]).await;
    assert_eq!(json.status, 502);
    let body = json.json();
    assert_eq!(
        body["message"],
        "An invalid response was received from the upstream server"
    );
    let id = body["request_id"].as_str().expect("request_id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let other = proxy.get("/e", &[]).await.json();
    assert_ne!(other["request_id"], body["request_id"]);

    let html = proxy
        .get("/e", &[("accept", "text/plain;q=0.2, text/html;q=0.9")])
        .await;
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(html.text().contains("<h1>Error</h1>"), "{}", html.text());
    let xml = proxy.get("/e", &[("accept", "application/xml")]).await;
    assert!(xml.text().contains("<requestid>"), "{}", xml.text());

    let g = proxy.get("/g", &[]).await;
    assert_eq!(g.status, 403);
    assert_eq!(g.header("grpc-status"), Some("7"));
    assert_eq!(g.header("grpc-message"), Some("PermissionDenied"));
    assert_eq!(g.text(), "denied");
    assert!(up.seen().is_empty(), "no request reached the upstream");
}

#[tokio::test]
async fn handlers_get_conf_without_nulls_and_init_worker_runs_once_per_vm() {
    let up = Upstream::start().await;
    let name = "conf-shape";
    let handler = "local inits = 0\nlocal P = { PRIORITY = 1, VERSION = \"0.1\" }\nfunction P:init_worker()\n  inits = inits + 1\nend\nfunction P:access(conf)\n  return kong.response.exit(200, tostring(conf.optional == nil) .. ' ' .. conf.limit .. ' ' .. inits)\nend\nreturn P\n";
    let schema = "return { name = \"conf-shape\", fields = { { config = { type = \"record\", fields = {\n  { optional = { type = \"string\" } },\n  { limit = { type = \"integer\", default = 5 } },\n} } } } }";
    let cfg = one_plugin(name, handler, schema, &up);
    let proxy = Proxy::start_with(&cfg, &["--workers", "1"]).await;
    for _ in 0..3 {
        let r = proxy.get("/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "true 5 1");
    }
}

#[tokio::test]
async fn an_init_worker_that_fails_fails_the_config() {
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0\" }\nfunction P:init_worker()\n  ngx.timer.at(0, function() end)\nend\nreturn P\n";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}",
        embed::render("timers", handler, &empty_schema("timers"), false)
    );
    let (ok, out) = common::check_file(&cfg, "kong.yaml");
    assert!(!ok, "{out}");
    assert!(out.contains("init_worker"), "{out}");
    assert!(out.contains("timers"), "{out}");
}

#[tokio::test]
async fn body_filter_sees_the_end_of_the_body_as_its_own_call() {
    let up = Upstream::start().await;
    // Kong's example: buffer every chunk, answer them upper-cased at eof.
    let name = "upper";
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:header_filter()\n  kong.response.clear_header('content-length')\n  kong.response.set_header('x-seen', 'yes')\nend\nfunction P:body_filter()\n  local ctx = kong.ctx.plugin\n  ctx.calls = (ctx.calls or 0) + 1\n  ctx.buf = (ctx.buf or '') .. (ngx.arg[1] or '')\n  if ngx.arg[2] then\n    ngx.arg[1] = ctx.buf:upper() .. ' ' .. ngx.header['x-seen'] .. ' ' .. ctx.calls\n  else\n    ngx.arg[1] = nil\n  end\nend\nreturn P\n";
    let cfg = one_plugin(name, handler, &empty_schema(name), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/abc", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    // The whole echo upper-cased, the header set in header_filter, and the eof call apart
    // from the data.
    assert!(text.contains("\"/ABC\""), "{text}");
    let calls: u32 = text.rsplit(' ').next().unwrap().parse().expect(&text);
    assert!(text.contains(" yes ") && calls >= 2, "{text}");
}

#[tokio::test]
async fn serialize_values_reach_file_log() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let name = "tagger";
    let handler = "local P = { PRIORITY = 2000, VERSION = \"1.0.0\" }\nfunction P:access()\n  kong.log.set_serialize_value('custom.team', 'payments')\n  kong.log.set_serialize_value('request.headers.x-secret', nil)\n  kong.log.set_serialize_value('route.name', 'ignored', { mode = 'add' })\nend\nreturn P\n";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}{}",
        embed::render(name, handler, &empty_schema(name), false),
        render(
            &format!("services:\n  - name: s\n    url: http://{{upstream}}\n    routes:\n      - {{name: r, paths: [/], plugins: [{{name: tagger}}, {{name: file-log, config: {{path: {}}}}}]}}\n", path.display()),
            &[&up],
        )
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[("x-secret", "s3cr3t")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The line is written after the response went out: bounded wait for a whole line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut line = String::new();
    while std::time::Instant::now() < deadline {
        line = std::fs::read_to_string(&path).unwrap_or_default();
        if line.ends_with('\n') {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let entry: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
    assert_eq!(entry["custom"]["team"], "payments");
    assert!(
        entry["request"]["headers"].get("x-secret").is_none(),
        "{entry}"
    );
    assert_eq!(entry["route"]["name"], "r");
}

#[tokio::test]
async fn absolute_form_targets_take_their_host_from_the_request_line() {
    let up = Upstream::start().await;
    let cfg = render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: other, hosts: [other.test], paths: [/], preserve_host: true}\n",
        &[&up],
    );
    let proxy = Proxy::start(&cfg).await;
    let text = exchange_raw(
        proxy.addr,
        b"GET http://OTHER.test/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = up.last();
    assert_eq!(seen.uri, "/x");
    assert_eq!(seen.header("host"), Some("OTHER.test"));
}

#[tokio::test]
async fn set_timeouts_bounds_the_upstream_wait_of_one_request() {
    let up = Upstream::start().await;
    let name = "hurry";
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access()\n  kong.service.set_timeouts(1000, 1000, 100)\n  kong.service.set_retries(0)\nend\nreturn P\n";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}{}",
        embed::render(name, handler, &empty_schema(name), false),
        render(
            "services:\n  - name: s\n    url: http://{upstream}\n    read_timeout: 60000\n    routes:\n      - {name: h, paths: [/h], plugins: [{name: hurry}]}\n      - {name: slow, paths: [/slow]}\n",
            &[&up],
        )
    );
    let proxy = Proxy::start(&cfg).await;
    let started = std::time::Instant::now();
    let r = proxy.get("/h/delay/3000", &[]).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Other requests keep the service's own timeout.
    let r = proxy.get("/slow/delay/300", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn ngx_var_sets_what_kongs_template_lets_plugins_set() {
    let up = Upstream::start().await;
    let name = "vars";
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access()\n  ngx.var.upstream_uri = '/rewritten/path?x=1'\n  ngx.var.upstream_host = 'backend.internal'\n  ngx.var.upstream_x_forwarded_prefix = '/public'\n  kong.service.request.set_header('x-read-back', ngx.var.upstream_uri .. ' ' .. ngx.var.upstream_host)\nend\nreturn P\n";
    let cfg = one_plugin(name, handler, &empty_schema(name), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/original?y=2", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.uri, "/rewritten/path?x=1");
    assert_eq!(seen.header("host"), Some("backend.internal"));
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/public"));
    assert_eq!(
        seen.header("x-read-back"),
        Some("/rewritten/path?x=1 backend.internal")
    );
}

/// Reading `ngx.var`: strings as nginx gives them (repeated request headers joined with
/// ", ", the client address as 4 raw bytes), nil for what is not there.
#[tokio::test]
async fn ngx_var_reads_strings_and_nil() {
    let up = Upstream::start().await;
    let name = "read-vars";
    let handler = r#"local P = { PRIORITY = 1, VERSION = "1.0.0" }
function P:access()
  local v = ngx.var
  local out = table.concat({
    v.uri, v.request_method, v.args, v.http_x_multi, v.arg_b, v.cookie_c,
    tostring(v.http_x_missing), tostring(v.arg_missing), tostring(v.no_such_variable),
    tostring(#v.binary_remote_addr), v.binary_remote_addr == "\127\0\0\1" and "lo" or "?",
    v.remote_addr, v.realip_remote_addr, v.server_addr,
  }, "|")
  return kong.response.exit(200, out)
end
return P
"#;
    let cfg = one_plugin(name, handler, &empty_schema(name), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy
        .get(
            "/p/q?a=1&b=two",
            &[
                ("x-multi", "1"),
                ("x-multi", "2"),
                ("cookie", "c=cookie; d=x"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "/p/q|GET|a=1&b=two|1, 2|two|cookie|nil|nil|nil|4|lo|127.0.0.1|127.0.0.1|127.0.0.1"
    );
}

#[tokio::test]
async fn nothing_after_kong_response_exit_runs_even_under_pcall() {
    let up = Upstream::start().await;
    let name = "exit-once";
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access()\n  pcall(kong.response.exit, 403, 'first')\n  kong.service.request.set_header('x-after-exit', 'ran')\n  return kong.response.exit(200, 'second')\nend\nreturn P\n";
    let cfg = one_plugin(name, handler, &empty_schema(name), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.text(), "first");
    assert!(up.seen().is_empty());
    assert!(
        !proxy.stderr().contains("plugin failed"),
        "{}",
        proxy.stderr()
    );
}

/// Kong's client_body_buffer_size (8k): a larger body is one nginx keeps in a file, and
/// `get_raw_body()` hands it out only when given a `max_allowed_file_size` (0: any size).
#[tokio::test]
async fn request_bodies_over_the_body_buffer_need_a_max_allowed_file_size() {
    let up = Upstream::start().await;
    let code = "local max = kong.request.get_header('x-max') \
        local body, err = kong.request.get_raw_body(max and tonumber(max)) \
        if kong.request.get_header('x-form') then \
          local args, ferr = kong.request.get_body('application/x-www-form-urlencoded') \
          return tostring(args) .. ' ' .. ferr \
        end \
        return body and #body or err";
    let cfg = one_plugin(
        "body-size",
        &answering(code),
        &empty_schema("body-size"),
        &up,
    );
    let big = bytes::Bytes::from(vec![b'a'; 20_000]);
    let ask = |proxy: &Proxy, headers: Vec<(&'static str, &'static str)>, body: bytes::Bytes| {
        let addr = proxy.addr;
        async move { common::send(addr, "POST", "/", &headers, body).await.text() }
    };
    let proxy = Proxy::start(&cfg).await;
    assert_eq!(
        ask(&proxy, vec![], big.clone()).await,
        "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"
    );
    assert_eq!(
        ask(&proxy, vec![("x-max", "19999")], big.clone()).await,
        "request body file too big: 20000 > 19999"
    );
    assert_eq!(
        ask(&proxy, vec![("x-max", "20000")], big.clone()).await,
        "20000"
    );
    assert_eq!(
        ask(&proxy, vec![("x-max", "0")], big.clone()).await,
        "20000"
    );
    assert_eq!(
        ask(&proxy, vec![("x-form", "1")], big.clone()).await,
        "nil request body in temp file not supported"
    );
    assert_eq!(
        ask(&proxy, vec![], bytes::Bytes::from_static(b"small")).await,
        "5"
    );
    drop(proxy);

    let proxy = Proxy::start_with(&cfg, &["--client-body-buffer-size", "32k"]).await;
    assert_eq!(ask(&proxy, vec![], big).await, "20000");
}

/// As Kong: exit sets Content-Length unless the plugin gave one, and without a body the
/// plugin's stands (a HEAD answer advertising the size of what a GET would send).
#[tokio::test]
async fn exit_keeps_a_content_length_the_plugin_gave_without_a_body() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1\" }\nfunction P:access()\n  if kong.request.get_header('x-body') then return kong.response.exit(200, 'abc', { ['Content-Length'] = '100' }) end\n  return kong.response.exit(200, nil, { ['Content-Length'] = '100' })\nend\nreturn P\n";
    let cfg = one_plugin("head-size", handler, &empty_schema("head-size"), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.request("HEAD", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100"));
    // With a body, the body's length is sent (a false one would break the connection).
    let r = proxy.get("/", &[("x-body", "1")]).await;
    assert_eq!(r.header("content-length"), Some("3"));
    assert_eq!(r.text(), "abc");
}

/// A plugin's writes to `ngx` that the shared table refuses land in its own view: its code,
/// and the PDK functions that Kong implements over them (the serializer's request headers, the
/// gRPC detection of exit/error), see them; other plugins do not.
#[tokio::test]
async fn a_plugin_replacing_ngx_functions_changes_only_its_own_view() {
    let up = Upstream::start().await;
    let mocker = r#"local P = { PRIORITY = 20, VERSION = "1" }
local real = ngx.req.get_headers
ngx.req.get_headers = function()
  local h = real()
  h.foo = "bar"
  h.authorization = "secret"
  return h
end
function P:access()
  if kong.request.get_header("content-type") == "application/grpc" then
    ngx.req.http_version = function() return 2 end
    return kong.response.exit(200, { message = "hello" })
  end
  local s = kong.log.serialize()
  kong.ctx.shared.mocker = s.request.headers.foo .. " " .. s.request.headers.Authorization
end
return P
"#;
    let other = r#"local P = { PRIORITY = 10, VERSION = "1" }
function P:access()
  local s = kong.log.serialize()
  return kong.response.exit(200, {
    mocker = kong.ctx.shared.mocker,
    other = tostring(s.request.headers.foo) .. " " .. tostring(ngx.req.get_headers().foo),
    version = ngx.req.http_version(),
  })
end
return P
"#;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render(
        "mocker",
        mocker,
        &empty_schema("mocker"),
        false,
    ));
    cfg.push_str(&embed::render(
        "other",
        other,
        &empty_schema("other"),
        false,
    ));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: mocker}, {name: other}]}\n",
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["mocker"], "bar REDACTED", "{j}");
    assert_eq!(j["other"], "nil nil", "{j}");
    assert_eq!(j["version"], 1.1, "{j}");

    // Kong's exit reads ngx.req.http_version for its gRPC detection.
    let r = proxy
        .get("/", &[("content-type", "application/grpc")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("0"));
    assert_eq!(r.header("grpc-message"), Some("hello"));
    assert!(r.body.is_empty());
}

/// A plugin reaching for a Kong facility this gateway does not give streamed plugins fails its
/// request, and the log says which facility and why (the Lua error alone names only the line).
#[tokio::test]
async fn a_missing_kong_facility_is_named_in_the_error() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1\" }\nfunction P:access()\n  local row = kong.db.consumers:select({ id = 'x' })\nend\nreturn P\n";
    let cfg = one_plugin("uses-db", handler, &empty_schema("uses-db"), &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 500);
    let log = proxy.stderr();
    assert!(
        log.contains("uses-db/handler.lua:3: attempt to index field 'db' (a nil value) (kong.db: this gateway has no database (DB-less), plugins cannot use DAOs)"),
        "{log}"
    );
}

/// `kong.nginx.get_statistics` adds up every worker's counts (each worker counts in its own
/// shard): each request is counted once whichever worker served it, and only the asking
/// request is in flight.
#[tokio::test]
async fn nginx_statistics_count_each_request_once_across_workers() {
    let up = Upstream::start().await;
    let handler = answering(
        "local s = kong.nginx.get_statistics() return s.total_requests .. ' ' .. s.connections_writing .. ' ' .. s.connections_active",
    );
    let proxy = Proxy::start(&one_plugin("stats", &handler, &empty_schema("stats"), &up)).await;
    let read = |text: String| -> Vec<u64> {
        text.split(' ')
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("not a count: {text:?}"))
            })
            .collect()
    };
    let first = read(proxy.get("/", &[]).await.text());
    // New connections, so that every worker serves some of them.
    for _ in 0..9 {
        assert_eq!(proxy.get("/", &[]).await.status, 200);
    }
    let mut last = read(proxy.get("/", &[]).await.text());
    let mut asked = 10;
    // A request leaves the in-flight count when its context is dropped, just after its
    // response is sent: ask again (a bounded number of times) until the earlier ones have.
    while last[1] != 1 && asked < 110 {
        last = read(proxy.get("/", &[]).await.text());
        asked += 1;
    }
    assert_eq!(
        last[0],
        first[0] + asked,
        "total_requests {first:?} then {last:?} after {asked} more"
    );
    assert_eq!(last[1], 1, "only the asking request is in flight: {last:?}");
    assert!(last[2] >= 1, "connections_active {last:?}");
}
