//! Client authentication with certificates (RFC 8705 §2) against the real binary on a TLS
//! listener with `client_auth: optional`: certificates made by the `openssl` command line
//! (a CA, leaves with SAN DNS / URI and a subject DN, a leaf from an unknown root,
//! self-signed ones), presented by reqwest, `curl --cert` and Python `requests`. Every
//! refusal sits beside its accepted twin that differs only in the attacked part.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::Setup;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";
const AUDIENCE: &str = "https://deploy.example.com";

/// Runs `openssl` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ],
    );
}

/// A CA `name` (`name.pem`, `name.key`).
fn ca(dir: &Path, name: &str) {
    key(dir, name);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "[req]\ndistinguished_name = dn\n[dn]\n[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-config",
            &format!("{name}.ext"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A client leaf `name` issued by `issuer` with `subject` and `san` (openssl syntax).
fn leaf(dir: &Path, name: &str, issuer: &str, subject: &str, san: &str) {
    let ext = format!(
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = clientAuth\nsubjectAltName = {san}\n"
    );
    issue(dir, name, issuer, subject, &ext);
}

/// A certificate `name` issued by `issuer` with `subject` and the extensions `ext`.
fn issue(dir: &Path, name: &str, issuer: &str, subject: &str, ext: &str) {
    key(dir, name);
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A self-signed certificate `name` for the key in `name.key`.
fn self_signed(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// The base64 DER of a PEM certificate (an `x5c` entry).
fn x5c(dir: &Path, name: &str) -> String {
    let pem = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Ferry on TLS asking for client certificates, with the certificates and clients the
/// tests use:
///
/// - `ca` and its leaves `a` (SAN DNS `client-a.example.com`, URI
///   `spiffe://example.com/a`), `b` (DN `C=US,O=Example Corp,CN=client-b`), `b-other`
///   (`C=US,O=Other Corp,CN=client-b`); `rogue` (an unknown root) and its `a-rogue`, with
///   the names of `a`; `a-server-eku` (the names of `a`, EKU serverAuth only); `c` issued
///   through the intermediate `int` (`c-chain.pem` holds both);
/// - self-signed `s1` (registered with `x5c`), `s2` (unregistered), `s3` (registered as
///   a bare JWK).
struct Env {
    setup: Setup,
    idp: Issuer,
    server_pem: Vec<u8>,
}

fn env(tag: &str) -> Env {
    let setup = Setup::new(tag);
    let dir = setup.path().to_owned();
    let server =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    setup.write("cert.pem", server.cert.pem());
    setup.write("key.pem", server.signing_key.serialize_pem());
    ca(&dir, "ca");
    ca(&dir, "rogue");
    let a_san = "DNS:client-a.example.com,URI:spiffe://example.com/a";
    leaf(&dir, "a", "ca", "/C=US/O=Example Corp/CN=client-a", a_san);
    leaf(
        &dir,
        "a-rogue",
        "rogue",
        "/C=US/O=Example Corp/CN=client-a",
        a_san,
    );
    leaf(
        &dir,
        "b",
        "ca",
        "/C=US/O=Example Corp/CN=client-b",
        "DNS:client-b.example.com",
    );
    leaf(
        &dir,
        "b-other",
        "ca",
        "/C=US/O=Other Corp/CN=client-b",
        "DNS:client-b.example.com",
    );
    // Only serverAuth: not for client authentication.
    let server_only = "basicConstraints = critical,CA:FALSE\nextendedKeyUsage = serverAuth\n\
                       subjectAltName = DNS:client-a.example.com\n";
    issue(&dir, "a-server-eku", "ca", "/CN=client-a", server_only);
    // ca → int → c: the client sends the intermediate (`c-chain`) or not (`c`).
    let int = "basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign\n";
    issue(&dir, "int", "ca", "/CN=int", int);
    leaf(&dir, "c", "int", "/CN=client-c", "DNS:client-c.example.com");
    let chain = [
        std::fs::read(dir.join("c.pem")).unwrap(),
        std::fs::read(dir.join("int.pem")).unwrap(),
    ];
    setup.write("c-chain.pem", chain.concat());
    std::fs::copy(dir.join("c.key"), dir.join("c-chain.key")).unwrap();
    for s in ["s1", "s2"] {
        key(&dir, s);
        self_signed(&dir, s);
    }
    let s3 = TestKey::ec("s3");
    setup.write("s3.key", pkcs8_pem(s3.pkcs8()));
    self_signed(&dir, "s3");
    setup.write(
        "s1.json",
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x5c": [x5c(&dir, "s1")]}]}).to_string(),
    );
    setup.write("s3.json", json!({"keys": [s3.public_jwk()]}).to_string());
    let idp = setup.idp();
    setup.config(&format!(
        r#"issuer: {FERRY}
data_dir: data
tls: {{ cert_file: cert.pem, key_file: key.pem, client_auth: optional, client_ca_file: ca.pem }}
providers:
  - id: idp
    issuer: {iss}
    audiences: [{FERRY}]
    jwks: {{ file: idp.json }}
clients:
  - id: client-a
    auth: tls_client_auth
    tls_client_auth_san_dns: client-a.example.com
    introspect: true
  - id: client-b
    auth: tls_client_auth
    tls_client_auth_subject_dn: "CN=client-b, O=Example Corp, C=US"
  - {{ id: client-c, auth: tls_client_auth, tls_client_auth_san_dns: client-c.example.com }}
  - id: client-uri
    auth: tls_client_auth
    tls_client_auth_san_uri: spiffe://example.com/a
    ca_file: ca.pem
  - id: self-x5c
    auth: self_signed_tls_client_auth
    jwks: {{ file: s1.json }}
  - id: self-jwk
    auth: self_signed_tls_client_auth
    jwks: {{ file: s3.json }}
audiences:
  - audience: {AUDIENCE}
    rules:
      - allow: request.client_authenticated
"#,
        iss = crate::harness::IDP,
    ));
    let server_pem = server.cert.pem().into_bytes();
    Env {
        setup,
        idp,
        server_pem,
    }
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.setup.path().join(name)
    }

    fn token(&self) -> String {
        self.idp
            .token(&self.idp.claims(FERRY, "workload", now(), json!({})))
    }

    /// An HTTPS client trusting Ferry's certificate, presenting `cert` (`NAME.pem` and
    /// `NAME.key`) when given.
    fn http(&self, cert: Option<&str>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.server_pem).unwrap()]);
        if let Some(name) = cert {
            let mut pem = std::fs::read(self.path(&format!("{name}.pem"))).unwrap();
            pem.extend(std::fs::read(self.path(&format!("{name}.key"))).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    fn form<'a>(&'a self, token: &'a str, client_id: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", AUDIENCE),
            ("client_id", client_id),
        ]
    }
}

/// Sends a token exchange as `client_id` with `cert`; the status and the body.
async fn exchange(env: &Env, url: &str, cert: Option<&str>, client_id: &str) -> (u16, Value) {
    let token = env.token();
    let r = env
        .http(cert)
        .post(format!("{url}/token"))
        .form(&env.form(&token, client_id))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The issued token's `client_id`.
fn issued_client(body: &Value) -> String {
    let token = body["access_token"].as_str().expect("an access token");
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["client_id"].as_str().unwrap_or_default().to_owned()
}

fn refused(status: u16, body: &Value, what: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn tls_client_auth_matches_the_registered_name_and_chains_to_the_ca() {
    let e = env("mtls-ca");
    let ferry = e.setup.run();
    let url = ferry.url.clone();
    assert!(url.starts_with("https://"), "{url}");

    // SAN DNS: the client's own certificate, from the CA.
    let (status, body) = exchange(&e, &url, Some("a"), "client-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issued_client(&body), "client-a");
    // Twin: another registered client's certificate (same CA, valid chain).
    let (status, body) = exchange(&e, &url, Some("b"), "client-a").await;
    refused(status, &body, "client-b's certificate for client-a");
    // Twin: the same names on a chain to an unknown root.
    let (status, body) = exchange(&e, &url, Some("a-rogue"), "client-a").await;
    refused(status, &body, "a chain to an unknown root");
    // Twin: no certificate at all.
    let (status, body) = exchange(&e, &url, None, "client-a").await;
    refused(status, &body, "no certificate");
    // Twin: the right names and CA, an extended key usage for servers only.
    let (status, body) = exchange(&e, &url, Some("a-server-eku"), "client-a").await;
    refused(status, &body, "a serverAuth-only certificate");

    // Through an intermediate the client sends; twin: the same leaf without it.
    let (status, body) = exchange(&e, &url, Some("c-chain"), "client-c").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange(&e, &url, Some("c"), "client-c").await;
    refused(status, &body, "the intermediate missing");

    // Subject DN, registered with spaces and in another case of the attribute types.
    let (status, body) = exchange(&e, &url, Some("b"), "client-b").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issued_client(&body), "client-b");
    // Twin: the same CN and SAN from the same CA, another O in the DN.
    let (status, body) = exchange(&e, &url, Some("b-other"), "client-b").await;
    refused(status, &body, "a different subject DN");

    // SAN URI with the client's own ca_file.
    let (status, body) = exchange(&e, &url, Some("a"), "client-uri").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange(&e, &url, Some("a-rogue"), "client-uri").await;
    refused(status, &body, "the URI on a chain to an unknown root");

    // One method per request (RFC 6749 §2.3): a certificate client that also sends a secret.
    let token = e.token();
    let mut form = e.form(&token, "client-a");
    form.push(("client_secret", "x"));
    let r = e
        .http(Some("a"))
        .post(format!("{url}/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // The same client authenticates at /introspect with its certificate.
    let issued = exchange(&e, &url, Some("a"), "client-a").await.1;
    let access = issued["access_token"].as_str().unwrap().to_owned();
    for (cert, want) in [(Some("a"), 200), (Some("b"), 401)] {
        let r = e
            .http(cert)
            .post(format!("{url}/introspect"))
            .form(&[("token", access.as_str()), ("client_id", "client-a")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "introspect with {cert:?}");
    }

    // Metadata advertises the methods registered clients use.
    let meta: Value = e
        .http(None)
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = meta["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("\"tls_client_auth\""), "{methods}");
    assert!(
        methods.contains("\"self_signed_tls_client_auth\""),
        "{methods}"
    );
}

#[tokio::test]
async fn self_signed_tls_client_auth_needs_a_registered_key() {
    let e = env("mtls-self");
    let ferry = e.setup.run();
    let url = ferry.url.clone();

    // Registered with x5c: its certificate's key.
    let (status, body) = exchange(&e, &url, Some("s1"), "self-x5c").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issued_client(&body), "self-x5c");
    // Twin: a self-signed certificate with the same shape and another key.
    let (status, body) = exchange(&e, &url, Some("s2"), "self-x5c").await;
    refused(status, &body, "an unregistered self-signed key");

    // Registered as a bare JWK: compared by its public parameters.
    let (status, body) = exchange(&e, &url, Some("s3"), "self-jwk").await;
    assert_eq!(status, 200, "{body}");
    // Twin: another registered client's certificate.
    let (status, body) = exchange(&e, &url, Some("s1"), "self-jwk").await;
    refused(status, &body, "self-x5c's certificate for self-jwk");
    // Twin: a CA-issued certificate is no self-signed client's key.
    let (status, body) = exchange(&e, &url, Some("a"), "self-jwk").await;
    refused(status, &body, "a CA-issued certificate");
}

/// `curl --cert/--key` and, by its own TLS stack, Python `requests` with `cert=(…)`.
#[tokio::test]
async fn curl_and_python_requests_authenticate_with_their_certificates() {
    let e = env("mtls-tools");
    let ferry = e.setup.run();
    let url = ferry.url.clone();
    let token = e.token();

    let curl = |cert: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(e.path("cert.pem"));
        if let Some(name) = cert {
            c.arg("--cert")
                .arg(e.path(&format!("{name}.pem")))
                .arg("--key")
                .arg(e.path(&format!("{name}.key")));
        }
        for (k, v) in e.form(&token, "client-uri") {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = c.arg(format!("{url}/token")).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(Some("a")), "200");
    assert_eq!(curl(Some("a-rogue")), "401", "a chain to an unknown root");
    assert_eq!(curl(None), "401", "no certificate");

    let python = |cert: Option<&str>| {
        let script = r#"
import json, sys, requests
url, ca, form, cert, key = sys.argv[1:6]
r = requests.post(url, data=json.loads(form), verify=ca, cert=(cert, key) if cert else None)
print(r.status_code)
"#;
        let form: serde_json::Map<String, Value> = e
            .form(&token, "self-x5c")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        let (cert, key) = match cert {
            Some(n) => (
                e.path(&format!("{n}.pem")).display().to_string(),
                e.path(&format!("{n}.key")).display().to_string(),
            ),
            None => (String::new(), String::new()),
        };
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(format!("{url}/token"))
            .arg(e.path("cert.pem"))
            .arg(Value::Object(form).to_string())
            .args([cert, key])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "python3 requests: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(python(Some("s1")), "200");
    assert_eq!(python(Some("s2")), "401", "an unregistered self-signed key");
}
