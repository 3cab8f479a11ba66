//! Secret references in the declarative file: `{vault://env/NAME}` (or `/NAME/key` for a field
//! of a JSON value, `?prefix=P`, `#2` for `NAME_PREVIOUS`) in every field Kong marks
//! `referenceable`, resolved when the configuration loads (Kong's `kong/pdk/vault.lua` and its
//! env vault, `kong/vaults/env`). Only the env vault exists without a database; a `vaults:`
//! entity names it under another prefix with its own `config.prefix`.
//!
//! A resolved value lives only in the compiled snapshot: `GET /config` serves the text as
//! written and errors name the reference, never its value.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The vault's name or prefix (`env`, or a `vaults:` entity's `prefix`).
    pub vault: String,
    /// The secret's name.
    pub resource: String,
    /// A field of the secret's JSON value.
    pub key: Option<String>,
    /// `?prefix=...`.
    pub prefix: Option<String>,
    /// `#2` asks for the previous version.
    pub version: Option<u32>,
}

/// True for a string written as a reference (`{vault://...}`).
pub fn is_reference(s: &str) -> bool {
    s.len() > "{vault://}".len() && s.starts_with("{vault://") && s.ends_with('}')
}

/// Parses a reference with Kong's rules (`parse_reference` in `kong/pdk/vault.lua`).
pub fn parse(reference: &str) -> Result<Reference, String> {
    if !is_reference(reference) {
        return Err(format!("not a reference [{reference}]"));
    }
    let url = &reference[1..reference.len() - 1];
    let rest = &url["vault://".len()..];
    let (vault, mut tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if vault.is_empty() {
        return Err(format!("reference url is missing host [{reference}]"));
    }
    let mut version = None;
    if let Some(i) = tail.find('#') {
        let v = &tail[i + 1..];
        version = Some(
            v.parse::<u32>()
                .map_err(|_| format!("reference url has invalid version [{reference}]"))?,
        );
        tail = &tail[..i];
    }
    let mut prefix = None;
    if let Some(i) = tail.find('?') {
        prefix = url::form_urlencoded::parse(&tail.as_bytes()[i + 1..])
            .find(|(k, _)| k == "prefix")
            .map(|(_, v)| v.into_owned());
        tail = &tail[..i];
    }
    if tail.is_empty() {
        return Err(format!("reference url is missing path [{reference}]"));
    }
    if tail == "/" {
        return Err(format!("reference url has empty path [{reference}]"));
    }
    let segments: Vec<String> = tail[1..]
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if segments.is_empty() {
        return Err(format!("reference url has invalid path [{reference}]"));
    }
    let (resource, key) = if segments.len() == 1 || tail.ends_with('/') {
        (segments.join("/"), None)
    } else {
        let (last, rest) = segments.split_last().expect("non-empty");
        (rest.join("/"), Some(last.clone()))
    };
    Ok(Reference {
        vault: vault.to_owned(),
        resource,
        key,
        prefix,
        version,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}

/// The vaults a configuration can refer to: the env vault under `env`, plus each `vaults:`
/// entity (`prefix` → the env vault with its own `config.prefix`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vaults {
    /// `vaults:` entities: prefix → the env variable prefix they add.
    named: HashMap<String, String>,
}

impl Vaults {
    /// Adds a `vaults:` entity of the env vault.
    pub fn add_env(&mut self, prefix: &str, env_prefix: &str) {
        self.named.insert(prefix.to_owned(), env_prefix.to_owned());
    }

    /// Resolves a reference to its value. The error names the reference, not a value.
    pub fn resolve(&self, reference: &str) -> Result<String, String> {
        let r = parse(reference)?;
        let base = if r.vault == "env" {
            env_prefix().to_owned()
        } else {
            match self.named.get(&r.vault) {
                Some(p) => p.clone(),
                None => {
                    return Err(format!(
                        "could not find vault ({}) [{reference}]: only the env vault is available (DB-less), under `env` or a `vaults:` entity's prefix",
                        r.vault
                    ))
                }
            }
        };
        let prefix = r.prefix.clone().unwrap_or(base);
        let mut name = format!("{prefix}{}", r.resource)
            .replace('-', "_")
            .to_uppercase();
        if r.version == Some(2) {
            name.push_str("_PREVIOUS");
        }
        let fail =
            |why: String| format!("could not get value from external vault ({why}) [{reference}]");
        let value = env(&name).ok_or_else(|| {
            fail(format!(
                "no value found: environment variable {name} is not set"
            ))
        })?;
        let Some(key) = &r.key else {
            return Ok(value.to_owned());
        };
        let json: serde_json::Value = serde_json::from_str(value).map_err(|_| {
            fail("could not get subfield value: unable to json decode value".to_owned())
        })?;
        match json.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(fail(format!(
                "could not get subfield value: unexpected value in JSON secret for subfield {key}"
            ))),
            None => Err(fail(format!(
                "could not get subfield value: subfield {key} not found in JSON secret"
            ))),
        }
    }
}

static ENV_PREFIX: OnceLock<String> = OnceLock::new();

/// Sets the env vault's base prefix (Kong's `vault_env_prefix`) and reads the environment,
/// once at startup: later changes to the environment are not seen, as in Kong.
pub fn set_env_prefix(prefix: Option<String>) {
    let _ = ENV_PREFIX.set(prefix.unwrap_or_default());
    env("");
}

fn env_prefix() -> &'static str {
    ENV_PREFIX.get().map_or("", String::as_str)
}

