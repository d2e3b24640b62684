//! Behind a TLS-terminating proxy (issue 24 item 1): a plain-HTTP Ferry reads the client
//! certificate from `client_cert_header`, in each format a proxy writes (Envoy XFCC,
//! nginx `$ssl_client_escaped_cert`, Traefik base64 DER), only from `trusted_peers` —
//! the same request from a peer outside them gets an unbound token. A malformed header
//! from a trusted peer is a 400; a token bound through the header is narrowed only with
//! the same certificate in the header. Then the example relying service verifies such a
//! token behind its own TLS listener and behind a trusted proxy header (item 3).
//! Certificates and their thumbprints are made by the `openssl` command line.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use ferry_testkit::mint::payload;
use ferry_testkit::now;
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, bin, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const API: &str = "https://api.example.com";

/// A self-signed certificate made by openssl.
pub(crate) struct Cert {
    /// Certificate then key, PEM (a client identity).
    pub identity: Vec<u8>,
    pub pem: String,
    pub der: Vec<u8>,
    /// `x5t#S256`, from `openssl dgst`.
    pub thumbprint: String,
}

fn openssl(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn openssl_cert(dir: &Path, name: &str) -> Cert {
    let subj = format!("/CN={name}");
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &subj,
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
        dir,
        None,
    );
    let der = openssl(&["x509", "-outform", "DER", "-in", &crt], dir, None);
    let digest = openssl(&["dgst", "-sha256", "-binary"], dir, Some(&der));
    let pem = std::fs::read_to_string(dir.join(&crt)).unwrap();
    let mut identity = pem.clone().into_bytes();
    identity.extend(std::fs::read(dir.join(&key)).unwrap());
    Cert {
        identity,
        pem,
        der,
        thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
    }
}

