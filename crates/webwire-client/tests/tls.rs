//! `wss://` with a CA made in the test.

mod common;

use std::sync::Arc;

use common::{builder, ca_and_leaf, default_conf, Peer, TestCerts};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use webwire_client::{ConnectError, Payload, TlsConfig};

/// A CA (its PEM) and a server configuration with a certificate for
/// 127.0.0.1 signed by it.
fn ca_and_server() -> (String, Arc<rustls::ServerConfig>) {
    let TestCerts { ca, leaf, leaf_key } = ca_and_leaf();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .unwrap();
    (ca.pem(), Arc::new(server))
}

#[tokio::test]
async fn wss_with_the_given_ca() {
    let (ca_pem, server) = ca_and_server();
    let mut peer = Peer::start_tls(server).await;
    assert!(peer.url.starts_with("wss://127.0.0.1:"));
    let tls = TlsConfig::with_ca_pem(ca_pem.as_bytes()).unwrap();
    let (client, mut conn) = tokio::join!(
        builder(&peer.url).tls(tls).connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let (reply, ()) = tokio::join!(client.request("echo", "over tls"), async {
        let (id, _, payload) = conn.recv_request().await;
        conn.reply(id, payload).await;
    });
    assert_eq!(reply.unwrap(), Payload::utf8("over tls"));
}

#[tokio::test]
async fn wss_refuses_a_server_signed_by_another_ca() {
    let (_, server) = ca_and_server();
    let (other_ca, _) = ca_and_server();
    let peer = Peer::start_tls(server).await;
    let tls = TlsConfig::with_ca_pem(other_ca.as_bytes()).unwrap();
    let err = builder(&peer.url).tls(tls).connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn wss_with_platform_roots_refuses_a_private_ca() {
    let (_, server) = ca_and_server();
    let peer = Peer::start_tls(server).await;
    // Without a TlsConfig the platform's roots are used (or, on a machine
    // without any, building the default configuration fails): either way a
    // certificate from a private CA is not trusted.
    let err = builder(&peer.url).connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::Tls(_)), "{err:?}");
}

#[test]
fn pem_without_certificates_is_refused() {
    assert!(TlsConfig::with_ca_pem(b"").is_err());
    assert!(TlsConfig::with_ca_pem(
        b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
    )
    .is_err());
}

#[tokio::test]
async fn wss_accepting_any_certificate_connects_to_an_unknown_ca() {
    let (_, server) = ca_and_server();
    let mut peer = Peer::start_tls(server).await;
    let (client, mut conn) = tokio::join!(
        builder(&peer.url)
            .tls(TlsConfig::danger_accept_any_certificate())
            .connect(),
        peer.accept_with(default_conf())
    );
    let client = client.unwrap();
    let (reply, ()) = tokio::join!(client.request("echo", "trusted anyway"), async {
        let (id, _, payload) = conn.recv_request().await;
        conn.reply(id, payload).await;
    });
    assert_eq!(reply.unwrap(), Payload::utf8("trusted anyway"));
}
