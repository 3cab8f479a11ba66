//! Bad configuration: every error reported at once with file, line, column and entity path.

mod common;

use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(common::binary())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SEVERAL_MISTAKES: &str = r#"_format_version: "3.0"
services:
  - name: users
    url: http://users.internal:8080
    retries: 99999
    routes:
      - name: list
        paths: [/users, "users-without-slash"]
        hostz: [x]
  - name: users
    host: "bad host"
routes:
  - name: orphan
    service: nowhere
    paths: ["~/(unclosed"]
  - name: wild
    service: users
    hosts: ["a.*.com"]
plugins:
  - name: no-such-plugin
    route: list
  - name: request-termination
    service: users
    config:
      status_code: "teapot"
"#;

#[test]
fn check_reports_every_mistake_with_location() {
    let (ok, stdout, stderr) = check(SEVERAL_MISTAKES);
    assert!(!ok, "check must fail");
    assert!(stdout.is_empty(), "errors go to stderr: {stdout}");
    let expect = [
        ":5:14: services[0].retries: value 99999 out of range",
        ":8:25: services[0].routes[0].paths[1]: invalid path \"users-without-slash\"",
        ":9:9: services[0].routes[0].hostz: unknown field `hostz`",
        ":10:11: services[1].name: duplicate name \"users\"",
        ":11:11: services[1].host: invalid host \"bad host\"",
        ":14:14: routes[0].service: service \"nowhere\" does not exist",
        ":15:13: routes[0].paths[0]: invalid regex path",
        ":18:13: routes[1].hosts[0]: invalid wildcard host \"a.*.com\"",
        ":20:5: plugins[0] (no-such-plugin on route \"list\"): plugin \"no-such-plugin\" is not available",
        ":25:20: plugins[1] (request-termination on service \"users\"): config.status_code: expected an integer",
    ];
    for e in expect {
        assert!(stderr.contains(e), "missing {e:?} in:\n{stderr}");
    }
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
    assert!(stderr.trim_end().ends_with("10 errors"), "{stderr}");
}

#[test]
fn check_prints_a_summary_on_success() {
    let (ok, stdout, stderr) = check(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:1\n    routes:\n      - paths: [/]\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("OK: 1 services, 1 routes, 0 plugins"),
        "{stdout}"
    );
}

#[test]
fn yaml_syntax_error_is_located() {
    let (ok, _, stderr) = check("_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n");
    assert!(!ok);
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
    assert!(stderr.contains("invalid YAML"), "{stderr}");
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/kong.yaml.example");
    let out = Command::new(common::binary())
        .arg("check")
        .arg(example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_refuses_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, SEVERAL_MISTAKES).unwrap();
    let out = Command::new(common::binary())
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10 errors"), "{stderr}");
}

#[test]
fn a_condition_with_a_syntax_error_is_located_with_proxy_check() {
    let (ok, _, stderr) = check(
        "_format_version: \"3.0\"\nroutes:\n  - name: r\n    paths: [/]\nplugins:\n  - name: request-termination\n    route: r\n    condition: 'http.path.startsWith(\"/x\"'\n",
    );
    assert!(!ok);
    assert!(stderr.contains("bad.yaml:8:16: plugins[0] (request-termination on route \"r\"): condition: invalid CEL expression"), "{stderr}");
}

/// Regression: schema errors name array elements from 1 (as Kong does) and were located one
/// element too far.
#[test]
fn schema_errors_in_arrays_point_at_the_element() {
    let text = r#"_format_version: "3.0"
plugins:
  - name: ip-restriction
    config:
      allow:
        - 10.0.0.1
        - not-an-ip
        - 10.0.0.3
"#;
    let err = sluice::snapshot::load_str(text, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("kong.yaml:7:11:"), "{err}");
    assert!(err.contains("config.allow[2]"), "{err}");
}
