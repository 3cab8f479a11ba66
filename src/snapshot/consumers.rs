//! Look-ups the auth plugins make per request, built once per snapshot: credentials by key
//! or username, consumers by id or username, each consumer's ACL groups.

use std::collections::HashMap;

use crate::config::model::{Config, Credential};

/// Consumers and credentials indexed for request-time look-ups.
#[derive(Debug, Default)]
pub struct Consumers {
    /// key-auth key → index into [`Config::credentials`].
    pub keys: HashMap<String, usize>,
    /// basic-auth username → index into [`Config::credentials`].
    pub basic: HashMap<String, usize>,
    /// Consumer id, and username, → index into [`Config::consumers`].
    pub by_ref: HashMap<String, usize>,
    /// ACL groups of each consumer (by consumer index).
    pub groups: Vec<Vec<String>>,
}

impl Consumers {
    /// Indexes `config`'s consumers and credentials.
    pub fn new(config: &Config) -> Consumers {
        let mut out = Consumers {
            groups: vec![Vec::new(); config.consumers.len()],
            ..Default::default()
        };
        for (i, c) in config.consumers.iter().enumerate() {
            if let Some(u) = &c.username {
                out.by_ref.insert(u.clone(), i);
            }
        }
        // Ids win over usernames that happen to look like another consumer's id.
        for (i, c) in config.consumers.iter().enumerate() {
            out.by_ref.insert(c.id.clone(), i);
        }
        for (i, cred) in config.credentials.iter().enumerate() {
            match &cred.credential {
                Credential::KeyAuth { key, .. } => {
                    out.keys.insert(key.clone(), i);
                }
                Credential::BasicAuth { username, .. } => {
                    out.basic.insert(username.clone(), i);
                }
                Credential::Acl { group } => out.groups[cred.consumer].push(group.clone()),
                Credential::Jwt { .. } => {}
            }
        }
        out
    }

    /// The consumer with this id or username (Kong's `anonymous` setting accepts both).
    pub fn find(&self, id_or_username: &str) -> Option<usize> {
        self.by_ref.get(id_or_username).copied()
    }
}
