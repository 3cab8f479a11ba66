//! The route fields of Kong's `expressions` router flavor: `expression`, `priority`, and the
//! `sources`/`destinations` that flavor accepts on http routes
//! (`kong/db/schema/entities/routes.lua`, `routes_subschemas.lua`).

use super::super::checks;
use super::super::load::Item;
use super::super::model::Endpoint;
use super::super::raw::{RawEndpoint, RawRoute};
use super::super::yaml::PathSeg;
use super::Validator;

/// Kong's bound on `priority`: `between = { 0, 2^46 - 1 }`.
const MAX_PRIORITY: i64 = (1 << 46) - 1;

impl Validator<'_> {
    /// `expression`, checked by Kong's engine; refused outside the expressions flavor.
    pub(super) fn expression(&mut self, item: &Item<RawRoute>, enabled: bool) -> Option<String> {
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
    pub(super) fn expression_priority(&mut self, item: &Item<RawRoute>, enabled: bool) -> u64 {
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
    pub(super) fn endpoints(
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
