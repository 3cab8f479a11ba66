//! Entities the model does not keep field by field (upstreams with their health checks,
//! targets, certificates, SNIs, CA certificates, credentials, vaults), shown as written in the
//! configuration text: every field the client sent comes back, references (`{vault://...}`)
//! stay references, and nested entities carry their parent as `{"id": ...}` as Kong's do. The
//! Kong Ingress Controller reads these listings to recover its last good configuration.

use serde_json::{json, Map, Value};

use crate::config::load::path_segments;
use crate::config::model::{Config, Credential, Origin};
use crate::config::yaml::{self, Node};

/// The text's tree, parsed once per listing.
pub struct Written {
    root: Option<Node>,
}

/// Keys holding nested entities, which Kong lists in their own collections.
const NESTED: &[&str] = &[
    "routes",
    "plugins",
    "targets",
    "snis",
    "keyauth_credentials",
    "basicauth_credentials",
    "acls",
    "jwt_secrets",
];

impl Written {
    /// Parses the configuration text being served.
    pub fn parse(text: &str) -> Written {
        Written {
            root: yaml::parse(text).ok(),
        }
    }

    /// The entity at `origin` as written, without nested entities, with `id` set.
    fn entity(&self, origin: &Origin, id: &str) -> Map<String, Value> {
        let json = self
            .root
            .as_ref()
            .map(|r| r.locate(path_segments(&origin.path)).to_json());
        let mut out = match json {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for k in NESTED {
            out.remove(*k);
        }
        out.insert("id".into(), json!(id));
        out
    }
}

fn reference(id: &str) -> Value {
    json!({ "id": id })
}

/// The listings served from the written text, by collection name; `None` for other names.
pub fn collection(c: &Config, w: &Written, kind: &str) -> Option<Vec<(Vec<String>, Value)>> {
    Some(match kind {
        "upstreams" => c
            .upstreams
            .iter()
            .map(|u| {
                let e = w.entity(&u.origin, &u.id);
                (vec![u.id.clone(), u.name.clone()], Value::Object(e))
            })
            .collect(),
        "targets" => c
            .targets
            .iter()
            .map(|t| {
                let mut e = w.entity(&t.origin, &t.id);
                e.insert("upstream".into(), reference(&c.upstreams[t.upstream].id));
                e.entry("target")
                    .or_insert_with(|| json!(format!("{}:{}", t.host, t.port)));
                e.entry("weight").or_insert_with(|| json!(t.weight));
                (vec![t.id.clone()], Value::Object(e))
            })
            .collect(),
        "certificates" => c
            .certificates
            .iter()
            .enumerate()
            .map(|(i, cert)| {
                let mut e = w.entity(&cert.origin, &cert.id);
                let snis: Vec<&str> = c
                    .snis
                    .iter()
                    .filter(|s| s.certificate == i)
                    .map(|s| s.name.as_str())
                    .collect();
                e.insert("snis".into(), json!(snis));
                (vec![cert.id.clone()], Value::Object(e))
            })
            .collect(),
        "snis" => c
            .snis
            .iter()
            .map(|s| {
                let e = json!({
                    "id": s.id, "name": s.name,
                    "certificate": reference(&c.certificates[s.certificate].id),
                });
                (vec![s.id.clone(), s.name.clone()], e)
            })
            .collect(),
        "ca_certificates" => c
            .ca_certificates
            .iter()
            .map(|ca| {
                let e = w.entity(&ca.origin, &ca.id);
                (vec![ca.id.clone()], Value::Object(e))
            })
            .collect(),
        "key-auths" | "basic-auths" | "acls" | "jwts" => c
            .credentials
            .iter()
            .filter(|cr| {
                matches!(
                    (&cr.credential, kind),
                    (Credential::KeyAuth { .. }, "key-auths")
                        | (Credential::BasicAuth { .. }, "basic-auths")
                        | (Credential::Acl { .. }, "acls")
                        | (Credential::Jwt { .. }, "jwts")
                )
            })
            .map(|cr| {
                let mut e = w.entity(&cr.origin, &cr.id);
                e.insert("consumer".into(), reference(&c.consumers[cr.consumer].id));
                (vec![cr.id.clone()], Value::Object(e))
            })
            .collect(),
        "vaults" => match w
            .root
            .as_ref()
            .and_then(|r| r.get("vaults"))
            .map(Node::to_json)
        {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| {
                    let keys = ["id", "prefix"]
                        .iter()
                        .filter_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    (keys, v)
                })
                .collect(),
            _ => Vec::new(),
        },
        // Kong collections this gateway has no entities of: listed empty, so that a client
        // walking every collection (decK's dump, KIC's recovery) gets a complete answer.
        "hmac-auths" | "oauth2" | "mtls-auths" | "keys" | "key-sets" | "partials"
        | "filter-chains" | "consumer_groups" => Vec::new(),
        _ => return None,
    })
}
