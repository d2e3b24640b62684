//! DPoP (RFC 9449) end to end: bound tokens from /token, used at the example relying
//! service (ferry-verify's extractor), and each attack beside its positive twin.

use std::process::Command;

use ferry_testkit::mint::{dpop_proof, dpop_proof_with_jwk};
use ferry_testkit::{Issuer, TestKey, now};
use ferry_verify::dpop::{access_token_hash, thumbprint};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, bin, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    http: reqwest::Client,
}

fn start(extra: &str) -> Env {
    let setup = Setup::new("dpop");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let providers = idp_providers(&issuer_url);
    let ferry = setup.start(&format!(
            "issuer: {issuer_url}\ndata_dir: data\n{extra}\nlimits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}\n{providers}audiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n        scopes: [read]\n  - audience: https://dpop-only.example.com\n    require_dpop: true\n    rules:\n      - allow: \"true\"\n"
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
    fn token_url(&self) -> String {
        format!("{}/token", self.issuer_url)
    }

    fn subject(&self, extra: Value) -> String {
        self.idp
            .token(&self.idp.claims(&self.issuer_url, "workload", now(), extra))
    }

    async fn exchange(
        &self,
        subject: &str,
        audience: &str,
        proofs: &[&str],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut r = self.http.post(format!("{}/token", self.ferry.url)).form(&[
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", audience),
        ]);
        for p in proofs {
            r = r.header("DPoP", *p);
        }
        let resp = r.send().await.unwrap();
        let (s, h) = (resp.status().as_u16(), resp.headers().clone());
        (s, resp.json().await.unwrap_or(Value::Null), h)
    }

    fn proof(&self, key: &TestKey, jti: &str) -> String {
        dpop_proof(key, "POST", &self.token_url(), now(), jti, None, None)
    }
}

pub(crate) fn relying_service(issuer: &str) -> (Proc, String) {
    let mut proc = Proc::spawn(
        Command::new(bin("ferry-example-relying-service"))
            .env("FERRY_ISSUER", issuer)
            .env("AUDIENCE", API)
            .env("INSECURE_ORIGINS", issuer),
    )
    .unwrap();
    let line = proc.wait_for("relying service listening on ").unwrap();
    let url = line.rsplit(' ').next().unwrap().to_owned();
    (proc, url)
}

#[tokio::test]
async fn a_bound_token_at_the_relying_service() {
    let env = start("");
    let key = TestKey::ec("client");
    let jkt = thumbprint(&key.public_jwk());
    let (s, body, _) = env
        .exchange(&env.subject(json!({})), API, &[&env.proof(&key, "t1")])
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        ferry_testkit::mint::payload(&token)["cnf"]["jkt"],
        jkt.as_str()
    );

    let (_svc, url) = relying_service(&env.issuer_url);
    let resource = format!("{url}/resource");
    let call = |auth: String, proof: Option<String>| {
        let (http, resource) = (env.http.clone(), resource.clone());
        async move {
            let mut r = http.get(resource).header("authorization", auth);
            if let Some(p) = proof {
                r = r.header("DPoP", p);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let ath = access_token_hash(&token);
    let good = |jti: &str| dpop_proof(&key, "GET", &resource, now(), jti, Some(&ath), None);
    // The twin of everything below.
    let p = good("r1");
    assert_eq!(call(format!("DPoP {token}"), Some(p.clone())).await, 200);
    // Replay of the same proof.
    assert_eq!(call(format!("DPoP {token}"), Some(p)).await, 401);
    // Wrong ath.
    let wrong_ath = dpop_proof(
        &key,
        "GET",
        &resource,
        now(),
        "r2",
        Some(&access_token_hash("other")),
        None,
    );
    assert_eq!(call(format!("DPoP {token}"), Some(wrong_ath)).await, 401);
    // Missing proof; the bound token as a bearer token.
    assert_eq!(call(format!("DPoP {token}"), None).await, 401);
    assert_eq!(call(format!("Bearer {token}"), Some(good("r3"))).await, 401);
    // A proof by another key.
    let other = TestKey::ec("other");
    let stolen = dpop_proof(&other, "GET", &resource, now(), "r4", Some(&ath), None);
    assert_eq!(call(format!("DPoP {token}"), Some(stolen)).await, 401);
    // Wrong htm / htu at the service.
    let wrong_htm = dpop_proof(&key, "POST", &resource, now(), "r5", Some(&ath), None);
    assert_eq!(call(format!("DPoP {token}"), Some(wrong_htm)).await, 401);
    assert_eq!(call(format!("DPoP {token}"), Some(good("r6"))).await, 200);

    // An unbound token is a plain bearer token there.
    let (s, body, _) = env.exchange(&env.subject(json!({})), API, &[]).await;
    assert_eq!((s, body["token_type"].as_str()), (200, Some("Bearer")));
    assert_eq!(
        call(
            format!("Bearer {}", body["access_token"].as_str().unwrap()),
            None
        )
        .await,
        200
    );
}

#[tokio::test]
async fn proofs_at_the_token_endpoint_each_attack_with_its_twin() {
    let env = start("");
    let key = TestKey::ec("client");
    let subject = || env.subject(json!({}));
    let t = now();
    let url = env.token_url();
    let mut private = key.public_jwk();
    // A "public" JWK carrying private material is refused whatever else holds.
    private["d"] = json!("AAAA");
    let other = TestKey::ec("other");
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("good", vec![env.proof(&key, "a1")], 200),
        (
            "query ignored in htu",
            vec![dpop_proof(
                &key,
                "POST",
                &format!("{url}?x=1"),
                t,
                "a2",
                None,
                None,
            )],
            200,
        ),
        (
            "wrong htm",
            vec![dpop_proof(&key, "GET", &url, t, "a3", None, None)],
            400,
        ),
        (
            "wrong htu",
            vec![dpop_proof(
                &key,
                "POST",
                "https://elsewhere.example.com/token",
                t,
                "a4",
                None,
                None,
            )],
            400,
        ),
        (
            "stale iat",
            vec![dpop_proof(&key, "POST", &url, t - 300, "a5", None, None)],
            400,
        ),
        (
            "private key in jwk",
            vec![dpop_proof_with_jwk(
                &key, &private, "POST", &url, t, "a6", None, None,
            )],
            400,
        ),
        (
            "signed by another key",
            vec![dpop_proof_with_jwk(
                &other,
                &key.public_jwk(),
                "POST",
                &url,
                t,
                "a7",
                None,
                None,
            )],
            400,
        ),
        (
            "two DPoP headers",
            vec![env.proof(&key, "a8"), env.proof(&key, "a9")],
            400,
        ),
    ];
    for (name, proofs, want) in cases {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (s, body, _) = env.exchange(&subject(), API, &refs).await;
        assert_eq!(s, want, "{name}: {body}");
        if want == 400 {
            assert_eq!(body["error"], "invalid_dpop_proof", "{name}");
        }
    }
    // Replay: the same proof twice.
    let once = env.proof(&key, "b1");
    assert_eq!(env.exchange(&subject(), API, &[&once]).await.0, 200);
    let (s, body, _) = env.exchange(&subject(), API, &[&once]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // An audience that requires DPoP, without and with a proof.
    let (s, body, _) = env
        .exchange(&subject(), "https://dpop-only.example.com", &[])
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    assert_eq!(
        env.exchange(
            &subject(),
            "https://dpop-only.example.com",
            &[&env.proof(&key, "b2")]
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn a_bound_subject_token_needs_its_keys_proof_and_stays_bound() {
    let env = start("");
    let key = TestKey::ec("holder");
    let jkt = thumbprint(&key.public_jwk());
    let bound = env.subject(json!({"cnf": {"jkt": jkt}}));
    // Without a proof, or with another key's: never a bearer token out of /token.
    let (s, body, _) = env.exchange(&bound, API, &[]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let other = TestKey::ec("thief");
    let (s, _, _) = env.exchange(&bound, API, &[&env.proof(&other, "c1")]).await;
    assert_eq!(s, 400);
    // With the holder's proof: allowed, and the new token keeps the binding.
    let (s, body, _) = env.exchange(&bound, API, &[&env.proof(&key, "c2")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        ferry_testkit::mint::payload(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt.as_str()
    );
}

#[tokio::test]
async fn the_nonce_flow() {
    let env = start("dpop: { require_nonce: true }");
    let key = TestKey::ec("client");
    // Without the server's nonce: use_dpop_nonce, with a nonce to use.
    let (s, body, headers) = env
        .exchange(&env.subject(json!({})), API, &[&env.proof(&key, "n1")])
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("use_dpop_nonce")));
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    // With it: allowed.
    let p = dpop_proof(
        &key,
        "POST",
        &env.token_url(),
        now(),
        "n2",
        None,
        Some(&nonce),
    );
    let (s, body, _) = env.exchange(&env.subject(json!({})), API, &[&p]).await;
    assert_eq!(s, 200, "{body}");
    // A forged nonce is refused.
    let p = dpop_proof(
        &key,
        "POST",
        &env.token_url(),
        now(),
        "n3",
        None,
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    assert_eq!(
        env.exchange(&env.subject(json!({})), API, &[&p]).await.0,
        400
    );
}

#[tokio::test]
async fn a_locally_derived_token_at_the_relying_service_and_its_parent_unusable_there() {
    use ferry_verify::derive::{HolderKey, Narrowing, derive};
    let env = start("");
    let key = TestKey::ec("holder");
    let (s, body, _) = env
        .exchange(&env.subject(json!({})), API, &[&env.proof(&key, "d1")])
        .await;
    assert_eq!(s, 200, "{body}");
    let root = body["access_token"].as_str().unwrap().to_owned();
    // The holder narrows it on its own machine: no request to Ferry.
    let holder = HolderKey::from_pkcs8(key.pkcs8()).unwrap();
    let n = Narrowing {
        scopes: Some(vec!["read".into()]),
        lifetime: Some(60),
        ..Narrowing::default()
    };
    let derived = derive(&root, &holder, &n, now()).unwrap();

    let (_svc, url) = relying_service(&env.issuer_url);
    let resource = format!("{url}/resource");
    let call = |auth: String, proof: Option<String>| {
        let (http, resource) = (env.http.clone(), resource.clone());
        async move {
            let mut r = http.get(resource).header("authorization", auth);
            if let Some(p) = proof {
                r = r.header("DPoP", p);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(call(format!("Bearer {derived}"), None).await, 200);
    // The service that received it extracts the embedded parent: bound to the holder's
    // key, it is refused as a bearer token and with the service's own proof…
    let parent = ferry_testkit::mint::payload(&derived)["parent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(parent, root);
    assert_eq!(call(format!("Bearer {parent}"), None).await, 401);
    let thief = TestKey::ec("service");
    let ath = access_token_hash(&parent);
    let stolen = dpop_proof(&thief, "GET", &resource, now(), "s1", Some(&ath), None);
    assert_eq!(call(format!("DPoP {parent}"), Some(stolen)).await, 401);
    // …and it cannot derive its own token from it (twin: the holder's derivation above).
    let thief_key = HolderKey::from_pkcs8(thief.pkcs8()).unwrap();
    assert!(derive(&parent, &thief_key, &Narrowing::default(), now()).is_err());
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), json!(ferry_verify::derive::DERIVED_TYPE));
    let forged = thief_key
        .sign(
            header,
            &json!({"parent": parent, "aud": [API], "scope": "read", "iat": now(), "exp": now() + 60, "depth": 1}),
        )
        .unwrap();
    assert_eq!(call(format!("Bearer {forged}"), None).await, 401);
    // Only the holder, with its proof, uses the parent.
    let own = dpop_proof(&key, "GET", &resource, now(), "h1", Some(&ath), None);
    assert_eq!(call(format!("DPoP {parent}"), Some(own)).await, 200);
}

/// Header and number attacks on proofs at /token, each beside its twin: `crit` (RFC
/// 7515 §4.1.11: Ferry understands no extension, so it refuses any); `iat` at i64::MIN
/// or i64::MAX (refused with 400 — the window arithmetic must not overflow); an RSA
/// `jwk` whose `n` carries a leading zero octet (RFC 7518 §6.3.1.1: the same key with a
/// second thumbprint).
#[tokio::test]
async fn proof_headers_and_numbers_each_with_its_twin() {
    let env = start("");
    let key = TestKey::ec("client");
    let signer = Issuer::new("-", TestKey::from_pkcs8("client", key.pkcs8()).unwrap());
    let proof = |extra: Value, iat: i64, jti: &str| {
        let mut h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        let claims = json!({"htm": "POST", "htu": env.token_url(), "iat": iat, "jti": jti});
        signer.token_with_header(&h, &claims)
    };
    let t = now();
    let rsa = TestKey::rsa("rsa-client");
    let mut padded = rsa.public_jwk();
    let mut n = vec![0u8];
    n.extend(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            padded["n"].as_str().unwrap(),
        )
        .unwrap(),
    );
    padded["n"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        n
    ));
    let rsa_proof = |jwk: &Value, jti: &str| {
        dpop_proof_with_jwk(&rsa, jwk, "POST", &env.token_url(), now(), jti, None, None)
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "crit",
            proof(json!({"crit": ["exp"]}), t, "c1"),
            proof(json!({}), t, "c2"),
        ),
        (
            "crit naming an extension it carries",
            proof(json!({"crit": ["x-ext"], "x-ext": true}), t, "c3"),
            proof(json!({"x-ext": true}), t, "c4"),
        ),
        (
            "iat i64::MIN",
            proof(json!({}), i64::MIN, "c5"),
            proof(json!({}), t, "c6"),
        ),
        (
            "iat i64::MAX",
            proof(json!({}), i64::MAX, "c7"),
            proof(json!({}), t, "c8"),
        ),
        (
            "RSA jwk with a non-minimal n",
            rsa_proof(&padded, "c9"),
            rsa_proof(&rsa.public_jwk(), "c10"),
        ),
    ];
    // Every case is run and every wrong answer collected; a dropped connection (a
    // panicking handler) counts as status 0.
    let send = |proof: String| {
        let (http, url, subject) = (
            env.http.clone(),
            format!("{}/token", env.ferry.url),
            env.subject(json!({})),
        );
        async move {
            let form = [
                ("grant_type", TE),
                ("subject_token", subject.as_str()),
                ("subject_token_type", JWT),
                ("audience", API),
            ];
            match http
                .post(url)
                .form(&form)
                .header("DPoP", proof)
                .send()
                .await
            {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (s, r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(_) => (0, Value::Null),
            }
        }
    };
    let mut wrong = Vec::new();
    for (name, bad, twin) in cases {
        let (s, body) = send(bad).await;
        if (s, body["error"].as_str()) != (400, Some("invalid_dpop_proof")) {
            wrong.push(format!("{name}: {s} {body}"));
        }
        let (s, body) = send(twin).await;
        if (s, body["token_type"].as_str()) != (200, Some("DPoP")) {
            wrong.push(format!("{name}: the twin: {s} {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The server survived all of it.
    let (s, _, _) = env
        .exchange(&env.subject(json!({})), API, &[&env.proof(&key, "last")])
        .await;
    assert_eq!(s, 200);
}
