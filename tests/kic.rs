//! The Kong Ingress Controller's conversation with a DB-less gateway, played by a fake KIC
//! over the real admin API: what it reads from `GET /` and `/status`, the stub config it pushes
//! to make the gateway ready, `POST /config?check_hash=1&flatten_errors=1` (201, 304 on a
//! repeat, 400 with errors it maps back to Kubernetes objects by their `k8s-*` tags), the
//! admission webhook's validation calls, and the status listener the Helm chart probes.

mod common;

use bytes::Bytes;
use common::{send, Proxy, Reply, Upstream};
use serde_json::{json, Value};

const ZEROS: &str = "00000000000000000000000000000000";

/// `POST /config` as KIC sends it: the raw declarative JSON, both flags on.
async fn push(proxy: &Proxy, config: &Value) -> Reply {
    send(
        proxy.admin.expect("admin"),
        "POST",
        "/config?check_hash=1&flatten_errors=1",
        &[("content-type", "application/json")],
        Bytes::from(config.to_string()),
    )
    .await
}

async fn post_json(proxy: &Proxy, target: &str, body: &Value) -> Reply {
    send(
        proxy.admin.expect("admin"),
        "POST",
        target,
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await
}

fn k8s_tags(kind: &str, name: &str, uid: &str) -> Value {
    json!([
        format!("k8s-name:{name}"),
        "k8s-namespace:default",
        format!("k8s-kind:{kind}"),
        "k8s-version:v1",
        format!("k8s-uid:{uid}"),
    ])
}

/// What KIC would translate an Ingress with two paths and a redirect HTTPRoute filter into.
fn translated(up: &Upstream, bad: bool) -> Value {
    let paths = if bad {
        json!(["~/echo$", "echo-without-slash"])
    } else {
        json!(["~/echo$", "/echo/"])
    };
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": "default.echo.80", "host": "default.echo.80.svc", "port": 80, "protocol": "http",
            "id": "4e3cb785-a8d0-5866-aa05-117f7c64f24d",
            "tags": k8s_tags("Service", "echo", "7b0e3e0c-3a51-4c2f-9a6e-3c3b6c1f0a01"),
            "routes": [
                {
                    "name": "default.echo.echo.80", "id": "4deff45c-4095-55d2-80ab-aea40c0ac7bd",
                    "paths": paths, "strip_path": false, "preserve_host": true,
                    "https_redirect_status_code": 426, "path_handling": "v0",
                    "tags": k8s_tags("Ingress", "echo", "0d5e1a5c-8a57-4c57-9a39-1d6c2f0e4b11"),
                },
                {
                    "name": "default.moved.0", "paths": ["/old"],
                    "tags": k8s_tags("HTTPRoute", "moved", "5f1d3c2b-0000-4000-8000-00000000beef"),
                    "plugins": [{
                        "name": "redirect",
                        "config": { "status_code": 308, "location": "https://example.test/new", "keep_incoming_path": true },
                        "tags": k8s_tags("HTTPRoute", "moved", "5f1d3c2b-0000-4000-8000-00000000beef"),
                    }],
                },
            ],
        }],
        "upstreams": [{
            "name": "default.echo.80.svc", "algorithm": "round-robin",
            "tags": k8s_tags("Service", "echo", "7b0e3e0c-3a51-4c2f-9a6e-3c3b6c1f0a01"),
            "targets": [{ "target": up.addr.to_string(), "weight": 100 }],
        }],
        "plugins": [{
            "name": "rate-limiting", "route": "default.echo.echo.80",
            "config": { "minute": if bad { json!("many") } else { json!(1000) }, "policy": "local" },
            "tags": k8s_tags("KongPlugin", "limit", "9b3c7e0a-1f2d-4e5f-8a9b-0c1d2e3f4a5b"),
        }],
    })
}

