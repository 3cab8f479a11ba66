//! Kong's `KONG_*` environment variables, read where they map to this gateway's settings, so
//! that a deployment written for Kong (the Kong Ingress Controller's Helm chart, a container
//! spec) runs unchanged. Each maps onto the `PROXY_*` variable of the matching flag, unless
//! that one is set (or the flag is given, which wins over both).

/// What one Kong variable becomes.
enum Map {
    /// The same value under another name.
    Same(&'static str),
    /// `proxy_listen`: entries with `ssl` are the TLS listeners, the others the plain ones.
    ProxyListen,
    /// `nginx_worker_processes`: a number, or `auto` (the default: one per core).
    Workers,
    /// `log_level`: nginx's levels onto tracing's.
    LogLevel,
    /// `proxy_access_log`: `off` turns the access log off.
    AccessLog,
    /// `router_flavor`: checked, and the flavor passed on.
    RouterFlavor,
    /// Read by the gateway elsewhere (or equivalent to what it does anyway): nothing to map.
    Known,
}

const MAPPED: &[(&str, Map)] = &[
    ("KONG_DECLARATIVE_CONFIG", Map::Known),
    ("KONG_DATABASE", Map::Known),
    ("KONG_PROXY_LISTEN", Map::ProxyListen),
    ("KONG_ADMIN_LISTEN", Map::Same("PROXY_ADMIN_LISTEN")),
    ("KONG_STATUS_LISTEN", Map::Same("PROXY_STATUS_LISTEN")),
    ("KONG_NGINX_WORKER_PROCESSES", Map::Workers),
    ("KONG_LOG_LEVEL", Map::LogLevel),
    ("KONG_PROXY_ACCESS_LOG", Map::AccessLog),
    ("KONG_ROUTER_FLAVOR", Map::RouterFlavor),
    ("KONG_SSL_CERT", Map::Same("PROXY_SSL_CERT")),
    ("KONG_SSL_CERT_KEY", Map::Same("PROXY_SSL_CERT_KEY")),
    ("KONG_MEM_CACHE_SIZE", Map::Same("PROXY_MEM_CACHE_SIZE")),
    (
        "KONG_UNTRUSTED_LUA_SANDBOX_REQUIRES",
        Map::Same("PROXY_LUA_SANDBOX_REQUIRES"),
    ),
    (
        "KONG_NGINX_HTTP_KEEPALIVE_REQUESTS",
        Map::Same("PROXY_KEEPALIVE_REQUESTS"),
    ),
    ("KONG_TRUSTED_IPS", Map::Known),
    ("KONG_REAL_IP_HEADER", Map::Known),
    ("KONG_REAL_IP_RECURSIVE", Map::Known),
    ("KONG_VAULT_ENV_PREFIX", Map::Known),
];

/// What reading the environment did: variables mapped, and Kong variables left unused (for
/// the startup log, so that an operator sees what has no effect here).
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// `(from, to, value)` of each mapping made.
    pub mapped: Vec<(String, String, String)>,
    /// `KONG_*` names this gateway does not read.
    pub unused: Vec<String>,
}

