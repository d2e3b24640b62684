//! Fixtures shared by the criterion benches and `scripts/bench.sh`: a realistic
//! configuration (N static providers with GitHub-shaped RS256 tokens, one audience with
//! 20 rules), its JWKS files, and a pool of distinct subject tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::disallowed_methods,
    reason = "benchmark tooling, never shipped: it measures real time, and a panic is a failed run"
)]

use std::path::Path;

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey};
use serde_json::{Value, json};

/// Ferry's issuer in the fixture.
pub const FERRY: &str = "https://ferry.example.com";
/// The audience exchanged for.
pub const DEPLOY: &str = "https://deploy.example.com";
/// The scope asked for.
pub const SCOPE: &str = "deploy:write";

/// The `issuer` of provider `i`.
pub fn issuer(i: usize) -> String {
    format!("https://issuer-{i}.example.com")
}

/// The configuration: `providers` static providers (keys from `jwks.json`, all with the
/// same key, as tenants of one CI system would be), GitHub-style condition and mapping,
/// and one audience whose 20th rule is the one that allows.
pub fn config(data_dir: &Path, providers: usize) -> String {
    config_with(
        data_dir,
        providers,
        "rate_per_source: 100000000, rate_global: 100000000, rate_per_provider: 100000000, rate_per_client: 100000000",
    )
}

/// [`config`] at Ferry's default limits except the per-source one, raised because every
/// request of the load generator comes from one loopback address: what `bench.sh`
/// measures, so the maximum it reaches is reached without a 429.
pub fn config_at_default_limits(data_dir: &Path, providers: usize) -> String {
    config_with(data_dir, providers, "rate_per_source: 100000000")
}

fn config_with(data_dir: &Path, providers: usize, limits: &str) -> String {
    let mut y = format!(
        "issuer: {FERRY}\ndata_dir: {}\n\
         limits: {{ {limits}, shutdown_delay: 0s }}\n\
         tokens: {{ default_ttl: 10m, max_ttl: 1h, min_ttl: 60s }}\nproviders:\n",
        data_dir.display()
    );
    for i in 0..providers {
        y.push_str(&format!(
            r#"  - id: p{i}
    issuer: {iss}
    audiences: [{FERRY}]
    algorithms: [RS256]
    jwks: {{ file: jwks.json }}
    condition: >-
      assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'
      && assertion.ref.matches('^refs/(heads|tags)/')
    mapping:
      subject: "'repo:' + assertion.repository + ':' + assertion.ref"
      attributes:
        repository: assertion.repository
        workflow: assertion.job_workflow_ref
        environment: "has(assertion.environment) ? assertion.environment : 'none'"
"#,
            iss = issuer(i)
        ));
    }
    y.push_str(&format!(
        "audiences:\n  - audience: {DEPLOY}\n    rules:\n      - name: no-bots\n        deny: subject.endsWith('[bot]')\n"
    ));
    for k in 0..18 {
        y.push_str(&format!(
            "      - name: other-{k}\n        allow: attribute.repository == 'octo-org/other-{k}' && attribute.environment == 'prod'\n        scopes: [deploy:read]\n"
        ));
    }
    y.push_str(
        "      - name: app\n        allow: attribute.repository.startsWith('octo-org/') && attribute.workflow.startsWith('octo-org/octo-automation/')\n        scopes: [deploy:read, deploy:write]\n        max_ttl: 15m\n",
    );
    y
}

