//! Service accounts (RFC 7523 §2.1) and client authentication (RFC 6749 §2.3, RFC 7523
//! §2.2) through the real binary, each failure beside its positive twin.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, bin};

const ISS: &str = "https://ferry.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const DEPLOY: &str = "https://deploy.example.com";
const SECRET: &str = "s3cr3t-value-from-ferry-clients-new-secret";

static JTI: AtomicU64 = AtomicU64::new(0);

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signed assertion: `iss` and `sub` the issuer's id, a fresh `jti`.
fn assertion(signer: &Issuer, extra: Value) -> String {
    let t = now();
    let mut c = json!({"iss": signer.iss, "sub": signer.iss, "aud": ISS, "iat": t, "exp": t + 300,
                       "jti": format!("j-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst))});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    signer.token(&c)
}

struct Env {
    _tmp: Setup,
    ferry: Ferry,
    builder: Issuer,
    client_jwt: Issuer,
    http: reqwest::Client,
}

fn config(dir: &Path, sa_jwks: &Value, client_jwks: &Value) -> String {
    std::fs::write(dir.join("builder.json"), sa_jwks.to_string()).unwrap();
    format!(
        r#"
issuer: {ISS}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}
service_accounts:
  - id: builder
    description: the CI builder
    jwks: {{ file: builder.json }}
clients:
  - {{ id: "ci@acme", auth: client_secret_basic, secret_sha256: {h} }}
  - {{ id: ci-post, auth: client_secret_post, secret_sha256: {h} }}
  - {{ id: ci-jwt, auth: private_key_jwt, jwks: {{ inline: {cj} }} }}
  - {{ id: ci-public, auth: none }}
providers:
  - id: sa
    kind: service_account
    mapping: {{ subject: "'sa:' + assertion.sub" }}
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: provider == 'service-account' && subject in ['builder', 'legacy']
        scopes: [deploy]
      - allow: provider == 'sa'
        scopes: [deploy]
  - audience: https://post-only.example.com
    rules:
      - allow: client_id == 'ci-post'
"#,
        h = sha256_hex(SECRET),
        cj = client_jwks
    )
}

fn start() -> Env {
    let setup = Setup::new("accounts");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    let client_jwt = Issuer::new("ci-jwt", TestKey::ec("c1"));
    let ferry = setup.start(&config(
        setup.path(),
        &jwks(&[&builder.key]),
        &jwks(&[&client_jwt.key]),
    ));
    Env {
        _tmp: setup,
        ferry,
        builder,
        client_jwt,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post(
        &self,
        form: &[(&str, &str)],
        basic: Option<&str>,
    ) -> (u16, Value, Option<String>) {
        let auth = basic.map(|b| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        });
        self.post_auth(form, auth).await
    }

    /// `post` with any `Authorization` header.
    async fn post_auth(
        &self,
        form: &[(&str, &str)],
        authorization: Option<String>,
    ) -> (u16, Value, Option<String>) {
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form);
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let www = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap_or(Value::Null), www)
    }

    async fn bearer(&self, assertion: &str) -> (u16, Value) {
        let (s, v, _) = self
            .post(
                &[
                    ("grant_type", JWT_BEARER),
                    ("assertion", assertion),
                    ("audience", DEPLOY),
                ],
                None,
            )
            .await;
        (s, v)
    }
}

