//! Direct API authentication with service-account keys (issue 25 item 8): the example
//! relying service accepts a Ferry token and a service account's self-signed JWT side by
//! side on `/whoami`, its keys fetched from Ferry's `/service-accounts/{id}/jwks`. The
//! JWTs are signed with `jsonwebtoken`, a library Ferry did not write. Each attack
//! beside its positive twin.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_testkit::keys::jwks;
use ferry_testkit::{TestKey, now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, bin};

const API: &str = "https://api.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

static JTI: AtomicU64 = AtomicU64::new(0);

struct Env {
    setup: Setup,
    _ferry: Ferry,
    _svc: Proc,
    issuer: String,
    svc: String,
    builder: TestKey,
    deployer: TestKey,
    http: reqwest::Client,
}

async fn start() -> Env {
    let setup = Setup::new("sa-direct");
    let issuer = setup.url();
    let (builder, deployer) = (TestKey::ec("b1"), TestKey::ec("d1"));
    setup.write("builder.json", jwks(&[&builder]).to_string());
    setup.write("deployer.json", jwks(&[&deployer]).to_string());
    let ferry = setup.start(&format!(
        "issuer: {issuer}\ndata_dir: data\nproviders:\n  - {{ id: sa, kind: service_account }}\nservice_accounts:\n  - {{ id: builder, jwks: {{ file: builder.json }} }}\n  - {{ id: deployer, jwks: {{ file: deployer.json }} }}\naudiences:\n  - audience: {API}\n    rules:\n      - allow: provider == 'service-account' || provider == 'sa'\n        scopes: [read]\n"
    ));
    // The API accepts `builder` and `ghost` (not registered at Ferry), not `deployer`.
    let mut svc = Proc::spawn(
        Command::new(bin("ferry-example-relying-service"))
            .env("FERRY_ISSUER", &issuer)
            .env("AUDIENCE", API)
            .env("INSECURE_ORIGINS", &issuer)
            .env("SERVICE_ACCOUNTS", "builder, ghost"),
    )
    .unwrap();
    let line = svc.wait_for("relying service listening on ").unwrap();
    let url = line.rsplit(' ').next().unwrap().to_owned();
    Env {
        setup,
        _ferry: ferry,
        _svc: svc,
        issuer,
        svc: url,
        builder,
        deployer,
        http: reqwest::Client::new(),
    }
}

/// A JWT signed by `key` with `jsonwebtoken`: `iss` = `sub` = `account`, `aud` the API,
/// a 5-minute lifetime, a fresh `jti`, `typ: JWT`; `extra` overrides (null removes).
fn direct(key: &TestKey, account: &str, extra: &Value) -> String {
    let t = now();
    let mut c = json!({"iss": account, "sub": account, "aud": API, "iat": t, "exp": t + 300,
        "jti": format!("d-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst))});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    let typ = c.as_object_mut().unwrap().remove("_typ");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    if let Some(t) = typ {
        header.typ = t.as_str().map(str::to_owned);
    }
    jsonwebtoken::encode(&header, &c, &EncodingKey::from_ec_der(key.pkcs8())).unwrap()
}

impl Env {
    async fn call(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.svc))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    /// A Ferry access token for the API through the jwt-bearer grant.
    async fn grant(&self, assertion: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion),
                ("audience", API),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn to_ferry(&self) -> Value {
        json!({"aud": self.issuer})
    }
}

/// `/whoami` takes both kinds and says which; a direct JWT is single use; `/resource`
/// stays Ferry-only.
#[tokio::test]
async fn both_kinds_side_by_side() {
    let env = start().await;
    let jwt = direct(&env.builder, "builder", &json!({}));
    let (s, body) = env.call("/whoami", &jwt).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (body["kind"].as_str(), body["subject"].as_str()),
        (Some("service_account"), Some("builder"))
    );
    // The same JWT again: its jti is spent.
    assert_eq!(env.call("/whoami", &jwt).await.0, 401);

    let (s, body) = env
        .grant(&direct(&env.builder, "builder", &env.to_ferry()))
        .await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let (s, body) = env.call("/whoami", access).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (body["kind"].as_str(), body["subject"].as_str()),
        (Some("ferry"), Some("builder"))
    );
    // A Ferry token is not single use; a direct JWT is not a Ferry token at /resource.
    assert_eq!(env.call("/resource", access).await.0, 200);
    let jwt = direct(&env.builder, "builder", &json!({}));
    assert_eq!(env.call("/resource", &jwt).await.0, 401);
}

