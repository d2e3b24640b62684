//! Nothing unauthenticated grows, and every bucket is charged to the party that spent
//! it: bounded public `client_id`s without buckets of their own, a provider's bucket
//! charged only after its condition passed (failures go to the tenant's own bucket),
//! per-principal shares of the replay cache, DPoP proofs consumed only after the subject
//! token verified, reference handles and access boundaries bounded, downscoping charged
//! to the provider. Each attack beside its positive twin.

use ferry_testkit::mint::dpop_proof;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const REF: &str = "urn:ferry:params:oauth:token-type:reference_token";
const API: &str = "https://api.example.com";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    idp2: Issuer,
    sa: [Issuer; 2],
    http: reqwest::Client,
}

/// A Ferry with two static providers (`idp`, whose condition admits subjects starting
/// with `mine`, and `idp2`), two service accounts and a registered public client;
/// `limits` and `extra` are spliced into the configuration.
fn start(limits: &str, extra: &str) -> Env {
    let setup = Setup::new("limits");
    let issuer_url = setup.url();
    let idp = Issuer::new("https://idp.example.com", TestKey::ec("i1"));
    let idp2 = Issuer::new("https://idp2.example.com", TestKey::ec("i2"));
    let sa = [
        Issuer::new("sa-a", TestKey::ec("a1")),
        Issuer::new("sa-b", TestKey::ec("b1")),
    ];
    for (name, key) in [
        ("idp", &idp.key),
        ("idp2", &idp2.key),
        ("sa-a", &sa[0].key),
        ("sa-b", &sa[1].key),
    ] {
        setup.jwks(&format!("{name}.json"), &[key]);
    }
    let ferry = setup.start(&format!(
        r#"issuer: {issuer_url}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, {limits} }}
{extra}
clients:
  - {{ id: registered, auth: none }}
service_accounts:
  - {{ id: sa-a, jwks: {{ file: sa-a.json }} }}
  - {{ id: sa-b, jwks: {{ file: sa-b.json }} }}
providers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [{issuer_url}]
    jwks: {{ file: idp.json }}
    condition: assertion.sub.startsWith('mine')
  - id: idp2
    issuer: https://idp2.example.com
    audiences: [{issuer_url}]
    jwks: {{ file: idp2.json }}
  - id: sa
    kind: service_account
audiences:
  - audience: {API}
    rules:
      - allow: "true"
        scopes: [read, write]
"#
    ));
    Env {
        _setup: setup,
        ferry,
        issuer_url,
        idp,
        idp2,
        sa,
        http: reqwest::Client::new(),
    }
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn fresh_jti() -> String {
    format!(
        "j-{}-{}",
        std::process::id(),
        JTI.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

impl Env {
    fn subject(&self, idp: &Issuer, sub: &str) -> String {
        idp.token(&idp.claims(&self.issuer_url, sub, now(), json!({"jti": fresh_jti()})))
    }

    fn assertion(&self, sa: usize, exp_in: i64) -> String {
        let s = &self.sa[sa];
        let t = now();
        s.token(
            &json!({"iss": s.iss, "sub": s.iss, "aud": self.issuer_url, "iat": t,
            "exp": t + exp_in, "jti": fresh_jti()}),
        )
    }

    async fn post(&self, form: &[(&str, &str)], dpop: Option<&str>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form);
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn exchange(&self, subject: &str, more: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", API),
        ];
        form.extend_from_slice(more);
        self.post(&form, None).await
    }

    async fn bearer(&self, assertion: &str) -> (u16, Value) {
        self.post(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion),
                ("audience", API),
            ],
            None,
        )
        .await
    }

    async fn downscope(&self, parent: &str, more: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", parent),
            ("subject_token_type", AT),
            ("scope", "read"),
        ];
        form.extend_from_slice(more);
        self.post(&form, None).await
    }

    /// The audit events so far, once at least `want` of them were read from the
    /// process's output (which is collected in the background).
    async fn audit_lines(&self, want: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let events: Vec<Value> = self
                .ferry
                .proc()
                .stdout
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["type"] == "ferry.audit")
                .collect();
            if events.len() >= want || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let admin = self.ferry.admin.clone().unwrap();
        let text = reqwest::get(format!("{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
            .parse()
            .unwrap()
    }
}