#[tokio::test]
async fn jwt_bearer_rules_each_with_a_positive_twin() {
    let env = start();
    let t = now();
    let cases: Vec<(&str, String, u16)> = vec![
        ("good", assertion(&env.builder, json!({})), 200),
        (
            "another server's audience",
            assertion(&env.builder, json!({"aud": "https://other.example.com"})),
            400,
        ),
        (
            // Only for accounts with accept_token_endpoint_audience (tested below).
            "the token endpoint as audience",
            assertion(&env.builder, json!({"aud": format!("{ISS}/token")})),
            400,
        ),
        (
            "aud an array naming Ferry",
            assertion(&env.builder, json!({"aud": [ISS]})),
            400,
        ),
        (
            "aud an array naming Ferry and another server",
            assertion(
                &env.builder,
                json!({"aud": [ISS, "https://other.example.com"]}),
            ),
            400,
        ),
        (
            "lifetime above 1 h",
            assertion(&env.builder, json!({"exp": t + 7_200})),
            400,
        ),
        (
            "lifetime at 1 h",
            assertion(&env.builder, json!({"exp": t + 3_600})),
            200,
        ),
        (
            "iat in the future",
            assertion(&env.builder, json!({"iat": t + 300, "exp": t + 600})),
            400,
        ),
        ("no jti", assertion(&env.builder, json!({"jti": null})), 400),
        (
            "sub is not the account",
            assertion(&env.builder, json!({"sub": "admin"})),
            400,
        ),
        ("no exp", assertion(&env.builder, json!({"exp": null})), 400),
        (
            "unknown account",
            assertion(&Issuer::new("stranger", TestKey::ec("b1")), json!({})),
            400,
        ),
        (
            "signed by another key",
            assertion(&Issuer::new("builder", TestKey::ec("b1")), json!({})),
            400,
        ),
    ];
    for (name, a, want) in cases {
        let (s, body) = env.bearer(&a).await;
        assert_eq!(s, want, "{name}: {body}");
        if want == 400 {
            assert_eq!(body["error"], "invalid_grant", "{name}");
        } else {
            let claims = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
            assert_eq!(claims["sub"], "builder", "{name}");
            assert_eq!(claims["scope"], "deploy");
        }
    }
    // Replay: the same assertion twice.
    let once = assertion(&env.builder, json!({}));
    assert_eq!(env.bearer(&once).await.0, 200);
    let (s, body) = env.bearer(&once).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn a_service_account_assertion_as_a_subject_token_consumes_the_same_jti() {
    let env = start();
    let a = assertion(&env.builder, json!({}));
    let form = [
        ("grant_type", TE),
        ("subject_token", a.as_str()),
        ("subject_token_type", JWT),
        ("audience", DEPLOY),
    ];
    let (s, body, _) = env.post(&form, None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        ferry_testkit::mint::payload(body["access_token"].as_str().unwrap())["sub"],
        "sa:builder"
    );
    // Used once: neither path accepts it again.
    assert_eq!(env.post(&form, None).await.0, 400);
    assert_eq!(env.bearer(&a).await.0, 400);
}

/// draft-ietf-oauth-rfc7523bis, as for client assertions: a service account's assertion
/// names Ferry's issuer as one string on the token-exchange path too (the jwt-bearer
/// path is in the table above); each refusal beside its single-string twin.
#[tokio::test]
async fn a_service_account_subject_token_carries_a_single_string_aud() {
    let env = start();
    let exchange = |a: String| {
        let env = &env;
        async move {
            let form = [
                ("grant_type", TE),
                ("subject_token", a.as_str()),
                ("subject_token_type", JWT),
                ("audience", DEPLOY),
            ];
            let (s, body, _) = env.post(&form, None).await;
            (s, body["error"].as_str().map(str::to_owned))
        }
    };
    for aud in [
        json!([ISS]),
        json!([ISS, "https://other.example.com"]),
        json!(format!("{ISS}/token")),
    ] {
        let got = exchange(assertion(&env.builder, json!({ "aud": aud }))).await;
        assert_eq!(got, (400, Some("invalid_request".to_owned())), "aud {aud}");
    }
    let twin = exchange(assertion(&env.builder, json!({ "aud": ISS }))).await;
    assert_eq!(twin, (200, None));
}

/// `accept_token_endpoint_audience: true` on a service account (legacy libraries):
/// the token endpoint URL is accepted as well, still as one string; the account beside
/// it without the setting refuses it.
#[tokio::test]
async fn a_service_account_may_accept_the_token_endpoint_audience() {
    let setup = Setup::new("sa-legacy");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    let client = Issuer::new("ci-jwt", TestKey::ec("c1"));
    let legacy = Issuer::new(
        "legacy",
        TestKey::from_pkcs8("b1", builder.key.pkcs8()).unwrap(),
    );
    let text = config(setup.path(), &jwks(&[&builder.key]), &jwks(&[&client.key])).replace(
        "service_accounts:\n",
        "service_accounts:\n  - id: legacy\n    jwks: { file: builder.json }\n    accept_token_endpoint_audience: true\n",
    );
    let ferry = setup.start(&text);
    let http = reqwest::Client::new();
    let bearer = |a: String| {
        let (http, url) = (http.clone(), format!("{}/token", ferry.url));
        async move {
            let form = [
                ("grant_type", JWT_BEARER),
                ("assertion", a.as_str()),
                ("audience", DEPLOY),
            ];
            http.post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let endpoint = json!({ "aud": format!("{ISS}/token") });
    assert_eq!(bearer(assertion(&legacy, endpoint.clone())).await, 200);
    assert_eq!(bearer(assertion(&legacy, json!({}))).await, 200);
    assert_eq!(
        bearer(assertion(
            &legacy,
            json!({ "aud": [format!("{ISS}/token")] })
        ))
        .await,
        400
    );
    assert_eq!(bearer(assertion(&builder, endpoint)).await, 400);
}

/// RFC 7235 §2.1: the scheme name is case-insensitive. `BASIC` and `basic` authenticate
/// exactly as `Basic` does — a wrong secret under any spelling is 401, never skipped as
/// "no client authentication".
#[tokio::test]
async fn the_basic_scheme_matches_in_any_case() {
    let env = start();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let a = assertion(&env.builder, json!({}));
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", a.as_str()),
            ("audience", DEPLOY),
        ];
        let good = format!("{scheme} {}", b64(&format!("ci@acme:{SECRET}")));
        let (s, body, _) = env.post_auth(&form, Some(good)).await;
        assert_eq!(s, 200, "{scheme}: {body}");
        let claims = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["client_id"], "ci@acme", "{scheme}");
        let a = assertion(&env.builder, json!({}));
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", a.as_str()),
            ("audience", DEPLOY),
        ];
        let wrong = format!("{scheme} {}", b64("ci@acme:wrong"));
        let (s, body, _) = env.post_auth(&form, Some(wrong)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn a_client_assertion_is_never_a_subject_token_or_a_service_account_assertion() {
    let env = start();
    let client_assertion = assertion(&env.client_jwt, json!({}));
    let (s, body, _) = env
        .post(
            &[
                ("grant_type", TE),
                ("subject_token", client_assertion.as_str()),
                ("subject_token_type", JWT),
                ("audience", DEPLOY),
            ],
            None,
        )
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
    let (s, body) = env.bearer(&assertion(&env.client_jwt, json!({}))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // Twin: the same client's assertion authenticates the client.
    let ok = assertion(&env.client_jwt, json!({}));
    let (s, _, _) = env
        .post(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion(&env.builder, json!({})).as_str()),
                ("audience", DEPLOY),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", ok.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn client_authentication_matrix() {
    let env = start();
    let sa = || assertion(&env.builder, json!({}));
    let base = |a: &str| {
        vec![
            ("grant_type", JWT_BEARER.to_owned()),
            ("assertion", a.to_owned()),
            ("audience", DEPLOY.to_owned()),
        ]
    };
    async fn run(
        env: &Env,
        form: Vec<(&str, String)>,
        basic: Option<&str>,
    ) -> (u16, Value, Option<String>) {
        let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.post(&f, basic).await
    }
    let with = |a: &str, extra: &[(&'static str, String)]| {
        let mut f = base(a);
        f.extend(extra.iter().cloned());
        f
    };
    let jwt = |extra: Value| assertion(&env.client_jwt, extra);

    // client_secret_basic: raw and URL-encoded forms; a wrong secret is 401.
    let (s, body, _) = run(&env, base(&sa()), Some(&format!("ci@acme:{SECRET}"))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        ferry_testkit::mint::payload(body["access_token"].as_str().unwrap())["client_id"],
        "ci@acme"
    );
    assert_eq!(
        run(&env, base(&sa()), Some(&format!("ci%40acme:{SECRET}")))
            .await
            .0,
        200
    );
    let (s, body, www) = run(&env, base(&sa()), Some("ci@acme:wrong")).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(www.is_some_and(|w| w.starts_with("Basic")));

    // client_secret_post; a basic-only client cannot use it.
    let post = |id: &str, secret: &str| {
        vec![
            ("client_id", id.to_owned()),
            ("client_secret", secret.to_owned()),
        ]
    };
    assert_eq!(
        run(&env, with(&sa(), &post("ci-post", SECRET)), None)
            .await
            .0,
        200
    );
    assert_eq!(
        run(&env, with(&sa(), &post("ci-post", "wrong")), None)
            .await
            .0,
        401
    );
    assert_eq!(
        run(&env, with(&sa(), &post("ci@acme", SECRET)), None)
            .await
            .0,
        401
    );

    // private_key_jwt: aud must be the issuer as one string; the assertion is single use.
    let client = |a: String| {
        vec![
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", a),
        ]
    };
    assert_eq!(
        run(&env, with(&sa(), &client(jwt(json!({})))), None)
            .await
            .0,
        200
    );
    assert_eq!(
        run(&env, with(&sa(), &client(jwt(json!({"aud": [ISS]})))), None)
            .await
            .0,
        401
    );
    assert_eq!(
        run(
            &env,
            with(&sa(), &client(jwt(json!({"aud": format!("{ISS}/token")})))),
            None
        )
        .await
        .0,
        401
    );
    let once = jwt(json!({}));
    assert_eq!(
        run(&env, with(&sa(), &client(once.clone())), None).await.0,
        200
    );
    assert_eq!(run(&env, with(&sa(), &client(once)), None).await.0, 401);
    let foreign = Issuer::new("ci-jwt", TestKey::ec("c1"));
    assert_eq!(
        run(
            &env,
            with(&sa(), &client(assertion(&foreign, json!({})))),
            None
        )
        .await
        .0,
        401
    );

    // Public clients; a confidential client may not skip authentication.
    assert_eq!(
        run(
            &env,
            with(&sa(), &[("client_id", "ci-public".to_owned())]),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        run(
            &env,
            with(&sa(), &[("client_id", "ci-post".to_owned())]),
            None
        )
        .await
        .0,
        401
    );

    // Two methods at once are refused.
    assert_eq!(
        run(
            &env,
            with(&sa(), &post("ci-post", SECRET)),
            Some(&format!("ci@acme:{SECRET}"))
        )
        .await
        .0,
        400
    );

    // Policies condition on the authenticated client.
    let post_only = |a: &str| {
        vec![
            ("grant_type", JWT_BEARER.to_owned()),
            ("assertion", a.to_owned()),
            ("audience", "https://post-only.example.com".to_owned()),
        ]
    };
    let mut f = post_only(&sa());
    f.extend(post("ci-post", SECRET));
    assert_eq!(run(&env, f, None).await.0, 200);
    let (s, body, _) = run(&env, post_only(&sa()), Some(&format!("ci@acme:{SECRET}"))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_target")));
}

#[tokio::test]
async fn a_rotated_service_account_key_with_both_keys_valid_then_the_old_removed() {
    let setup = Setup::new("sa-rotation");
    let old = Issuer::new("builder", TestKey::ec("old"));
    let new = Issuer::new("builder", TestKey::ec("new"));
    let client = Issuer::new("ci-jwt", TestKey::ec("c1"));
    let ferry = setup.start(&config(
        setup.path(),
        &jwks(&[&old.key, &new.key]),
        &jwks(&[&client.key]),
    ));
    let http = reqwest::Client::new();
    let bearer = |a: String| {
        let (http, url) = (http.clone(), ferry.url.clone());
        async move {
            http.post(format!("{url}/token"))
                .form(&[
                    ("grant_type", JWT_BEARER),
                    ("assertion", a.as_str()),
                    ("audience", DEPLOY),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(bearer(assertion(&old, json!({}))).await, 200);
    assert_eq!(bearer(assertion(&new, json!({}))).await, 200);
    // The old key is removed from the registered JWKS file: reloaded without a restart.
    setup.jwks("builder.json", &[&new.key]);
    let mut status = 0;
    for _ in 0..50 {
        status = bearer(assertion(&old, json!({}))).await;
        if status == 400 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 400,
        "the removed key no longer signs valid assertions"
    );
    assert_eq!(bearer(assertion(&new, json!({}))).await, 200);
}

#[tokio::test]
async fn the_offline_flow_through_the_cli() {
    let setup = Setup::new("sa-cli");
    let out = Command::new(bin("ferry"))
        .args(["sa", "create", "builder", "--dir"])
        .arg(setup.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let key_file = std::fs::read_dir(setup.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The printed public JWK, registered as the builder's key.
    let start = text.find("public JWK:\n").unwrap() + "public JWK:\n".len();
    let end = text[start..].find("\n\n").unwrap() + start;
    let jwk: Value = serde_json::from_str(&text[start..end]).unwrap();
    assert!(jwk.get("d").is_none());
    let client = Issuer::new("ci-jwt", TestKey::ec("c1"));
    let ferry = setup.start(&config(
        setup.path(),
        &json!({"keys": [jwk]}),
        &jwks(&[&client.key]),
    ));
    let out = Command::new(bin("ferry"))
        .args(["sa", "token", "--key"])
        .arg(&key_file)
        .args(["--url", &ferry.url, "--audience", DEPLOY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = ferry_testkit::mint::payload(token.trim());
    assert_eq!(claims["sub"], "builder");
    assert_eq!(claims["aud"], DEPLOY);
    // Twin: an audience the policy does not grant is refused.
    let out = Command::new(bin("ferry"))
        .args(["sa", "token", "--key"])
        .arg(&key_file)
        .args([
            "--url",
            &ferry.url,
            "--audience",
            "https://elsewhere.example.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_target"));
}

/// `ferry sa create --dir` creates a missing folder, readable by its owner only (issue 25
/// item 4); an existing folder is used as it is.
#[test]
fn sa_create_makes_its_folder_owner_only() {
    let setup = Setup::new("sa-dir");
    let dir = setup.path().join("keys").join("ci");
    let out = Command::new(bin("ferry"))
        .args(["sa", "create", "builder", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    // Twin: into the existing folder, a second key.
    let out = Command::new(bin("ferry"))
        .args(["sa", "create", "builder2", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}
