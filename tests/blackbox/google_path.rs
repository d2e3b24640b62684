//! `POST /v1/token`, the path Google's client libraries post to
//! (`https://sts.<universe_domain>/v1/token`): the same pipeline as `/token` — client
//! authentication, body limit, DPoP — except that a DPoP proof's `htu` must name the
//! path actually used (RFC 9449 §4.3), so a proof made for one path is refused at the
//! other. Each refusal beside its twin that differs only in the attacked part.

use ferry_testkit::mint::dpop_proof;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";
const SECRET: &str = "s3cret-for-the-google-path-test";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    http: reqwest::Client,
}

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start() -> Env {
    let setup = Setup::new("google-path");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let providers = idp_providers(&issuer_url);
    let ferry = setup.start(&format!(
        "issuer: {issuer_url}\ndata_dir: data\nlimits: {{ max_body_bytes: 8192, rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}\nclients:\n  - {{ id: ci, auth: client_secret_basic, secret_sha256: {h} }}\n{providers}audiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n        scopes: [read]\n  - audience: https://ci-only.example.com\n    rules:\n      - allow: client_id == 'ci'\n",
        h = sha256_hex(SECRET)
    ));
    Env {
        _setup: setup,
        ferry,
        issuer_url,
        idp,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn subject(&self) -> String {
        self.idp.token(
            &self
                .idp
                .claims(&self.issuer_url, "workload", now(), json!({})),
        )
    }

    /// Posts a token exchange to `path` with the given extra headers.
    async fn post(
        &self,
        path: &str,
        audience: &str,
        headers: &[(&str, String)],
        subject: Option<&str>,
    ) -> (u16, Value) {
        let subject = subject.map_or_else(|| self.subject(), str::to_owned);
        let mut r = self.http.post(format!("{}{path}", self.ferry.url)).form(&[
            ("grant_type", TE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", JWT),
            ("audience", audience),
        ]);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    fn proof(&self, key: &TestKey, path: &str, jti: &str) -> (&'static str, String) {
        let htu = format!("{}{path}", self.issuer_url);
        (
            "DPoP",
            dpop_proof(key, "POST", &htu, now(), jti, None, None),
        )
    }
}

#[tokio::test]
async fn a_dpop_proof_must_name_the_path_it_is_sent_to() {
    let env = start();
    let key = TestKey::ec("client");
    // Twins: each path accepts a proof naming itself and issues a bound token.
    for (path, jti) in [("/token", "a"), ("/v1/token", "b")] {
        let (s, body) = env
            .post(path, API, &[env.proof(&key, path, jti)], None)
            .await;
        assert_eq!(s, 200, "{path}: {body}");
        assert_eq!(body["token_type"], "DPoP", "{path}");
    }
    // The attack: a proof captured for one path replayed at the other.
    for (sent_to, named, jti) in [("/v1/token", "/token", "c"), ("/token", "/v1/token", "d")] {
        let (s, body) = env
            .post(sent_to, API, &[env.proof(&key, named, jti)], None)
            .await;
        assert_eq!(s, 400, "htu {named} at {sent_to}: {body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    }
}

#[tokio::test]
async fn v1_token_runs_the_same_client_authentication_and_limits() {
    let env = start();
    let basic = |secret: &str| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("ci:{secret}"));
        ("Authorization", format!("Basic {b}"))
    };
    for path in ["/token", "/v1/token"] {
        // The registered client with its secret gets the audience only it may get...
        let (s, body) = env
            .post(path, "https://ci-only.example.com", &[basic(SECRET)], None)
            .await;
        assert_eq!(s, 200, "{path}: {body}");
        // ...and with a wrong secret is refused, whichever path.
        let (s, body) = env
            .post(path, "https://ci-only.example.com", &[basic("wrong")], None)
            .await;
        assert_eq!(s, 401, "{path}: {body}");
        assert_eq!(body["error"], "invalid_client");
        // ...and without any client authentication it does not get that audience.
        let (s, body) = env
            .post(path, "https://ci-only.example.com", &[], None)
            .await;
        assert_eq!(s, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid_target", "{path}: {body}");
        // The body limit: a subject token that fits, and one that does not.
        let (s, _) = env.post(path, API, &[], Some(&"x".repeat(7000))).await;
        assert_eq!(s, 400, "{path}: a junk token that fits is read and refused");
        let (s, body) = env.post(path, API, &[], Some(&"x".repeat(9000))).await;
        assert_eq!(s, 413, "{path}: {body}");
    }
    // The metadata keeps naming /token as the token endpoint.
    let meta: Value = env
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            env.ferry.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["token_endpoint"],
        format!("{}/token", env.issuer_url).as_str()
    );
}
