//! Configuration traps that `ferry check` (and loading) refuse, and what a provider's
//! keys and `typ` allowlist let through — each refusal beside its twin.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, bin};

const FERRY: &str = "https://ferry.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";
/// SHA-256 of the empty string.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// SHA-256 of "a real secret".
const REAL_SHA256: &str = "1a1b4a5d3ff1a7c2b2e8f5f55e2a4a2c3f2b3a1d0e9c8b7a6f5e4d3c2b1a0f9e";

/// Every trap's twin at once: this file loads.
const GOOD: &str = r#"
issuer: https://ferry.example.com
data_dir: data
providers:
  - id: github
    kind: github
    audiences: [https://ferry.example.com]
    algorithms: [RS256]
    jwks: { inline: {"keys": [{"kty": "RSA", "kid": "gh", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}]} }
    condition: assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'
  - id: custom
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { inline: {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]} }
clients:
  - { id: ci, auth: client_secret_basic, secret_sha256: REAL }
  - { id: ci-public, auth: none }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: "client_id == 'ci'"
"#;

fn check(dir: &Setup, name: &str, text: &str) -> (bool, String) {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin("ferry"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_each_trap_and_accepts_its_twin() {
    let setup = Setup::new("traps");
    let good = GOOD.replace("REAL", REAL_SHA256);
    let (ok, err) = check(&setup, "good.yaml", &good);
    assert!(ok, "the twin of every trap: {err}");
    let traps = [
        (
            "a syntactic pin",
            "assertion.repository_owner_id == '65' && assertion.event_name",
            "has(assertion.repository_owner_id) || true || assertion.event_name",
            "providers[0].condition: a github provider must pin",
        ),
        (
            "a pin by inequality",
            "assertion.repository_owner_id == '65'",
            "assertion.repository_owner_id != '65'",
            "providers[0].condition: a github provider must pin",
        ),
        (
            "a pin beside || true",
            "assertion.repository_owner_id == '65' && assertion.event_name",
            "assertion.repository_owner_id == '65' || assertion.event_name",
            "providers[0].condition: a github provider must pin",
        ),
        (
            "github with ES256",
            "algorithms: [RS256]",
            "algorithms: [RS256, ES256]",
            "providers[0].algorithms: a github provider verifies RS256 only",
        ),
        (
            "the empty string's hash as a secret",
            REAL_SHA256,
            EMPTY_SHA256,
            "clients[0].secret_sha256: is the SHA-256 of the empty string",
        ),
        (
            "client_id compared with a public client",
            "client_id == 'ci'",
            "client_id == 'ci-public'",
            "audiences[0].rules[0]: compares client_id with 'ci-public'",
        ),
        (
            "client_id compared with an unregistered label",
            "client_id == 'ci'",
            "client_id in ['ci', 'anyone']",
            "audiences[0].rules[0]: compares client_id with 'anyone'",
        ),
        (
            "client_id tested by prefix",
            "client_id == 'ci'",
            "client_id.startsWith('ci')",
            "audiences[0].rules[0]: uses client_id other than by comparing it",
        ),
        (
            "GitHub's issuer under another kind (no pin required there)",
            "    issuer: https://idp.example.com\n",
            "    issuer: https://token.actions.githubusercontent.com\n",
            "providers[1].kind: GitHub Actions' issuer is shared by every GitHub user",
        ),
        (
            "a DPoP proof accepted as an identity",
            "  - id: custom\n",
            "  - id: custom\n    accepted_types: [foo+jwt, dpop+jwt]\n",
            "providers[1].accepted_types: 'dpop+jwt' is never an identity assertion",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, from, to, want) in traps {
        assert!(good.contains(from), "{name}");
        let (ok, err) = check(&setup, "bad.yaml", &good.replace(from, to));
        if ok || !err.contains(want) || !err.contains("1 problem(s) found") {
            wrong.push(format!("{name}: exit ok {ok}: {err}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // More twins: `in` over literals is a pin; a type that is not a JWT of another kind
    // may be accepted.
    for (from, to) in [
        (
            "assertion.repository_owner_id == '65'",
            "assertion.repository_owner_id in ['65', '66']",
        ),
        (
            "  - id: custom\n",
            "  - id: custom\n    accepted_types: [foo+jwt]\n",
        ),
    ] {
        let (ok, err) = check(&setup, "twin.yaml", &good.replace(from, to));
        assert!(ok, "{to}: {err}");
    }
}

/// Starts Ferry with two providers: `idp` (RS256, keys in idp.json, `idp_extra` added to
/// its settings) and `strict` (keys in strict.json).
fn start_two(setup: &Setup, idp_set: &Value, strict: &Issuer, idp_extra: &str) -> Ferry {
    setup.write("idp.json", idp_set.to_string());
    setup.jwks("strict.json", &[&strict.key]);
    setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [{FERRY}]\n    algorithms: [RS256]\n{idp_extra}    jwks: {{ file: idp.json }}\n  - id: strict\n    issuer: https://strict.example.com\n    audiences: [{FERRY}]\n    jwks: {{ file: strict.json }}\naudiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n"
        ))
}

/// Exchanges each token and collects every answer that is not the wanted status.
async fn run_cases(ferry: &Ferry, cases: Vec<(&str, String, u16)>) {
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (name, token, want) in cases {
        let form = [
            ("grant_type", TE),
            ("subject_token", token.as_str()),
            ("subject_token_type", JWT),
            ("audience", API),
        ];
        let resp = http
            .post(format!("{}/token", ferry.url))
            .form(&form)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        if s != want || (want == 400 && body["error"] != "invalid_request") {
            wrong.push(format!("{name}: {s} {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn token(i: &Issuer, typ: &str) -> String {
    let claims = i.claims(FERRY, "workload", now(), json!({}));
    i.token_with_header(
        &json!({"alg": i.key.alg(), "kid": i.key.kid, "typ": typ}),
        &claims,
    )
}

/// RFC 7518 §6.3.1.1: an RSA key whose `n` carries a leading zero octet is the same key
/// under a second thumbprint; it is not a key, and a token naming it is refused. Its
/// twin, a minimal key in the same set, verifies.
#[tokio::test]
async fn an_rsa_key_with_a_non_minimal_modulus_is_not_a_key() {
    let setup = Setup::new("traps-rsa");
    let minimal = Issuer::new("https://idp.example.com", TestKey::rsa("minimal"));
    let padded = Issuer::new("https://idp.example.com", TestKey::rsa("padded"));
    let strict = Issuer::new("https://strict.example.com", TestKey::ec("s"));
    let mut set = jwks(&[&minimal.key, &padded.key]);
    let n = &mut set["keys"][1]["n"];
    let mut bytes = vec![0u8];
    bytes.extend(URL_SAFE_NO_PAD.decode(n.as_str().unwrap()).unwrap());
    *n = json!(URL_SAFE_NO_PAD.encode(bytes));
    let ferry = start_two(&setup, &set, &strict, "");
    let cases = vec![
        ("a key with a non-minimal n", token(&padded, "JWT"), 400),
        ("its minimal twin", token(&minimal, "JWT"), 200),
    ];
    run_cases(&ferry, cases).await;
}

/// A provider with `accepted_types: [foo+jwt]` accepts that `typ` (in any case, with or
/// without `application/`), and only that one besides `JWT`; another provider does not.
#[tokio::test]
async fn a_provider_accepts_the_types_it_lists() {
    let setup = Setup::new("traps-types");
    let idp = Issuer::new("https://idp.example.com", TestKey::rsa("i"));
    let strict = Issuer::new("https://strict.example.com", TestKey::ec("s"));
    let ferry = start_two(
        &setup,
        &jwks(&[&idp.key]),
        &strict,
        "    accepted_types: [foo+jwt]\n",
    );
    let cases = vec![
        ("an accepted type", token(&idp, "foo+jwt"), 200),
        (
            "the same with application/",
            token(&idp, "application/FOO+JWT"),
            200,
        ),
        ("JWT", token(&idp, "JWT"), 200),
        ("a type not listed", token(&idp, "bar+jwt"), 400),
        ("a DPoP proof's type", token(&idp, "dpop+jwt"), 400),
        ("another provider's list", token(&strict, "foo+jwt"), 400),
        ("that provider's twin", token(&strict, "JWT"), 200),
    ];
    run_cases(&ferry, cases).await;
}
