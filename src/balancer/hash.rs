//! The value `consistent-hashing` hashes, taken from the request as Kong does: `hash_on`, and
//! `hash_fallback` when that gives nothing. With neither, the value is empty (every request
//! then lands on the same point of the ring, as in Kong).

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::model::HashOn;
use crate::router::UriCaptures;

/// What a request offers for hashing.
#[derive(Debug, Clone, Copy)]
pub struct HashRequest<'a> {
    /// The authenticated consumer's id.
    pub consumer_id: Option<&'a str>,
    /// The credential's id (used when there is no consumer).
    pub credential_id: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The normalized request path (no query).
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Captures of the matched route's regex path.
    pub captures: Option<&'a UriCaptures>,
}

/// The hash value, and the cookie to set on the response when `hash_on` is a cookie the
/// client did not send (Kong then makes up a value and hands it out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashValue {
    /// The value to hash.
    pub value: String,
    /// `Set-Cookie` header value to add to the response.
    pub set_cookie: Option<String>,
}

/// Computes the hash value for a request.
pub fn value(
    on: &HashOn,
    fallback: &HashOn,
    cookie_path: &str,
    req: &HashRequest<'_>,
) -> HashValue {
    for kind in [on, fallback] {
        if let HashOn::Cookie(name) = kind {
            return match cookie(req.headers, name) {
                Some(v) => HashValue {
                    value: v,
                    set_cookie: None,
                },
                None => {
                    let v = uuid::Uuid::new_v4().to_string();
                    HashValue {
                        set_cookie: Some(format!(
                            "{name}={v}; Path={cookie_path}; Same-Site=Lax; HttpOnly"
                        )),
                        value: v,
                    }
                }
            };
        }
        if let Some(v) = one(kind, req) {
            return HashValue {
                value: v,
                set_cookie: None,
            };
        }
    }
    HashValue {
        value: String::new(),
        set_cookie: None,
    }
}

fn one(kind: &HashOn, req: &HashRequest<'_>) -> Option<String> {
    match kind {
        HashOn::None | HashOn::Cookie(_) => None,
        HashOn::Consumer => req.consumer_id.or(req.credential_id).map(str::to_string),
        HashOn::Ip => req.client_ip.map(|ip| ip.to_string()),
        HashOn::Header(name) => {
            let values: Vec<&str> = req
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        }
        HashOn::Path => Some(req.path.to_string()),
        HashOn::QueryArg(name) => query_arg(req.query?, name),
        HashOn::UriCapture(name) => req.captures?.get(name).map(str::to_string),
    }
}

/// A query argument: several values are sorted and joined with `,`; a bare `?name` is `true`.
fn query_arg(query: &str, name: &str) -> Option<String> {
    let mut values: Vec<String> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let bare = !part.contains('=');
        let mut it = form_urlencoded::parse(part.as_bytes());
        if let Some((k, v)) = it.next() {
            if k == name {
                values.push(if bare { "true".into() } else { v.into_owned() });
            }
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort();
    Some(values.join(","))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> HashRequest<'a> {
        HashRequest {
            consumer_id: None,
            credential_id: None,
            client_ip: Some("10.1.2.3".parse().unwrap()),
            headers,
            path: "/p",
            query,
            captures: None,
        }
    }

    #[test]
    fn header_then_fallback() {
        let mut h = HeaderMap::new();
        let on = HashOn::Header("x-user".into());
        let r = value(&on, &HashOn::Ip, "/", &req(&h, None));
        assert_eq!(r.value, "10.1.2.3");
        h.append("x-user", "a".parse().unwrap());
        h.append("x-user", "b".parse().unwrap());
        assert_eq!(value(&on, &HashOn::Ip, "/", &req(&h, None)).value, "a, b");
    }

    #[test]
    fn query_args_sorted_and_bare() {
        assert_eq!(query_arg("b=2&a=x&a=1", "a").as_deref(), Some("1,x"));
        assert_eq!(query_arg("flag&x=1", "flag").as_deref(), Some("true"));
        assert_eq!(query_arg("x=1", "a"), None);
    }

    #[test]
    fn missing_cookie_is_made_up_and_set() {
        let mut h = HeaderMap::new();
        let on = HashOn::Cookie("sticky".into());
        let r = value(&on, &HashOn::None, "/app", &req(&h, None));
        let set = r.set_cookie.unwrap();
        assert!(
            set.starts_with(&format!("sticky={}; Path=/app", r.value)),
            "{set}"
        );
        h.insert(http::header::COOKIE, "a=1; sticky=abc".parse().unwrap());
        let r = value(&on, &HashOn::None, "/", &req(&h, None));
        assert_eq!((r.value.as_str(), r.set_cookie), ("abc", None));
    }
}