#[tokio::test]
async fn a_fake_kic_drives_an_empty_gateway_from_not_ready_to_serving() {
    let up = Upstream::start().await;
    let status_port = common::free_port();
    let status_listen = format!("127.0.0.1:{status_port}");
    let proxy = Proxy::start_empty(&["--status-listen", &status_listen]).await;
    let status_addr: std::net::SocketAddr = status_listen.parse().unwrap();

    // Startup: GET / must carry a strict x.y.z version >= 3.4.1 (>= 3.9 for redirect), a
    // DB-less database, a router flavor and numeric listener ports.
    let root = proxy.admin("GET", "/", "").await.json();
    let version = root["version"].as_str().unwrap();
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{version}");
    assert!(parts >= vec![3, 9, 0], "{version}");
    assert!(!version.contains("enterprise"));
    assert_eq!(root["configuration"]["database"], "off");
    assert_eq!(
        root["configuration"]["router_flavor"],
        "traditional_compatible"
    );
    let listener = &root["configuration"]["proxy_listeners"][0];
    assert_eq!(listener["port"], json!(proxy.addr.port()), "{root}");
    assert_eq!(listener["ssl"], false);
    assert!(root["plugins"]["available_on_server"]["redirect"]["priority"].is_number());

    // Nothing loaded: 32 zeros (KIC pushes on them) and not ready.
    let status = proxy.admin("GET", "/status", "").await.json();
    assert_eq!(status["configuration_hash"], ZEROS);
    let ready = send(status_addr, "GET", "/status/ready", &[], Bytes::new()).await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    // KIC's stub for an empty cluster flips the gateway to ready.
    let stub = json!({ "_format_version": "3.0", "upstreams": [{ "name": "kong" }] });
    let r = push(&proxy, &stub).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ready = send(status_addr, "GET", "/status/ready", &[], Bytes::new()).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let hash = proxy.admin("GET", "/status", "").await.json()["configuration_hash"].clone();
    let hash = hash.as_str().unwrap().to_string();
    assert_eq!(hash.len(), 32);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()) && hash != ZEROS);

    // The translated cluster state serves; the same push again is a 304 that changes nothing.
    let good = translated(&up, false);
    let r = push(&proxy, &good).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let generation = proxy.admin("GET", "/status", "").await.json()["config"]["generation"].clone();
    let r = proxy
        .get("/echo/hello", &[("host", "echo.example.test")])
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(up.last().uri, "/echo/hello");
    assert_eq!(up.last().header("host"), Some("echo.example.test"));
    let r = proxy.get("/old/page?x=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://example.test/old/page?x=1")
    );
    let r = push(&proxy, &good).await;
    assert_eq!(r.status, 304, "{}", r.text());
    let status = proxy.admin("GET", "/status", "").await.json();
    assert_eq!(status["config"]["generation"], generation);

    // A broken Ingress path and KongPlugin: 400, each error tied to the object by its tags;
    // the running configuration keeps serving.
    let r = push(&proxy, &translated(&up, true)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], 14);
    assert_eq!(body["name"], "invalid declarative configuration");
    let flattened = body["flattened_errors"]
        .as_array()
        .expect("flattened_errors");
    let by_uid = |uid: &str| {
        flattened
            .iter()
            .find(|e| {
                e["entity_tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!(format!("k8s-uid:{uid}"))))
            })
            .unwrap_or_else(|| panic!("no error for {uid}: {body:#}"))
    };
    let route = by_uid("0d5e1a5c-8a57-4c57-9a39-1d6c2f0e4b11");
    assert_eq!(route["entity_type"], "route");
    assert_eq!(route["entity_name"], "default.echo.echo.80");
    assert_eq!(route["entity_id"], "4deff45c-4095-55d2-80ab-aea40c0ac7bd");
    assert_eq!(route["errors"][0]["type"], "field");
    assert_eq!(route["errors"][0]["field"], "paths.2");
    let plugin = by_uid("9b3c7e0a-1f2d-4e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(plugin["entity_type"], "plugin");
    assert_eq!(plugin["entity_name"], "rate-limiting");
    assert_eq!(plugin["errors"][0]["field"], "config.minute");
    assert_eq!(flattened.len(), 2, "{body:#}");
    let r = proxy.get("/echo/still", &[]).await;
    assert_eq!(r.status, 200);

    // The status listener answers probes only.
    let r = send(status_addr, "GET", "/services", &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    let r = send(status_addr, "GET", "/status", &[], Bytes::new()).await;
    assert_eq!(
        r.json()["configuration_hash"].as_str().map(str::len),
        Some(32)
    );
}

#[tokio::test]
async fn the_admission_webhook_calls_validate_entities_without_applying_them() {
    let proxy = Proxy::start_empty(&[]).await;
    let route = json!({
        "name": "default.echo.echo.80", "paths": ["~/echo$", "/echo/"], "protocols": ["http", "https"],
        "service": { "id": "4e3cb785-a8d0-5866-aa05-117f7c64f24d" },
    });
    let r = post_json(&proxy, "/schemas/routes/validate", &route).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["message"], "schema validation successful");

    let bad = json!({ "name": "r", "paths": ["/ok", "~/unclosed("] });
    let r = post_json(&proxy, "/schemas/routes/validate", &bad).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["name"], "schema violation");
    assert!(
        body["message"].as_str().unwrap().contains("paths.2"),
        "{body}"
    );

    let plugin = json!({ "name": "redirect", "config": { "location": "https://example.test" } });
    let r = post_json(&proxy, "/schemas/plugins/validate", &plugin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let plugin =
        json!({ "name": "redirect", "config": { "status_code": 700 }, "route": { "id": "x" } });
    let r = post_json(&proxy, "/schemas/plugins/validate", &plugin).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("config.status_code"), "{message}");
    assert!(message.contains("config.location"), "{message}");

    // A KongVault: Kong's env vault under a prefix; other vaults are not installed.
    let vault = json!({ "name": "env", "prefix": "app-secrets", "config": { "prefix": "APP_" } });
    let r = post_json(&proxy, "/schemas/vaults/validate", &vault).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let vault = json!({ "name": "aws", "prefix": "Bad_Prefix" });
    let r = post_json(&proxy, "/schemas/vaults/validate", &vault).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("vault 'aws' is not installed"),
        "{message}"
    );
    assert!(message.contains("prefix"), "{message}");

    // Nothing was applied.
    let status = proxy.admin("GET", "/status", "").await.json();
    assert_eq!(status["configuration_hash"], ZEROS);
    let r = post_json(&proxy, "/schemas/widgets/validate", &json!({})).await;
    assert_eq!(r.status, 404);
}

