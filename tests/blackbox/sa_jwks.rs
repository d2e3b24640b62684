//! `GET /service-accounts/{id}/jwks` through the real binary (issue 25 item 8): a
//! registered account's public keys and nothing else, each refusal beside its twin.

use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::{TestKey, now};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

const NOT_FOUND: &str = r#"{"error":"not_found","error_description":"no such service account"}"#;
/// The only members a published key may have.
const PUBLIC: [&str; 9] = ["kty", "crv", "kid", "alg", "use", "n", "e", "x", "y"];

fn config(accounts: &str) -> String {
    format!(
        r#"
issuer: https://ferry.example.com
data_dir: data
service_accounts:
{accounts}clients:
  - {{ id: ci-jwt, auth: private_key_jwt, jwks: {{ file: client.json }} }}
providers:
  - {{ id: sa, kind: service_account }}
audiences:
  - audience: https://api.example.com
    rules:
      - allow: provider == 'service-account'
"#
    )
}

const BOTH: &str = "  - { id: builder, jwks: { file: builder.json } }\n  - { id: deployer, jwks: { file: deployer.json } }\n";

struct Env {
    setup: Setup,
    ferry: Ferry,
    b1: TestKey,
    b2: TestKey,
}

fn start() -> Env {
    let setup = Setup::new("sa-jwks");
    let (b1, b2, d1) = (TestKey::ec("b1"), TestKey::rsa("b2"), TestKey::ed("d1"));
    // A private key in the account's file (an operator's slip): Ferry skips it.
    let mut private = TestKey::ec("leaked").public_jwk();
    private["d"] = json!("c2VjcmV0");
    let mut builder = jwks(&[&b1, &b2]);
    builder["keys"].as_array_mut().unwrap().push(private);
    setup.write("builder.json", builder.to_string());
    setup.jwks("deployer.json", &[&d1]);
    setup.jwks("client.json", &[&TestKey::ec("c1")]);
    let ferry = setup.start(&config(BOTH));
    Env {
        setup,
        ferry,
        b1,
        b2,
    }
}

async fn get(url: &str, if_none_match: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

fn kids(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The account's usable public keys, public members only — the private key in its file
/// is not published at all — cacheable like `/jwks`, and usable by a JWT library Ferry
/// did not write to verify what the account signs.
#[tokio::test]
async fn an_accounts_public_keys_and_nothing_private() {
    let env = start();
    let url = format!("{}/service-accounts/builder/jwks", env.ferry.url);
    let (status, h, body) = get(&url, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(kids(&body), ["b1", "b2"]);
    let doc: Value = serde_json::from_str(&body).unwrap();
    for key in doc["keys"].as_array().unwrap() {
        for member in key.as_object().unwrap().keys() {
            assert!(
                PUBLIC.contains(&member.as_str()),
                "{member} published: {body}"
            );
        }
        assert!(key.get("d").is_none());
    }
    assert!(
        !body.contains("leaked") && !body.contains("c2VjcmV0"),
        "{body}"
    );
    // The ETag: the same one is 304, another (the twin) the set again.
    let tag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(get(&url, Some(&tag)).await.0, 304);
    assert_eq!(get(&url, Some("\"other\"")).await.0, 200);

    // An independent library verifies the account's JWT with the published key.
    let set: JwkSet = serde_json::from_str(&body).unwrap();
    let t = now();
    let claims = json!({"iss": "builder", "sub": "builder", "aud": "https://api.example.com",
                        "iat": t, "exp": t + 300, "jti": "x"});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("b1".into());
    let jwt =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(env.b1.pkcs8())).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["https://api.example.com"]);
    let key = DecodingKey::from_jwk(set.find("b1").unwrap()).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&jwt, &key, &v).is_ok());
    // The twin: the other published key does not verify it.
    let key = DecodingKey::from_jwk(set.find("b2").unwrap()).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&jwt, &key, &v).is_err());
}

