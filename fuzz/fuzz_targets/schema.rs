//! The schema DSL: a plugin config (JSON) validated against a schema that uses every field
//! type and most validators, and, with a leading `#`, a schema source of its own. Validation
//! gives a config or problems; nothing panics or hangs (the Lua parts run under the budget).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::plugins::lua::Loader;

const HANDLER: &str = "return { PRIORITY = 1, VERSION = '1.0.0', access = function() end }";
const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return { name = "f", fields = {
  { protocols = typedefs.protocols_http },
  { config = { type = "record", fields = {
    { s = { type = "string", len_min = 1, len_max = 64, match = "^%w+$" } },
    { n = { type = "number", between = { 0, 100 }, default = 5 } },
    { i = { type = "integer", gt = -3 } },
    { b = { type = "boolean", default = false } },
    { a = { type = "array", elements = { type = "string", one_of = { "x", "y" } } } },
    { set = { type = "set", elements = { type = "integer" } } },
    { m = { type = "map", keys = { type = "string" }, values = { type = "number" } } },
    { r = { type = "record", fields = { { url = typedefs.url }, { port = typedefs.port } } } },
    { v = { type = "string", custom_validator = function(v) return #v < 10 or nil, "long" end } },
  }, entity_checks = {
    { at_least_one_of = { "s", "i" } },
    { mutually_exclusive = { "a", "set" } },
  } } },
} }
"#;

thread_local! {
    /// The loader with the fixed schema, built once (a VM per input would make this slow).
    static FIXED: Loader = {
        let mut loader = Loader::new().expect("a Lua VM");
        if let Err(e) = loader.define("f", HANDLER, SCHEMA) {
            panic!("the fixed schema must load: {e:?}");
        }
        loader
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(schema) = text.strip_prefix('#') {
        if let Ok(mut loader) = Loader::new() {
            let _ = loader.define("f", HANDLER, schema);
        }
        return;
    }
    // Instance configs are maps (the loader refuses anything else before validation).
    let Ok(config) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    else {
        return;
    };
    FIXED.with(|loader| {
        let _ = loader.validate("f", &config, &[]);
    });
});