/// `aud` decides where a JWT is good: one for Ferry's token endpoint (the jwt-bearer
/// grant) is refused by the API, one for the API is refused by Ferry's `/token`.
#[tokio::test]
async fn an_assertion_for_ferry_and_a_jwt_for_the_api_are_not_interchangeable() {
    let env = start().await;
    let for_ferry = |env: &Env| direct(&env.builder, "builder", &env.to_ferry());
    let for_api = |env: &Env| direct(&env.builder, "builder", &json!({}));
    assert_eq!(env.call("/whoami", &for_ferry(&env)).await.0, 401);
    let token_endpoint = json!({"aud": format!("{}/token", env.issuer)});
    assert_eq!(
        env.call("/whoami", &direct(&env.builder, "builder", &token_endpoint))
            .await
            .0,
        401
    );
    assert_eq!(env.call("/whoami", &for_api(&env)).await.0, 200);

    let (s, body) = env.grant(&for_api(&env)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(env.grant(&for_ferry(&env)).await.0, 200);
    // The same as a token-exchange subject token (the `service_account` provider).
    let exchange = |jwt: String| {
        env.http
            .post(format!("{}/token", env.issuer))
            .form(&[
                ("grant_type", TE),
                ("subject_token", jwt.as_str()),
                ("subject_token_type", JWT),
                ("audience", API),
            ])
            .send()
    };
    assert_eq!(exchange(for_api(&env)).await.unwrap().status(), 400);
    assert_eq!(exchange(for_ferry(&env)).await.unwrap().status(), 200);
}

/// The claims and the account, each attack beside the honest JWT it differs from.
#[tokio::test]
async fn the_claims_and_the_account() {
    let env = start().await;
    let t = now();
    for (name, key, account, extra, want) in [
        ("honest", &env.builder, "builder", json!({}), 200),
        (
            "lifetime over 1 h",
            &env.builder,
            "builder",
            json!({"iat": t, "exp": t + 3_601}),
            401,
        ),
        (
            "lifetime of 1 h",
            &env.builder,
            "builder",
            json!({"iat": t, "exp": t + 3_600}),
            200,
        ),
        (
            "iat in the future",
            &env.builder,
            "builder",
            json!({"iat": t + 300, "exp": t + 600}),
            401,
        ),
        ("no iat", &env.builder, "builder", json!({"iat": null}), 401),
        ("no jti", &env.builder, "builder", json!({"jti": null}), 401),
        (
            "sub another account",
            &env.builder,
            "builder",
            json!({"sub": "deployer"}),
            401,
        ),
        (
            "aud an array naming the API",
            &env.builder,
            "builder",
            json!({"aud": [API]}),
            401,
        ),
        (
            "signed by another account's key",
            &env.deployer,
            "builder",
            json!({}),
            401,
        ),
        (
            "an account the API does not accept",
            &env.deployer,
            "deployer",
            json!({}),
            401,
        ),
        (
            "an account Ferry does not know",
            &env.builder,
            "ghost",
            json!({}),
            401,
        ),
    ] {
        let (s, body) = env.call("/whoami", &direct(key, account, &extra)).await;
        assert_eq!(s, want, "{name}: {body}");
    }
}

/// Explicit typing, both ways: a JWT signed by the account's key but typed as a Ferry
/// access token (`at+jwt`) is not a service-account JWT; one shaped and typed as a Ferry
/// token under Ferry's issuer is not a Ferry token. The twins: `typ: JWT`, and Ferry's
/// real token.
#[tokio::test]
async fn a_ferry_token_and_a_service_account_jwt_cannot_pass_for_each_other() {
    let env = start().await;
    let as_access = json!({"_typ": "at+jwt", "client_id": "builder", "scope": "read"});
    assert_eq!(
        env.call("/whoami", &direct(&env.builder, "builder", &as_access))
            .await
            .0,
        401
    );
    let as_jwt = json!({"_typ": "JWT", "client_id": "builder", "scope": "read"});
    assert_eq!(
        env.call("/whoami", &direct(&env.builder, "builder", &as_jwt))
            .await
            .0,
        200
    );

    let forged = json!({"_typ": "at+jwt", "iss": env.issuer, "sub": "builder",
                        "client_id": "builder", "scope": "read"});
    let forged = direct(&env.builder, "builder", &forged);
    assert_eq!(env.call("/whoami", &forged).await.0, 401);
    assert_eq!(env.call("/resource", &forged).await.0, 401);
    let (s, body) = env
        .grant(&direct(&env.builder, "builder", &env.to_ferry()))
        .await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(env.call("/whoami", access).await.0, 200);
}

/// Rotating in: a key registered beside the old one (the account's file rewritten) is
/// published by Ferry within the file poll and accepted by the API at once (one refetch
/// on its unknown `kid`); a key never registered is refused beside it.
#[tokio::test]
async fn a_newly_registered_key_works_at_the_api_at_once() {
    let env = start().await;
    assert_eq!(
        env.call("/whoami", &direct(&env.builder, "builder", &json!({})))
            .await
            .0,
        200
    );
    let (b2, stray) = (TestKey::ec("b2"), TestKey::ec("b3"));
    env.setup
        .write("builder.json", jwks(&[&env.builder, &b2]).to_string());
    let url = format!("{}/service-accounts/builder/jwks", env.issuer);
    let mut published = false;
    for _ in 0..50 {
        let body = env
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains("\"b2\"") {
            published = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(published, "b2 never published");
    let (s, body) = env
        .call("/whoami", &direct(&b2, "builder", &json!({})))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        env.call("/whoami", &direct(&stray, "builder", &json!({})))
            .await
            .0,
        401
    );
}