#[tokio::test]
async fn a_public_client_id_is_at_most_128_printable_characters() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    let subject = env.subject(&env.idp, "mine");
    let ok = "c".repeat(128);
    let long = "c".repeat(129);
    for (id, want) in [
        (ok.as_str(), 200),
        ("with space and ~", 200),
        (long.as_str(), 400),
        ("tab\there", 400),
        ("nul\0here", 400),
        ("caf\u{e9}", 400),
        // Ferry's own namespace: a caller must not pass for a service account.
        ("ferry-service-account:builder", 400),
        ("ferry-provider:idp", 400),
        ("my-ferry-client", 200),
    ] {
        let (s, body) = env.exchange(&subject, &[("client_id", id)]).await;
        assert_eq!(s, want, "{id:?}: {body}");
        if want == 400 {
            assert_eq!(body["error"], "invalid_request", "{id:?}");
        }
    }
    // The long one never reached the audit log.
    let audit = serde_json::to_string(&env.audit_lines(9).await).unwrap();
    assert!(!audit.contains(&long));
    assert!(audit.contains(&ok), "the twin is audited: {audit}");
}

#[tokio::test]
async fn unregistered_client_ids_get_no_bucket_of_their_own() {
    // One request per second per client (a burst of two).
    let env = start("rate_per_provider: 100000, rate_per_client: 1", "");
    let subject = env.subject(&env.idp, "mine");
    // A registered public client has its bucket: the third request in a row is refused…
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            env.exchange(&subject, &[("client_id", "registered")])
                .await
                .0,
        );
    }
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    // …while an unregistered label is only a label: no bucket is made for it (the
    // source and global buckets still apply), so any number of them cannot grow the map.
    for _ in 0..4 {
        let (s, body) = env
            .exchange(&subject, &[("client_id", "just-a-label")])
            .await;
        assert_eq!(s, 200, "{body}");
    }
}

#[tokio::test]
async fn audit_events_never_carry_unbounded_request_values() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    let huge_aud = format!("https://{}.example.com", "a".repeat(4000));
    let huge_iss = format!("https://{}.example.com", "i".repeat(4000));
    let subject = env.subject(&env.idp, "mine");
    let (s, _) = env
        .post(
            &[
                ("grant_type", TE),
                ("subject_token", &subject),
                ("subject_token_type", JWT),
                ("audience", &huge_aud),
            ],
            None,
        )
        .await;
    assert_eq!(s, 400);
    // An assertion whose issuer is nobody's.
    let stranger = Issuer::new(huge_iss.clone(), TestKey::ec("x"));
    let t = now();
    let a = stranger.token(
        &json!({"iss": huge_iss, "sub": huge_iss, "aud": env.issuer_url,
        "iat": t, "exp": t + 60, "jti": fresh_jti()}),
    );
    assert_eq!(env.bearer(&a).await.0, 400);
    // Twin: a configured audience is audited as it is.
    assert_eq!(env.exchange(&subject, &[]).await.0, 200);
    let events = env.audit_lines(3).await;
    assert_eq!(events.len(), 3);
    let audit = serde_json::to_string(&events).unwrap();
    assert!(!audit.contains(&"a".repeat(4000)), "requested audience");
    assert!(!audit.contains(&"i".repeat(4000)), "unverified issuer");
    assert!(audit.contains(API));
    assert!(
        events.iter().all(|e| e.to_string().len() < 2048),
        "every event stays small"
    );
}

