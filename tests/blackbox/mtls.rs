//! Certificate-bound access tokens (RFC 8705 §3, issue 24 item 3): Ferry's TLS listener
//! asks for a client certificate (`tls.client_auth: optional`); a request that presents
//! one and no DPoP proof gets a token bound to it (`cnf.x5t#S256`), an audience with
//! `require_mtls` refuses requests without one, a DPoP proof still binds to its key, and
//! a certificate-bound token can only be narrowed over a connection with the same
//! certificate. Client certificates are made by the `openssl` command line; the
//! expected thumbprint is computed by `openssl` too.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use ferry_testkit::mint::{dpop_proof, payload};
use ferry_testkit::{TestKey, now};
use serde_json::Value;

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const OPEN: &str = "https://open.example.com";
const MTLS: &str = "https://mtls.example.com";

/// A self-signed client certificate made by openssl: (cert+key PEM, x5t#S256 by openssl).
fn openssl_client(dir: &Path, name: &str) -> (Vec<u8>, String) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let digest = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(&der)?;
            c.wait_with_output()
        })
        .unwrap()
        .stdout;
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    let mut pem = std::fs::read(&cert).unwrap();
    pem.extend(std::fs::read(&key).unwrap());
    (pem, thumbprint)
}

/// Ferry's URL over TLS (its issuer).
fn https(setup: &Setup) -> String {
    setup.url().replace("http://", "https://")
}

struct Fx {
    setup: Setup,
    _ferry: Ferry,
    ca: reqwest::Certificate,
    idp: ferry_testkit::Issuer,
}

impl Fx {
    fn start(tag: &str) -> Self {
        let setup = Setup::new(tag);
        let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        setup.write("cert.pem", server.cert.pem());
        setup.write("key.pem", server.signing_key.serialize_pem());
        let idp = setup.idp();
        let ferry = setup.start(&format!(
            "issuer: {url}\ntls: {{ cert_file: cert.pem, key_file: key.pem, client_auth: optional }}\n{providers}\
             audiences:\n  - audience: {OPEN}\n    rules:\n      - allow: \"true\"\n        scopes: [read]\n\
             \x20 - audience: {MTLS}\n    require_mtls: true\n    rules:\n      - allow: \"true\"\n        scopes: [read]\n",
            url = https(&setup),
            providers = idp_providers(&https(&setup)),
        ));
        assert!(ferry.url.starts_with("https://"), "{}", ferry.url);
        Self {
            ca: reqwest::Certificate::from_pem(server.cert.pem().as_bytes()).unwrap(),
            setup,
            _ferry: ferry,
            idp,
        }
    }

    fn client(&self, identity: Option<&[u8]>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().tls_certs_only([self.ca.clone()]);
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self) -> String {
        https(&self.setup)
    }

    fn subject(&self) -> String {
        let t = self
            .idp
            .claims(&self.url(), "alice", now(), serde_json::json!({}));
        self.idp.token(&t)
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
        dpop: Option<String>,
    ) -> (u16, Value) {
        let mut req = http.post(format!("{}/token", self.url())).form(form);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn exchange(&self, http: &reqwest::Client, audience: &str) -> (u16, Value) {
        let subject = self.subject();
        self.post(
            http,
            &[
                ("grant_type", TE),
                ("subject_token_type", JWT),
                ("subject_token", &subject),
                ("audience", audience),
            ],
            None,
        )
        .await
    }
}

fn cnf(body: &Value) -> Value {
    payload(body["access_token"].as_str().unwrap())
        .get("cnf")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_client_certificate_binds_the_issued_token() {
    let fx = Fx::start("mtls-bind");
    let (pem, thumbprint) = openssl_client(fx.setup.path(), "alice-client");
    let with_cert = fx.client(Some(&pem));
    let without = fx.client(None);

    // Twin pair: the same exchange with and without a certificate.
    let (s, body) = fx.exchange(&with_cert, OPEN).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(cnf(&body), serde_json::json!({ "x5t#S256": thumbprint }));
    let (s, body) = fx.exchange(&without, OPEN).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(cnf(&body), Value::Null);

    // require_mtls: refused without a certificate, bound with one.
    let (s, body) = fx.exchange(&without, MTLS).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        body["error_description"],
        "a client certificate is required"
    );
    let (s, body) = fx.exchange(&with_cert, MTLS).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(cnf(&body), serde_json::json!({ "x5t#S256": thumbprint }));

    // A DPoP proof with a certificate: one binding, the proof's key.
    let key = TestKey::ec("holder");
    let proof = dpop_proof(
        &key,
        "POST",
        &format!("{}/token", fx.url()),
        now(),
        "p1",
        None,
        None,
    );
    let subject = fx.subject();
    let form = [
        ("grant_type", TE),
        ("subject_token_type", JWT),
        ("subject_token", subject.as_str()),
        ("audience", OPEN),
    ];
    let (s, body) = fx.post(&with_cert, &form, Some(proof)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert!(cnf(&body)["jkt"].is_string() && cnf(&body).get("x5t#S256").is_none());

    // The metadata says tokens are certificate-bound.
    let meta: Value = without
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            fx.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
}

#[tokio::test]
async fn a_certificate_bound_token_is_narrowed_only_with_its_certificate() {
    let fx = Fx::start("mtls-narrow");
    let (pem, thumbprint) = openssl_client(fx.setup.path(), "alice-client");
    let (other, _) = openssl_client(fx.setup.path(), "mallory-client");
    let (s, body) = fx.exchange(&fx.client(Some(&pem)), OPEN).await;
    assert_eq!(s, 200, "{body}");
    let bound = body["access_token"].as_str().unwrap().to_owned();
    let narrow = |http: reqwest::Client| {
        let bound = bound.clone();
        let fx = &fx;
        async move {
            fx.post(
                &http,
                &[
                    ("grant_type", TE),
                    ("subject_token_type", AT),
                    ("subject_token", &bound),
                    ("scope", "read"),
                ],
                None,
            )
            .await
        }
    };
    let (s, body) = narrow(fx.client(Some(&pem))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(cnf(&body), serde_json::json!({ "x5t#S256": thumbprint }));
    for (name, client) in [
        ("no certificate", fx.client(None)),
        ("another certificate", fx.client(Some(&other))),
    ] {
        let (s, body) = narrow(client).await;
        assert_eq!(s, 400, "{name}: {body}");
        assert_eq!(
            body["error_description"], "a client certificate is required",
            "{name}"
        );
    }
}