/// Anything but a registered service account's id is the same fixed 404, never echoing
/// what was asked: unknown ids, near misses, a client's id (client keys are not an
/// account's), a provider's, junk bytes, a very long id. The twin: `builder`.
#[tokio::test]
async fn anything_else_is_one_fixed_404() {
    let env = start();
    let long = "a".repeat(4_000);
    for id in [
        "nobody",
        "Builder",
        "builder%20",
        "%20builder",
        "ci-jwt",
        "sa",
        "%FF%FE",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "builder%2Fjwks",
        long.as_str(),
    ] {
        let (status, h, body) = get(
            &format!("{}/service-accounts/{id}/jwks", env.ferry.url),
            None,
        )
        .await;
        assert_eq!((status, body.as_str()), (404, NOT_FOUND), "{id}");
        assert_eq!(h["content-type"], "application/json", "{id}");
        assert!(h.get("etag").is_none(), "{id}");
        // Never cached: an account registered later is found at once.
        assert_eq!(h["cache-control"], "no-store", "{id}");
    }
    let (status, h, body) = get(
        &format!("{}/service-accounts/builder/jwks", env.ferry.url),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        h["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
}

/// A key removed from the account's file (rotated out) leaves the published set within
/// the file poll, its twin stays; an account removed from the configuration is then the
/// fixed 404, while the account kept is still served.
#[tokio::test]
async fn rotated_out_keys_and_removed_accounts_disappear() {
    let env = start();
    let url = |id: &str| format!("{}/service-accounts/{id}/jwks", env.ferry.url);
    env.setup.jwks("builder.json", &[&env.b2]);
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = kids(&get(&url("builder"), None).await.2);
        if seen == ["b2"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, ["b2"]);

    env.setup.config(&config(
        "  - { id: builder, jwks: { file: builder.json } }\n",
    ));
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &env.ferry.proc().pid().to_string()])
        .status();
    let mut status = 0;
    for _ in 0..50 {
        status = get(&url("deployer"), None).await.0;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 404);
    assert_eq!(get(&url("deployer"), None).await.2, NOT_FOUND);
    assert_eq!(kids(&get(&url("builder"), None).await.2), ["b2"]);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Unauthenticated lookups store nothing: 3 000 distinct 2 KiB ids (6 MiB if anything
/// per id were kept) leave Ferry's memory where a warm-up of the same calls left it,
/// and the metrics name the route, never an id.
#[tokio::test]
async fn lookups_of_many_ids_keep_nothing() {
    let env = start();
    let http = reqwest::Client::new();
    let pad = "x".repeat(2_048);
    let call = |i: usize| {
        http.get(format!("{}/service-accounts/{pad}{i}/jwks", env.ferry.url))
            .send()
    };
    for i in 0..300 {
        assert_eq!(call(i).await.unwrap().status(), 404);
    }
    let before = rss_kib(env.ferry.proc().pid());
    for i in 300..3_300 {
        assert_eq!(call(i).await.unwrap().status(), 404);
    }
    let after = rss_kib(env.ferry.proc().pid());
    assert!(
        after.saturating_sub(before) < 3_072,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let admin = env.ferry.admin.clone().expect("admin listener");
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("/service-accounts/{id}/jwks"), "{metrics}");
    assert!(!metrics.contains("xxxxxxxx"), "an id reached the metrics");
}

/// An account whose keys come from a URL: Ferry republishes its cached copy, filtered to
/// public members (the URL's private JWK and extra members stay out); while the URL is
/// down and nothing was cached, the same fixed 503, never the URL or the error.
#[tokio::test]
async fn a_remote_accounts_keys_are_republished_filtered_or_503() {
    let setup = Setup::new("sa-jwks-remote");
    let good = TestKey::ec("r1");
    let mut extra = good.public_jwk();
    extra["x5u"] = json!("https://keys.example.com/r1.pem");
    let mut private = TestKey::ec("r-private").public_jwk();
    private["d"] = json!("c2VjcmV0");
    let up = ferry_testkit::MockIdp::start(json!({"keys": [extra, private]}))
        .await
        .unwrap();
    let down = ferry_testkit::MockIdp::start(jwks(&[&TestKey::ec("r2")]))
        .await
        .unwrap();
    down.refuse_connections().await;
    let ferry = setup.start(&format!(
        "issuer: https://ferry.example.com\ndata_dir: data\noutbound:\n  allow_insecure_origins: [\"{u}\", \"{d}\"]\nservice_accounts:\n  - {{ id: up, jwks: {{ uri: \"{u}/jwks\" }} }}\n  - {{ id: down, jwks: {{ uri: \"{d}/jwks\" }} }}\nproviders:\n  - {{ id: sa, kind: service_account }}\naudiences:\n  - audience: https://api.example.com\n    rules:\n      - allow: provider == 'service-account'\n",
        u = up.url,
        d = down.url
    ));
    let url = |id: &str| format!("{}/service-accounts/{id}/jwks", ferry.url);
    let (status, _, body) = get(&url("up"), None).await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc, json!({"keys": [good.public_jwk()]}));
    let (status, _, body) = get(&url("down"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            r#"{"error":"temporarily_unavailable","error_description":"the service account's keys are unavailable"}"#
        )
    );
}
