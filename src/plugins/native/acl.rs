//! `acl`: allows or denies the authenticated consumer by its ACL groups (Kong's plugin hub:
//! allow, deny, hide_groups_header, always_use_authenticated_groups). It runs after the auth
//! plugins (priority 950) and sends the consumer's groups upstream in `X-Consumer-Groups`.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "acl",
    priority: 950,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "acl",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { allow = { type = "array", elements = { type = "string" } } },
      { deny = { type = "array", elements = { type = "string" } } },
      { hide_groups_header = { type = "boolean", required = true, default = false } },
      { always_use_authenticated_groups = { type = "boolean", required = true, default = false } },
    } } },
  },
  entity_checks = {
    { only_one_of = { "config.allow", "config.deny" } },
    { at_least_one_of = { "config.allow", "config.deny" } },
  },
}
"#;

const FORBIDDEN: &str = "You cannot consume this service";
const GROUPS_HEADER: &str = "x-consumer-groups";

#[derive(Debug, Deserialize)]
struct Conf {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    hide_groups_header: bool,
    // Accepted for compatibility: nothing in this gateway sets "authenticated groups" (Kong's
    // LDAP/OIDC plugins do), so the consumer's own groups are always used.
    #[allow(dead_code)]
    always_use_authenticated_groups: bool,
}

struct Acl {
    /// The configured groups: the deny list when one is given, else the allow list.
    groups: Vec<String>,
    deny: bool,
    hide_groups_header: bool,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    // As in Kong: a non-empty deny list makes it a deny list, otherwise it is an allow list.
    let (groups, deny) = match conf.deny {
        Some(deny) if !deny.is_empty() => (deny, true),
        _ => (conf.allow.unwrap_or_default(), false),
    };
    Ok(Arc::new(Acl {
        groups,
        deny,
        hide_groups_header: conf.hide_groups_header,
    }))
}

impl Instance for Acl {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let authenticated = ctx.state.credential.is_some();
        let refuse = |authenticated: bool| {
            Ok(Flow::Exit(if authenticated {
                Exit::message(403, FORBIDDEN)
            } else {
                Exit::message(401, "Unauthorized")
            }))
        };
        let Some(consumer) = ctx.state.consumer else {
            return refuse(authenticated);
        };
        let snap = ctx.snap;
        let groups = snap
            .consumers
            .groups
            .get(consumer)
            .map_or(&[][..], Vec::as_slice);
        // A consumer without groups cannot be on an allow list.
        if groups.is_empty() && !self.deny {
            return refuse(authenticated);
        }
        let in_group = self.groups.iter().any(|g| groups.contains(g));
        if in_group == self.deny {
            return Ok(Flow::Exit(Exit::message(403, FORBIDDEN)));
        }
        if self.hide_groups_header {
            // Documented as "prevents the header from being sent": a client cannot supply it.
            ctx.clear_header(GROUPS_HEADER);
        } else if groups.is_empty() {
            ctx.clear_header(GROUPS_HEADER);
        } else {
            ctx.set_header(GROUPS_HEADER, &groups.join(", "))?;
        }
        Ok(Flow::Continue)
    }
}
