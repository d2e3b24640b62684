//! The `ferry` command line: `check` reports every problem at once; `serve` keeps its
//! signing key across restarts and exits cleanly on SIGTERM.

use std::process::Command;

use crate::harness::{Ferry, Setup, bin};

const GOOD: &str = r#"
issuer: https://ferry.example.com
data_dir: data
providers:
  - id: a
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { inline: {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]} }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: "provider == 'a'"
"#;

#[test]
fn check_accepts_a_good_config_and_reports_every_problem_of_a_bad_one() {
    let setup = Setup::new("check");
    let good = setup.path().join("good.yaml");
    std::fs::write(&good, GOOD).unwrap();
    let out = Command::new(bin("ferry"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("leeway 1m"));

    let bad = setup.path().join("bad.yaml");
    let text = GOOD
        .replace("audiences: [https://ferry.example.com]", "audiences: []")
        .replace("provider == 'a'", "providr == 'a'");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(bin("ferry"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("providers[0].audiences: must not be empty"),
        "{err}"
    );
    assert!(
        err.contains("audiences[0].rules[0].allow: unknown variable 'providr'"),
        "{err}"
    );
    assert!(err.contains("2 problem(s) found"), "{err}");
}

#[tokio::test]
async fn signing_key_survives_a_restart_and_sigterm_exits_zero() {
    let setup = Setup::new("restart");
    // No shutdown delay: this test restarts at once (rollout.rs tests the delay).
    setup.config(&format!("{GOOD}\nlimits: {{ shutdown_delay: 0s }}\n"));
    async fn kid(f: &Ferry) -> String {
        let v: serde_json::Value = reqwest::get(format!("{}/jwks", f.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["keys"][0]["kid"].as_str().unwrap().to_owned()
    }
    let mut first = setup.run();
    let k1 = kid(&first).await;
    let status = Command::new("kill")
        .args(["-TERM", &first.proc().pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(first.proc_mut().wait_exit(10).unwrap().success());
    let second = setup.run();
    assert_eq!(kid(&second).await, k1);
    assert!(setup.path().join("data/ring.json").exists());
}

/// Replicas sharing replay state (Redis) must share revocations too: `ferry check`
/// refuses per-node revocations beside `replay.redis`, and accepts the same file once
/// revocations live in PostgreSQL — their own section, or the signing store's database.
#[test]
fn check_refuses_shared_replay_state_with_revocations_kept_per_node() {
    let setup = Setup::new("check-revocations");
    let check = |name: &str, extra: &str| {
        let path = setup.path().join(name);
        std::fs::write(&path, format!("{GOOD}{extra}")).unwrap();
        let out = Command::new(bin("ferry"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let redis = "replay: { redis: \"redis://127.0.0.1:6379\" }\n";
    let (ok, _, err) = check("per-node.yaml", redis);
    assert!(!ok, "{err}");
    assert!(
        err.contains("replay.redis shares replay state between replicas")
            && err.contains("revocation.postgres"),
        "{err}"
    );
    // Twin: the same file with revocations in PostgreSQL.
    let (ok, out, err) = check(
        "shared.yaml",
        &format!("{redis}revocation: {{ postgres: {{ url: {{ env: FERRY_REVOCATION_PG }} }} }}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("revocations: PostgreSQL"), "{out}");
    // Twin: the signing keys in PostgreSQL; revocations default to that database.
    let (ok, out, err) = check(
        "signing.yaml",
        &format!("{redis}signing: {{ postgres: {{ url: {{ env: FERRY_PG }} }} }}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("the signing store's database"), "{out}");
    // Twin: a single node without Redis keeps them in its data directory.
    let (ok, out, err) = check("single.yaml", "");
    assert!(ok, "{err}");
    assert!(out.contains("revocations: data directory"), "{out}");
}