/// KIC's own translator outputs (its golden tests, see tests/data/kic/README.md) load, and
/// one of them serves once its targets point at a test upstream.
#[tokio::test]
async fn kic_golden_outputs_load_and_serve() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kic");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/data/kic") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (ok, err) = common::check_file(&text, "kong.yaml");
        assert!(ok, "{}: {err}", path.display());
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} golden files");

    // Its two targets (pod addresses) become two test servers.
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let text = std::fs::read_to_string(dir.join("same-name-services-single-backend.yaml"))
        .unwrap()
        .replace("10.244.0.5:9443", &a.addr.to_string())
        .replace("10.244.0.4:9443", &b.addr.to_string());
    let proxy = Proxy::start(&text).await;
    for _ in 0..2 {
        let r = proxy.get("/test/x", &[("host", "example.test")]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    }
    // Round-robin over both pods; strip_path and preserve_host as KIC set them.
    for up in [&a, &b] {
        assert_eq!(up.seen().len(), 1, "{:?}", up.seen());
        assert_eq!(up.last().uri, "/x");
        assert_eq!(up.last().header("host"), Some("example.test"));
    }
}

/// KIC's outputs with `expression` routes (its `expression-routes-on` goldens) load under
/// `--router-flavor expressions`, are refused under the traditional flavors with a located
/// error, and serve: a Gateway API URL rewrite uses the regex captures of an expression.
#[tokio::test]
async fn kic_expression_outputs_load_and_serve_under_the_expressions_flavor() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kic/expressions");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/data/kic/expressions") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let flavor = ["--router-flavor", "expressions"];
        let (ok, err) = common::check_file_with(&text, "kong.yaml", &flavor);
        assert!(ok, "{}: {err}", path.display());
        if text.contains("expression:") {
            let (ok, err) = common::check_file(&text, "kong.yaml");
            assert!(!ok, "{} loads without the flavor", path.display());
            assert!(
                err.contains(".expression: unknown field `expression`"),
                "{}: {err}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} golden files");

    let up = Upstream::start().await;
    let text = std::fs::read_to_string(dir.join("httproute-url-rewrite-path-prefix.yaml"))
        .unwrap()
        .replace(
            "host: httproute.default.httproute-testing.0\n  id:",
            "host: 127.0.0.1\n  id:",
        )
        .replace("port: 8080", &format!("port: {}", up.addr.port()));
    let proxy = Proxy::start_with(&text, &["--router-flavor", "expressions"]).await;
    let r = proxy
        .get("/prefix/a/b?x=1", &[("host", "example.test")])
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(up.last().uri, "/new-prefix/a/b?x=1");
    assert_eq!(up.last().header("host"), Some("example.test"));
    // `^/prefix(/.*)` needs the slash; `== "/prefix"` is exact.
    let r = proxy.get("/prefixes", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(up.seen().len(), 1);
}

/// Under the expressions flavor, routes written both ways live in one config: expression
/// routes outrank traditional ones, priorities order expressions, `http.headers.*` and
/// `http.queries.*` read the request, http routes accept `sources`, and every route only
/// takes the protocols it lists. The GET / report says which flavor runs.
#[tokio::test]
async fn expression_and_traditional_routes_together() {
    let (a, b, c) = (
        Upstream::start_named("a").await,
        Upstream::start_named("b").await,
        Upstream::start_named("c").await,
    );
    let config = format!(
        r#"_format_version: "3.0"
services:
- name: a
  url: http://{a}
  routes:
  - name: traditional
    paths: [/api]
- name: b
  url: http://{b}
  routes:
  - name: v2
    expression: http.path ^= "/api" && http.headers.x_version == "2"
    priority: 10
  - name: beta
    expression: http.path ^= "/api" && http.queries.beta == "on"
    priority: 20
    protocols: [http]
- name: c
  url: http://{c}
  routes:
  - name: local
    sources:
    - ip: 127.0.0.0/8
    paths: [/local]
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    );
    let proxy = Proxy::start_with_admin(&config, &["--router-flavor", "expressions"]).await;
    let who = |r: &Reply| r.header("x-upstream-name").map(str::to_owned);
    let r = proxy.get("/api/x", &[]).await;
    assert_eq!(who(&r).as_deref(), Some("a"), "{}", proxy.stderr());
    let r = proxy.get("/api/x", &[("x-version", "2")]).await;
    assert_eq!(who(&r).as_deref(), Some("b"));
    let r = proxy.get("/api/x?beta=on", &[("x-version", "3")]).await;
    assert_eq!(who(&r).as_deref(), Some("b"));
    // strip_path (default true) strips what `http.path ^= "/api"` matched.
    assert_eq!(b.last().uri, "/x?beta=on");
    let r = proxy.get("/local/x", &[]).await;
    assert_eq!(who(&r).as_deref(), Some("c"));
    assert_eq!(a.seen().len(), 1);
    assert_eq!(b.seen().len(), 2);

    let r = proxy.admin("GET", "/", "").await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["configuration"]["router_flavor"], "expressions");

    // A bad expression is refused with Kong's message, and the running config keeps serving.
    let bad = config.replace(
        r#"http.headers.x_version == "2""#,
        r#"http.headers.x_version == 2"#,
    );
    let r = proxy.admin("POST", "/config?flatten_errors=1", &bad).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("Router Expression failed validation"),
        "{}",
        r.text()
    );
    let r = proxy.get("/api/x", &[("x-version", "2")]).await;
    assert_eq!(who(&r).as_deref(), Some("b"));
}

