//! X.509 certificates as subject tokens (issue 24, item 4): a real Ferry serving TLS with
//! `client_auth: optional` and a `kind: x509` provider, fed certificates made by the
//! `openssl` command line — a root, an intermediate with a name constraint, a leaf with a
//! SPIFFE ID and the clientAuth usage — and each attack beside its positive twin, the
//! same command with only the attacked part changed: an expired leaf, a serverAuth-only
//! leaf, a chain to another root of the same name, a leaf outside the intermediate's
//! name constraint, a leaf with two SPIFFE IDs or one in another trust domain, a subject
//! token whose leaf is not the connection's certificate, and a connection without a
//! certificate. The audit `reason` shows which check refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::harness::{Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const MTLS: &str = "urn:ietf:params:oauth:token-type:mtls";
const AUDIENCE: &str = "https://deploy.example.com";
const SPIFFE_ID: &str = "spiffe://example.org/ns/prod/sa/api";

/// Runs `openssl` in `dir` with `line` split at spaces, then `more` as they are.
fn openssl(dir: &Path, line: &str, more: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(line.split(' '))
        .args(more)
        .output()
        .expect("the openssl command line");
    assert!(
        out.status.success(),
        "openssl {line} {more:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// A P-256 key `name.key` and its request `name.csr` for `subject`.
fn key_and_csr(dir: &Path, name: &str, subject: &str) {
    let line = format!("req -new {NEW_KEY} -keyout {name}.key -out {name}.csr -subj");
    openssl(dir, &line, &[subject]);
}

/// A self-signed root `name.pem` (openssl's default v3_ca extensions).
fn root(dir: &Path, name: &str) {
    let line = format!("req -x509 {NEW_KEY} -keyout {name}.key -out {name}.pem -days 30 -subj");
    openssl(dir, &line, &["/CN=Test Root"]);
}

/// An intermediate `name.pem` under `ca`: path length 0, DNS names only under
/// example.org.
fn intermediate(dir: &Path, name: &str, ca: &str) {
    key_and_csr(dir, name, "/CN=Test Intermediate");
    std::fs::write(
        dir.join("int.ext"),
        "[x]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         nameConstraints=critical,permitted;DNS:example.org\n",
    )
    .unwrap();
    let line = format!(
        "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -set_serial 0x2001 -days 30 \
         -extfile int.ext -extensions x -out {name}.pem"
    );
    openssl(dir, &line, &[]);
}

/// The leaf extensions: clientAuth, a SPIFFE ID and a DNS name under example.org.
const LEAF_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
    extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/prod/sa/api,DNS:api.example.org\n";

/// Signs `csr` with `ca` by `openssl ca` into `out`, with extensions `ext` and `dates`
/// (`-days 30`, or `-startdate … -enddate …`), serial 1001, the subject as requested.
fn issue(dir: &Path, ca: &str, csr: &str, out: &str, ext: &str, dates: &str) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n\
         default_md=sha256\npolicy=p\nunique_subject=no\ncopy_extensions=none\n\
         [p]\ncommonName=supplied\norganizationName=optional\norganizationalUnitName=optional\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1001\n").unwrap();
    std::fs::write(dir.join("leaf.ext"), format!("[x]\n{ext}")).unwrap();
    let line = format!(
        "ca -batch -config ca.cnf -cert {ca}.pem -keyfile {ca}.key -in {csr} -out {out} \
         -preserveDN -notext -extfile leaf.ext -extensions x {dates}"
    );
    openssl(dir, &line, &[]);
}

const CURRENT: &str = "-days 30";

/// The PKI of the test, in `dir`.
fn pki(dir: &Path) {
    root(dir, "root");
    intermediate(dir, "int", "root");
    key_and_csr(dir, "api", "/O=Acme/OU=infra/OU=platform/CN=api");
    issue(dir, "int", "api.csr", "api.pem", LEAF_EXT, CURRENT);
    // The attacked variants of api.pem, same key and subject.
    let dates = "-startdate 20200101000000Z -enddate 20200102000000Z";
    issue(dir, "int", "api.csr", "expired.pem", LEAF_EXT, dates);
    let server_only = LEAF_EXT.replace("clientAuth", "serverAuth");
    issue(
        dir,
        "int",
        "api.csr",
        "server-only.pem",
        &server_only,
        CURRENT,
    );
    let outside = LEAF_EXT.replace("DNS:api.example.org", "DNS:api.example.com");
    issue(dir, "int", "api.csr", "outside.pem", &outside, CURRENT);
    let two_ids = LEAF_EXT.replace("sa/api,", "sa/api,URI:spiffe://example.org/ns/prod/sa/db,");
    issue(dir, "int", "api.csr", "two-ids.pem", &two_ids, CURRENT);
    let other_domain = LEAF_EXT.replace("spiffe://example.org/", "spiffe://example.net/");
    issue(
        dir,
        "int",
        "api.csr",
        "other-domain.pem",
        &other_domain,
        CURRENT,
    );
    // Another root and intermediate with the same names, other keys.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let other = dir.join("other");
    root(&other, "root");
    intermediate(&other, "int", "root");
    issue(
        &other,
        "int",
        "../api.csr",
        "../foreign.pem",
        LEAF_EXT,
        CURRENT,
    );
    // The same without a SPIFFE ID.
    let no_spiffe = LEAF_EXT.replace("URI:spiffe://example.org/ns/prod/sa/api,", "");
    issue(
        &other,
        "int",
        "../api.csr",
        "../foreign-cn.pem",
        &no_spiffe,
        CURRENT,
    );
    std::fs::copy(other.join("int.pem"), dir.join("foreign-int.pem")).unwrap();
    // Another workload's certificate from the same intermediate.
    key_and_csr(dir, "web", "/O=Acme/OU=platform/CN=web");
    let web_ext = LEAF_EXT
        .replace("sa/api", "sa/web")
        .replace("DNS:api.", "DNS:web.");
    issue(dir, "int", "web.csr", "web.pem", &web_ext, CURRENT);
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// The base64 DER of each PEM certificate in `pems`, as a subject token.
fn subject_token(pems: &[String]) -> String {
    let ders: Vec<String> = pems
        .iter()
        .map(|pem| {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            // Re-encoded from the DER: the standard alphabet, padded.
            STANDARD.encode(STANDARD.decode(b64).unwrap())
        })
        .collect();
    serde_json::to_string(&ders).unwrap()
}

/// The `mesh` provider (the root of the test, SPIFFE IDs in example.org), with the
/// providers `before` and `after` it in the list.
fn config(url: &str, before: &str, after: &str) -> String {
    format!(
        "issuer: {url}\n\
         tls: {{ cert_file: server.pem, key_file: server.key, client_auth: optional }}\n\
         providers:\n{before}  - id: mesh\n    kind: x509\n    trust_anchors: [root.pem]\n    intermediates: [int.pem]\n\
         \x20   spiffe_trust_domain: example.org\n    mapping:\n      attributes:\n\
         \x20       cn: assertion.subject.dn.cn\n        o: assertion.subject.dn.o\n        ou: assertion.subject.dn.ou\n\
         \x20       issuer_cn: assertion.issuer.dn.cn\n        dns: assertion.san.dns\n        uri: assertion.san.uri\n\
         \x20       fingerprint: assertion.sha256Fingerprint\n        serial: assertion.serialNumberHex\n\
         {after}\
         audiences:\n  - audience: {AUDIENCE}\n    rules:\n\
         \x20     - allow: provider == 'mesh' && subject.startsWith('spiffe://example.org/ns/prod/')\n        scopes: [deploy]\n\
         \x20     - allow: provider == 'foreign' && subject == 'api'\n        scopes: [deploy]\n"
    )
}

/// Before `mesh`: `foreign`, trusting the other root. After it: `shadow`, trusting the
/// same root as `mesh` (never reached: the first provider that validates a chain wins).
const FOREIGN: &str = "  - id: foreign\n    kind: x509\n    trust_anchors: [other/root.pem]\n";
const SHADOW: &str = "  - id: shadow\n    kind: x509\n    trust_anchors: [root.pem]\n";

struct Fx {
    setup: Setup,
    ferry: Ferry,
    server_pem: Vec<u8>,
}

impl Fx {
    fn start(tag: &str, before: &str, after: &str) -> Self {
        let setup = Setup::new(tag);
        let dir = setup.path().to_owned();
        pki(&dir);
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        setup.write("server.pem", cert.cert.pem());
        setup.write("server.key", cert.signing_key.serialize_pem());
        let ferry = setup.start(&config(&setup.url(), before, after));
        assert!(ferry.url.starts_with("https://"), "{}", ferry.url);
        Self {
            setup,
            ferry,
            server_pem: cert.cert.pem().into_bytes(),
        }
    }

    fn dir(&self) -> &Path {
        self.setup.path()
    }

    /// A client trusting Ferry's certificate, presenting `cert` (with the intermediate
    /// and the key of `key`) when given.
    fn client(&self, identity: Option<(&str, &str, &str)>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.server_pem).unwrap()]);
        if let Some((cert, int, key)) = identity {
            let pem = format!(
                "{}{}{}",
                read(self.dir(), cert),
                read(self.dir(), int),
                read(self.dir(), key)
            );
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    async fn exchange(&self, client: &reqwest::Client, token: &str) -> (u16, Value) {
        let before = self.audit_count();
        let r = client
            .post(format!("{}/token", self.ferry.url))
            .form(&[
                ("grant_type", TE),
                ("subject_token_type", MTLS),
                ("subject_token", token),
                ("audience", AUDIENCE),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.json().await.unwrap();
        self.wait_audit(before + 1).await;
        (status, body)
    }

    fn audits(&self) -> Vec<Value> {
        self.ferry
            .proc()
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "ferry.audit")
            .collect()
    }

    fn audit_count(&self) -> usize {
        self.audits().len()
    }

    async fn wait_audit(&self, n: usize) {
        for _ in 0..100 {
            if self.audit_count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no audit event; output:\n{}", self.ferry.proc().output());
    }

    /// The `reason` of the last audit event.
    fn last_reason(&self) -> String {
        self.audits()
            .last()
            .and_then(|a| a["reason"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

fn claims(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn an_x509_chain_maps_under_googles_names_and_its_spiffe_id() {
    let fx = Fx::start("x509-map", FOREIGN, SHADOW);
    let api = fx.client(Some(("api.pem", "int.pem", "api.key")));
    // The leaf alone: the provider's configured intermediate completes the path.
    let (status, body) = fx
        .exchange(&api, &subject_token(&[read(fx.dir(), "api.pem")]))
        .await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    // The default subject: the SPIFFE ID.
    assert_eq!(c["sub"], SPIFFE_ID, "{c}");
    let der = STANDARD
        .decode(
            read(fx.dir(), "api.pem")
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let fingerprint = STANDARD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
    assert_eq!(
        c["attributes"],
        serde_json::json!({
            "cn": "api", "o": "Acme", "ou": "platform", "issuer_cn": "Test Intermediate",
            "dns": "api.example.org", "uri": SPIFFE_ID,
            "fingerprint": fingerprint, "serial": "1001",
        })
    );
    // `foreign`, listed first, does not validate it; `mesh` does, and `shadow`, listed
    // after it and trusting the same root, is never asked.
    assert_eq!(c["ferry"]["provider"], "mesh");
    assert_eq!(c["ferry"]["iss"], "CN=Test Intermediate");
    assert_eq!(c["ferry"]["sub"], "O=Acme, OU=infra, OU=platform, CN=api");
    // The other root's chains belong to `foreign`; without a SPIFFE ID (and with no
    // mapping) the subject is the common name, Google's default.
    let foreign = fx.client(Some(("foreign-cn.pem", "foreign-int.pem", "api.key")));
    let token = subject_token(&[
        read(fx.dir(), "foreign-cn.pem"),
        read(fx.dir(), "foreign-int.pem"),
    ]);
    let (status, body) = fx.exchange(&foreign, &token).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "api");
    assert_eq!(c["ferry"]["provider"], "foreign");
    // The same exchange by curl, presenting the certificate with --cert/--key.
    let out = Command::new("curl")
        .current_dir(fx.dir())
        .args([
            "-sS",
            "--cacert",
            "server.pem",
            "--cert",
            "api.pem",
            "--key",
            "api.key",
        ])
        .args(["--data-urlencode", &format!("grant_type={TE}")])
        .args(["--data-urlencode", &format!("subject_token_type={MTLS}")])
        .args(["--data-urlencode"])
        .arg(format!(
            "subject_token={}",
            subject_token(&[read(fx.dir(), "api.pem"), read(fx.dir(), "int.pem")])
        ))
        .args(["--data-urlencode", &format!("audience={AUDIENCE}")])
        .arg(format!("{}/token", fx.ferry.url))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let c = claims(body["access_token"].as_str().expect("curl got a token"));
    assert_eq!(c["sub"], SPIFFE_ID);
}

#[tokio::test]
async fn x509_attacks_are_refused_beside_their_twins() {
    let fx = Fx::start("x509-attacks", "", "");
    let dir = fx.dir().to_owned();
    let chain = |leaf: &str, int: &str| subject_token(&[read(&dir, leaf), read(&dir, int)]);
    // (case, presented certificate and intermediate, refusal's audit reason)
    let attacks = [
        ("expired", "expired.pem", "int.pem", "CertExpired"),
        (
            "serverAuth only",
            "server-only.pem",
            "int.pem",
            "RequiredEkuNotFound",
        ),
        (
            "another root",
            "foreign.pem",
            "foreign-int.pem",
            "does not validate",
        ),
        (
            "outside the name constraint",
            "outside.pem",
            "int.pem",
            "NameConstraintViolation",
        ),
        (
            "two SPIFFE IDs",
            "two-ids.pem",
            "int.pem",
            "more than one SPIFFE ID",
        ),
        (
            "another trust domain",
            "other-domain.pem",
            "int.pem",
            "not in the provider's trust domain",
        ),
    ];
    // The twin of every attack: api.pem, the same key, subject and command.
    let twin = fx.client(Some(("api.pem", "int.pem", "api.key")));
    for (case, leaf, int, reason) in attacks {
        let attacker = fx.client(Some((leaf, int, "api.key")));
        let (status, body) = fx.exchange(&attacker, &chain(leaf, int)).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_request", "{case}");
        assert_eq!(body["error_description"], "invalid subject token", "{case}");
        assert!(
            fx.last_reason().contains(reason),
            "{case}: {}",
            fx.last_reason()
        );
        let (status, body) = fx.exchange(&twin, &chain("api.pem", "int.pem")).await;
        assert_eq!(status, 200, "{case} twin: {body}");
    }

    // The subject token names another certificate than the connection's.
    let (status, body) = fx.exchange(&twin, &chain("web.pem", "int.pem")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        fx.last_reason()
            .contains("not the client certificate of the connection"),
        "{}",
        fx.last_reason()
    );
    // Twin: the certificate's own connection.
    let web = fx.client(Some(("web.pem", "int.pem", "web.key")));
    let (status, body) = fx.exchange(&web, &chain("web.pem", "int.pem")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        "spiffe://example.org/ns/prod/sa/web"
    );

    // No certificate on the connection: the subject token alone proves nothing.
    let anonymous = fx.client(None);
    let (status, body) = fx.exchange(&anonymous, &chain("api.pem", "int.pem")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "an mtls subject token needs the client certificate on the connection"
    );
    assert!(fx.last_reason().contains("without a client certificate"));
    let (status, _) = fx.exchange(&twin, &chain("api.pem", "int.pem")).await;
    assert_eq!(status, 200);
}
