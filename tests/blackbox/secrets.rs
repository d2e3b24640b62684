//! No secret in any log: a server logging at `debug` goes through successes and
//! failures — an exchange, a forged token, a wrong client secret, a reference token and
//! its introspection, a revocation — and neither its logs nor its audit events contain
//! a token, a signature, a client secret, the key-encryption key or a private key. The
//! audit events carry SHA-256 fingerprints instead (the twin: the fingerprint is there).

use ferry_testkit::mint::tamper_payload;
use ferry_testkit::{Issuer, TestKey, now, sha256_hex};
use serde_json::{Value, json};

use crate::harness::{Setup, TEST_KEK};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const REF: &str = "urn:ferry:params:oauth:token-type:reference_token";
const API: &str = "https://api.example.com";

#[tokio::test]
async fn no_token_secret_or_key_reaches_a_log() {
    let setup = Setup::new("secrets").env("FERRY_LOG_LEVEL", "debug");
    let issuer_url = setup.url();
    let idp = Issuer::new("https://idp.test", TestKey::rsa("i1"));
    setup.jwks("idp.json", &[&idp.key]);
    let secret = "client-secret-that-must-not-leak-0123456789";
    let gw_secret = "gateway-secret-that-must-not-leak-9876543210";
    let ferry = setup.start(&format!(
        r#"issuer: {issuer_url}
data_dir: data
clients:
  - {{ id: ci, auth: client_secret_basic, secret_sha256: {} }}
  - {{ id: gw, auth: client_secret_basic, secret_sha256: {}, introspect: true }}
providers:
  - id: idp
    issuer: https://idp.test
    audiences: [{issuer_url}]
    jwks: {{ file: idp.json }}
audiences:
  - audience: {API}
    rules:
      - allow: "true"
"#,
        sha256_hex(secret),
        sha256_hex(gw_secret)
    ));
    let http = reqwest::Client::new();
    let t = now();
    let subject = idp.token(&idp.claims(&issuer_url, "workload", t, json!({})));
    let forged = tamper_payload(&subject, &idp.claims(&issuer_url, "admin", t, json!({})));
    let post = |path: &str, who: (&str, &str), form: Vec<(&'static str, String)>| {
        let (http, url, who) = (
            http.clone(),
            format!("{}{path}", ferry.url),
            (who.0.to_owned(), who.1.to_owned()),
        );
        async move {
            let r = http
                .post(url)
                .basic_auth(who.0, Some(who.1))
                .form(&form)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let exchange = |token: String, extra: Option<&'static str>| {
        let mut f: Vec<(&'static str, String)> = vec![
            ("grant_type", TE.to_owned()),
            ("subject_token", token),
            ("subject_token_type", JWT.to_owned()),
            ("audience", API.to_owned()),
        ];
        if let Some(r) = extra {
            f.push(("requested_token_type", r.to_owned()));
        }
        f
    };
    let (s, issued) = post("/token", ("ci", secret), exchange(subject.clone(), None)).await;
    assert_eq!(s, 200, "{issued}");
    let access = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        post("/token", ("ci", secret), exchange(forged.clone(), None))
            .await
            .0,
        400
    );
    assert_eq!(
        post(
            "/token",
            ("ci", "wrong-secret-also-secret"),
            exchange(subject.clone(), None)
        )
        .await
        .0,
        401
    );
    let (s, r) = post(
        "/token",
        ("ci", secret),
        exchange(subject.clone(), Some(REF)),
    )
    .await;
    assert_eq!(s, 200);
    let handle = r["access_token"].as_str().unwrap().to_owned();
    let (s, v) = post(
        "/introspect",
        ("gw", gw_secret),
        vec![("token", handle.clone())],
    )
    .await;
    assert_eq!((s, &v["active"]), (200, &json!(true)));
    assert_eq!(
        post("/revoke", ("ci", secret), vec![("token", access.clone())])
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let out = ferry.proc().output();
    assert!(out.contains("DEBUG"), "the server logged at debug");
    let signing_key = std::fs::read_to_string(setup.path().join("data/ring.json")).unwrap();
    let sealed: Vec<String> = serde_json::from_str::<Value>(&signing_key).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["material"]["blob"].as_str().unwrap().to_owned())
        .collect();
    let sig = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let mut secrets: Vec<(&str, String)> = vec![
        ("subject token", subject.clone()),
        ("subject token signature", sig(&subject)),
        ("forged token", forged.clone()),
        ("issued token", access.clone()),
        ("issued token signature", sig(&access)),
        ("reference handle", handle.clone()),
        ("client secret", secret.to_owned()),
        ("wrong secret", "wrong-secret-also-secret".to_owned()),
        ("gateway secret", gw_secret.to_owned()),
        ("key-encryption key", TEST_KEK.to_owned()),
    ];
    for (i, b) in sealed.iter().enumerate() {
        secrets.push((
            if i == 0 {
                "sealed key"
            } else {
                "another sealed key"
            },
            b.clone(),
        ));
    }
    for (what, s) in &secrets {
        assert!(
            !out.contains(s.as_str()),
            "the {what} reached the logs or the audit"
        );
    }
    // Twin: what is logged instead — the fingerprint of the subject token.
    assert!(out.contains(&ferry_testkit::sha256_hex(&subject)));
}