/// `--plugins-file`: custom and cloned plugins kept beside the pushed configuration survive
/// every KIC push; a push that defines one of them again is refused with a located error; a
/// plugins file holding other entities is refused at startup.
#[tokio::test]
async fn a_plugins_file_survives_kic_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/hello-header");
    let custom = sluice::plugins::lua::embed::embed_dir(&base, Some("hello-header"), false)
        .expect("plugin dir");
    let library = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{custom}cloned_plugins:\n  - name: hello-again\n    ref: hello-header\n    priority: 5\n"
    );
    let lib_path = dir.path().join("plugins.yaml");
    std::fs::write(&lib_path, &library).unwrap();
    let lib_arg = lib_path.display().to_string();

    let up = Upstream::start().await;
    let proxy = Proxy::start_empty(&["--plugins-file", &lib_arg]).await;
    let pushed = json!({
        "_format_version": "3.0",
        "services": [{
            "name": "echo", "host": "127.0.0.1", "port": up.addr.port(), "protocol": "http",
            "routes": [{ "name": "echo", "paths": ["/echo"],
                         "tags": k8s_tags("Ingress", "echo", "uid-echo"),
                         "plugins": [{ "name": "hello-again", "config": { "mode": "loud" } }] }],
        }],
    });
    for _ in 0..2 {
        let r = push(&proxy, &pushed).await;
        assert!(r.status == 201 || r.status == 304, "{}", r.text());
        let r = proxy.get("/echo", &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
        assert_eq!(r.header("x-hello-mode"), Some("loud"));
    }
    let node = proxy.admin("GET", "/", "").await.json();
    assert!(
        node["plugins"]["available_on_server"]["hello-header"].is_object(),
        "{node}"
    );

    // The push defines hello-header itself: refused, located on its definition.
    let mut clash = pushed.clone();
    clash["custom_plugins"] = serde_json::from_str::<Value>(&{
        let snap = sluice::snapshot::load_str(&library, "lib.yaml", 1).expect("library loads");
        let c = &snap.config.custom_plugins[0];
        json!([{ "name": c.name, "handler": c.handler, "schema": c.schema }]).to_string()
    })
    .unwrap();
    let r = push(&proxy, &clash).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("also defined in the plugins file"),
        "{}",
        r.text()
    );
    let r = proxy.get("/echo", &[]).await;
    assert_eq!(r.header("x-hello-mode"), Some("loud"));

    // A plugins file with other entities is refused before anything is served.
    std::fs::write(
        &lib_path,
        format!("{library}services:\n  - name: s\n    url: http://x\n"),
    )
    .unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["--plugins-file", &lib_arg, "check"])
        .arg(&lib_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds only custom_plugins and cloned_plugins"),
        "{err}"
    );
}

