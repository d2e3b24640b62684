//! Locally derived tokens cannot widen (issue 19, item 1): a task that holds a delegated
//! key signs its own layer and presents it at the example relying service. Each attack
//! (a layer that omits `scope`, carries it as an array, widens it; the same for `aud` and
//! `exp`) at depth 2 and 3, beside its positive twin that differs only in that member.

use ferry_testkit::mint::dpop_proof;
use ferry_testkit::{TestKey, now};
use ferry_verify::derive::{DERIVED_TYPE, HolderKey, Narrowing, derive};
use serde_json::{Map, Value, json};

use crate::dpop::relying_service;
use crate::harness::{Ferry, Proc, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";
const OTHER: &str = "https://other.example.com";

struct Env {
    _setup: Setup,
    _ferry: Ferry,
    _svc: Proc,
    resource: String,
    http: reqwest::Client,
    /// A Ferry token for [API, OTHER] with `read write admin`, bound to `keys[0]`.
    root: String,
    keys: Vec<HolderKey>,
}

async fn start() -> Env {
    let setup = Setup::new("derived");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let providers = idp_providers(&issuer_url);
    let ferry = setup.start(&format!(
            "issuer: {issuer_url}\ndata_dir: data\n{providers}audiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n        scopes: [read, write, admin]\n  - audience: {OTHER}\n    rules:\n      - allow: \"true\"\n        scopes: [read, write, admin]\n"
    ));
    let http = reqwest::Client::new();
    let test_keys: Vec<TestKey> = (0..3).map(|i| TestKey::ec(&format!("task-{i}"))).collect();
    let subject = idp.token(&idp.claims(&issuer_url, "workload", now(), json!({})));
    let proof = dpop_proof(
        &test_keys[0],
        "POST",
        &format!("{issuer_url}/token"),
        now(),
        "root-1",
        None,
        None,
    );
    let resp = http
        .post(format!("{}/token", ferry.url))
        .header("DPoP", proof)
        .form(&[
            ("grant_type", TE),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", API),
            ("audience", OTHER),
            ("scope", "read write admin"),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read write admin");
    let root = body["access_token"].as_str().unwrap().to_owned();
    let (svc, url) = relying_service(&issuer_url);
    Env {
        _setup: setup,
        _ferry: ferry,
        _svc: svc,
        resource: format!("{url}/resource"),
        http,
        root,
        keys: test_keys
            .iter()
            .map(|k| HolderKey::from_pkcs8(k.pkcs8()).unwrap())
            .collect(),
    }
}

impl Env {
    /// An honest chain of `depth - 1` layers (each bound to the next task key and
    /// narrowed to `read write` for [API]), the parent of the layer under attack, and
    /// the key that layer must be signed with.
    fn parent(&self, depth: usize) -> (String, &HolderKey) {
        let mut token = self.root.clone();
        for i in 0..depth - 1 {
            let n = Narrowing {
                audiences: vec![API.into()],
                scopes: Some(vec!["read".into(), "write".into()]),
                lifetime: Some(120),
                bind_to: Some(self.keys[i + 1].thumbprint().to_owned()),
                ..Narrowing::default()
            };
            token = derive(&token, &self.keys[i], &n, now()).unwrap();
        }
        (token, &self.keys[depth - 1])
    }

    /// The layer under attack at `depth`, unbound (so it is presented as a bearer
    /// token), with `members` edited into an honest payload (`null` removes one).
    fn layer(&self, depth: usize, members: Value) -> String {
        let (parent, key) = self.parent(depth);
        let mut payload = json!({"parent": parent, "aud": [API], "scope": "read",
            "iat": now(), "exp": now() + 60, "depth": depth});
        for (k, v) in members.as_object().unwrap() {
            if v.is_null() {
                payload.as_object_mut().unwrap().remove(k);
            } else {
                payload[k] = v.clone();
            }
        }
        let mut header = Map::new();
        header.insert("typ".into(), json!(DERIVED_TYPE));
        key.sign(header, &payload).unwrap()
    }

    /// The relying service's answer: status and the scopes it saw.
    async fn call(&self, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(&self.resource)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (s, body["scopes"].clone())
    }
}

#[tokio::test]
async fn a_derived_layer_cannot_widen_its_scope() {
    let env = start().await;
    for depth in [2, 3] {
        // An omitted scope means no scopes, never the root's `read write admin`.
        let t = env.layer(depth, json!({"scope": null}));
        assert_eq!(
            env.call(&t).await,
            (200, json!([])),
            "omitted, depth {depth}"
        );
        // A scope that is not a space-delimited string is malformed.
        let t = env.layer(depth, json!({"scope": ["read", "admin"]}));
        assert_eq!(env.call(&t).await.0, 401, "array, depth {depth}");
        // Widened beyond the parent's `read write`.
        let t = env.layer(depth, json!({"scope": "read admin"}));
        assert_eq!(env.call(&t).await.0, 401, "widened, depth {depth}");
        // Twins: equal to the parent's, and narrower.
        let t = env.layer(depth, json!({"scope": "read write"}));
        assert_eq!(
            env.call(&t).await,
            (200, json!(["read", "write"])),
            "equal, depth {depth}"
        );
        let t = env.layer(depth, json!({}));
        assert_eq!(
            env.call(&t).await,
            (200, json!(["read"])),
            "narrower, depth {depth}"
        );
    }
}

#[tokio::test]
async fn a_derived_layer_cannot_widen_its_audience_or_lifetime() {
    let env = start().await;
    for depth in [2, 3] {
        // aud: omitted, malformed, widened (the root's OTHER, dropped by the parent).
        for (members, what) in [
            (json!({"aud": null}), "aud omitted"),
            (json!({"aud": [API, 7]}), "aud with a non-string"),
            (json!({"aud": {"a": API}}), "aud an object"),
            (json!({"aud": [API, OTHER]}), "aud widened"),
            (json!({"aud": OTHER}), "aud moved"),
            (json!({"exp": null}), "exp omitted"),
            (json!({"exp": (now() + 60).to_string()}), "exp a string"),
            (json!({"exp": now() + 3600}), "exp beyond the parent's"),
        ] {
            let t = env.layer(depth, members);
            assert_eq!(env.call(&t).await.0, 401, "{what}, depth {depth}");
        }
        // Twins: the parent's audience as a string and as an array, the parent's expiry.
        for (members, what) in [
            (json!({"aud": API}), "aud a string"),
            (json!({"aud": [API]}), "aud an array"),
            (json!({"exp": now() + 100}), "exp within the parent's"),
        ] {
            let t = env.layer(depth, members);
            assert_eq!(env.call(&t).await.0, 200, "{what}, depth {depth}");
        }
    }
}