#[tokio::test]
async fn a_foreign_tenant_drains_its_own_bucket_not_the_providers() {
    // The provider's bucket: one per second, a burst of two.
    let env = start("rate_per_provider: 1, rate_per_client: 100000", "");
    // Validly signed tokens of another tenant (subject), which the condition refuses.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(env.exchange(&env.subject(&env.idp, "foreign"), &[]).await.0);
    }
    assert_eq!(&codes[..2], &[400, 400], "{codes:?}");
    assert_eq!(
        codes.last(),
        Some(&429),
        "its own bucket refuses it: {codes:?}"
    );
    // Another foreign tenant is refused by the condition, not by a bucket…
    let (s, body) = env.exchange(&env.subject(&env.idp, "stranger"), &[]).await;
    assert_eq!(s, 400, "{body}");
    // …and the tenant the condition admits still gets its tokens (twin).
    let (s, body) = env.exchange(&env.subject(&env.idp, "mine"), &[]).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn one_service_account_cannot_fill_anothers_replay_share() {
    // A cache of 20: each account may hold a tenth of it.
    let env = start(
        "rate_per_provider: 100000, rate_per_client: 100000",
        "max_replay_entries: 20",
    );
    let before = env.metric("ferry_replay_full_refusals_total").await;
    let mut codes = Vec::new();
    for _ in 0..25 {
        codes.push(env.bearer(&env.assertion(0, 300)).await.0);
    }
    assert_eq!(&codes[..2], &[200, 200], "{codes:?}");
    assert!(codes[2..].iter().all(|c| *c == 503), "{codes:?}");
    // B's fresh assertion is accepted, twice over.
    for _ in 0..2 {
        let (s, body) = env.bearer(&env.assertion(1, 300)).await;
        assert_eq!(s, 200, "{body}");
    }
    // A's refusals are audited and counted as a full cache, not as replays.
    assert_eq!(
        env.metric("ferry_replay_full_refusals_total").await - before,
        23
    );
    let reasons: Vec<String> = env
        .audit_lines(27)
        .await
        .iter()
        .filter(|e| e["decision"] == "deny")
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons.len(), 23);
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("full") && !r.contains("replayed")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_assertion_stays_single_use_for_as_long_as_it_is_accepted() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    // Valid for two seconds; the clock leeway accepts it for a while after its exp.
    let a = env.assertion(0, 2);
    assert_eq!(env.bearer(&a).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let (s, body) = env.bearer(&a).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // Twin: a fresh assertion with the same short life is accepted.
    assert_eq!(env.bearer(&env.assertion(0, 2)).await.0, 200);
}

#[tokio::test]
async fn a_dpop_proof_is_consumed_only_after_the_subject_token_verified() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    let key = TestKey::ec("holder");
    let url = format!("{}/token", env.issuer_url);
    let proof = dpop_proof(&key, "POST", &url, now(), &fresh_jti(), None, None);
    let exchange = |subject: String| {
        let proof = proof.clone();
        let env = &env;
        async move {
            env.post(
                &[
                    ("grant_type", TE),
                    ("subject_token", &subject),
                    ("subject_token_type", JWT),
                    ("audience", API),
                ],
                Some(&proof),
            )
            .await
        }
    };
    // A subject token that does not verify: refused, and the proof is not spent…
    let forged = Issuer::new("https://idp.example.com", TestKey::ec("i1"));
    let bad = forged.token(&forged.claims(&env.issuer_url, "mine", now(), json!({})));
    assert_eq!(exchange(bad).await.0, 400);
    // …so it still works with a subject token that does;
    let (s, body) = exchange(env.subject(&env.idp, "mine")).await;
    assert_eq!(s, 200, "{body}");
    // and once used, it is spent.
    let (s, body) = exchange(env.subject(&env.idp, "mine")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
}

#[tokio::test]
async fn a_full_dpop_cache_is_audited_as_full() {
    let env = start(
        "rate_per_provider: 100000, rate_per_client: 100000",
        "max_replay_entries: 3",
    );
    let url = format!("{}/token", env.issuer_url);
    let mut codes = Vec::new();
    for i in 0..4 {
        let key = TestKey::ec(&format!("k{i}"));
        let proof = dpop_proof(&key, "POST", &url, now(), &fresh_jti(), None, None);
        let subject = env.subject(&env.idp, "mine");
        let (s, _) = env
            .post(
                &[
                    ("grant_type", TE),
                    ("subject_token", &subject),
                    ("subject_token_type", JWT),
                    ("audience", API),
                ],
                Some(&proof),
            )
            .await;
        codes.push(s);
    }
    assert_eq!(codes, [200, 200, 200, 503]);
    let denied: Vec<Value> = env
        .audit_lines(4)
        .await
        .into_iter()
        .filter(|e| e["decision"] == "deny")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["reason"], "DPoP replay cache full", "{denied:?}");
    assert_eq!(env.metric("ferry_dpop_replay_full_refusals_total").await, 1);
}

