//! Turns a plugin directory (handler.lua + schema.lua) into a `custom_plugins` entry, so users
//! need not escape Lua by hand: `proxy plugin embed plugins/foo >> kong.yaml`.

use std::fmt::Write;
use std::path::Path;

/// Why a plugin directory cannot be embedded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct EmbedError {
    /// The file or directory.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Reads `dir/handler.lua` and `dir/schema.lua` and renders the YAML. The plugin is named
/// `name`, or after the directory. With `header`, the entry comes under a `custom_plugins:` key.
pub fn embed_dir(dir: &Path, name: Option<&str>, header: bool) -> Result<String, EmbedError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| EmbedError {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let handler = read("handler.lua")?;
    let schema = read("schema.lua")?;
    let name = match name {
        Some(n) => n.to_string(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| EmbedError {
                path: dir.display().to_string(),
                message: "cannot name the plugin after this directory; pass --name".into(),
            })?,
    };
    Ok(render(&name, &handler, &schema, header))
}

/// The YAML of one `custom_plugins` entry (literal block scalars keep the Lua as written).
pub fn render(name: &str, handler: &str, schema: &str, header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str("custom_plugins:\n");
    }
    let _ = writeln!(out, "  - name: {}", serde_json::Value::from(name));
    for (key, text) in [("handler", handler), ("schema", schema)] {
        // `|2`: content indented two spaces more than the key, whatever its first line holds.
        let _ = writeln!(out, "    {key}: |2");
        for line in text.trim_end_matches('\n').lines() {
            if line.trim().is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "      {}", line.trim_end());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_config_loader() {
        let handler = "  -- indented first line\nlocal P = { PRIORITY = 1, VERSION = \"1.0.0\" }\n\nreturn P\n";
        let yaml = format!(
            "_format_version: \"3.0\"\n{}",
            render("x-y", handler, "return {}", true)
        );
        let doc = crate::config::yaml::parse(&yaml).unwrap();
        let list = doc.get("custom_plugins").unwrap();
        let crate::config::yaml::Value::Seq(items) = &list.value else {
            panic!()
        };
        assert_eq!(items[0].get("name").unwrap().as_str(), Some("x-y"));
        assert_eq!(items[0].get("handler").unwrap().as_str(), Some(handler));
        assert_eq!(
            items[0].get("schema").unwrap().as_str(),
            Some("return {}\n")
        );
    }
}
