//! TLS (`wss://`) with rustls on the `ring` provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

/// The certificate and key a [`Listener`](crate::Listener) serves `wss://` with.
///
/// ```no_run
/// use webwire_server::{MessageRouter, Server, TlsConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// let server = Server::builder(MessageRouter::new()).build()?;
/// let listener = server.bind_tls("0.0.0.0:443", tls).await?;
/// listener.run().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: TlsAcceptor,
}

impl TlsConfig {
    /// Reads a PEM certificate chain and a PEM private key (PKCS #8, PKCS
    /// #1 or SEC1) from files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, ServerError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ServerError::TlsFile {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert.as_ref())?, &read(key.as_ref())?)
    }

    /// A certificate chain and private key given as PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ServerError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|err| ServerError::Tls(format!("reading the certificate PEM: {err}")))?;
        if certs.is_empty() {
            return Err(ServerError::Tls(
                "no certificate in the certificate PEM".into(),
            ));
        }
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(ServerError::Tls("no private key in the key PEM".into()))
            }
            Err(err) => return Err(ServerError::Tls(format!("reading the key PEM: {err}"))),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| ServerError::Tls(err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|err| ServerError::Tls(err.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// A rustls configuration made elsewhere (client authentication, other
    /// providers, certificate resolvers).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}
