//! The attack suite: what attackers try first against a JWT exchange, through the real
//! binary. Every case asserts the status, the error code, no `access_token`,
//! `Cache-Control: no-store`, and a fixed description that does not echo the input; and
//! every case has a positive twin that differs only in the attacked part and succeeds.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_testkit::keys::jwks;
use ferry_testkit::mint::{alg_none, hs256_with_public_key};
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

pub(crate) const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const ID: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(crate) const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const API: &str = "https://api.example.com";

pub(crate) struct Env {
    _setup: Setup,
    ferry: Ferry,
    pub(crate) issuer_url: String,
    pub(crate) rsa: Issuer,
    ec: Issuer,
    http: reqwest::Client,
}

pub(crate) fn start() -> Env {
    let setup = Setup::new("attacks");
    let issuer_url = setup.url();
    let rsa = Issuer::new("https://rsa.test", TestKey::rsa("r1"));
    let ec = Issuer::new("https://ec.test", TestKey::ec("e1"));
    // The RSA issuer's set also holds keys that must never verify anything: a symmetric
    // key; the trusted key itself published with its private exponent; a 1024-bit
    // modulus. The EC issuer's, a point off the curve.
    let mut set = jwks(&[&rsa.key]);
    let mut private = rsa.key.public_jwk();
    private["kid"] = json!("private");
    private["d"] = json!("AQAB");
    let keys = set["keys"].as_array_mut().unwrap();
    keys.push(json!({
        "kty": "oct", "kid": "hmac", "alg": "HS256",
        "k": URL_SAFE_NO_PAD.encode(b"a shared secret of thirty-two bytes!!")
    }));
    keys.push(private);
    keys.push(json!({"kty": "RSA", "kid": "small", "e": "AQAB",
        "n": URL_SAFE_NO_PAD.encode([0xc1u8; 128])}));
    let mut ec_set = jwks(&[&ec.key]);
    let mut off = ec.key.public_jwk();
    off["kid"] = json!("off-curve");
    let mut y = URL_SAFE_NO_PAD.decode(off["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    off["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
    ec_set["keys"].as_array_mut().unwrap().push(off);
    setup.write("rsa.json", set.to_string());
    setup.write("ec.json", ec_set.to_string());
    let ferry = setup.start(&format!(
        r#"issuer: {issuer_url}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}
providers:
  - id: rsa
    issuer: https://rsa.test
    audiences: [{issuer_url}]
    algorithms: [RS256]
    jwks: {{ file: rsa.json }}
  - id: ec
    issuer: https://ec.test
    audiences: [{issuer_url}]
    algorithms: [ES256]
    jwks: {{ file: ec.json }}
audiences:
  - audience: {API}
    rules:
      - allow: "true"
        scopes: [read]
"#
    ));
    Env {
        _setup: setup,
        ferry,
        issuer_url,
        rsa,
        ec,
        http: reqwest::Client::new(),
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

impl Env {
    pub(crate) fn claims(&self, iss: &str) -> Value {
        let t = now();
        json!({"iss": iss, "aud": self.issuer_url, "sub": "workload", "iat": t, "nbf": t,
               "exp": t + 300, "jti": format!("j-{t}")})
    }

    pub(crate) fn good(&self) -> String {
        self.rsa.token(&self.claims("https://rsa.test"))
    }

    /// The claims of a good RSA token with `f` applied, signed by the RSA issuer.
    fn rsa_with(&self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = self.claims("https://rsa.test");
        f(c.as_object_mut().unwrap());
        self.rsa.token(&c)
    }

    pub(crate) fn header(&self, extra: Value) -> Value {
        let mut h = json!({"alg": "RS256", "kid": "r1", "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        h
    }

    pub(crate) async fn send(
        &self,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form)
            .send()
            .await
            .unwrap();
        let (s, h) = (resp.status().as_u16(), resp.headers().clone());
        (s, h, resp.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn exchange_as(
        &self,
        token: &str,
        ty: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", ty),
            ("audience", API),
        ])
        .await
    }

    /// `bad` is refused with `error` (at 400), the way every refusal must look; `good`,
    /// its twin, is accepted.
    pub(crate) async fn pair(&self, name: &str, bad: &str, good: &str, error: &str) {
        self.pair_as(name, (bad, JWT), (good, JWT), error).await;
    }

    pub(crate) async fn pair_as(
        &self,
        name: &str,
        bad: (&str, &str),
        good: (&str, &str),
        error: &str,
    ) {
        let (s, h, body) = self.exchange_as(bad.0, bad.1).await;
        refused(name, (s, &h, &body), 400, error, bad.0);
        let (s, _, body) = self.exchange_as(good.0, good.1).await;
        assert_eq!(s, 200, "{name}: the twin: {body}");
        assert!(body["access_token"].is_string(), "{name}: the twin");
    }
}

/// The shape of every refusal.
pub(crate) fn refused(
    name: &str,
    (status, headers, body): (u16, &reqwest::header::HeaderMap, &Value),
    want_status: u16,
    want_error: &str,
    input: &str,
) {
    assert_eq!(status, want_status, "{name}: {body}");
    assert_eq!(body["error"], want_error, "{name}: {body}");
    assert!(body.get("access_token").is_none(), "{name}");
    assert_eq!(
        headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{name}"
    );
    let d = body["error_description"].as_str().unwrap_or_default();
    assert!(!d.is_empty() && d.len() < 80, "{name}: {d}");
    // A fixed string: no fragment of the input (16 bytes or more) comes back.
    let echoed = input
        .as_bytes()
        .windows(16)
        .any(|w| std::str::from_utf8(w).is_ok_and(|w| d.contains(w)));
    assert!(!echoed, "{name}: the description echoes the input: {d}");
}

fn noncanonical(segment: &str) -> String {
    // Flip an unused low bit of the last base64url character: the same bytes, encoded
    // non-canonically (or, for some lengths, other bytes: refused either way).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = segment.split_at(segment.len() - 1);
    let i = ALPHABET
        .iter()
        .position(|c| *c == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[i ^ 1] as char)
}

#[tokio::test]
async fn structure_and_algorithm_attacks() {
    let env = start();
    let good = env.good();
    let claims = env.claims("https://rsa.test");
    let parts: Vec<&str> = good.split('.').collect();
    // `none` in any casing, and with a signature attached.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let bad = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&claims)
        );
        env.pair(&format!("alg {alg}"), &bad, &good, "invalid_request")
            .await;
    }
    env.pair(
        "alg none (helper)",
        &alg_none(&claims),
        &good,
        "invalid_request",
    )
    .await;
    env.pair(
        "HS256 keyed with the RSA public key",
        &hs256_with_public_key(&env.rsa.key, &claims),
        &good,
        "invalid_request",
    )
    .await;
    // The HMAC key sitting in the issuer's JWKS.
    let hmac_input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "kid": "hmac", "typ": "JWT"})),
        b64(&claims)
    );
    let k = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        b"a shared secret of thirty-two bytes!!",
    );
    let tag = aws_lc_rs::hmac::sign(&k, hmac_input.as_bytes());
    let bad = format!("{hmac_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    env.pair(
        "HS256 with an oct key from the JWKS",
        &bad,
        &good,
        "invalid_request",
    )
    .await;
    // Algorithms outside the provider's list (the signature is a real RS256 one).
    for alg in ["RS384", "RS512", "PS256", "ES256", "EdDSA"] {
        let bad = env
            .rsa
            .token_with_header(&env.header(json!({"alg": alg})), &claims);
        env.pair(&format!("alg {alg}"), &bad, &good, "invalid_request")
            .await;
    }
    // Shapes.
    let empty_sig = format!("{}.{}.", parts[0], parts[1]);
    env.pair("empty signature", &empty_sig, &good, "invalid_request")
        .await;
    let json_serialised =
        json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string();
    env.pair(
        "JSON serialisation",
        &json_serialised,
        &good,
        "invalid_request",
    )
    .await;
    for (name, bad) in [
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("four segments", format!("{good}.x")),
        ("five segments (JWE)", format!("{}.a.b.c.d", parts[0])),
        ("one segment", parts[1].to_owned()),
        (
            "padding",
            format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "non-canonical signature",
            format!("{}.{}.{}", parts[0], parts[1], noncanonical(parts[2])),
        ),
        (
            "standard base64 alphabet",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                parts[2].replace('-', "+").replace('_', "/") + "+/"
            ),
        ),
    ] {
        env.pair(name, &bad, &good, "invalid_request").await;
    }
    // Header extensions, each signed by the trusted key: refused for what they say.
    for (name, extra) in [
        ("crit", json!({"crit": ["exp"]})),
        ("b64 false", json!({"b64": false, "crit": ["b64"]})),
        ("b64 false without crit", json!({"b64": false})),
        ("nested token", json!({"cty": "JWT"})),
        ("zip", json!({"zip": "DEF"})),
        ("jku", json!({"jku": "https://attacker.example/jwks"})),
        ("x5u", json!({"x5u": "https://attacker.example/cert"})),
        ("jwk", json!({"jwk": env.rsa.key.public_jwk()})),
        ("x5c", json!({"x5c": ["MIIB"]})),
    ] {
        let bad = env.rsa.token_with_header(&env.header(extra), &claims);
        env.pair(name, &bad, &good, "invalid_request").await;
    }
    // The attacker's own key, offered in the header.
    let attacker = TestKey::rsa("r1");
    let injected = Issuer::new("https://rsa.test", attacker);
    let bad = injected.token_with_header(
        &env.header(json!({"jwk": injected.key.public_jwk()})),
        &claims,
    );
    env.pair("attacker key in jwk", &bad, &good, "invalid_request")
        .await;
    // A JWT inside a JWT.
    let nested = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(&good),
        parts[2]
    );
    env.pair("a token as the payload", &nested, &good, "invalid_request")
        .await;
}