/// The environment variable `name` as the env vault sees it. The gateway's own settings
/// (`PROXY_*`, the admin token among them) are not visible through it.
pub fn env(name: &str) -> Option<&'static str> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        std::env::vars()
            .filter(|(k, _)| !k.starts_with("PROXY_"))
            .collect()
    });
    env.get(name).map(String::as_str)
}

/// The base prefix set by [`set_env_prefix`] (`None` when empty).
pub fn base_prefix() -> Option<&'static str> {
    Some(env_prefix()).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_kong_parses_them() {
        let r = parse("{vault://env/my-secret}").unwrap();
        assert_eq!(
            (r.vault.as_str(), r.resource.as_str(), r.key),
            ("env", "my-secret", None)
        );
        let r = parse("{vault://env/creds/password?prefix=app_#2}").unwrap();
        assert_eq!(r.resource, "creds");
        assert_eq!(r.key.as_deref(), Some("password"));
        assert_eq!(r.prefix.as_deref(), Some("app_"));
        assert_eq!(r.version, Some(2));
        assert_eq!(parse("{vault://env/creds/}").unwrap().resource, "creds");
        for (bad, why) in [
            ("{vault:///x}", "missing host"),
            ("{vault://env}", "missing path"),
            ("{vault://env/}", "empty path"),
            ("{vault://env/x#two}", "invalid version"),
            ("vault://env/x", "not a reference"),
        ] {
            assert!(parse(bad).unwrap_err().contains(why), "{bad}");
        }
    }

    #[test]
    fn unknown_vaults_and_missing_variables_are_errors_naming_the_reference() {
        let v = Vaults::default();
        let e = v.resolve("{vault://aws/x}").unwrap_err();
        assert!(
            e.contains("could not find vault (aws)") && e.contains("{vault://aws/x}"),
            "{e}"
        );
        let e = v
            .resolve("{vault://env/sluice-test-surely-unset-variable}")
            .unwrap_err();
        assert!(
            e.contains("SLUICE_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{e}"
        );
    }

    #[test]
    fn path_and_the_json_key_of_a_value() {
        // PATH is set in every test environment; its value is not JSON.
        let v = Vaults::default();
        assert_eq!(
            v.resolve("{vault://env/path}").unwrap(),
            std::env::var("PATH").unwrap()
        );
        let e = v.resolve("{vault://env/path/field}").unwrap_err();
        assert!(e.contains("unable to json decode"), "{e}");
        let mut named = Vaults::default();
        named.add_env("sys", "PA");
        assert_eq!(
            named.resolve("{vault://sys/th}").unwrap(),
            std::env::var("PATH").unwrap()
        );
    }
}