/// GitHub-shaped claims for token `n` of provider `i`, valid from `now` for an hour.
pub fn claims(i: usize, n: usize, now: i64) -> Value {
    json!({
        "jti": format!("bench-{i}-{n}"), "sub": format!("repo:octo-org/repo-{n}:ref:refs/heads/main"),
        "environment": "prod", "aud": FERRY, "ref": "refs/heads/main", "sha": "example-sha",
        "repository": format!("octo-org/repo-{n}"), "repository_owner": "octo-org", "actor_id": "12",
        "repository_visibility": "private", "repository_id": format!("{}", 1000 + n), "repository_owner_id": "65",
        "run_id": format!("{n}"), "run_number": "10", "run_attempt": "1",
        "runner_environment": "github-hosted", "actor": "octocat", "workflow": "deploy",
        "head_ref": "", "base_ref": "", "event_name": "push", "ref_type": "branch",
        "ref_protected": "true",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "job_workflow_sha": "example-sha",
        "workflow_ref": format!("octo-org/repo-{n}/.github/workflows/deploy.yml@refs/heads/main"),
        "workflow_sha": "example-sha", "enterprise": "octo-enterprise", "enterprise_id": "2",
        "iss": issuer(i), "nbf": now - 5, "iat": now - 5, "exp": now + 3_600
    })
}

/// The fixture's RSA key and the issuers that sign with it.
#[derive(Debug)]
pub struct Fixture {
    /// The key every provider trusts.
    pub key: TestKey,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// A fresh RSA-2048 key.
    pub fn new() -> Self {
        Self {
            key: TestKey::rsa("bench"),
        }
    }

    /// Writes `ferry.yaml` (every limit raised, for in-process benches) and `jwks.json`
    /// into `dir`.
    pub fn write(&self, dir: &Path, providers: usize) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("jwks.json"), jwks(&[&self.key]).to_string()).unwrap();
        std::fs::write(dir.join("ferry.yaml"), config(&dir.join("data"), providers)).unwrap();
    }

    /// [`Fixture::write`] at the default limits except the per-source one (`bench.sh`).
    pub fn write_at_default_limits(&self, dir: &Path, providers: usize) {
        self.write(dir, providers);
        std::fs::write(
            dir.join("ferry.yaml"),
            config_at_default_limits(&dir.join("data"), providers),
        )
        .unwrap();
    }

    /// `count` distinct subject tokens spread over the first `providers` providers.
    pub fn tokens(&self, providers: usize, count: usize, now: i64) -> Vec<String> {
        let providers = providers.clamp(1, count.max(1));
        let signers: Vec<Issuer> = (0..providers)
            .map(|i| {
                Issuer::new(
                    issuer(i),
                    TestKey::from_pkcs8("bench", self.key.pkcs8()).unwrap(),
                )
            })
            .collect();
        (0..count)
            .map(|n| {
                let i = n % providers;
                signers[i].token(&claims(i, n, now))
            })
            .collect()
    }
}

/// The form body of an exchange of `subject`.
pub fn form(subject: &str) -> String {
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
         &audience=https%3A%2F%2Fdeploy.example.com&scope=deploy%3Awrite&subject_token={subject}"
    )
}

/// The cryptographic floor of one exchange: jsonwebtoken (aws-lc-rs) verifying an RS256
/// subject token and signing an ES256 token, keys parsed once.
pub struct Floor {
    token: String,
    decoding: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    encoding: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
    claims: Value,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Floor")
    }
}

impl Floor {
    /// The floor for a token of `fx`, valid at `now`.
    pub fn new(fx: &Fixture, now: i64) -> Self {
        let token = fx.tokens(1, 1, now).pop().unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(fx.key.public_jwk()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[FERRY]);
        let es = TestKey::ec("floor");
        Self {
            token,
            decoding: jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            validation,
            encoding: jsonwebtoken::EncodingKey::from_ec_der(es.pkcs8()),
            header: jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            claims: json!({"iss": FERRY, "sub": "repo:octo-org/repo-0:ref:refs/heads/main",
                "aud": DEPLOY, "exp": now + 900, "iat": now, "jti": "x", "scope": SCOPE}),
        }
    }

    /// One RS256 verification.
    pub fn verify(&self) -> Value {
        jsonwebtoken::decode::<Value>(&self.token, &self.decoding, &self.validation)
            .unwrap()
            .claims
    }

    /// One ES256 signature.
    pub fn sign(&self) -> String {
        jsonwebtoken::encode(&self.header, &self.claims, &self.encoding).unwrap()
    }
}