/// Maps the `KONG_*` variables of `vars` to `PROXY_*` ones that `vars` does not already
/// hold; returns the variables to set and the report. Errors name the variable and the value.
pub fn map_kong_vars(
    vars: &[(String, String)],
) -> Result<(Vec<(String, String)>, Applied), String> {
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut applied = Applied::default();
    let mut put = |from: &str, to: &str, value: String, set: &mut Vec<(String, String)>| {
        if get(to).is_none() {
            applied
                .mapped
                .push((from.to_string(), to.to_string(), value.clone()));
            set.push((to.to_string(), value));
        }
    };
    for (name, value) in vars {
        if !name.starts_with("KONG_") {
            continue;
        }
        let Some((_, map)) = MAPPED.iter().find(|(n, _)| n == name) else {
            applied.unused.push(name.clone());
            continue;
        };
        let bad = |why: &str| format!("{name}={value:?}: {why}");
        match map {
            Map::Known => {}
            Map::Same(to) => put(name, to, value.clone(), &mut set),
            Map::ProxyListen => {
                let list = crate::listen::Listener::parse_list(value).map_err(|e| bad(&e))?;
                let (tls, plain): (Vec<_>, Vec<_>) = list.into_iter().partition(|l| l.ssl);
                let join = |l: Vec<crate::listen::Listener>| {
                    if l.is_empty() {
                        "off".to_string()
                    } else {
                        l.iter()
                            .map(|l| l.kong_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                };
                put(name, "PROXY_LISTEN", join(plain), &mut set);
                put(name, "PROXY_LISTEN_TLS", join(tls), &mut set);
            }
            Map::Workers => match value.trim() {
                "auto" => {}
                n if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                    put(name, "PROXY_WORKERS", n.to_string(), &mut set)
                }
                _ => return Err(bad("expected a positive number or `auto`")),
            },
            Map::LogLevel => {
                let level =
                    match value.trim() {
                        "debug" => "debug",
                        "info" | "notice" => "info",
                        "warn" => "warn",
                        "error" | "crit" | "alert" | "emerg" => "error",
                        _ => return Err(bad(
                            "expected one of debug, info, notice, warn, error, crit, alert, emerg",
                        )),
                    };
                put(name, "PROXY_LOG_LEVEL", level.to_string(), &mut set);
            }
            Map::AccessLog => {
                if value.trim() == "off" {
                    put(name, "PROXY_NO_ACCESS_LOG", "true".into(), &mut set);
                }
            }
            Map::RouterFlavor => match value.trim() {
                "traditional" | "traditional_compatible" | "expressions" => {
                    put(name, "PROXY_ROUTER_FLAVOR", value.trim().into(), &mut set)
                }
                _ => {
                    return Err(bad(
                        "expected traditional, traditional_compatible or expressions",
                    ))
                }
            },
        }
    }
    Ok((set, applied))
}

/// Kong's booleans in kong.conf and KONG_* variables: on/off (and true/false).
pub fn parse_on_off(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{v:?}: expected on or off")),
    }
}

/// A Kong version as `GET /` reports it: `x.y.z`, optionally with a pre-release or build
/// suffix.
pub fn parse_semver(v: &str) -> Result<String, String> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u32>().is_ok())
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?}: expected a version x.y.z (Kong's, e.g. 3.9.1)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::map_kong_vars;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kong_variables_of_the_helm_chart_map_onto_flags() {
        let (set, applied) = map_kong_vars(&vars(&[
            (
                "KONG_PROXY_LISTEN",
                "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384",
            ),
            ("KONG_ADMIN_LISTEN", "0.0.0.0:8444 http2 ssl reuseport backlog=16384"),
            ("KONG_STATUS_LISTEN", "0.0.0.0:8100"),
            ("KONG_NGINX_WORKER_PROCESSES", "2"),
            ("KONG_LOG_LEVEL", "notice"),
            ("KONG_PROXY_ACCESS_LOG", "/dev/stdout"),
            ("KONG_ROUTER_FLAVOR", "traditional"),
            ("KONG_LUA_PACKAGE_PATH", "/opt/?.lua;;"),
            ("PROXY_WORKERS", "4"),
        ]))
        .unwrap();
        let get = |k: &str| set.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("PROXY_LISTEN"),
            Some("0.0.0.0:8000 reuseport backlog=16384")
        );
        assert_eq!(
            get("PROXY_LISTEN_TLS"),
            Some("0.0.0.0:8443 http2 ssl reuseport backlog=16384")
        );
        assert_eq!(
            get("PROXY_ADMIN_LISTEN"),
            Some("0.0.0.0:8444 http2 ssl reuseport backlog=16384")
        );
        assert_eq!(get("PROXY_STATUS_LISTEN"), Some("0.0.0.0:8100"));
        assert_eq!(get("PROXY_WORKERS"), None, "PROXY_WORKERS is already set");
        assert_eq!(get("PROXY_LOG_LEVEL"), Some("info"));
        assert_eq!(get("PROXY_NO_ACCESS_LOG"), None);
        assert_eq!(get("PROXY_ROUTER_FLAVOR"), Some("traditional"));
        assert_eq!(applied.unused, ["KONG_LUA_PACKAGE_PATH"]);

        let err = map_kong_vars(&vars(&[("KONG_NGINX_WORKER_PROCESSES", "many")])).unwrap_err();
        assert!(
            err.starts_with("KONG_NGINX_WORKER_PROCESSES=\"many\""),
            "{err}"
        );
        let (set, _) = map_kong_vars(&vars(&[("KONG_PROXY_ACCESS_LOG", "off")])).unwrap();
        assert_eq!(set, vars(&[("PROXY_NO_ACCESS_LOG", "true")]));
    }
}
