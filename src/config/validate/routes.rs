//! Validation of routes: their fields as Kong's route schema checks them, their service, and
//! the expressions of the expressions router flavor.

use std::collections::{BTreeMap, HashMap};

use super::super::checks;
use super::super::load::{Document, Parent};
use super::super::model::*;
use super::super::yaml::PathSeg;
use super::{RouteExpression, Validator};

impl Validator<'_> {
    /// `routes:` entities, top-level and nested under services.
    pub(super) fn routes(&mut self, doc: &mut Document, cfg: &mut Config) {
        let services = Self::service_index(cfg);
        let mut names = HashMap::with_capacity(doc.routes.len());
        for item in &mut doc.routes {
            // Moved into the route rather than copied (the document is dropped after this).
            let raw = &mut item.raw;
            let given_protocols = raw.protocols.take();
            let methods = raw.methods.take().unwrap_or_default();
            let hosts = raw.hosts.take().unwrap_or_default();
            let paths = raw.paths.take().unwrap_or_default();
            let given_headers = raw.headers.take().unwrap_or_default();
            let snis = raw.snis.take().unwrap_or_default();
            let tags = raw.tags.take().unwrap_or_default();
            let item = &*item;
            let r = &item.raw;
            let nested = match item.parent {
                Some(Parent::Service(i)) => Some(i),
                _ => None,
            };
            let id = self.named_id("routes", item, &r.id, &r.name, &mut names);
            let service = self.owner(item, "service", nested, &r.service, &services, "service");

            let mut protocols = Vec::new();
            for (i, p) in given_protocols.iter().flatten().enumerate() {
                match Protocol::parse(p) {
                    Some(p) if p.is_http() => protocols.push(p),
                    Some(_) => self.err(
                        item,
                        &[PathSeg::Key("protocols"), PathSeg::Index(i)],
                        format!("protocol {p:?} is a stream protocol, which this gateway does not route (expected http, https, grpc, grpcs, ws or wss)"),
                    ),
                    None => self.err(
                        item,
                        &[PathSeg::Key("protocols"), PathSeg::Index(i)],
                        format!("invalid protocol {p:?}: expected one of http, https, grpc, grpcs, ws, wss"),
                    ),
                }
            }
            if given_protocols.as_ref().is_some_and(|p| p.is_empty()) {
                self.err(
                    item,
                    &[PathSeg::Key("protocols")],
                    "expected at least one protocol",
                );
            }
            if protocols.is_empty() {
                protocols = vec![Protocol::Http, Protocol::Https];
            }
            let grpc = protocols
                .iter()
                .any(|p| matches!(p, Protocol::Grpc | Protocol::Grpcs));

            for (i, m) in methods.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    self.err(
                        item,
                        &[PathSeg::Key("methods"), PathSeg::Index(i)],
                        format!(
                            "invalid method {m:?}: expected an upper-case HTTP method such as GET"
                        ),
                    );
                }
            }
            for (i, h) in hosts.iter().enumerate() {
                if let Err(e) = checks::route_host(h) {
                    self.err(item, &[PathSeg::Key("hosts"), PathSeg::Index(i)], e);
                }
            }
            for (i, p) in paths.iter().enumerate() {
                if let Err(e) = checks::route_path(p) {
                    self.err(item, &[PathSeg::Key("paths"), PathSeg::Index(i)], e);
                }
            }
            let mut headers = BTreeMap::new();
            for (name, values) in given_headers {
                let at = [PathSeg::Key("headers"), PathSeg::Key(&name)];
                if name.eq_ignore_ascii_case("host") {
                    self.err(
                        item,
                        &at,
                        "cannot match on the `host` header: use `hosts` instead",
                    );
                } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.err(item, &at, format!("invalid header name {name:?}"));
                }
                if values.is_empty() {
                    self.err(item, &at, "expected at least one header value");
                }
                for v in &values {
                    if let Some(re) = v.strip_prefix("~*") {
                        if let Err(e) = regex::Regex::new(re) {
                            let msg = e.to_string();
                            let last = msg.lines().last().unwrap_or("").trim().to_string();
                            self.err(item, &at, format!("invalid header regex {v:?}: {last}"));
                        }
                    }
                }
                headers.insert(name.to_ascii_lowercase(), values);
            }
            if !snis.is_empty() && !protocols.iter().any(|p| p.is_tls()) {
                self.err(
                    item,
                    &[PathSeg::Key("snis")],
                    "`snis` can only be set when `protocols` includes https, grpcs or wss",
                );
            }
            let traditional_empty = methods.is_empty()
                && hosts.is_empty()
                && paths.is_empty()
                && headers.is_empty()
                && snis.is_empty();
            let RouteExpression {
                flavor_on,
                sources,
                destinations,
                expression,
                priority,
            } = self.route_expression(item, traditional_empty);
            if !item.broken && r.expression.is_none() && traditional_empty {
                let fields = if flavor_on {
                    "`methods`, `hosts`, `headers`, `paths`, `expression`"
                } else {
                    "`methods`, `hosts`, `headers`, `paths`"
                };
                self.err(
                    item,
                    &[],
                    format!("a route for http/https must set at least one of {fields} (or `snis` for https)"),
                );
            }
            let strip_path = r.strip_path.unwrap_or(!grpc);
            if grpc && r.strip_path == Some(true) {
                self.err(
                    item,
                    &[PathSeg::Key("strip_path")],
                    "`strip_path` cannot be true for grpc/grpcs routes",
                );
            }
            if grpc && !methods.is_empty() {
                self.err(
                    item,
                    &[PathSeg::Key("methods")],
                    "`methods` cannot be set for grpc/grpcs routes",
                );
            }
            let path_handling_v1 = match r.path_handling.as_deref() {
                None | Some("v0") => false,
                Some("v1") => true,
                Some(other) => {
                    self.err(
                        item,
                        &[PathSeg::Key("path_handling")],
                        format!("invalid path_handling {other:?}: expected \"v0\" or \"v1\""),
                    );
                    false
                }
            };
            let redirect = match r.https_redirect_status_code {
                None => 426,
                Some(c @ (426 | 301 | 302 | 307 | 308)) => c as u16,
                Some(c) => {
                    self.err(
                        item,
                        &[PathSeg::Key("https_redirect_status_code")],
                        format!("invalid status {c}: expected one of 426, 301, 302, 307, 308"),
                    );
                    426
                }
            };
            let regex_priority = r.regex_priority.unwrap_or(0);
            cfg.routes.push(Route {
                id,
                name: r.name.clone(),
                protocols,
                methods,
                hosts,
                paths,
                headers,
                snis,
                sources,
                destinations,
                strip_path,
                preserve_host: r.preserve_host.unwrap_or(false),
                regex_priority,
                expression,
                priority,
                path_handling_v1,
                https_redirect_status_code: redirect,
                request_buffering: r.request_buffering.unwrap_or(true),
                response_buffering: r.response_buffering.unwrap_or(true),
                service,
                tags,
                origin: Self::origin(item),
            });
        }
    }
}
