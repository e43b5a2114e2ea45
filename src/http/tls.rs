//! `--tls-cert` / `--tls-key`: HTTPS with rustls (ring), the files read again when they change
//! (cert-manager rotates a certificate by updating its Secret, which the kubelet swaps in the
//! mounted volume). A new pair that does not load (a half-written file, a key that does not
//! match) leaves the previous one in force and is tried again when the files change again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::token::{Stamp, stamp};
use crate::error::{Error, Result};

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: (Stamp, Stamp),
    /// The last versions that did not load (logged once).
    failed: Option<(Stamp, Stamp)>,
}

pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

impl TlsFiles {
    /// Loads the pair; one that does not load is a configuration error.
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        let stamps = stamps(cert, key)
            .map_err(|err| Error::Config(format!("--tls-cert/--tls-key: {err}")))?;
        let acceptor = acceptor(cert, key)
            .map_err(|err| Error::Config(format!("--tls-cert/--tls-key: {err}")))?;
        Ok(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(Loaded {
                acceptor,
                stamps,
                failed: None,
            }),
        })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The acceptor for the next connection, with the files read again if they changed.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let mut state = self.state.lock().ok()?;
        let Ok(now) = stamps(&self.cert, &self.key) else {
            // Mid-swap or removed: keep serving with what was loaded.
            return Some(state.acceptor.clone());
        };
        if now == state.stamps || state.failed.as_ref() == Some(&now) {
            return Some(state.acceptor.clone());
        }
        match acceptor(&self.cert, &self.key) {
            Ok(acceptor) => {
                log::info!("TLS certificate {} changed: reloaded", self.cert.display());
                *state = Loaded {
                    acceptor,
                    stamps: now,
                    failed: None,
                };
            }
            Err(err) => {
                log::warn!(
                    "TLS certificate {} or key {} changed but does not load ({err}); the \
                     previous one stays in force",
                    self.cert.display(),
                    self.key.display()
                );
                state.failed = Some(now);
            }
        }
        Some(state.acceptor.clone())
    }
}

fn stamps(cert: &Path, key: &Path) -> Result<(Stamp, Stamp), String> {
    let cert_stamp = stamp(cert).map_err(|err| format!("{}: {err}", cert.display()))?;
    let key_stamp = stamp(key).map_err(|err| format!("{}: {err}", key.display()))?;
    Ok((cert_stamp, key_stamp))
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let cert_pem = std::fs::read(cert).map_err(|err| format!("{}: {err}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|err| format!("{}: {err}", key.display()))?;
    let config = server_config(&cert_pem, &key_pem)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A server configuration from PEM: the certificate chain (leaf first) and a PKCS#8, PKCS#1 or
/// SEC1 key that matches the leaf. HTTP/1.1 only.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("the certificate is not PEM: {err}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no CERTIFICATE".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| format!("the key file holds no private key: {err}"))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| format!("the certificate and key do not make a pair: {err}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
