//! Issuers on private networks (issue 22 item 4): a provider's own CA bundle (`ca_file`)
//! is trusted for its key fetches only. The test issuer serves its JWKS over TLS with a
//! certificate from a CA made here (rcgen), on loopback, which the test opts in with
//! `outbound.allow_insecure_origins` (loopback stays refused by `allow_private_network`;
//! a private address exists on this machine only inside a network namespace).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Setup;

/// A CA, and a certificate for 127.0.0.1 it signed: (CA PEM, leaf DER, leaf key DER).
fn pki() -> (String, Vec<u8>, Vec<u8>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        leaf_cert.der().to_vec(),
        leaf_key.serialize_der(),
    )
}

/// Serves `body` as JSON to every connection, over TLS; returns the port.
async fn tls_jwks(cert: Vec<u8>, key: Vec<u8>, body: String) -> u16 {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_providers_own_ca_bundle_is_trusted_for_its_keys() {
    let (ca_pem, leaf, key) = pki();
    for with_ca in [true, false] {
        let setup = Setup::new("private-ca");
        let idp = setup.idp();
        let jwks = ferry_testkit::keys::jwks(&[&idp.key]).to_string();
        let port = tls_jwks(leaf.clone(), key.clone(), jwks).await;
        setup.write("corp-ca.pem", &ca_pem);
        let url = setup.url();
        let ca_line = if with_ca {
            "    ca_file: corp-ca.pem\n"
        } else {
            ""
        };
        let ferry = setup.start(&format!(
            "issuer: {url}\ndata_dir: data\noutbound: {{ allow_insecure_origins: [\"https://127.0.0.1:{port}\"] }}\nproviders:\n  - id: corp\n    issuer: https://idp.example.com\n    audiences: [{url}]\n    jwks: {{ uri: \"https://127.0.0.1:{port}/jwks\" }}\n{ca_line}audiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n"
        ));
        let token = idp.token(&idp.claims(&url, "alice", ferry_testkit::now(), json!({})));
        let r = reqwest::Client::new()
            .post(format!("{}/token", ferry.url))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", "https://api.example.com"),
            ])
            .send()
            .await
            .unwrap();
        // With the bundle the keys are fetched; its twin without it cannot trust the
        // issuer's certificate: the keys are unavailable (503), never skipped.
        assert_eq!(
            r.status().as_u16(),
            if with_ca { 200 } else { 503 },
            "ca_file: {with_ca}"
        );
    }
}

/// `outbound.proxy`: key fetches go through the configured HTTP CONNECT proxy (the test
/// kit's), never straight to the issuer; its twin without the setting never touches it.
#[tokio::test]
async fn key_fetches_go_through_the_configured_proxy() {
    let (ca_pem, leaf, key) = pki();
    for through_proxy in [true, false] {
        let proxy = ferry_testkit::proxy::ConnectProxy::start().await.unwrap();
        let setup = Setup::new("egress-proxy");
        let idp = setup.idp();
        let jwks = ferry_testkit::keys::jwks(&[&idp.key]).to_string();
        let port = tls_jwks(leaf.clone(), key.clone(), jwks).await;
        setup.write("corp-ca.pem", &ca_pem);
        let url = setup.url();
        let proxy_line = if through_proxy {
            format!(", proxy: \"{}\"", proxy.url)
        } else {
            String::new()
        };
        let ferry = setup.start(&format!(
            "issuer: {url}\ndata_dir: data\noutbound: {{ allow_insecure_origins: [\"https://127.0.0.1:{port}\"]{proxy_line} }}\nproviders:\n  - id: corp\n    issuer: https://idp.example.com\n    audiences: [{url}]\n    jwks: {{ uri: \"https://127.0.0.1:{port}/jwks\" }}\n    ca_file: corp-ca.pem\naudiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n"
        ));
        let token = idp.token(&idp.claims(&url, "alice", ferry_testkit::now(), json!({})));
        let r = reqwest::Client::new()
            .post(format!("{}/token", ferry.url))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", "https://api.example.com"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "through the proxy: {through_proxy}"
        );
        let targets = proxy.targets();
        if through_proxy {
            assert_eq!(targets, vec![format!("127.0.0.1:{port}")]);
        } else {
            assert!(targets.is_empty(), "{targets:?}");
        }
    }
}
