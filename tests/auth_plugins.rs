//! Bundled auth plugins end to end: key-auth, basic-auth, acl, and the consumer they identify
//! selecting consumer-scoped plugin instances.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::{render, Proxy, Upstream};
use sha1::{Digest, Sha1};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const ALICE_KEY_ID: &str = "a11ce000-0000-4000-8000-0000000000a1";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const CAROL: &str = "ca401000-0000-4000-8000-000000000003";
const ANON: &str = "a0000000-0000-4000-8000-000000000004";

/// Kong's stored form of a basic-auth password.
fn kong_hash(password: &str, consumer_id: &str) -> String {
    let mut h = Sha1::new();
    h.update(password.as_bytes());
    h.update(consumer_id.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

const CONFIG: &str = r#"_format_version: "3.0"
consumers:
  - username: alice
    id: {alice}
    custom_id: cust-alice
    keyauth_credentials:
      - key: alice-key
        id: {alice_key_id}
    basicauth_credentials:
      - username: alice
        password: wonderland
    acls:
      - group: admins
      - group: staff
  - username: bob
    id: {bob}
    keyauth_credentials:
      - key: bob-key
    basicauth_credentials:
      - username: bob
        password: ""
    acls:
      - group: guests
  - username: carol
    id: {carol}
    keyauth_credentials:
      - key: carol-key
    basicauth_credentials:
      - username: carol
        password: {carol_hash}
  - username: anonymous-user
    id: {anon}
services:
  - name: s
    url: http://{upstream}
    routes:
      - {name: key, paths: [/key], plugins: [{name: key-auth}]}
      - name: key-hide
        paths: [/hide]
        plugins:
          - name: key-auth
            config: {hide_credentials: true, key_names: [x_api_key, apikey], realm: gw}
      - name: key-body
        paths: [/body]
        plugins:
          - name: key-auth
            config: {key_in_body: true, key_in_header: false, key_in_query: false, hide_credentials: true}
      - name: key-anon
        paths: [/anon]
        plugins: [{name: key-auth, config: {anonymous: anonymous-user}}]
      - name: key-preflight
        paths: [/preflight]
        plugins: [{name: key-auth, config: {run_on_preflight: false}}]
      - {name: basic, paths: [/basic], plugins: [{name: basic-auth}]}
      - name: basic-hide
        paths: [/bhide]
        plugins: [{name: basic-auth, config: {hide_credentials: true, realm: kong}}]
      - name: either
        paths: [/either]
        plugins:
          - {name: key-auth, config: {anonymous: {anon}}}
          - {name: basic-auth, config: {anonymous: anonymous-user}}
      - name: admins
        paths: [/admins]
        plugins: [{name: key-auth}, {name: acl, config: {allow: [admins, root]}}]
      - name: no-guests
        paths: [/no-guests]
        plugins: [{name: key-auth}, {name: acl, config: {deny: [guests]}}]
      - name: hidden-groups
        paths: [/hidden-groups]
        plugins: [{name: key-auth}, {name: acl, config: {allow: [admins], hide_groups_header: true}}]
      - name: acl-anon
        paths: [/acl-anon]
        plugins: [{name: key-auth, config: {anonymous: anonymous-user}}, {name: acl, config: {allow: [admins]}}]
      - name: acl-alone
        paths: [/acl-alone]
        plugins: [{name: acl, config: {allow: [admins]}}]
      - name: scoped
        paths: [/scoped]
        plugins: [{name: key-auth, config: {anonymous: anonymous-user}}]
plugins:
  - name: request-termination
    route: scoped
    consumer: bob
    config: {status_code: 418, message: "not for bob"}
  - name: request-termination
    consumer: anonymous-user
    route: scoped
    config: {status_code: 402, message: "sign in first"}
"#;

async fn start() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let cfg = render(CONFIG, &[&up])
        .replace("{alice}", ALICE)
        .replace("{alice_key_id}", ALICE_KEY_ID)
        .replace("{bob}", BOB)
        .replace("{carol}", CAROL)
        .replace("{anon}", ANON)
        .replace("{carol_hash}", &kong_hash("carol-pw", CAROL));
    let proxy = Proxy::start(&cfg).await;
    (up, proxy)
}

#[tokio::test]
async fn key_auth_finds_the_key_in_a_header_or_the_query() {
    let (up, proxy) = start().await;

    let r = proxy.get("/key", &[]).await;
    assert_eq!(r.status, 401, "{}", proxy.stderr());
    assert_eq!(r.json()["message"], "No API key found in request");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    assert!(
        up.seen().is_empty(),
        "refused requests must not reach the upstream"
    );

    let r = proxy.get("/key", &[("apikey", "nope")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Key"));

    // Headers a client sends to impersonate someone are replaced.
    let spoof = [
        ("ApiKey", "alice-key"),
        ("x-consumer-username", "root"),
        ("x-anonymous-consumer", "true"),
    ];
    let r = proxy.get("/key/x", &spoof).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some(ALICE));
    assert_eq!(seen.header("x-consumer-custom-id"), Some("cust-alice"));
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    assert_eq!(seen.header("x-credential-identifier"), Some(ALICE_KEY_ID));
    assert_eq!(seen.header("x-anonymous-consumer"), None);
    assert_eq!(
        seen.header("apikey"),
        Some("alice-key"),
        "not hidden by default"
    );

    let r = proxy.get("/key/y?a=1&apikey=bob-key", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some(BOB));
    assert_eq!(seen.header("x-consumer-custom-id"), None);
    assert_eq!(seen.uri, "/y?a=1&apikey=bob-key");

    for (target, headers) in [
        (
            "/key",
            &[("apikey", "alice-key"), ("apikey", "bob-key")][..],
        ),
        ("/key?apikey=alice-key&apikey=bob-key", &[][..]),
    ] {
        let r = proxy.get(target, headers).await;
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(r.json()["message"], "Duplicate API key found");
    }
    let r = proxy.get("/key?apikey=", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
}

#[tokio::test]
async fn key_auth_hide_credentials_strips_the_key_and_realm_is_announced() {
    let (up, proxy) = start().await;
    let r = proxy.get("/hide", &[]).await;
    assert_eq!(r.header("www-authenticate"), Some("Key realm=\"gw\""));

    // `x_api_key` matches the X-Api-Key header, as nginx normalizes names.
    let r = proxy
        .get(
            "/hide?a=1",
            &[("x-api-key", "alice-key"), ("apikey", "other")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(
        seen.header("apikey"),
        Some("other"),
        "only the key used is hidden"
    );
    assert_eq!(seen.uri, "/?a=1");

    let r = proxy.get("/hide?a=%2F&apikey=bob-key&b=c+d", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("bob"));
    assert_eq!(seen.uri, "/?a=%2F&b=c+d", "other arguments kept as sent");
}

#[tokio::test]
async fn key_auth_reads_json_form_and_multipart_bodies() {
    let (up, proxy) = start().await;
    let post = |ctype: &'static str, body: &'static str| {
        let proxy = &proxy;
        async move {
            proxy
                .request_body(
                    "POST",
                    "/body",
                    &[("content-type", ctype)],
                    Bytes::from(body),
                )
                .await
        }
    };

    let r = post("application/json", r#"{"apikey":"alice-key","n":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"n": 1}),
        "key removed from the body"
    );
    assert_eq!(seen.header("content-length"), Some("7"));

    let r = post(
        "application/x-www-form-urlencoded",
        "x=1&apikey=bob-key&y=%2F",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("bob"));
    assert_eq!(&seen.body[..], b"x=1&y=%2F");

    let multipart = "--b0undary\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\ncarol-key\r\n--b0undary\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--b0undary--\r\n";
    let r = post("multipart/form-data; boundary=b0undary", multipart).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("carol"));
    let body = String::from_utf8_lossy(&seen.body);
    assert!(
        !body.contains("carol-key") && body.contains("name=\"f\""),
        "{body}"
    );

    let r = post("application/json", r#"{"apikey":["alice-key","bob-key"]}"#).await;
    assert_eq!(r.json()["message"], "Duplicate API key found");

    // Only the body is searched on this route.
    let r = proxy
        .get("/body?apikey=alice-key", &[("apikey", "alice-key")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
}

#[tokio::test]
async fn key_auth_anonymous_and_preflight() {
    let (up, proxy) = start().await;
    let r = proxy.get("/anon", &[("apikey", "wrong")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some(ANON));
    assert_eq!(seen.header("x-consumer-username"), Some("anonymous-user"));
    assert_eq!(seen.header("x-anonymous-consumer"), Some("true"));
    assert_eq!(seen.header("x-credential-identifier"), None);

    let r = proxy.get("/anon", &[("apikey", "alice-key")]).await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    assert_eq!(seen.header("x-anonymous-consumer"), None);

    let r = proxy.request("OPTIONS", "/preflight", &[]).await;
    assert_eq!(
        r.status,
        200,
        "preflight is not authenticated: {}",
        r.text()
    );
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(proxy.get("/preflight", &[]).await.status, 401);
    assert_eq!(proxy.request("OPTIONS", "/key", &[]).await.status, 401);
}

#[tokio::test]
async fn basic_auth_checks_plain_and_kong_hashed_passwords() {
    let (up, proxy) = start().await;
    let r = proxy.get("/basic", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"service\"")
    );

    let wrong = [
        basic("alice", "wonderlan"),
        basic("alice", ""),
        basic("mallory", "wonderland"),
        basic("carol", &kong_hash("carol-pw", CAROL)[..39]),
        "Basic !!!notbase64".to_string(),
        "Bearer alice-key".to_string(),
    ];
    for auth in &wrong {
        let r = proxy.get("/basic", &[("authorization", auth)]).await;
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.json()["message"], "Unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"service\"")
        );
    }
    assert!(up.seen().is_empty());

    let auth = basic("alice", "wonderland");
    let r = proxy.get("/basic", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some(ALICE));
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    assert_eq!(seen.header("x-credential-identifier"), Some("alice"));
    assert_eq!(seen.header("authorization"), Some(auth.as_str()));

    // A password stored as Kong stores it (sha1 of password and consumer id), as in a decK dump.
    let r = proxy
        .get("/basic", &[("authorization", &basic("carol", "carol-pw"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("x-consumer-username"), Some("carol"));

    // An empty password, and Proxy-Authorization.
    let r = proxy
        .get("/basic", &[("proxy-authorization", &basic("bob", ""))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("x-consumer-username"), Some("bob"));
}

#[tokio::test]
async fn basic_auth_hide_credentials_and_realm() {
    let (up, proxy) = start().await;
    let r = proxy.get("/bhide", &[]).await;
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"kong\""));
    let auth = basic("alice", "wonderland");
    let r = proxy.get("/bhide", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("alice"));
    assert_eq!(seen.header("authorization"), None);
    let r = proxy.get("/bhide", &[("proxy-authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("proxy-authorization"), None);
}

#[tokio::test]
async fn auth_plugins_with_anonymous_combine_as_a_logical_or() {
    let (up, proxy) = start().await;
    let r = proxy
        .get("/either", &[("authorization", &basic("bob", ""))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-username"), Some("bob"));
    assert_eq!(seen.header("x-credential-identifier"), Some("bob"));
    assert_eq!(seen.header("x-anonymous-consumer"), None);

    // key-auth (1250) authenticates first; basic-auth leaves the request alone.
    let r = proxy
        .get(
            "/either",
            &[("apikey", "alice-key"), ("authorization", "Basic bad")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().header("x-credential-identifier"),
        Some(ALICE_KEY_ID)
    );

    // `anonymous` given by id on one plugin and by username on the other.
    let r = proxy.get("/either", &[]).await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some(ANON));
    assert_eq!(seen.header("x-anonymous-consumer"), Some("true"));
}

#[tokio::test]
async fn acl_allows_and_denies_by_consumer_groups() {
    let (up, proxy) = start().await;
    let forbidden = serde_json::json!({"message": "You cannot consume this service"});

    let r = proxy
        .get(
            "/admins",
            &[("apikey", "alice-key"), ("x-consumer-groups", "root")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("x-consumer-groups"), Some("admins, staff"));
    for key in ["bob-key", "carol-key"] {
        let r = proxy.get("/admins", &[("apikey", key)]).await;
        assert_eq!(r.status, 403, "{key}");
        assert_eq!(r.json(), forbidden);
    }
    // The auth plugin runs first: no key is its 401, not acl's.
    assert_eq!(
        proxy.get("/admins", &[]).await.json()["message"],
        "No API key found in request"
    );

    let r = proxy.get("/no-guests", &[("apikey", "bob-key")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), forbidden);
    assert_eq!(
        proxy
            .get("/no-guests", &[("apikey", "alice-key")])
            .await
            .status,
        200
    );
    let r = proxy.get("/no-guests", &[("apikey", "carol-key")]).await;
    assert_eq!(
        r.status, 200,
        "a consumer without groups is not on a deny list"
    );
    assert_eq!(up.last().header("x-consumer-groups"), None);

    let r = proxy
        .get(
            "/hidden-groups",
            &[("apikey", "alice-key"), ("x-consumer-groups", "root")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-consumer-groups"), None);

    // The anonymous consumer has no groups; no consumer at all is a 401 too.
    for (path, headers) in [
        ("/acl-anon", &[("apikey", "nope")][..]),
        ("/acl-alone", &[][..]),
    ] {
        let r = proxy.get(path, headers).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["message"], "Unauthorized");
    }
    assert_eq!(
        proxy
            .get("/acl-anon", &[("apikey", "alice-key")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_authenticated_consumer_selects_consumer_scoped_instances() {
    let (up, proxy) = start().await;
    let r = proxy.get("/scoped", &[("apikey", "bob-key")]).await;
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(r.json()["message"], "not for bob");
    let r = proxy.get("/scoped", &[]).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.json()["message"], "sign in first");
    assert!(up.seen().is_empty());
    let r = proxy.get("/scoped", &[("apikey", "alice-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-consumer-username"), Some("alice"));
}

fn check(text: &str) -> (bool, String) {
    common::check_file(text, "auth.yaml")
}

#[test]
fn invalid_auth_configs_are_located_errors() {
    let (ok, stderr) = check(
        r#"_format_version: "3.0"
consumers:
  - username: alice
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: [/]
plugins:
  - name: acl
    route: r
    config:
      allow: [a]
      deny: [b]
  - name: acl
    service: s
  - name: key-auth
    route: r
    config:
      key_names: [apikey, "bad name"]
      anonymous: ghost
  - name: basic-auth
    service: s
    config:
      anonymous: nobody
      hide_credentials: "yes"
  - name: key-auth
    consumer: alice
"#,
    );
    assert!(!ok, "{stderr}");
    let expect = [
        ":11:5: plugins[0] (acl on route \"r\"): config: exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ":16:5: plugins[1] (acl on service \"s\"): config: at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ":21:27: plugins[2] (key-auth on route \"r\"): config.key_names[2]: bad header name 'bad name'",
        ":27:25: plugins[3] (basic-auth on service \"s\"): config.hide_credentials: expected a boolean",
        ":28:5: plugins[4] (key-auth on consumer \"alice\"): consumer: value must be null",
    ];
    for e in expect {
        assert!(stderr.contains(e), "missing {e:?} in:\n{stderr}");
    }
}

#[test]
fn a_missing_anonymous_consumer_is_a_config_error() {
    let (ok, stderr) = check(
        r#"_format_version: "3.0"
consumers:
  - username: alice
plugins:
  - name: basic-auth
    config:
      anonymous: nobody
  - name: key-auth
    config:
      anonymous: alice
"#,
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            ":5:5: plugins[0] (basic-auth, global): config: anonymous consumer \"nobody\" does not exist"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"alice\""),
        "a consumer username is accepted: {stderr}"
    );
}
