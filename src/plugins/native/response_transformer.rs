//! `response-transformer`: changes the response headers and, for JSON responses, the body's
//! top-level keys (Kong's plugin hub: remove/rename/replace/add/append for headers and json,
//! json_types). Steps run in Kong's order: remove, rename, replace, add, append. The body is
//! buffered whole and sent chunked (its length changes).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value as Json;

use super::transform::{append_json, split_pair};
use super::{BuildCtx, Bundled};
use crate::plugins::{Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "response-transformer",
    priority: 800,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"

local function header_name_ok(name)
  return name ~= nil and name:match("^[%w_%-]+$") ~= nil
end

local function valid_rename(pair)
  local name, value = pair:match("^([^:]+):*(.-)$")
  for _, n in ipairs({ name, value }) do
    if not header_name_ok(n) then
      return nil, string.format("'%s' is not a valid header", tostring(n))
    end
  end
  return true
end

local strings = { type = "array", default = {}, required = true, elements = { type = "string" } }
local colon_strings = { type = "array", default = {}, required = true,
  elements = { type = "string", match = "^[^:]+:.*$" } }
local json_types = { type = "array", default = {}, required = true,
  elements = { type = "string", one_of = { "boolean", "number", "string" } } }
local with_types = { type = "record", fields = {
  { json = colon_strings },
  { json_types = json_types },
  { headers = colon_strings },
} }

return {
  name = "response-transformer",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { remove = { type = "record", fields = { { json = strings }, { headers = strings } } } },
      { rename = { type = "record", fields = {
        { json = colon_strings },
        { headers = { type = "array", default = {}, required = true,
            elements = { type = "string", match = "^[^:]+:.*$", custom_validator = valid_rename } } },
      } } },
      { replace = with_types },
      { add = with_types },
      { append = with_types },
    } } },
  },
}
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Lists {
    json: Vec<String>,
    json_types: Vec<String>,
    headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
#[derive(Default)]
struct Conf {
    remove: Lists,
    rename: Lists,
    replace: Lists,
    add: Lists,
    append: Lists,
}

/// `name:value` pairs; the value is None when empty.
type Pairs = Vec<(String, Option<String>)>;

/// A JSON step's `(key, value)` pairs, the value typed by `json_types`.
type JsonPairs = Vec<(String, Option<Json>)>;

struct ResponseTransformer {
    /// The instance's name (keys its per-request buffer).
    name: String,
    remove_headers: Vec<String>,
    rename_headers: Pairs,
    replace_headers: Pairs,
    add_headers: Pairs,
    append_headers: Pairs,
    remove_json: Vec<String>,
    rename_json: Pairs,
    replace_json: JsonPairs,
    add_json: JsonPairs,
    append_json: JsonPairs,
}

fn pairs(list: &[String]) -> Pairs {
    list.iter()
        .map(|e| {
            let (k, v) = split_pair(e);
            (k.to_string(), (!v.is_empty()).then(|| v.to_string()))
        })
        .collect()
}

/// Kong's `json_value`: a number (None if it does not parse), a boolean (`"true"` or false),
/// or the string.
fn typed(value: &str, json_type: Option<&str>) -> Option<Json> {
    match json_type {
        Some("number") => value.trim().parse::<f64>().ok().and_then(|n| {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Some(Json::from(n as i64))
            } else {
                serde_json::Number::from_f64(n).map(Json::Number)
            }
        }),
        Some("boolean") => Some(Json::Bool(value == "true")),
        _ => Some(Json::String(value.to_string())),
    }
}

fn json_pairs(l: &Lists) -> JsonPairs {
    pairs(&l.json)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let v = v.and_then(|v| typed(&v, l.json_types.get(i).map(String::as_str)));
            (k, v)
        })
        .collect()
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let c: Conf = ctx.decode()?;
    Ok(Arc::new(ResponseTransformer {
        name: ctx.name.to_string(),
        remove_headers: c.remove.headers.clone(),
        rename_headers: pairs(&c.rename.headers),
        replace_headers: pairs(&c.replace.headers),
        add_headers: pairs(&c.add.headers),
        append_headers: pairs(&c.append.headers),
        remove_json: c.remove.json.clone(),
        rename_json: pairs(&c.rename.json),
        replace_json: json_pairs(&c.replace),
        add_json: json_pairs(&c.add),
        append_json: json_pairs(&c.append),
    }))
}

/// Whether a Content-Type is JSON: `application/json` or `application/<x>+json`, in any
/// of a comma-separated list.
fn is_json(content_type: &str) -> bool {
    content_type.split(',').any(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    })
}

impl ResponseTransformer {
    fn transforms_body(&self) -> bool {
        !(self.remove_json.is_empty()
            && self.rename_json.is_empty()
            && self.replace_json.is_empty()
            && self.add_json.is_empty()
            && self.append_json.is_empty())
    }

