//! The route fields of Kong's `expressions` router flavor: `expression`, `priority`, and the
//! `sources`/`destinations` that flavor accepts on http routes
//! (`kong/db/schema/entities/routes.lua`, `routes_subschemas.lua`).

use super::super::checks;
use super::super::load::Item;
use super::super::model::Endpoint;
use super::super::raw::{RawEndpoint, RawRoute};
use super::super::yaml::PathSeg;
use super::Validator;

/// What a route's expressions-flavor fields came to.
pub(super) struct RouteExpression {
    /// The process runs the expressions flavor.
    pub flavor_on: bool,
    pub sources: Vec<Endpoint>,
    pub destinations: Vec<Endpoint>,
    pub expression: Option<String>,
    pub priority: u64,
}

/// Kong's bound on `priority`: `between = { 0, 2^46 - 1 }`.
const MAX_PRIORITY: i64 = (1 << 46) - 1;

impl Validator<'_> {
    /// A route's `sources`, `destinations`, `expression` and `priority` with Kong's rules for
    /// them (`validate_route` of `routes.lua`); `traditional_empty` says that methods, hosts,
    /// paths, headers and snis are all empty.
    pub(super) fn route_expression(
        &mut self,
        item: &Item<RawRoute>,
        traditional_empty: bool,
    ) -> RouteExpression {
        let r = &item.raw;
        let flavor_on = crate::config::router_flavor() == crate::router::Flavor::Expressions;
        let (sources, destinations) = if flavor_on {
            (
                self.endpoints(item, "sources", r.sources.as_deref()),
                self.endpoints(item, "destinations", r.destinations.as_deref()),
            )
        } else {
            for (field, set) in [("sources", &r.sources), ("destinations", &r.destinations)] {
                if set.as_ref().is_some_and(|s| !s.is_empty()) {
                    self.err(
                        item,
                        &[PathSeg::Key(field)],
                        format!("`{field}` applies to stream routes (tcp, tls, udp), which this gateway does not route (http routes take it under router_flavor = expressions)"),
                    );
                }
            }
            (Vec::new(), Vec::new())
        };
        let expression = self.expression(item, flavor_on);
        let priority = self.expression_priority(item, flavor_on);
        let others_empty = traditional_empty && sources.is_empty() && destinations.is_empty();
        if expression.is_some() && !others_empty {
            self.err(
                item,
                &[],
                "Router Expression failed validation: cannot set 'expression' with 'methods', 'hosts', 'paths', 'headers', 'snis', 'sources' or 'destinations' simultaneously",
            );
        }
        if expression.is_some() && r.regex_priority.is_some_and(|p| p != 0) {
            self.err(
                item,
                &[],
                "Router Expression failed validation: cannot set 'regex_priority' with 'expression' simultaneously",
            );
        }
        if priority != 0 && !others_empty {
            self.err(
                item,
                &[],
                "Router Expression failed validation: cannot set 'priority' with 'methods', 'hosts', 'paths', 'headers', 'snis', 'sources' or 'destinations' simultaneously",
            );
        }
        RouteExpression {
            flavor_on,
            sources,
            destinations,
            expression,
            priority,
        }
    }

    /// `expression`, checked by Kong's engine; refused outside the expressions flavor.
    fn expression(&mut self, item: &Item<RawRoute>, enabled: bool) -> Option<String> {
        let text = item.raw.expression.clone()?;
        let at = [PathSeg::Key("expression")];
        if !enabled {
            self.err(
                item,
                &at,
                "unknown field `expression`: routes carry expressions only under router_flavor = expressions (--router-flavor)",
            );
            return None;
        }
        if let Err(e) = crate::router::validate_expression(&text) {
            self.err(
                item,
                &at,
                format!("Router Expression failed validation: {e}"),
            );
        }
        Some(text)
    }

    /// `priority` of an expression route; refused outside the expressions flavor.
    fn expression_priority(&mut self, item: &Item<RawRoute>, enabled: bool) -> u64 {
        let Some(p) = item.raw.priority else {
            return 0;
        };
        let at = [PathSeg::Key("priority")];
        if !enabled {
            self.err(
                item,
                &at,
                "unknown field `priority`: routes carry a priority only under router_flavor = expressions (--router-flavor)",
            );
            return 0;
        }
        if !(0..=MAX_PRIORITY).contains(&p) {
            self.err(
                item,
                &at,
                format!("value should be between 0 and {MAX_PRIORITY}"),
            );
            return 0;
        }
        p as u64
    }

    /// `sources`/`destinations` of an http route (expressions flavor): each entry an IP or
    /// CIDR and/or a port.
    fn endpoints(
        &mut self,
        item: &Item<RawRoute>,
        field: &'static str,
        raw: Option<&[RawEndpoint]>,
    ) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for (i, e) in raw.unwrap_or_default().iter().enumerate() {
            let at = |k: &'static str| [PathSeg::Key(field), PathSeg::Index(i), PathSeg::Key(k)];
            if e.ip.is_none() && e.port.is_none() {
                self.err(
                    item,
                    &[PathSeg::Key(field), PathSeg::Index(i)],
                    "at least one of these fields must be non-empty: 'ip', 'port'",
                );
                continue;
            }
            let ip = match e.ip.as_deref().map(checks::cidr) {
                None => None,
                Some(Ok(ip)) => Some(ip),
                Some(Err(m)) => {
                    self.err(item, &at("ip"), m);
                    continue;
                }
            };
            let port = match e.port {
                None => None,
                Some(p) => match u16::try_from(p) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        self.err(item, &at("port"), "value should be between 0 and 65535");
                        continue;
                    }
                },
            };
            out.push(Endpoint { ip, port });
        }
        out
    }
}