#[tokio::test]
async fn reference_handles_are_capped() {
    let env = start(
        "rate_per_provider: 100000, rate_per_client: 100000, max_reference_tokens: 2",
        "",
    );
    let subject = env.subject(&env.idp, "mine");
    let reference = [("requested_token_type", REF)];
    for _ in 0..2 {
        let (s, body) = env.exchange(&subject, &reference).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["issued_token_type"], REF);
    }
    let (s, body) = env.exchange(&subject, &reference).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    assert_eq!(
        body["error_description"],
        "too many live reference tokens, retry later"
    );
    // Twin: a plain JWT is still issued.
    assert_eq!(env.exchange(&subject, &[]).await.0, 200);
}

fn boundary(title: &str, description: &str) -> String {
    json!({"accessBoundary": {"accessBoundaryRules": [{
        "availableResource": "//storage.googleapis.com/projects/_/buckets/b",
        "availablePermissions": ["inRole:roles/storage.objectViewer"],
        "availabilityCondition": {"expression": "resource.name.startsWith('x')",
            "title": title, "description": description}}]}})
    .to_string()
}

#[tokio::test]
async fn access_boundary_title_and_description_are_bounded() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    let (s, body) = env.exchange(&env.subject(&env.idp, "mine"), &[]).await;
    assert_eq!(s, 200, "{body}");
    let parent = body["access_token"].as_str().unwrap().to_owned();
    let (t256, t257) = ("t".repeat(256), "t".repeat(257));
    let (d1024, d1025) = ("d".repeat(1024), "d".repeat(1025));
    for (title, description, want) in [
        (t256.as_str(), d1024.as_str(), 200),
        (t257.as_str(), "", 400),
        ("", d1025.as_str(), 400),
    ] {
        let options = boundary(title, description);
        let (s, body) = env.downscope(&parent, &[("options", &options)]).await;
        assert_eq!(s, want, "{}/{}: {body}", title.len(), description.len());
        if want == 400 {
            assert_eq!(body["error"], "invalid_request");
            assert!(!body.to_string().contains(&"t".repeat(200)));
        }
    }
}

#[tokio::test]
async fn downscoping_counts_against_the_providers_bucket() {
    // One per second, a burst of two, per provider.
    let env = start("rate_per_provider: 1, rate_per_client: 100000", "");
    let (s, body) = env.exchange(&env.subject(&env.idp, "mine"), &[]).await;
    assert_eq!(s, 200, "{body}");
    let parent = body["access_token"].as_str().unwrap().to_owned();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(env.downscope(&parent, &[]).await.0);
    }
    assert_eq!(codes.first(), Some(&200), "{codes:?}");
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    // Twin: another provider's bucket is untouched.
    let (s, body) = env.exchange(&env.subject(&env.idp2, "any"), &[]).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn a_reference_token_stores_at_most_16_kib() {
    let env = start("rate_per_provider: 100000, rate_per_client: 100000", "");
    let (s, body) = env.exchange(&env.subject(&env.idp, "mine"), &[]).await;
    assert_eq!(s, 200, "{body}");
    let parent = body["access_token"].as_str().unwrap().to_owned();
    // Ten rules of about 2.5 KiB each: a token of more than 16 KiB.
    let rule = |i: usize| {
        json!({"availableResource": format!("//storage.googleapis.com/{i}/{}", "r".repeat(1_200)),
            "availablePermissions": ["inRole:roles/storage.objectViewer"],
            "availabilityCondition": {"expression": "true", "title": "t".repeat(256),
                "description": "d".repeat(1_024)}})
    };
    let big =
        json!({"accessBoundary": {"accessBoundaryRules": (0..10).map(rule).collect::<Vec<_>>()}})
            .to_string();
    let small = boundary("t", "d");
    for (options, reference, want) in [(&big, true, 400), (&big, false, 200), (&small, true, 200)] {
        let mut more = vec![("options", options.as_str())];
        if reference {
            more.push(("requested_token_type", REF));
        }
        let (s, body) = env.downscope(&parent, &more).await;
        assert_eq!(
            s,
            want,
            "{} bytes, reference {reference}: {body}",
            options.len()
        );
        if want == 400 {
            assert_eq!(
                body["error_description"],
                "the token is too large to be stored as a reference token"
            );
        }
    }
}
