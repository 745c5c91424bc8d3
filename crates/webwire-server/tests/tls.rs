//! `wss://` with a self-signed certificate made in the test.

mod common;

use std::sync::Arc;

use common::{reply_text, within, ClientOptions, TestClient};
use rustls::pki_types::ServerName;
use webwire_proto::Payload;
use webwire_server::{MessageRouter, ReplyError, Request, Server, ServerError, TlsConfig};

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    common::init_logs();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let tls = TlsConfig::from_pem_files(&cert_path, &key_path).unwrap();
    let router = MessageRouter::new().request("echo", |req: Request| async move {
        Ok::<_, ReplyError>(req.payload().clone())
    });
    let server = Server::builder(router).build().unwrap();
    let listener = server.bind_tls("127.0.0.1:0", tls).await.unwrap();
    let addr = listener.local_addr();
    let running = tokio::spawn(listener.run());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = within(
        "TLS handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap();
    let host = format!("localhost:{}", addr.port());
    let mut client = within(
        "upgrade",
        TestClient::try_connect_on(Box::new(stream), &host, "wss", ClientOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(client.conf.buffer_size, 8192);
    assert_eq!(
        reply_text(&client.request("echo", Payload::utf8("secret")).await),
        "secret"
    );

    // A plain-text client cannot talk to the TLS port.
    let plain = within(
        "plain connect",
        TestClient::try_connect(addr, ClientOptions::default()),
    )
    .await;
    assert!(plain.is_err());

    client.close().await;
    within("shutdown", server.shutdown()).await;
    within("listener", running).await.unwrap().unwrap();
}

#[test]
fn bad_certificates_are_clear_errors() {
    let missing = TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem");
    assert!(matches!(missing, Err(ServerError::TlsFile { .. })));
    let empty = TlsConfig::from_pem(b"", b"");
    assert!(matches!(empty, Err(ServerError::Tls(_))));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let no_key = TlsConfig::from_pem(cert.cert.pem().as_bytes(), b"");
    match no_key {
        Err(ServerError::Tls(reason)) => assert!(reason.contains("no private key"), "{reason}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let bad_key = b"-----BEGIN PRIVATE KEY-----\n!!not base64!!\n-----END PRIVATE KEY-----\n";
    match TlsConfig::from_pem(cert.cert.pem().as_bytes(), bad_key) {
        Err(ServerError::Tls(reason)) => {
            assert!(reason.contains("reading the key PEM"), "{reason}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let unterminated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
    match TlsConfig::from_pem(unterminated, cert.signing_key.serialize_pem().as_bytes()) {
        Err(ServerError::Tls(reason)) => {
            assert!(reason.contains("reading the certificate PEM"), "{reason}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let good = TlsConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    );
    assert!(good.is_ok(), "{good:?}");
}
