//! Revocation (RFC 7009), introspection (RFC 7662, RFC 9701) and the revocation list a
//! relying service polls — through the real binaries: Ferry and the example relying
//! service. Reference tokens and the phantom-token pattern: `phantom.rs`.

use std::process::Command;
use std::time::Duration;

use ferry_testkit::mint::{dpop_proof, payload};
use ferry_testkit::{Issuer, TestKey, now, sha256_hex};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, bin, ferry_cmd, idp_providers};

pub(crate) const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const REF: &str = "urn:ferry:params:oauth:token-type:reference_token";
pub(crate) const API: &str = "https://api.example.com";
const SHORT: &str = "https://short.example.com";

pub(crate) struct Env {
    pub(crate) setup: Setup,
    pub(crate) ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    pub(crate) http: reqwest::Client,
}

fn config(issuer_url: &str) -> String {
    format!(
        r#"issuer: {issuer_url}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}
tokens: {{ default_ttl: 10m, max_ttl: 1h, min_ttl: 1s }}
clients:
  - {{ id: ci, auth: client_secret_basic, secret_sha256: {ci} }}
  - {{ id: other, auth: client_secret_basic, secret_sha256: {other} }}
  - {{ id: gateway, auth: client_secret_basic, secret_sha256: {gw}, introspect: true }}
  - {{ id: relying, auth: client_secret_basic, secret_sha256: {rs}, revocations: true }}
{providers}audiences:
  - audience: {API}
    rules:
      - allow: "true"
        scopes: [read]
  - audience: {SHORT}
    rules:
      - allow: "true"
        max_ttl: 2s
"#,
        ci = sha256_hex("ci-secret"),
        other = sha256_hex("other-secret"),
        gw = sha256_hex("gateway-secret"),
        rs = sha256_hex("relying-secret"),
        providers = idp_providers(issuer_url),
    )
}

pub(crate) fn start() -> Env {
    start_with("")
}

fn start_with(extra: &str) -> Env {
    let setup = Setup::new("revocation");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let ferry = setup.start(&format!("{}{extra}", config(&issuer_url)));
    Env {
        setup,
        ferry,
        issuer_url,
        idp,
        http: reqwest::Client::new(),
    }
}

impl Env {
    /// A subject token from the identity provider for `sub`.
    pub(crate) fn token_subject(&self, sub: &str) -> String {
        self.subject(sub)
    }

    fn subject(&self, sub: &str) -> String {
        self.idp
            .token(&self.idp.claims(&self.issuer_url, sub, now(), json!({})))
    }

    /// A token for `ci` (or `client`), with extra form fields and headers.
    pub(crate) async fn issue(
        &self,
        sub: &str,
        audience: &str,
        extra: &[(&str, &str)],
        dpop: Option<String>,
    ) -> Value {
        self.issue_for(&self.subject(sub), audience, extra, dpop)
            .await
    }

    /// A token for `ci` exchanged from a subject token living `secs` seconds.
    pub(crate) async fn token_from_subject_living(&self, sub: &str, secs: i64) -> String {
        let subject = self.idp.token(&self.idp.claims(
            &self.issuer_url,
            sub,
            now(),
            json!({"exp": now() + secs}),
        ));
        self.issue_for(&subject, API, &[], None).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn issue_for(
        &self,
        subject: &str,
        audience: &str,
        extra: &[(&str, &str)],
        dpop: Option<String>,
    ) -> Value {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", audience),
        ];
        form.extend_from_slice(extra);
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .basic_auth("ci", Some("ci-secret"))
            .form(&form);
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }

    pub(crate) async fn token(&self, sub: &str) -> String {
        self.issue(sub, API, &[], None).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        who: Option<(&str, &str)>,
        form: &[(&str, &str)],
        accept: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.ferry.url))
            .form(form);
        if let Some((id, secret)) = who {
            r = r.basic_auth(id, Some(secret));
        }
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send().await.unwrap()
    }

    pub(crate) async fn revoke(&self, who: Option<(&str, &str)>, token: &str) -> (u16, Value) {
        let resp = self.post("/revoke", who, &[("token", token)], None).await;
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Introspection as the gateway: status and raw body.
    pub(crate) async fn introspect(&self, token: &str) -> (u16, String) {
        let resp = self
            .post(
                "/introspect",
                Some(("gateway", "gateway-secret")),
                &[("token", token)],
                None,
            )
            .await;
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Introspection as the gateway asking for the JWT: body and content type.
    pub(crate) async fn introspect_jwt(&self, token: &str) -> (String, Option<String>) {
        let (_, body, kind) = self
            .introspect_jwt_as(("gateway", "gateway-secret"), token)
            .await;
        (body, kind)
    }

    /// Introspection as `client` asking for the JWT: status, body and content type.
    pub(crate) async fn introspect_jwt_as(
        &self,
        (id, secret): (&str, &str),
        token: &str,
    ) -> (u16, String, Option<String>) {
        let resp = self
            .http
            .post(format!("{}/introspect", self.ferry.url))
            .basic_auth(id, Some(secret))
            .header("accept", "application/jwt")
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap(), kind)
    }

    pub(crate) fn relying_service(&self, interval: Option<u64>) -> (Proc, String) {
        let mut cmd = Command::new(bin("ferry-example-relying-service"));
        cmd.env("FERRY_ISSUER", &self.issuer_url)
            .env("AUDIENCE", API)
            .env("INSECURE_ORIGINS", &self.issuer_url);
        if let Some(i) = interval {
            cmd.env("REVOCATION_INTERVAL", i.to_string())
                .env("REVOCATION_CLIENT_ID", "relying")
                .env("REVOCATION_CLIENT_SECRET", "relying-secret");
        }
        let mut proc = Proc::spawn(&mut cmd).unwrap();
        let line = proc.wait_for("relying service listening on ").unwrap();
        let url = line.rsplit(' ').next().unwrap().to_owned();
        (proc, url)
    }
}

pub(crate) async fn call(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    proof: Option<String>,
) -> u16 {
    let mut r = http.get(url).header("authorization", auth);
    if let Some(p) = proof {
        r = r.header("DPoP", p);
    }
    r.send().await.unwrap().status().as_u16()
}

pub(crate) const INACTIVE: &str = r#"{"active":false}"#;

