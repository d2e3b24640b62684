//! Condition + mapping + policy for GitHub-shaped claims: the per-request CEL cost of an
//! exchange. Run with `cargo bench -p ferry-core --bench decision`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(
    clippy::indexing_slicing,
    reason = "a benchmark: a panic is a failed run"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_core::decision::{Ask, decide};
use serde_json::json;

const CONFIG: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: github
    kind: github
    audiences: [https://ferry.example.com]
    jwks: { inline: {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]} }
    condition: >-
      assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'
      && assertion.ref.matches('^refs/(heads|tags)/')
    mapping:
      subject: "'repo:' + assertion.repository + ':' + assertion.ref"
      attributes:
        repository: assertion.repository
        workflow: assertion.job_workflow_ref
        environment: "has(assertion.environment) ? assertion.environment : 'none'"
audiences:
  - audience: https://deploy.example.com
    rules:
      - name: no-bots
        deny: subject.endsWith('[bot]')
      - name: prod
        allow: attribute.repository == 'octo-org/other' && attribute.environment == 'prod'
        scopes: [deploy:write]
      - name: app
        allow: provider == 'github' && attribute.repository == 'octo-org/octo-repo' && attribute.workflow.startsWith('octo-org/octo-automation/')
        scopes: [deploy:read, deploy:write]
        max_ttl: 15m
"#;

fn bench(c: &mut Criterion) {
    let config = ferry_core::config::parse(CONFIG, Path::new("/")).unwrap();
    let provider = &config.providers[0];
    let claims = json!({
        "jti": "example-id", "sub": "repo:octo-org/octo-repo:environment:prod", "environment": "prod",
        "aud": "https://ferry.example.com", "ref": "refs/heads/main", "sha": "example-sha",
        "repository": "octo-org/octo-repo", "repository_owner": "octo-org", "actor_id": "12",
        "repository_visibility": "private", "repository_id": "74", "repository_owner_id": "65",
        "run_id": "example-run-id", "run_number": "10", "run_attempt": "2",
        "runner_environment": "github-hosted", "actor": "octocat", "workflow": "example-workflow",
        "head_ref": "", "base_ref": "", "event_name": "workflow_dispatch", "ref_type": "branch",
        "ref_protected": "true",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "job_workflow_sha": "example-sha",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
        "workflow_sha": "example-sha", "enterprise": "octo-enterprise", "enterprise_id": "2",
        "iss": "https://token.actions.githubusercontent.com",
        "nbf": 1_632_492_967, "exp": 1_632_493_867, "iat": 1_632_493_567
    });
    let claims = claims.as_object().unwrap().clone();
    let targets = vec!["https://deploy.example.com".to_owned()];
    let scopes = vec!["deploy:write".to_owned()];
    let ask = Ask {
        targets: &targets,
        scopes: &scopes,
        client_id: None,
        actor: None,
        situation: ferry_core::policy::Situation::default(),
    };
    let now = 1_632_493_567;
    assert!(
        decide(
            &config,
            provider,
            &claims,
            Some(1_632_493_867),
            now,
            ask,
            None
        )
        .is_ok()
    );
    c.bench_function("condition + mapping + policy (GitHub claims)", |b| {
        b.iter(|| {
            decide(
                black_box(&config),
                provider,
                black_box(&claims),
                Some(1_632_493_867),
                now,
                ask,
                None,
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