#[tokio::test]
async fn key_attacks() {
    let env = start();
    let good = env.good();
    let claims = env.claims("https://rsa.test");
    for (name, kid) in [
        ("unknown kid", json!("r2")),
        ("path kid", json!("../../../../etc/passwd")),
        ("sql kid", json!("' OR '1'='1")),
        ("long kid", json!("k".repeat(4_000))),
        ("numeric kid", json!(1)),
        ("null-byte kid", json!("r1\u{0}")),
    ] {
        let bad = env
            .rsa
            .token_with_header(&env.header(json!({"kid": kid})), &claims);
        env.pair(name, &bad, &good, "invalid_request").await;
    }
    // No kid: any of the issuer's keys for the algorithm may verify (RFC 7515 makes kid
    // optional), so the twin is the trusted key's signature without one, and the attack
    // another key's.
    let attacker = Issuer::new("https://rsa.test", TestKey::rsa("r1"));
    let no_kid = env.header(json!({"kid": null}));
    env.pair(
        "no kid, another key",
        &attacker.token_with_header(&no_kid, &claims),
        &env.rsa.token_with_header(&no_kid, &claims),
        "invalid_request",
    )
    .await;
    // Keys in the JWKS that Ferry must have skipped: the trusted key's own signature
    // under the kid of its published-with-private-members twin, and tokens naming the
    // 1024-bit and the off-curve keys.
    for (name, kid) in [
        ("kid of a key published with d", "private"),
        ("kid of a 1024-bit key", "small"),
    ] {
        let bad = env
            .rsa
            .token_with_header(&env.header(json!({"kid": kid})), &claims);
        env.pair(name, &bad, &good, "invalid_request").await;
    }
    let ec_claims = env.claims("https://ec.test");
    let off = env.ec.token_with_header(
        &json!({"alg": "ES256", "kid": "off-curve", "typ": "JWT"}),
        &ec_claims,
    );
    env.pair(
        "kid of an off-curve key",
        &off,
        &env.ec.token(&ec_claims),
        "invalid_request",
    )
    .await;
    // Psychic signatures (CVE-2022-21449): r = s = 0.
    let ec_good = env.ec.token(&env.claims("https://ec.test"));
    let p: Vec<&str> = ec_good.split('.').collect();
    let zero = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode([0u8; 64]));
    env.pair("ECDSA r = s = 0", &zero, &ec_good, "invalid_request")
        .await;
    // r = s = n (the group order), a neighbour of the same bug.
    let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let order = format!(
        "{}.{}.{}",
        p[0],
        p[1],
        URL_SAFE_NO_PAD.encode([n.clone(), n].concat())
    );
    env.pair("ECDSA r = s = n", &order, &ec_good, "invalid_request")
        .await;
    // A DER-encoded ECDSA signature where JWS wants the fixed r‖s form.
    let der = format!(
        "{}.{}.{}",
        p[0],
        p[1],
        URL_SAFE_NO_PAD.encode([0x30u8, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
    );
    env.pair("DER ECDSA signature", &der, &ec_good, "invalid_request")
        .await;
}

fn hex32(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn claim_attacks() {
    let env = start();
    let good = env.good();
    let t = now();
    // Wrong JSON types for every registered claim.
    for (claim, v) in [
        ("iss", json!(1)),
        ("iss", json!(["https://rsa.test"])),
        ("sub", json!(42)),
        ("sub", json!({"id": "x"})),
        ("aud", json!({"aud": "x"})),
        ("aud", json!(7)),
        ("exp", json!((t + 300).to_string())),
        ("exp", json!(true)),
        ("nbf", json!("now")),
        ("iat", json!([t])),
        ("jti", json!(5)),
    ] {
        let bad = env.rsa_with(|c| {
            c.insert(claim.into(), v.clone());
        });
        env.pair(&format!("{claim} as {v}"), &bad, &good, "invalid_request")
            .await;
    }
    // Overflow and out-of-range times.
    for (claim, raw) in [
        ("exp", "1e400"),
        ("exp", "18446744073709551616"),
        ("exp", "9223372036854775807"),
        ("exp", "-1"),
        ("exp", "1.5e9"),
        ("iat", "99999999999999999999"),
        ("nbf", "9223372036854775807"),
    ] {
        let mut c = env.claims("https://rsa.test");
        c[claim] = json!(0);
        let payload = c
            .to_string()
            .replace(&format!("\"{claim}\":0"), &format!("\"{claim}\":{raw}"));
        let bad = env
            .rsa
            .token_raw(&env.header(json!({})).to_string(), &payload);
        env.pair(&format!("{claim} = {raw}"), &bad, &good, "invalid_request")
            .await;
    }
    // `iss` near misses.
    for iss in [
        "https://rsa.test/",
        "HTTPS://RSA.TEST",
        "https://rsa.test ",
        "https://rsa.test.",
        "https://rsa.test#",
    ] {
        let bad = env.rsa_with(|c| {
            c.insert("iss".into(), json!(iss));
        });
        env.pair(&format!("iss {iss:?}"), &bad, &good, "invalid_request")
            .await;
    }
    // `aud` forms: accepted when Ferry is among them (twins), refused otherwise.
    let me = env.issuer_url.clone();
    for (aud, ok) in [
        (json!([me]), true),
        (json!(["https://other", me]), true),
        (json!([]), false),
        (json!(""), false),
        (json!(["https://other"]), false),
        (json!([format!("{me}/")]), false),
        (json!([[me]]), false),
    ] {
        let token = env.rsa_with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        let (s, h, body) = env.exchange_as(&token, JWT).await;
        if ok {
            assert_eq!(s, 200, "aud {aud}: {body}");
        } else {
            refused(
                &format!("aud {aud}"),
                (s, &h, &body),
                400,
                "invalid_request",
                &token,
            );
        }
    }
    // Duplicate claim names, either way round.
    let c = env.claims("https://rsa.test");
    let mut payload = c.to_string();
    payload.insert_str(1, "\"sub\":\"admin\",");
    let bad = env
        .rsa
        .token_raw(&env.header(json!({})).to_string(), &payload);
    env.pair("duplicate sub", &bad, &good, "invalid_request")
        .await;
    // Huge tokens and deep nesting.
    let huge = env.rsa_with(|c| {
        c.insert("pad".into(), json!("x".repeat(20_000)));
    });
    let small = env.rsa_with(|c| {
        c.insert("pad".into(), json!("x".repeat(2_000)));
    });
    env.pair("a 27 KB token", &huge, &small, "invalid_request")
        .await;
    let deep = env.rsa_with(|c| {
        let mut v = json!(1);
        for _ in 0..100 {
            v = json!([v]);
        }
        c.insert("deep".into(), v);
    });
    // 100 levels parse (the twin); 5,000 are refused, without a crash.
    let (s, _, body) = env.exchange_as(&deep, JWT).await;
    assert_eq!(s, 200, "100 levels of nesting: {body}");
    let mut raw = String::from("{\"iss\":\"https://rsa.test\",\"deep\":");
    raw.push_str(&"[".repeat(5_000));
    raw.push_str(&"]".repeat(5_000));
    raw.push('}');
    let bad = env.rsa.token_raw(&env.header(json!({})).to_string(), &raw);
    env.pair("5,000 levels of nesting", &bad, &good, "invalid_request")
        .await;
}