/// go-kong's `fillConfigRecord` (the Kong Ingress Controller fills every plugin config from
/// `GET /schemas/plugins/{name}` before pushing): a field already set is kept; a record that is
/// required or given is filled recursively; records in a given array of records are filled; any
/// other field gets its default, or an explicit null.
fn fill_like_kic(schema: &Value, config: &Value) -> Value {
    let mut out = config.as_object().cloned().unwrap_or_default();
    for field in schema["fields"].as_array().into_iter().flatten() {
        let (name, def) = field.as_object().unwrap().iter().next().unwrap();
        let given = config.get(name).filter(|v| !v.is_null());
        let ty = def["type"].as_str().unwrap_or("");
        match given {
            Some(Value::Object(_)) if def.get("keys").is_some() => continue,
            Some(Value::Array(a)) if def["elements"]["type"] == "record" && ty != "record" => {
                let filled = a
                    .iter()
                    .map(|r| fill_like_kic(&def["elements"], r))
                    .collect();
                out.insert(name.clone(), Value::Array(filled));
                continue;
            }
            Some(v) if !v.is_object() => continue,
            _ => {}
        }
        if ty == "record" && (given.is_some() || def["required"] == true) {
            let sub = fill_like_kic(def, given.unwrap_or(&json!({})));
            out.insert(name.clone(), sub);
            continue;
        }
        out.insert(
            name.clone(),
            def.get("default").cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// Every bundled plugin's schema is served in Kong's shape, and a config filled from it the
/// way KIC fills it (defaults, explicit nulls) validates and loads.
#[tokio::test]
async fn plugin_schemas_are_served_as_kong_serves_them_and_what_they_advertise_loads() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_empty(&[]).await;
    // What a user writes for the plugins that require something.
    let given = json!({
        "acl": { "allow": ["admins"] },
        "file-log": { "path": "/dev/null" },
        "http-log": { "http_endpoint": format!("http://{}/log", up.addr) },
        "ip-restriction": { "allow": ["127.0.0.1"] },
        "post-function": { "access": ["return"] },
        "pre-function": { "access": ["return"] },
        "rate-limiting": { "minute": 100, "redis": { "host": "127.0.0.1" } },
        "redirect": { "location": "https://example.test" },
        "response-ratelimiting": { "limits": { "sms": { "minute": 10 } } },
    });
    let node = proxy.admin("GET", "/", "").await.json();
    let names: Vec<String> = node["plugins"]["available_on_server"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(names.len() >= 18, "{names:?}");
    let mut plugins = Vec::new();
    for name in &names {
        let r = proxy
            .admin("GET", &format!("/schemas/plugins/{name}"), "")
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let schema = r.json();
        assert!(schema["entity_checks"].is_array(), "{name}: {schema}");
        let fields = schema["fields"].as_array().expect("fields");
        let config = fields
            .iter()
            .find_map(|f| f.get("config"))
            .unwrap_or_else(|| panic!("{name}: no config field"));
        assert_eq!(config["type"], "record", "{name}");
        let filled = fill_like_kic(config, given.get(name).unwrap_or(&json!({})));
        let plugin = json!({ "name": name, "config": filled });
        let r = post_json(&proxy, "/schemas/plugins/validate", &plugin).await;
        assert_eq!(r.status, 200, "{name}: {plugin}\n{}", r.text());
        plugins.push(plugin);
    }
    // Kong's shapes for a few well-known fields.
    let key_auth = proxy
        .admin("GET", "/schemas/plugins/key-auth", "")
        .await
        .json();
    assert_eq!(key_auth["fields"][0]["consumer"]["type"], "foreign");
    assert!(key_auth["fields"][0]["consumer"]["eq"].is_null());
    let conf = key_auth["fields"][2]["config"]["fields"]
        .as_array()
        .unwrap();
    let key_names = conf.iter().find_map(|f| f.get("key_names")).unwrap();
    assert_eq!(key_names["default"], json!(["apikey"]));
    assert_eq!(key_names["type"], "array");
    let r = proxy
        .admin("GET", "/schemas/plugins/no-such-plugin", "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No plugin named 'no-such-plugin'");

    // Applied together (each on a route of its own), they load.
    let routes: Vec<Value> = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| json!({ "name": format!("r{i}"), "paths": [format!("/r{i}")], "plugins": [p] }))
        .collect();
    let config = json!({
        "_format_version": "3.0",
        "services": [{ "name": "s", "host": "127.0.0.1", "port": up.addr.port(), "routes": routes }],
    });
    let r = push(&proxy, &config).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Lists every page of a collection the way go-kong does: `size`, then the `offset` of each
/// answer until it is null.
async fn list_all(proxy: &Proxy, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset: Option<String> = None;
    for _ in 0..100 {
        let target = match &offset {
            None => format!("{path}?size=2"),
            Some(o) => format!("{path}?size=2&offset={o}"),
        };
        let r = proxy.admin("GET", &target, "").await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let body = r.json();
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["offset"].as_str() {
            Some(o) => offset = Some(o.to_owned()),
            None => return out,
        }
    }
    panic!("{path}: more than 100 pages");
}

/// KIC recovers its last good configuration from a running gateway by listing every
/// collection (decK's dump through go-kong, paged): each answers, nested entities name their
/// parent, health checks and references come back as written, never a resolved secret.
#[tokio::test]
async fn collections_list_paged_as_kic_recovers_the_last_good_config() {
    let (cert, key) = common::self_signed_pems();
    let config = json!({
        "_format_version": "3.0",
        "upstreams": [{
            "name": "pods", "algorithm": "least-connections", "tags": ["k8s-name:pods"],
            "healthchecks": { "passive": { "unhealthy": { "http_failures": 3 } } },
            "targets": [ { "target": "10.0.0.1:80" }, { "target": "10.0.0.2:80", "weight": 50 },
                         { "target": "10.0.0.3:80" } ],
        }],
        "services": [{ "name": "s", "host": "pods", "routes": [{ "name": "r", "paths": ["/"] }] }],
        "certificates": [{ "cert": cert, "key": "{vault://env/sluice-kic-test-key}", "snis": ["a.test", "b.test"] }],
        "consumers": [{ "username": "ann", "keyauth_credentials": [{ "key": "k1" }], "acls": [{ "group": "g" }] }],
    });
    let proxy = Proxy::start_with_env(
        "_format_version: \"3.0\"\n",
        &[],
        &[("SLUICE_KIC_TEST_KEY", &key)],
    )
    .await;
    let r = push(&proxy, &config).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let upstreams = list_all(&proxy, "/upstreams").await;
    assert_eq!(upstreams.len(), 1);
    let up = &upstreams[0];
    assert_eq!(up["algorithm"], "least-connections");
    assert_eq!(
        up["healthchecks"]["passive"]["unhealthy"]["http_failures"],
        3
    );
    assert!(up.get("targets").is_none());
    let up_id = up["id"].as_str().unwrap();

    let targets = list_all(&proxy, "/targets").await;
    assert_eq!(targets.len(), 3);
    let nested = list_all(&proxy, "/upstreams/pods/targets").await;
    assert_eq!(nested, targets);
    assert!(targets.iter().all(|t| t["upstream"]["id"] == up_id));
    assert_eq!(targets[1]["target"], "10.0.0.2:80");
    assert_eq!(targets[1]["weight"], 50);

    let certs = list_all(&proxy, "/certificates").await;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["key"], "{vault://env/sluice-kic-test-key}");
    assert_eq!(certs[0]["snis"], json!(["a.test", "b.test"]));
    let snis = list_all(&proxy, "/snis").await;
    assert_eq!(snis.len(), 2);
    assert_eq!(snis[0]["certificate"]["id"], certs[0]["id"]);

    let consumers = list_all(&proxy, "/consumers").await;
    let keys = list_all(&proxy, "/key-auths").await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key"], "k1");
    assert_eq!(keys[0]["consumer"]["id"], consumers[0]["id"]);
    assert_eq!(list_all(&proxy, "/acls").await.len(), 1);
    for empty in [
        "/hmac-auths",
        "/oauth2",
        "/mtls-auths",
        "/keys",
        "/key-sets",
        "/vaults",
    ] {
        assert!(list_all(&proxy, empty).await.is_empty(), "{empty}");
    }
    // Tags filter; a bad size or offset is Kong's 400.
    let r = proxy
        .admin("GET", "/upstreams?tags=k8s-name:pods", "")
        .await
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    let r = proxy.admin("GET", "/upstreams?tags=other", "").await.json();
    assert!(r["data"].as_array().unwrap().is_empty());
    assert_eq!(proxy.admin("GET", "/targets?size=0", "").await.status, 400);
    assert_eq!(
        proxy.admin("GET", "/targets?offset=%%%", "").await.status,
        400
    );
    let all = proxy.admin("GET", "/targets", "").await.json();
    assert!(all["offset"].is_null() && all["next"].is_null());
    assert!(!proxy
        .admin("GET", "/certificates", "")
        .await
        .text()
        .contains("PRIVATE KEY"));
}
