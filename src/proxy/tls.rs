//! TLS termination: the certificate for each handshake is chosen by SNI from the snapshot
//! serving at that moment (a reload changes certificates for new handshakes; established
//! connections keep theirs). When no SNI matches, a default self-signed certificate made at
//! startup is served, as Kong serves its default certificate.

use std::any::Any;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use pingora::tls::ssl::NameType;

use crate::snapshot::{Pair, Snapshot};

/// The server name the client asked for, kept with the connection for routing.
#[derive(Debug, Clone)]
pub struct ServerName(pub String);

/// Picks each handshake's certificate.
#[derive(Clone)]
pub struct CertSelector {
    state: Arc<ArcSwap<Snapshot>>,
    default: Pair,
}

impl CertSelector {
    /// [`CertSelector::new`] with the default certificate and key read from files.
    pub fn from_files(
        state: Arc<ArcSwap<Snapshot>>,
        default: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<CertSelector, String> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let pems = match default {
            Some((c, k)) => Some((read(c)?, read(k)?)),
            None => None,
        };
        CertSelector::new(state, pems.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))
    }

    /// A selector over the live snapshot. The default certificate (served when no SNI
    /// matches) is `default` (PEM certificate chain and key, Kong's `ssl_cert` and
    /// `ssl_cert_key`) or a fresh self-signed one.
    pub fn new(
        state: Arc<ArcSwap<Snapshot>>,
        default: Option<(&str, &str)>,
    ) -> Result<CertSelector, String> {
        let default = match default {
            Some((cert, key)) => crate::snapshot::Pair::from_pem(cert, key)?,
            None => self_signed("localhost").map_err(|e| format!("default certificate: {e}"))?,
        };
        Ok(CertSelector { state, default })
    }
}

#[async_trait]
impl TlsAccept for CertSelector {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let snap = self.state.load();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let (pair, alt) = snap
            .certs
            .select(sni.as_deref())
            .map_or((&self.default, None), |(main, alt)| (main, alt.as_ref()));
        // OpenSSL keeps one certificate per key type and serves the one the client supports,
        // so `cert_alt` (e.g. ECDSA next to RSA) is installed next to the main one.
        let result = [Some(pair), alt].into_iter().flatten().try_for_each(|p| {
            ext::ssl_use_certificate(ssl, &p.chain[0])?;
            ext::ssl_use_private_key(ssl, &p.key)?;
            for c in &p.chain[1..] {
                ext::ssl_add_chain_cert(ssl, c)?;
            }
            Ok::<(), pingora::tls::error::ErrorStack>(())
        });
        if let Err(e) = result {
            tracing::error!(sni = ?sni, error = %e, "cannot use the certificate for a handshake");
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let name = ssl.servername(NameType::HOST_NAME)?;
        Some(Arc::new(ServerName(name.to_ascii_lowercase())))
    }
}

/// A self-signed certificate for `name`, valid for ten years.
fn self_signed(name: &str) -> Result<Pair, pingora::tls::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509NameBuilder, X509};

    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", name)?;
    let subject = subject.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(&subject)?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(Pair {
        chain: vec![b.build()],
        key,
    })
}
