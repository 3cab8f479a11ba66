//! TLS material of a snapshot: `certificates` parsed once, `snis` indexed for the handshake's
//! certificate selection (exact name, then `*.domain`, then `name.*`, as Kong matches), and
//! the upstream side: services' CA bundles and client certificates.

use std::collections::HashMap;
use std::sync::Arc;

use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;
use pingora::utils::tls::CertKey;

use crate::config::error::Errors;
use crate::config::model::Config;

/// A certificate chain and its key.
#[derive(Clone)]
pub struct Pair {
    /// Leaf first, then intermediates.
    pub chain: Vec<X509>,
    /// The private key of the leaf.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field(
                "subject",
                &self
                    .chain
                    .first()
                    .map(|c| format!("{:?}", c.subject_name())),
            )
            .finish_non_exhaustive()
    }
}

/// The snapshot's certificates, by SNI.
#[derive(Debug, Default)]
pub struct Certs {
    /// Parsed `certificates` (cert/key, and cert_alt/key_alt when given), by config index.
    pub pairs: Vec<Option<(Pair, Option<Pair>)>>,
    /// SNI names, wildcards included as written (`*.example.com`, `example.*`).
    names: HashMap<String, usize>,
    /// Client certificates for upstream mTLS, by certificate index.
    pub client: HashMap<usize, Arc<CertKey>>,
    /// CA bundles for upstream verification, by service index.
    pub service_ca: HashMap<usize, Arc<Box<[X509]>>>,
}

impl Pair {
    /// Parses a PEM certificate chain and its PEM private key, checking they match.
    pub fn from_pem(cert: &str, key: &str) -> Result<Pair, String> {
        parse_pair(cert, key)
    }
}

fn parse_pair(cert: &str, key: &str) -> Result<Pair, String> {
    let chain = X509::stack_from_pem(cert.as_bytes())
        .map_err(|e| format!("cert: not a PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err("cert: no certificate in the PEM".into());
    }
    let key = PKey::private_key_from_pem(key.as_bytes())
        .map_err(|e| format!("key: not a PEM private key: {e}"))?;
    let public = chain[0]
        .public_key()
        .map_err(|e| format!("cert: cannot read its public key: {e}"))?;
    if !public.public_eq(&key) {
        return Err("key: does not match the certificate".into());
    }
    Ok(Pair { chain, key })
}

impl Certs {
    /// Parses the config's certificates, SNIs and CA certificates; problems are located.
    pub fn new(config: &Config, errs: &mut Errors) -> Certs {
        let mut out = Certs::default();
        for c in &config.certificates {
            let main = parse_pair(&c.cert, &c.key);
            let alt = match (&c.cert_alt, &c.key_alt) {
                (Some(cert), Some(key)) => {
                    Some(parse_pair(cert, key).map_err(|e| format!("{e} (alt)")))
                }
                _ => None,
            };
            match (main, alt.transpose()) {
                (Ok(main), Ok(alt)) => out.pairs.push(Some((main, alt))),
                (Err(e), _) | (_, Err(e)) => {
                    errs.at(c.origin.loc, c.origin.path.clone(), e);
                    out.pairs.push(None);
                }
            }
        }
        for sni in &config.snis {
            out.names
                .insert(sni.name.to_ascii_lowercase(), sni.certificate);
        }

        for (i, s) in config.services.iter().enumerate() {
            if let Some(c) = s.client_certificate {
                if let Some(Some((pair, _))) = out.pairs.get(c) {
                    out.client.insert(
                        c,
                        Arc::new(CertKey::new(pair.chain.clone(), pair.key.clone())),
                    );
                }
            }
            if s.ca_certificates.is_empty() {
                continue;
            }
            let mut bundle = Vec::new();
            for id in &s.ca_certificates {
                match config.ca_certificates.iter().find(|c| &c.id == id) {
                    Some(ca) => match X509::stack_from_pem(ca.cert.as_bytes()) {
                        Ok(certs) => bundle.extend(certs),
                        Err(e) => errs.at(
                            ca.origin.loc,
                            ca.origin.path.clone(),
                            format!("cert: not a PEM certificate: {e}"),
                        ),
                    },
                    None => errs.at(
                        s.origin.loc,
                        format!("{}.ca_certificates", s.origin.path),
                        format!("CA certificate {id:?} does not exist"),
                    ),
                }
            }
            out.service_ca
                .insert(i, Arc::new(bundle.into_boxed_slice()));
        }
        out
    }

    /// The certificate for the client's server name (None: use the default certificate).
    pub fn select(&self, sni: Option<&str>) -> Option<&(Pair, Option<Pair>)> {
        let name = sni?.to_ascii_lowercase();
        // As Kong: the exact name, then its first label as `*`, then its last label as `*`.
        let leading = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let trailing = name.rsplit_once('.').map(|(head, _)| format!("{head}.*"));
        let index = self
            .names
            .get(&name)
            .or_else(|| leading.and_then(|w| self.names.get(&w)))
            .or_else(|| trailing.and_then(|w| self.names.get(&w)))
            .copied()?;
        self.pairs.get(index)?.as_ref()
    }
}