    /// The transformed body; None when it is not a JSON object.
    fn transform(&self, body: &[u8]) -> Option<Bytes> {
        let Ok(Json::Object(mut obj)) = serde_json::from_slice::<Json>(body) else {
            return None;
        };
        for k in &self.remove_json {
            obj.remove(k);
        }
        for (old, new) in &self.rename_json {
            if let (Some(new), true) = (new, obj.contains_key(old)) {
                if let Some(v) = obj.remove(old) {
                    obj.insert(new.clone(), v);
                }
            }
        }
        for (k, v) in &self.replace_json {
            if let (Some(v), Some(slot)) = (v, obj.get_mut(k)) {
                *slot = v.clone();
            }
        }
        for (k, v) in &self.add_json {
            if let (Some(v), false) = (v, obj.contains_key(k)) {
                obj.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.append_json {
            if let Some(v) = v {
                append_json(&mut obj, k, v.clone());
            }
        }
        Some(Bytes::from(Json::Object(obj).to_string()))
    }
}

impl Instance for ResponseTransformer {
    fn phases(&self) -> &[Phase] {
        // Without JSON steps the body streams untouched (and keeps its Content-Length).
        if self.transforms_body() {
            &[Phase::HeaderFilter, Phase::BodyFilter]
        } else {
            &[Phase::HeaderFilter]
        }
    }

    fn header_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        let no_body = ctx.req.method == http::Method::HEAD;
        let Some(resp) = ctx.resp.as_deref_mut() else {
            return Ok(());
        };
        let err =
            |name: &str, e: pingora::Error| PluginError(format!("invalid header {name}: {e}"));
        for name in &self.remove_headers {
            resp.remove_header(name.as_str());
        }
        for (old, new) in &self.rename_headers {
            let Some(new) = new else { continue };
            let values: Vec<_> = resp.headers.get_all(old.as_str()).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            resp.remove_header(old.as_str());
            resp.remove_header(new.as_str());
            for v in values {
                resp.append_header(new.clone(), v)
                    .map_err(|e| err(new, *e))?;
            }
        }
        for (name, value) in &self.replace_headers {
            if let (Some(v), true) = (value, resp.headers.contains_key(name.as_str())) {
                resp.insert_header(name.clone(), v.as_str())
                    .map_err(|e| err(name, *e))?;
            }
        }
        for (name, value) in &self.add_headers {
            if let (Some(v), false) = (value, resp.headers.contains_key(name.as_str())) {
                resp.insert_header(name.clone(), v.as_str())
                    .map_err(|e| err(name, *e))?;
            }
        }
        for (name, value) in &self.append_headers {
            if let Some(v) = value {
                resp.append_header(name.clone(), v.as_str())
                    .map_err(|e| err(name, *e))?;
            }
        }
        if !self.transforms_body() {
            return Ok(());
        }
        // The body may change length: it is sent chunked (the proxy drops the Content-Length
        // of responses that go through body_filter anyway).
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if no_body || matches!(resp.status.as_u16(), 204 | 304) {
            return Ok(());
        }
        if !resp.headers.contains_key(http::header::TRANSFER_ENCODING) {
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")
                .map_err(|e| err("transfer-encoding", *e))?;
        }
        let json = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Ok(());
        }
        ctx.state.plugin_data.insert(&self.name, BytesMut::new());
        Ok(())
    }

    fn body_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        let Some(buf) = ctx.state.plugin_data.get_mut::<BytesMut>(&self.name) else {
            return Ok(());
        };
        let Some((chunk, eof)) = ctx.chunk.as_mut() else {
            return Ok(());
        };
        if let Some(data) = chunk.take() {
            buf.extend_from_slice(&data);
        }
        if !*eof {
            return Ok(());
        }
        let body = std::mem::take(buf).freeze();
        ctx.state.plugin_data.remove(&self.name);
        if body.is_empty() {
            return Ok(());
        }
        **chunk = Some(self.transform(&body).unwrap_or_else(|| {
            tracing::warn!(plugin = %self.name, "body transform failed: the body is not a JSON object");
            body
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(is_json("text/plain, application/json"));
        assert!(!is_json("text/json"));
        assert!(!is_json("application/jsonp"));
    }

    #[test]
    fn typed_values() {
        assert_eq!(typed("42", Some("number")), Some(Json::from(42)));
        assert_eq!(typed("1.5", Some("number")), Some(Json::from(1.5)));
        assert_eq!(typed("x", Some("number")), None);
        assert_eq!(typed("true", Some("boolean")), Some(Json::Bool(true)));
        assert_eq!(typed("yes", Some("boolean")), Some(Json::Bool(false)));
        assert_eq!(typed("7", None), Some(Json::from("7")));
    }
}
