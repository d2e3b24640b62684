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
        let status = exchange_status(&ferry, &token).await;
        // With the bundle the keys are fetched; its twin without it cannot trust the
        // issuer's certificate: the keys are unavailable (503), never skipped.
        assert_eq!(
            status,
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
        let status = exchange_status(&ferry, &token).await;
        assert_eq!(status, 200, "through the proxy: {through_proxy}");
        let targets = proxy.targets();
        if through_proxy {
            assert_eq!(targets, vec![format!("127.0.0.1:{port}")]);
        } else {
            assert!(targets.is_empty(), "{targets:?}");
        }
    }
}

/// The Python half of the private-network test, run inside its own network namespace
/// where 10.77.0.1 is a local address: a TLS issuer on it, Ferry, and one exchange; it
/// prints the exchange's status.
const IN_NAMESPACE: &str = r#"
import http.server, json, os, ssl, subprocess, sys, threading, urllib.parse, urllib.request
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(os.path.join(d, "idp.json"), "rb").read()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("10.77.0.1", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "leaf.pem"), os.path.join(d, "leaf-key.pem"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
env = dict(os.environ, FERRY_LISTEN="127.0.0.1:0", FERRY_ADMIN_LISTEN="127.0.0.1:0")
p = subprocess.Popen([sys.argv[2], "serve", "--config", os.path.join(d, "ferry.yaml")],
                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
url = None
for line in p.stdout:
    if "ferry listening on http" in line:
        url = line[line.index("http"):].split()[0]; break
form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token": open(os.path.join(d, "token")).read(),
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "audience": "https://api.example.com"}).encode()
try:
    status = urllib.request.urlopen(url + "/token", form, timeout=10).status
except urllib.error.HTTPError as e:
    status = e.code
print("status", status, flush=True)
p.terminate(); p.wait(10)
"#;

/// `allow_private_network`: an issuer at a private address (10.77.0.1, inside a network
/// namespace this test makes) is reachable for its provider with the setting, and
/// refused without it (the keys are unavailable: 503). Needs `unshare -n` (root); where
/// that is impossible the test says so and stops.
#[tokio::test]
async fn a_private_issuer_is_reachable_only_with_allow_private_network() {
    let probe = std::process::Command::new("unshare")
        .args(["-n", "ip", "addr", "add", "10.77.0.1/32", "dev", "lo"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no network namespace here (unshare -n needs root)");
        return;
    }
    let (ca_pem, leaf, key) = pki_for(&["10.77.0.1"]);
    for allow in [true, false] {
        let setup = Setup::new("private-net");
        let idp = setup.idp();
        setup.write("corp-ca.pem", &ca_pem);
        setup.write("leaf.pem", pem("CERTIFICATE", &leaf));
        setup.write("leaf-key.pem", pem("PRIVATE KEY", &key));
        let iss = "https://ferry.example.com";
        setup.write(
            "token",
            idp.token(&idp.claims(iss, "alice", ferry_testkit::now(), json!({}))),
        );
        setup.config(&format!(
            "issuer: {iss}\ndata_dir: data\nlimits: {{ shutdown_delay: 0s }}\nproviders:\n  - id: corp\n    issuer: https://idp.example.com\n    audiences: [{iss}]\n    jwks: {{ uri: \"https://10.77.0.1:8443/jwks\" }}\n    ca_file: corp-ca.pem\n    allow_private_network: {allow}\naudiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n"
        ));
        let script = setup.write("in-namespace.py", IN_NAMESPACE);
        let out = std::process::Command::new("unshare")
            .arg("-n")
            .arg("sh")
            .arg("-c")
            .arg("ip link set lo up && ip addr add 10.77.0.1/32 dev lo && exec python3 \"$0\" \"$1\" \"$2\"")
            .arg(&script)
            .arg(setup.path())
            .arg(crate::harness::bin("ferry"))
            .env("FERRY_KEK", crate::harness::TEST_KEK)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let want = if allow { "status 200" } else { "status 503" };
        assert!(
            text.contains(want),
            "allow_private_network: {allow}: {text}"
        );
    }
}

/// A CA, and a certificate for `names` it signed: (CA PEM, leaf DER, leaf key DER).
fn pki_for(names: &[&str]) -> (String, Vec<u8>, Vec<u8>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        leaf_cert.der().to_vec(),
        leaf_key.serialize_der(),
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A key fetch that fails is named by origin and path — in the log and in the admin
/// `/readyz` — never with its query string (which may carry a token).
#[tokio::test]
async fn a_failed_key_fetch_names_origin_and_path_only() {
    use ferry_testkit::MockIdp;
    use ferry_testkit::idp::Mode;
    let setup = Setup::new("fetch-errors");
    let idp = setup.idp();
    let mock = MockIdp::start(ferry_testkit::keys::jwks(&[&idp.key]))
        .await
        .unwrap();
    mock.set_mode(Mode::Error500);
    let url = setup.url();
    let ferry = setup.start(&format!(
        "issuer: {url}\ndata_dir: data\noutbound: {{ allow_insecure_origins: [\"{m}\"] }}\nproviders:\n  - id: corp\n    issuer: https://idp.example.com\n    audiences: [{url}]\n    jwks: {{ uri: \"{m}/jwks?access_token=s3cret-query\" }}\naudiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n",
        m = mock.url
    ));
    let token = idp.token(&idp.claims(&url, "alice", ferry_testkit::now(), json!({})));
    let status = exchange_status(&ferry, &token).await;
    assert_eq!(status, 503);
    let ready = reqwest::get(format!("{}/readyz", ferry.admin.clone().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let named = format!("{}/jwks: HTTP status 500", mock.url);
    assert!(ready.contains(&named), "{ready}");
    let mut ferry = ferry;
    ferry.proc_mut().wait_for(&named).unwrap();
    let log = ferry.proc().output();
    assert!(log.contains(&named), "{log}");
    for text in [&ready, &log] {
        assert!(!text.contains("s3cret-query"), "{text}");
    }
}

/// Exchanges `token` for `https://api.example.com`; the status.
async fn exchange_status(ferry: &crate::harness::Ferry, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "https://api.example.com"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
