//! Server-side downscoping: a Ferry token narrowed at /token, each widening attempt
//! refused beside its positive twin.

use ferry_testkit::mint::{dpop_proof, payload};
use ferry_testkit::{Issuer, TestKey, now};
use ferry_verify::dpop::thumbprint;
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    http: reqwest::Client,
}

fn start() -> Env {
    let setup = Setup::new("downscope");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let providers = idp_providers(&issuer_url);
    let ferry = setup.start(&format!(
            "issuer: {issuer_url}\ndata_dir: data\n{providers}audiences:\n  - audience: https://a.example.com\n    rules: [{{ allow: \"true\", scopes: [read, write] }}]\n  - audience: https://b.example.com\n    rules: [{{ allow: \"true\", scopes: [read, write] }}]\n  - audience: https://c.example.com\n    rules: [{{ allow: \"true\", scopes: [read, write, admin] }}]\n"
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
    async fn post(&self, form: &[(&str, &str)], proof: Option<&str>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        let resp = r.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// A broad parent token: audiences a and b, scopes read and write.
    async fn parent(&self, proof: Option<&str>) -> (String, Value) {
        let subject = self.idp.token(&self.idp.claims(
            &self.issuer_url,
            "workload",
            now(),
            json!({"exp": now() + 3_000}),
        ));
        let (s, body) = self
            .post(
                &[
                    ("grant_type", TE),
                    ("subject_token", &subject),
                    ("subject_token_type", JWT),
                    ("audience", "https://a.example.com"),
                    ("audience", "https://b.example.com"),
                ],
                proof,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let t = body["access_token"].as_str().unwrap().to_owned();
        let claims = Value::Object(payload(&t));
        (t, claims)
    }

    async fn narrow(
        &self,
        parent: &str,
        audience: &str,
        scope: Option<&str>,
        proof: Option<&str>,
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", parent),
            ("subject_token_type", AT),
            ("audience", audience),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.post(&form, proof).await
    }
}

#[tokio::test]
async fn narrowing_works_and_every_widening_is_refused() {
    let env = start();
    let (parent, pc) = env.parent(None).await;
    // The twin: a subset of audiences and scopes.
    let (s, body) = env
        .narrow(&parent, "https://a.example.com", Some("read"), None)
        .await;
    assert_eq!(s, 200, "{body}");
    let child = payload(body["access_token"].as_str().unwrap());
    assert_eq!(child["aud"], "https://a.example.com");
    assert_eq!(child["scope"], "read");
    assert_eq!(child["sub"], pc["sub"]);
    assert!(
        child["exp"].as_i64().unwrap() <= pc["exp"].as_i64().unwrap(),
        "never past the parent's exp"
    );
    // Widening the audience (c is served, but not in the parent).
    let (s, body) = env
        .narrow(&parent, "https://c.example.com", None, None)
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_target")));
    // Widening the scopes.
    let (s, body) = env
        .narrow(&parent, "https://a.example.com", Some("read admin"), None)
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_scope")));
    // A child cannot widen back either.
    let child_token = body_token(
        &env.narrow(&parent, "https://a.example.com", Some("read"), None)
            .await,
    );
    let (s, body) = env
        .narrow(&child_token, "https://a.example.com", Some("write"), None)
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_scope")));
    let (s, _) = env
        .narrow(&child_token, "https://b.example.com", None, None)
        .await;
    assert_eq!(s, 400);
    // A Ferry token presented as …:jwt is refused (twin: as …:access_token above).
    let (s, body) = env
        .post(
            &[
                ("grant_type", TE),
                ("subject_token", &parent),
                ("subject_token_type", JWT),
                ("audience", "https://a.example.com"),
            ],
            None,
        )
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
    // A token Ferry did not issue is not narrowed.
    let foreign = env.idp.token(
        &env.idp
            .claims("https://a.example.com", "x", now(), json!({})),
    );
    let (s, _) = env
        .narrow(&foreign, "https://a.example.com", None, None)
        .await;
    assert_eq!(s, 400);
}

fn body_token(r: &(u16, Value)) -> String {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_bound_parent_is_narrowed_only_by_its_holder_and_the_child_stays_bound() {
    let env = start();
    let key = TestKey::ec("holder");
    let url = format!("{}/token", env.issuer_url);
    let (parent, _) = env
        .parent(Some(&dpop_proof(
            &key,
            "POST",
            &url,
            now(),
            "p1",
            None,
            None,
        )))
        .await;
    let (s, body) = env
        .narrow(&parent, "https://a.example.com", None, None)
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let thief = TestKey::ec("thief");
    let (s, _) = env
        .narrow(
            &parent,
            "https://a.example.com",
            None,
            Some(&dpop_proof(&thief, "POST", &url, now(), "p2", None, None)),
        )
        .await;
    assert_eq!(s, 400);
    let (s, body) = env
        .narrow(
            &parent,
            "https://a.example.com",
            None,
            Some(&dpop_proof(&key, "POST", &url, now(), "p3", None, None)),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        thumbprint(&key.public_jwk()).as_str()
    );
}

const BUCKET: &str = "//storage.googleapis.com/projects/_/buckets/bucket-123";
const VIEWER: &str = "inRole:roles/storage.objectViewer";

fn cab(expression: &str) -> String {
    json!({"accessBoundary": {"accessBoundaryRules": [{
        "availableResource": BUCKET,
        "availablePermissions": [VIEWER],
        "availabilityCondition": {"expression": expression, "title": "t"},
    }]}})
    .to_string()
}

#[tokio::test]
async fn access_boundaries_are_carried_and_enforced_by_the_verifier() {
    use ferry_verify::FerryVerifier;
    use ferry_verify::boundary::ResourceAccess;
    use ferry_verify::net::{ClientSettings, Http, OutboundPolicy};
    use std::sync::Arc;

    let env = start();
    let (parent, _) = env.parent(None).await;
    let narrow = |token: String, options: String| {
        let env = &env;
        async move {
            env.post(
                &[
                    ("grant_type", TE),
                    ("subject_token", &token),
                    ("subject_token_type", AT),
                    ("audience", "https://a.example.com"),
                    ("options", &options),
                ],
                None,
            )
            .await
        }
    };
    // Two steps: every .txt object, then only customer-a's.
    let child = body_token(&narrow(parent.clone(), cab("resource.name.endsWith('.txt')")).await);
    let prefix = "resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a/')";
    let grandchild = body_token(&narrow(child.clone(), cab(prefix)).await);
    // An expression that does not compile is refused at the exchange (twin: above).
    let (s, body) = narrow(child.clone(), cab("resource.name.startsWith((")).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));

    let http = Http::new(
        OutboundPolicy::new(std::slice::from_ref(&env.issuer_url), &[]).unwrap(),
        &ClientSettings::default(),
    )
    .unwrap();
    let verifier = FerryVerifier::discover(
        &env.issuer_url,
        "https://a.example.com",
        "http://svc.test",
        http,
        Arc::new(ferry_verify::time::SystemMono::default()),
    )
    .await
    .unwrap();
    let verified = |t: String| {
        let verifier = &verifier;
        async move {
            verifier
                .verify(Some(&format!("Bearer {t}")), None, "GET", "/", now())
                .await
                .unwrap()
        }
    };
    let object = |name: &'static str| ResourceAccess {
        resource: BUCKET,
        permission: VIEWER,
        name,
        kind: "storage.googleapis.com/Object",
        service: "storage.googleapis.com",
    };
    let a = object("projects/_/buckets/bucket-123/objects/customer-a/1.txt");
    let b = object("projects/_/buckets/bucket-123/objects/customer-b/1.txt");
    let a_bin = object("projects/_/buckets/bucket-123/objects/customer-a/1.bin");

    let g = verified(grandchild).await;
    assert_eq!(g.claims["access_boundaries"].as_array().unwrap().len(), 2);
    assert!(g.boundary_allows(&a));
    assert!(!g.boundary_allows(&b), "the added boundary narrows");
    assert!(
        !g.boundary_allows(&a_bin),
        "the parent's boundary still applies"
    );
    let mut admin = a;
    admin.permission = "inRole:roles/storage.objectAdmin";
    assert!(!g.boundary_allows(&admin));
    let c = verified(child).await;
    assert!(c.boundary_allows(&b), "one step up, customer-b is allowed");
    assert!(!c.boundary_allows(&a_bin));
    let p = verified(parent).await;
    assert!(p.claims.get("access_boundaries").is_none());
    assert!(
        p.boundary_allows(&a_bin),
        "an unbounded token is not narrowed"
    );
}