/// Percent-encodes all but letters and digits, as Envoy does.
fn escaped(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The header a proxy of `format` sends for `cert`.
pub(crate) fn header_for(format: &str, cert: &Cert) -> String {
    match format {
        "xfcc" => format!(
            "By=spiffe://ferry.example/proxy;Subject=\"CN=x,O=a;b\";Cert=\"{}\";URI=spiffe://td/w",
            escaped(&cert.pem)
        ),
        "pem-urlencoded" => escaped(&cert.pem),
        _ => base64::engine::general_purpose::STANDARD.encode(&cert.der),
    }
}

pub(crate) struct Fx {
    _setup: Setup,
    _ferry: Ferry,
    idp: ferry_testkit::Issuer,
    url: String,
    http: reqwest::Client,
}

pub(crate) fn start(tag: &str, format: &str, peers: &str) -> Fx {
    let setup = Setup::new(tag);
    let url = setup.url();
    let idp = setup.idp();
    let ferry = setup.start(&format!(
        "issuer: {url}\nclient_cert_header: {{ name: X-Client-Cert, format: {format}, trusted_peers: [{peers}] }}\n{providers}\
         audiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n        scopes: [read]\n",
        providers = idp_providers(&url),
    ));
    Fx {
        _setup: setup,
        _ferry: ferry,
        idp,
        url,
        http: reqwest::Client::new(),
    }
}

impl Fx {
    pub(crate) fn subject(&self) -> String {
        let t = self.idp.claims(&self.url, "alice", now(), json!({}));
        self.idp.token(&t)
    }

    pub(crate) async fn post(&self, form: &[(&str, &str)], header: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/token", self.url)).form(form);
        if let Some(h) = header {
            req = req.header("X-Client-Cert", h);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn exchange(&self, header: Option<&str>) -> (u16, Value) {
        let subject = self.subject();
        let form = [
            ("grant_type", TE),
            ("subject_token_type", JWT),
            ("subject_token", subject.as_str()),
            ("audience", API),
        ];
        self.post(&form, header).await
    }
}

fn cnf(body: &Value) -> Value {
    payload(body["access_token"].as_str().unwrap())
        .get("cnf")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_trusted_peers_header_binds_the_token_in_each_format() {
    let dir = crate::harness::TempDir::new("cert-header-certs");
    let alice = openssl_cert(dir.path(), "alice");
    for format in ["xfcc", "pem-urlencoded", "der-base64"] {
        let trusted = start("cert-header", format, "127.0.0.1/32");
        let untrusted = start("cert-header-untrusted", format, "10.0.0.0/8");
        let header = header_for(format, &alice);

        // Twins: the same request from a trusted peer and from one outside trusted_peers.
        let (s, body) = trusted.exchange(Some(&header)).await;
        assert_eq!(s, 200, "{format}: {body}");
        assert_eq!(
            cnf(&body),
            json!({ "x5t#S256": alice.thumbprint }),
            "{format}"
        );
        let (s, body) = untrusted.exchange(Some(&header)).await;
        assert_eq!(s, 200, "{format}: {body}");
        assert_eq!(cnf(&body), Value::Null, "{format}: the header is ignored");

        // A malformed header from a trusted peer is refused; from another peer, ignored.
        let garbage = format!("{}%zz!", &header[..header.len() / 2]);
        let (s, body) = trusted.exchange(Some(&garbage)).await;
        assert_eq!(s, 400, "{format}: {body}");
        assert_eq!(
            body["error_description"],
            "malformed client certificate header"
        );
        let (s, body) = untrusted.exchange(Some(&garbage)).await;
        assert_eq!(s, 200, "{format}: {body}");

        // Without the header: no binding.
        let (s, body) = trusted.exchange(None).await;
        assert_eq!(s, 200, "{format}: {body}");
        assert_eq!(cnf(&body), Value::Null);
    }
}

/// Envoy writes a certificate's URI unquoted: a client whose own certificate's URI is
/// `urn:x,Cert="<alice's>"` makes the header carry a second element naming alice's
/// certificate. Refused (one element only), never bound to alice; the twin — the
/// attacker's honest single element — binds to the attacker's own certificate.
#[tokio::test]
async fn an_xfcc_element_smuggled_through_an_unquoted_uri_is_refused() {
    let dir = crate::harness::TempDir::new("cert-header-smuggle");
    let alice = openssl_cert(dir.path(), "alice");
    let mallory = openssl_cert(dir.path(), "mallory");
    let fx = start("cert-header-smuggle", "xfcc", "127.0.0.1/32");
    let honest = format!("Cert=\"{}\";URI=urn:x", escaped(&mallory.pem));
    let (s, body) = fx.exchange(Some(&honest)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(cnf(&body), json!({ "x5t#S256": mallory.thumbprint }));
    let smuggled = format!("{honest},Cert=\"{}\"", escaped(&alice.pem));
    let (s, body) = fx.exchange(Some(&smuggled)).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        body["error_description"],
        "malformed client certificate header"
    );
}

#[tokio::test]
async fn a_token_bound_through_the_header_is_narrowed_only_with_its_certificate() {
    let fx = start("cert-header-narrow", "xfcc", "127.0.0.1/32");
    let dir = crate::harness::TempDir::new("cert-header-narrow-certs");
    let (alice, mallory) = (
        openssl_cert(dir.path(), "alice"),
        openssl_cert(dir.path(), "mallory"),
    );
    let (s, body) = fx.exchange(Some(&header_for("xfcc", &alice))).await;
    assert_eq!(s, 200, "{body}");
    let bound = body["access_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", TE),
        ("subject_token_type", AT),
        ("subject_token", bound.as_str()),
        ("scope", "read"),
    ];
    let (s, body) = fx.post(&form, Some(&header_for("xfcc", &alice))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(cnf(&body), json!({ "x5t#S256": alice.thumbprint }));
    for (name, header) in [
        ("no certificate", None),
        ("another certificate", Some(header_for("xfcc", &mallory))),
    ] {
        let (s, body) = fx.post(&form, header.as_deref()).await;
        assert_eq!(s, 400, "{name}: {body}");
        assert_eq!(
            body["error_description"], "a client certificate is required",
            "{name}"
        );
    }

    // The metadata says tokens are certificate-bound.
    let meta: Value = fx
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", fx.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
}

/// The example relying service for `API`, with `env`; its URL.
fn relying_service(issuer: &str, env: &[(&str, &str)]) -> (Proc, String) {
    let mut cmd = Command::new(bin("ferry-example-relying-service"));
    cmd.env("FERRY_ISSUER", issuer)
        .env("AUDIENCE", API)
        .env("INSECURE_ORIGINS", issuer);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(&mut cmd).unwrap();
    let line = proc.wait_for("relying service listening on ").unwrap();
    (proc, line.rsplit(' ').next().unwrap().to_owned())
}

#[tokio::test]
async fn the_relying_service_checks_the_certificate_behind_tls_and_behind_a_proxy() {
    let fx = start("cert-header-relying", "xfcc", "127.0.0.1/32");
    let dir = crate::harness::TempDir::new("cert-header-relying-certs");
    let (alice, mallory) = (
        openssl_cert(dir.path(), "alice"),
        openssl_cert(dir.path(), "mallory"),
    );
    let (s, body) = fx.exchange(Some(&header_for("xfcc", &alice))).await;
    assert_eq!(s, 200, "{body}");
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());

    // 1. The service terminates TLS and asks for a client certificate.
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.path().join("server.crt"), server.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        server.signing_key.serialize_pem(),
    )
    .unwrap();
    let (cert_file, key_file) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let (_tls, url) = relying_service(
        &fx.url,
        &[
            ("TLS_CERT", cert_file.to_str().unwrap()),
            ("TLS_KEY", key_file.to_str().unwrap()),
        ],
    );
    assert!(url.starts_with("https://"), "{url}");
    let ca = reqwest::Certificate::from_pem(server.cert.pem().as_bytes()).unwrap();
    let client = |identity: Option<&Cert>| {
        let mut b = reqwest::Client::builder().tls_certs_only([ca.clone()]);
        if let Some(c) = identity {
            b = b.identity(reqwest::Identity::from_pem(&c.identity).unwrap());
        }
        b.build().unwrap()
    };
    for (name, identity, want) in [
        ("its certificate", Some(&alice), 200),
        ("no certificate", None, 401),
        ("another certificate", Some(&mallory), 401),
    ] {
        let r = client(identity)
            .get(format!("{url}/resource"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, want, "TLS, {name}");
        if want == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["certificate_bound"], true, "{body}");
        }
    }

    // 2. Behind a proxy: its header, read only from trusted peers.
    for (peers, trusted) in [("127.0.0.1/32", true), ("10.0.0.0/8", false)] {
        let (_svc, url) = relying_service(
            &fx.url,
            &[
                ("CLIENT_CERT_HEADER", "X-Forwarded-Client-Cert"),
                ("CLIENT_CERT_HEADER_FORMAT", "xfcc"),
                ("TRUSTED_PEERS", peers),
            ],
        );
        for (name, cert, want) in [
            (
                "its certificate",
                Some(&alice),
                if trusted { 200 } else { 401 },
            ),
            ("no certificate", None, 401),
            ("another certificate", Some(&mallory), 401),
        ] {
            let mut req = fx
                .http
                .get(format!("{url}/resource"))
                .header("authorization", &auth);
            if let Some(c) = cert {
                req = req.header("X-Forwarded-Client-Cert", header_for("xfcc", c));
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert_eq!(status, want, "proxy header from {peers}, {name}");
        }
        if trusted {
            let status = fx
                .http
                .get(format!("{url}/resource"))
                .header("authorization", &auth)
                .header("X-Forwarded-Client-Cert", "Cert=\"garbage\"")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, 400, "a malformed header from a trusted proxy");
        }
    }
}
