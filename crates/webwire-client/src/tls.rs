//! TLS for `wss://` URLs: rustls with the ring provider.
//!
//! Roots: by default the platform's trust store, read with
//! `rustls-native-certs`. We pick it over `webpki-roots` because a client
//! library should trust what the machine's administrator trusts (corporate
//! and private CAs installed in the system store) and should follow the
//! platform's updates and removals, rather than a Mozilla snapshot compiled
//! into the binary. Where no system store exists (minimal containers),
//! the application gives its CA with [`TlsConfig::with_ca_pem`] or a full
//! rustls configuration with [`TlsConfig::from_rustls`].

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{ConnectError, TlsError};

/// How the client verifies servers on `wss://` URLs.
///
/// Cheap to clone. Without one, [`ClientBuilder`](crate::ClientBuilder)
/// uses [`TlsConfig::native_roots`] for `wss://` URLs.
///
/// ```
/// use webwire_client::{Client, TlsConfig};
///
/// # fn ca_pem() -> Vec<u8> { Vec::new() }
/// let builder = Client::builder("wss://chat.example.com/ws");
/// // Trust only the given CA (for example a private CA):
/// if let Ok(tls) = TlsConfig::with_ca_pem(&ca_pem()) {
///     let _builder = builder.tls(tls);
/// }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
}

impl TlsConfig {
    /// Trusts the platform's root certificates (the system trust store).
    ///
    /// Certificates the platform store holds but rustls cannot parse are
    /// skipped; it fails only if no usable root is left.
    pub fn native_roots() -> Result<Self, TlsError> {
        let loaded = rustls_native_certs::load_native_certs();
        for err in &loaded.errors {
            tracing::debug!(error = %err, "skipping part of the platform trust store");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "platform root certificates rustls could not use");
        }
        if added == 0 {
            return Err(TlsError::NoCertificates);
        }
        Self::with_roots(roots)
    }

    /// Trusts only the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks).
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|err| TlsError::Pem(err.to_string()))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        Self::with_roots(roots)
    }

    /// Uses a complete rustls configuration (client certificates, custom
    /// verifiers, another crypto provider...).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// Accepts **any** server certificate: expired, self-signed, for
    /// another name. The connection is still encrypted, but anyone on the
    /// path can impersonate the server, so this is only for poking a test
    /// server by hand (the `webwire` command's `--insecure`), never for an
    /// application. Handshake signatures are still checked.
    ///
    /// ```
    /// let _tls = webwire_client::TlsConfig::danger_accept_any_certificate();
    /// ```
    pub fn danger_accept_any_certificate() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AcceptAnyCertificate(Arc::clone(&provider)));
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // The ring provider supports the default versions.
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self {
            config: Arc::new(config),
        }
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Runs the TLS handshake on `tcp` for the server name `host`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let name = ServerName::try_from(host.to_owned()).map_err(ConnectError::tls)?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(ConnectError::tls)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// The verifier of [`TlsConfig::danger_accept_any_certificate`]: trusts
/// every certificate, checks the handshake signatures with the provider.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
