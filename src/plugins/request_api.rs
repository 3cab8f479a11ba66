//! Request-side helpers for native plugins: headers, query, the authenticated consumer.

use crate::config::model::Credential;

use super::{PhaseCtx, PluginError};

impl PhaseCtx<'_> {
    /// The first value of a request header (as the plugins see it, changes included).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Sets a request header sent upstream (replacing other values).
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        self.req
            .insert_header(name.to_ascii_lowercase(), value)
            .map_err(|e| PluginError(format!("invalid header {name}: {e}")))
    }

    /// Adds a request header value sent upstream.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        self.req
            .append_header(name.to_ascii_lowercase(), value)
            .map(|_| ())
            .map_err(|e| PluginError(format!("invalid header {name}: {e}")))
    }

    /// Removes a request header.
    pub fn clear_header(&mut self, name: &str) {
        self.req.remove_header(name);
    }

    /// The request's raw query string as the upstream will see it (plugin changes included).
    pub fn raw_query(&self) -> &str {
        match &self.state.upstream.query {
            Some(q) => q,
            None => self.req.uri.query().unwrap_or(""),
        }
    }

    /// The query arguments, decoded, in order (repeated names kept).
    pub fn query_args(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.raw_query().as_bytes())
            .into_owned()
            .collect()
    }

    /// Replaces the query sent upstream with these arguments.
    pub fn set_query_args(&mut self, args: &[(String, String)]) {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(args)
            .finish();
        self.state.upstream.query = Some(query);
    }

    /// Records the authenticated consumer and credential (Kong's `kong.client.authenticate`)
    /// and sets the X-Consumer-* / X-Credential-Identifier / X-Anonymous-Consumer headers
    /// sent upstream, as Kong's auth plugins do. `credential` indexes the config's
    /// credentials; None with a consumer means the anonymous consumer.
    pub fn authenticate(
        &mut self,
        consumer: usize,
        credential: Option<usize>,
    ) -> Result<(), PluginError> {
        let snap = self.snap;
        let c = &snap.config.consumers[consumer];
        self.state.consumer = Some(consumer);
        self.set_header("x-consumer-id", &c.id)?;
        match &c.custom_id {
            Some(v) => self.set_header("x-consumer-custom-id", v)?,
            None => self.clear_header("x-consumer-custom-id"),
        }
        match &c.username {
            Some(v) => self.set_header("x-consumer-username", v)?,
            None => self.clear_header("x-consumer-username"),
        }
        match credential.map(|i| &snap.config.credentials[i]) {
            Some(cred) => {
                self.state.credential = Some(credential_json(snap, cred));
                self.set_header("x-credential-identifier", &cred.id)?;
                self.clear_header("x-anonymous-consumer");
            }
            None => {
                self.state.credential = None;
                self.clear_header("x-credential-identifier");
                self.set_header("x-anonymous-consumer", "true")?;
            }
        }
        Ok(())
    }
}

/// A credential as `kong.client.get_credential()` returns it (secrets left out).
fn credential_json(
    snap: &crate::snapshot::Snapshot,
    cred: &crate::config::model::ConsumerCredential,
) -> serde_json::Value {
    let consumer = &snap.config.consumers[cred.consumer];
    let mut v = serde_json::json!({
        "id": cred.id,
        "consumer": { "id": consumer.id },
        "tags": cred.tags,
    });
    match &cred.credential {
        Credential::KeyAuth { key, ttl } => {
            v["key"] = key.clone().into();
            v["ttl"] = serde_json::json!(ttl);
        }
        Credential::BasicAuth { username, .. } => v["username"] = username.clone().into(),
        Credential::Acl { group } => v["group"] = group.clone().into(),
        Credential::Jwt { key, algorithm, .. } => {
            v["key"] = key.clone().into();
            v["algorithm"] = algorithm.clone().into();
        }
    }
    v
}