#[tokio::test]
async fn revoked_tokens_go_inactive_everywhere_within_the_bound() {
    use ferry_verify::derive::{HolderKey, Narrowing, derive};
    let env = start();
    let t = env.token("workload").await;
    let keep = env.token("workload").await;
    // A bound root and a token its holder derives from it locally.
    let key = TestKey::ec("holder");
    let proof = dpop_proof(
        &key,
        "POST",
        &format!("{}/token", env.issuer_url),
        now(),
        "p1",
        None,
        None,
    );
    let root = env.issue("workload", API, &[], Some(proof)).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let holder = HolderKey::from_pkcs8(key.pkcs8()).unwrap();
    let derived = derive(
        &root,
        &holder,
        &Narrowing {
            lifetime: Some(120),
            ..Narrowing::default()
        },
        now(),
    )
    .unwrap();
    let short = env.issue("workload", SHORT, &[], None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_svc, url) = env.relying_service(Some(1));
    let resource = format!("{url}/resource");
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {t}"), None).await,
        200
    );
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {derived}"), None).await,
        200
    );

    // Introspection: active, with the token's claims; only for an introspecting client.
    let (s, body) = env.introspect(&t).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (s, &v["active"], &v["client_id"], &v["token_type"]),
        (200, &json!(true), &json!("ci"), &json!("Bearer"))
    );
    assert_eq!(v["jti"], payload(&t)["jti"]);
    let r = env
        .post(
            "/introspect",
            Some(("ci", "ci-secret")),
            &[("token", &t)],
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    let r = env.post("/introspect", None, &[("token", &t)], None).await;
    assert_eq!(r.status().as_u16(), 401);

    // Revocation by another client, or by nobody, is refused; the token stays active.
    let (s, body) = env.revoke(Some(("other", "other-secret")), &t).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert_eq!(env.revoke(None, &t).await.0, 401);
    assert_eq!(env.revoke(Some(("ci", "wrong")), &t).await.0, 401);
    assert!(env.introspect(&t).await.1.contains("\"active\":true"));
    // Its client revokes it (and the bound root).
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &t).await.0, 200);
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &root).await.0, 200);
    assert_eq!(env.introspect(&t).await, (200, INACTIVE.to_owned()));
    // Anything that is not a live token of ours: 200 at /revoke, as RFC 7009 says.
    assert_eq!(
        env.revoke(Some(("ci", "ci-secret")), "not-a-token").await.0,
        200
    );

    // The relying service learns within its interval (1 s): the revoked token and the
    // token derived from the revoked root are refused; the twin is not.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {t}"), None).await,
        401
    );
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {derived}"), None).await,
        401
    );
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {keep}"), None).await,
        200
    );

    // A revoked token cannot be narrowed at Ferry; its twin can.
    for (token, want) in [(&t, 400), (&keep, 200)] {
        let r = env
            .post(
                "/token",
                Some(("ci", "ci-secret")),
                &[
                    ("grant_type", TE),
                    ("subject_token", token),
                    ("subject_token_type", AT),
                    ("audience", API),
                ],
                None,
            )
            .await;
        assert_eq!(r.status().as_u16(), want);
    }

    // Inactive is inactive: expired, revoked, foreign, malformed, unknown handle — the
    // same bytes, nothing about why.
    let foreign = env.subject("workload");
    for token in [
        short.as_str(),
        t.as_str(),
        foreign.as_str(),
        "abc.def.ghi",
        "ferry_ref_unknown",
    ] {
        assert_eq!(
            env.introspect(token).await,
            (200, INACTIVE.to_owned()),
            "{token:.12}"
        );
    }

    // RFC 9701: the response as a JWT signed by Ferry, for the gateway.
    let r = env
        .post(
            "/introspect",
            Some(("gateway", "gateway-secret")),
            &[("token", &keep)],
            Some("application/token-introspection+jwt"),
        )
        .await;
    assert_eq!(
        r.headers()["content-type"],
        "application/token-introspection+jwt"
    );
    let jwt = r.text().await.unwrap();
    let set: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{}/jwks", env.ferry.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("token-introspection+jwt"));
    let mut val = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    val.set_audience(&["gateway"]);
    val.set_required_spec_claims(&["iss", "aud"]);
    let data = jsonwebtoken::decode::<Value>(
        &jwt,
        &jsonwebtoken::DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap(),
        &val,
    )
    .unwrap();
    assert_eq!(data.claims["token_introspection"]["active"], true);
    assert_eq!(
        data.claims["token_introspection"]["jti"],
        payload(&keep)["jti"]
    );

    // Discovery lists the endpoints and how to authenticate there.
    let meta: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        env.ferry.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{}/revoke", env.issuer_url)
    );
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{}/introspect", env.issuer_url)
    );
    assert!(
        meta["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
}

#[tokio::test]
async fn revocations_survive_a_restart_and_an_administrator_revokes_by_subject() {
    let mut env = start();
    let revoked = env.token("workload").await;
    let kept = env.token("workload").await;
    let other = env.token("someone-else").await;
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &revoked).await.0, 200);
    // Restart on the same data directory.
    drop(env.ferry);
    env.ferry = env.setup.run();
    env.http = reqwest::Client::new();
    assert_eq!(env.introspect(&revoked).await.1, INACTIVE);
    assert!(env.introspect(&kept).await.1.contains("\"active\":true"));
    let text = std::fs::read_to_string(env.setup.path().join("data/revocations.json")).unwrap();
    assert!(
        !text.contains(&kept) && !text.contains(&revoked),
        "ids only"
    );

    // "Revoke everything issued to this subject before now", on the admin listener.
    let admin = env.ferry.admin.clone().unwrap();
    let r = env
        .http
        .post(format!("{admin}/revoke"))
        .form(&[("subject", "workload")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rule: Value = r.json().await.unwrap();
    assert_eq!(rule["rule"]["kind"], "subject");
    assert_eq!(env.introspect(&kept).await.1, INACTIVE);
    assert!(
        env.introspect(&other).await.1.contains("\"active\":true"),
        "another subject"
    );
    // A token issued after the revocation is fine.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let fresh = env.token("workload").await;
    assert!(env.introspect(&fresh).await.1.contains("\"active\":true"));
    // Two targets at once is refused; the audit log records the revocation.
    let r = env
        .http
        .post(format!("{admin}/revoke"))
        .form(&[("subject", "a"), ("provider", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let out = env.ferry.proc().output();
    assert!(
        out.contains("\"type\":\"ferry.revocation\"")
            && out.contains("revoked by an administrator")
    );
    // The rule survives a restart too.
    drop(env.ferry);
    env.ferry = env.setup.run();
    env.http = reqwest::Client::new();
    assert_eq!(env.introspect(&kept).await.1, INACTIVE);
}

#[tokio::test]
async fn a_signing_key_revoked_in_an_emergency_is_refused_before_caches_expire() {
    // A ring polled every second, so the server sees the CLI's revocation at once.
    let env = start_with("signing: { jwks_max_age: 10s, leeway: 0s, rotation_period: 1h }\n");
    let old = env.token("workload").await;
    let kid = ferry_testkit::mint::header(&old)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_svc, url) = env.relying_service(Some(1));
    let resource = format!("{url}/resource");
    // The service has fetched and cached the JWKS holding the key.
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {old}"), None).await,
        200
    );
    let out = ferry_cmd()
        .args(["keys", "revoke", &kid, "--force", "--config", "ferry.yaml"])
        .current_dir(env.setup.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Still in the service's cached JWKS, yet refused: the list names the key.
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {old}"), None).await,
        401
    );
    let list = env
        .http
        .get(format!("{}/revocations", env.ferry.url))
        .basic_auth("relying", Some("relying-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(payload(&list)["revoked_kids"], json!([kid]));
    // Twin: a token from the new signing key is accepted.
    let new = env.token("workload").await;
    assert_ne!(ferry_testkit::mint::header(&new)["kid"], json!(kid));
    assert_eq!(
        call(&env.http, &resource, &format!("Bearer {new}"), None).await,
        200
    );
}

#[tokio::test]
async fn the_revocation_list_only_for_clients_registered_for_it() {
    let env = start();
    let get = |who: Option<(&'static str, &'static str)>| {
        let mut r = env.http.get(format!("{}/revocations", env.ferry.url));
        if let Some((id, secret)) = who {
            r = r.basic_auth(id, Some(secret));
        }
        async move { r.send().await.unwrap() }
    };
    // Anyone could otherwise learn which subjects, clients and tokens were revoked.
    let r = get(None).await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(get(Some(("relying", "wrong"))).await.status().as_u16(), 401);
    // A client that authenticates but is not registered with `revocations: true`.
    let r = get(Some(("gateway", "gateway-secret"))).await;
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    // Twin: the registered client gets the signed list.
    let r = get(Some(("relying", "relying-secret"))).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/jwt");
    let list = r.text().await.unwrap();
    assert_eq!(
        ferry_testkit::mint::header(&list)["typ"],
        "ferry-revocations+jwt"
    );
}

#[tokio::test]
async fn a_relying_service_with_wrong_revocation_credentials_refuses_every_token() {
    let env = start();
    let t = env.token("workload").await;
    let wrong = |secret: &'static str| {
        let mut cmd = Command::new(bin("ferry-example-relying-service"));
        cmd.env("FERRY_ISSUER", &env.issuer_url)
            .env("AUDIENCE", API)
            .env("INSECURE_ORIGINS", &env.issuer_url)
            .env("REVOCATION_INTERVAL", "1")
            .env("REVOCATION_CLIENT_ID", "relying")
            .env("REVOCATION_CLIENT_SECRET", secret);
        let mut proc = Proc::spawn(&mut cmd).unwrap();
        let line = proc.wait_for("relying service listening on ").unwrap();
        (proc, line.rsplit(' ').next().unwrap().to_owned())
    };
    // Fail closed: without a list it may fetch, the service accepts nothing.
    let (_bad, bad_url) = wrong("not-the-secret");
    assert_eq!(
        call(
            &env.http,
            &format!("{bad_url}/resource"),
            &format!("Bearer {t}"),
            None
        )
        .await,
        401
    );
    // Twin: the right secret.
    let (_good, good_url) = wrong("relying-secret");
    assert_eq!(
        call(
            &env.http,
            &format!("{good_url}/resource"),
            &format!("Bearer {t}"),
            None
        )
        .await,
        200
    );
}
